//! Snapshot tests of what operators and scripts read: the `--json` contract of `show` and `list`
//! with attempts present (every field name and text form), and pt-BR texts without times in them
//! (`explain`, a refused batch, a refused config). Each is compared whole with its file in
//! `tests/it/snapshots/`; a change in wording or a renamed field fails here, and is accepted by
//! re-running with `UPDATE_SNAPSHOTS=1` and reviewing the diff in git. Values that differ per run
//! (times, durations, the random idempotency key) are replaced by `<…>` first.
//!
//! Our own 30 lines rather than `insta`: the comparison is the whole need, and insta's review
//! tooling (cargo-insta, redaction selectors) would bring a dependency tree for it.

use std::path::Path;
use std::time::Duration;

use extrator::simulator::{Background, Behavior, Scenario};
use serde_json::Value;

use crate::util::{Env, expect_exit, wait_until};

/// Compares `actual` with `tests/it/snapshots/NAME`; writes it instead with `UPDATE_SNAPSHOTS=1`
/// (never in CI).
#[track_caller]
fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() && std::env::var_os("CI").is_none() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!("{}: {error}; create it with UPDATE_SNAPSHOTS=1 and review it", path.display())
    });
    if expected != actual {
        panic!(
            "{} differs (UPDATE_SNAPSHOTS=1 rewrites it; review the diff in git):\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

/// `value` with what differs per run replaced: times, durations, the idempotency key.
fn steady(value: &mut Value) {
    const VARYING: [&str; 6] =
        ["created_at", "updated_at", "started_at", "next_attempt_at", "duration_ms", "idempotency_key"];
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if VARYING.contains(&key.as_str()) && !field.is_null() {
                    *field = Value::String(format!("<{key}>"));
                } else {
                    steady(field);
                }
            }
        }
        Value::Array(values) => values.iter_mut().for_each(steady),
        _ => {}
    }
}

/// Pretty JSON of a command's stdout, made steady.
fn json_of(stdout: &str) -> String {
    let mut value: Value = serde_json::from_str(stdout).unwrap();
    steady(&mut value);
    serde_json::to_string_pretty(&value).unwrap() + "\n"
}

#[test]
fn the_json_contract_of_show_and_list_with_attempts() {
    // Order 1: a 503 (99, retried), then delivered with a receipt. Order 2: refused (07) at once.
    let api = Background::start(
        Scenario::default()
            .order(
                "1",
                vec![
                    Behavior::json(503, r#"{"erro":"manutenção"}"#),
                    Behavior::json(200, r#"{"protocolo":"P-1"}"#),
                ],
            )
            .order("2", vec![Behavior::json(422, r#"{"message":"pedido já faturado"}"#)]),
    )
    .unwrap();
    let env = Env::build(
        &api.url(),
        "",
        "[api.response]\nreceipt_path = \"protocolo\"\n\n[retry]\nfirst_delay = \"100ms\"\nmax_delay = \"200ms\"\n",
    );
    let batch = r#"[{"order":"1","branch":"7","reason":"cliente desistiu","cancelled_at":"2026-12-01T10:00:00Z","customer":"C-9","extra":{"loja":3}},
                    {"order":"2","branch":"7","reason":"preço errado","cancelled_at":"2026-12-01T10:05:00Z"}]"#;
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], batch.as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("both orders final", Duration::from_secs(60), || {
        env.number("SELECT COUNT(*) FROM items WHERE state IN ('done', 'failed')") == 2
    });
    crate::util::signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());

    let (shown, _) = expect_exit(&env.run(&["show", "--order", "1", "--json"]), 0);
    snapshot("show-entregue-depois-de-503.json", &json_of(&shown));
    let (shown, _) = expect_exit(&env.run(&["show", "--order", "2", "--json"]), 0);
    snapshot("show-rejeitado-07.json", &json_of(&shown));
    let (listed, _) = expect_exit(&env.run(&["list", "--json"]), 0);
    snapshot("list.json", &json_of(&listed));
}

#[test]
fn operator_texts_without_times() {
    let env = Env::new();
    let (explained, _) = expect_exit(&env.run(&["explain", "04"]), 0);
    snapshot("explain-04.txt", &explained);

    let batch = "{\"order\":\"\",\"branch\":\"1\",\"reason\":\"x\"}\n{\"order\":\"5\",\"reason\":\"x\"}\n\
                 {\"order\":\"6\",\"branch\":\"1\",\"reason\":\"x\",\"cancelled_at\":\"ontem\"}\n";
    let (_, refused) = expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], batch.as_bytes()), 1);
    snapshot("enqueue-recusado.txt", &refused);

    let bad = env.dir.path().join("ruim.toml");
    std::fs::write(&bad, "[api]\nurl = \"http://127.0.0.1:1/\"\nrequest_timeout = \"5 minutos\"\n").unwrap();
    let (_, said) = expect_exit(&env.run(&["check", "--config-only", "--config", bad.to_str().unwrap()]), 78);
    snapshot("check-config-recusada.txt", &said.replace(env.dir.path().to_str().unwrap(), "<dir>"));
}
