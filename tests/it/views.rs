//! `status`, `list` and `show`: human tables in pt-BR and `--json` with stable field names.

use crate::util::{Env, expect_exit, json_lines};

#[test]
fn json_field_names_are_stable() {
    let env = Env::new();
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 3).as_bytes()), 0);

    let (stdout, _) = expect_exit(&env.run(&["list", "--json"]), 0);
    let items: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(items.len(), 3);
    let mut keys: Vec<&str> = items[0].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attempts",
            "branch",
            "cancelled_at",
            "created_at",
            "customer",
            "extra",
            "id",
            "idempotency_key",
            "last_code",
            "last_message",
            "next_attempt_at",
            "order",
            "poll_url",
            "processing_since",
            "reason",
            "receipt",
            "sent",
            "source",
            "state",
            "updated_at"
        ]
    );
    assert_eq!(items[0]["state"], "pending");

    let (stdout, _) = expect_exit(&env.run(&["status", "--json"]), 0);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["counts"]["pending"], 3);
    assert_eq!(status["counts"]["failed"], 0);
    assert_eq!(status["daemon"], "never_started");
    assert!(status["oldest_pending"].is_string());

    let (stdout, _) = expect_exit(&env.run(&["show", "2", "--json"]), 0);
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["item"]["order"], "2");
    assert_eq!(shown["attempts"], serde_json::json!([]));
}

#[test]
fn list_filters_and_says_when_it_cut_the_list() {
    let env = Env::new();
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 60).as_bytes()), 0);
    env.db().execute("UPDATE items SET state = 'failed', last_code = '05' WHERE id <= 3", []).unwrap();

    let (stdout, _) = expect_exit(&env.run(&["list"]), 0);
    assert!(stdout.starts_with("ID  PEDIDO  FILIAL  ESTADO"), "{stdout}");
    assert!(stdout.contains("mostrando 50 de 60 itens; use --limit 0 para ver todos"), "{stdout}");
    let (stdout, _) = expect_exit(&env.run(&["list", "--limit", "0"]), 0);
    assert_eq!(stdout.lines().count(), 61);

    let (stdout, _) = expect_exit(&env.run(&["list", "--state", "failed", "--code", "05"]), 0);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(stdout.lines().skip(1).all(|line| line.contains("falhou") && line.contains("05")), "{stdout}");
    let (stdout, _) = expect_exit(&env.run(&["list", "--order", "42"]), 0);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let (stdout, _) = expect_exit(&env.run(&["list", "--state", "done"]), 0);
    assert_eq!(stdout, "nenhum item encontrado\n");
}

#[test]
fn reading_commands_never_create_the_database() {
    let env = Env::new();
    for args in [&["status"][..], &["list"], &["show", "1"], &["retry", "--dry-run"]] {
        let (_, stderr) = expect_exit(&env.run(args), 1);
        assert!(stderr.contains("não existe ainda"), "{args:?}: {stderr}");
    }
    assert!(!env.database().exists());
}

#[test]
fn show_tells_what_is_missing() {
    let env = Env::new();
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
    let (stdout, _) = expect_exit(&env.run(&["show", "--order", "1"]), 0);
    assert!(stdout.contains("Pedido:             1"), "{stdout}");
    assert!(stdout.contains("Estado:             pendente (pending)"), "{stdout}");
    assert!(stdout.contains("Nenhuma tentativa de envio ainda."), "{stdout}");
    let (_, stderr) = expect_exit(&env.run(&["show", "99"]), 1);
    assert!(stderr.contains("item 99 não encontrado na fila"), "{stderr}");
}

/// Asserts that `text` holds nothing a terminal would act on: no control character but the
/// line break, no bidirectional override.
#[track_caller]
pub fn assert_terminal_safe(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| {
            (c.is_control() && *c != '\n')
                || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(bad.is_empty(), "{what} prints {bad:?} raw:\n{text}");
}

#[test]
fn hostile_text_from_the_erp_is_shown_escaped_everywhere_a_human_reads() {
    let env = Env::new();
    let hostile = "\u{1b}]0;tomado\u{7}\u{1b}[2J\r motivo \u{202e}txt.exe\u{9b}31m";
    let record = serde_json::json!({"order": "1", "branch": "1", "reason": hostile});
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], record.to_string().as_bytes()), 0);
    let (stdout, _) = expect_exit(&env.run(&["show", "--order", "1"]), 0);
    assert_terminal_safe("show", &stdout);
    assert!(stdout.contains("\\u{1b}]0;tomado\\u{7}"), "escaped, not dropped:\n{stdout}");
    let (stdout, _) = expect_exit(&env.run(&["list"]), 0);
    assert_terminal_safe("list", &stdout);
    // `--json` is unchanged: the value is the ERP's, JSON-escaped.
    let (stdout, _) = expect_exit(&env.run(&["show", "--order", "1", "--json"]), 0);
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["item"]["reason"], hostile);

    // Errors quoting the input: a field name, a date, a conflicting order.
    for (bad, quoted) in [
        (serde_json::json!({"order": "2", "branch": "1", "reason": "x", "\u{1b}[31mcampo\u{202e}": 1}), true),
        (
            serde_json::json!({"order": "2", "branch": "1", "reason": "x", "cancelled_at": "\u{1b}[2J\u{7}ontem"}),
            true,
        ),
        (serde_json::json!({"order": "1", "branch": "1", "reason": "outro \u{1b}[5m"}), false),
    ] {
        let (_, stderr) =
            expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], bad.to_string().as_bytes()), 1);
        assert_terminal_safe("enqueue's error", &stderr);
        assert_eq!(stderr.contains("\\u{1b}"), quoted, "{stderr}");
    }

    // A spool file whose name and content carry escapes: its `.erro` and the log are safe.
    env.drop_spool_file("\u{1b}[31mlote\u{7}.json", "{\"order\": \"3\", \"\u{1b}[2Jx\": 1}".as_bytes());
    let mut daemon = env.spawn_daemon();
    crate::util::wait_until("the file rejected", std::time::Duration::from_secs(30), || {
        env.spool_files("rejeitados").iter().any(|name| name.ends_with(".erro"))
    });
    crate::util::signal(&daemon, "TERM");
    daemon.wait().unwrap();
    let erro = env.spool_files("rejeitados").into_iter().find(|name| name.ends_with(".erro")).unwrap();
    let text = std::fs::read_to_string(env.spool().join("rejeitados").join(erro)).unwrap();
    assert_terminal_safe(".erro", &text);
    assert!(text.contains("\\u{1b}[31mlote\\u{7}.json"), "{text}");
    assert_terminal_safe("the daemon's log", &env.daemon_log());
}
