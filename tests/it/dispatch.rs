//! The daemon delivering for real: `extrator run` against the simulated API on loopback, with
//! attempts recorded in the real database, the async flow, an outage with the circuit breaker, a
//! credentials pause lifted by a reload, and secrets that never leak.

use std::time::Duration;

use extrator::simulator::{Background, Behavior, Scenario};

use crate::util::{Env, expect_exit, json_lines, signal, wait_until};

/// Items not yet in a final state.
const UNFINISHED: &str = "SELECT COUNT(*) FROM items WHERE state NOT IN ('done', 'failed')";

#[test]
fn delivers_records_every_attempt_and_follows_202_208_200() {
    let scenario = Scenario::default()
        .order("1", vec![Behavior::json(200, r#"{"status":"cancelado"}"#)])
        .order(
            "2",
            vec![
                Behavior::json(202, r#"{"status":"queued"}"#),
                Behavior::json(208, r#"{"errors":[{"key":"orderKey","message":"em processamento"}]}"#),
                Behavior::json(200, r#"{"status":"cancelado"}"#),
            ],
        )
        .order(
            "3",
            vec![Behavior::json(400, r#"{"errors":[{"key":"orderKey","message":"pedido já faturado"}]}"#)],
        );
    let api = Background::start(scenario).unwrap();
    let env = Env::build(&api.url(), "async_poll_interval = \"100ms\"\n", "");
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 3).as_bytes()), 0);

    let mut daemon = env.spawn_daemon();
    wait_until("every item to be final", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());

    let state = |order: &str| -> (String, i64, Option<String>, Option<String>) {
        env.db()
            .query_row(
                "SELECT state, attempts, last_code, last_message FROM items WHERE order_number = ?1",
                [order],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .unwrap()
    };
    assert_eq!(state("1").0, "done");
    assert_eq!(state("2"), ("done".into(), 0, None, None), "the async flow counts no failure");
    assert_eq!(
        state("3"),
        ("failed".into(), 1, Some("07".into()), Some("orderKey: pedido já faturado".into()))
    );

    let outcomes: Vec<(String, Option<i64>, bool)> = env
        .db()
        .prepare(
            "SELECT a.outcome, a.http_status, a.counted FROM attempts a JOIN items i ON i.id = a.item_id \
             WHERE i.order_number = '2' ORDER BY a.number",
        )
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        outcomes,
        [
            ("processing".into(), Some(202), false),
            ("processing".into(), Some(208), false),
            ("success".into(), Some(200), false)
        ]
    );
    let keys: Vec<String> = api
        .shared
        .received()
        .iter()
        .filter(|request| request.order.as_deref() == Some("2"))
        .filter_map(|request| request.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|key| key == &keys[0]), "one idempotency key per item: {keys:?}");

    let (code, kind, status, excerpt): (String, String, i64, String) = env
        .db()
        .query_row(
            "SELECT code, kind, http_status, body_excerpt FROM attempts a JOIN items i ON i.id = a.item_id \
             WHERE i.order_number = '3'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .unwrap();
    assert_eq!((code.as_str(), kind.as_str(), status), ("07", "http_400", 400));
    assert!(excerpt.contains("pedido já faturado"), "{excerpt}");

    let (stdout, _) = expect_exit(&env.run(&["show", "--order", "2"]), 0);
    assert!(stdout.contains("processando") && stdout.contains("sucesso"), "{stdout}");
    let log = env.daemon_log();
    assert!(log.contains("cancelamento entregue"), "{log}");
    assert!(log.contains("cancelamento falhou definitivamente: erro 07"), "{log}");
}

#[test]
fn an_outage_ends_with_everything_delivered_and_only_probes_during_it() {
    let port = crate::util::free_port();
    let env = Env::build(
        &format!("http://127.0.0.1:{port}/cancelamentos"),
        "concurrency = 2\nconnect_timeout = \"500ms\"\nrequest_timeout = \"1s\"\n",
        "[retry]\nfirst_delay = \"100ms\"\nmax_delay = \"300ms\"\nmax_attempts = 2\n",
    );
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 20).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("four failed probes", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM attempts WHERE probe = 1 AND code = '01'") >= 4
    });
    let (stdout, _) = expect_exit(&env.run(&["status"]), 0);
    assert!(stdout.contains("CIRCUITO ABERTO: a API falhou com o erro 01 Conexão recusada"), "{stdout}");

    // The API comes back on the same port.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let api = Background::start_on(listener, Scenario::default()).unwrap();
    wait_until("every item delivered", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());

    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'done'"), 20);
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'failed'"), 0);
    assert_eq!(env.number("SELECT MAX(attempts) FROM items"), 0, "an outage burns no item's attempts");
    let log = env.daemon_log();
    assert_eq!(log.matches("envio suspenso").count(), 1, "an outage is logged when it starts:\n{log}");
    assert_eq!(log.matches("envio retomado").count(), 1, "and when it ends, not at every probe:\n{log}");
    let refused_outside_probes = env.number("SELECT COUNT(*) FROM attempts WHERE code = '01' AND probe = 0");
    assert!(
        refused_outside_probes <= 2,
        "only the requests already in flight when it opened: {refused_outside_probes}"
    );
    let orders: std::collections::HashSet<_> =
        api.shared.received().into_iter().filter_map(|request| request.order).collect();
    assert_eq!(orders.len(), 20);
    assert!(env.daemon_log().contains("envio retomado"), "{}", env.daemon_log());
}

#[test]
fn wrong_password_pauses_everything_until_a_reload_and_never_leaks() {
    const WRONG: &str = "S3nh4-Errada-4242";
    const RIGHT: &str = "S3nh4-Certa-7777";
    let api = Background::start(Scenario::default()).unwrap();
    // base64("integrador:S3nh4-Certa-7777")
    api.shared.require_authorization("Basic aW50ZWdyYWRvcjpTM25oNC1DZXJ0YS03Nzc3");
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("senha");
    std::fs::write(&password_file, format!("{WRONG}\n")).unwrap();
    let auth = format!(
        "\n[api.auth]\nmode = \"basic\"\nuser = \"integrador\"\npassword_file = \"{}\"\n",
        password_file.display()
    );
    let env = Env::build(&api.url(), "", &auth);
    let good_config = std::fs::read_to_string(&env.config).unwrap();
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 6).as_bytes()), 0);

    let mut daemon = env.spawn_daemon();
    wait_until("the pause to be recorded", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM daemon WHERE gate LIKE 'paused 02 %'") == 1
    });
    let sent = api.shared.received().len();
    assert!(sent <= 4, "no more than the requests already in flight: {sent}");
    let beat = env.number("SELECT heartbeat_at FROM daemon");
    wait_until("three more heartbeats", Duration::from_secs(30), || {
        env.number("SELECT heartbeat_at FROM daemon") > beat + 250
    });
    assert_eq!(api.shared.received().len(), sent, "nothing is sent while paused");
    assert_eq!(env.number("SELECT MAX(attempts) FROM items"), 0, "02 burns no item's attempts");

    // A broken config is refused on reload; the daemon keeps running on the old one.
    std::fs::write(&env.config, format!("{good_config}\n[queue.extra]\nx = 1\n")).unwrap();
    signal(&daemon, "HUP");
    wait_until("the refused reload to be logged", Duration::from_secs(10), || {
        env.daemon_log().contains("recarga recusada")
    });
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon must survive a bad reload");

    std::fs::write(&env.config, &good_config).unwrap();
    std::fs::write(&password_file, format!("{RIGHT}\n")).unwrap();
    signal(&daemon, "HUP");
    wait_until("everything delivered after the reload", Duration::from_secs(30), || {
        env.number(UNFINISHED) == 0
    });
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'done'"), 6);

    // Secrets: not in the log, the database, or any --json.
    let mut outputs = vec![env.daemon_log()];
    for args in [&["status", "--json"][..], &["list", "--json"], &["show", "1", "--json"]] {
        outputs.push(expect_exit(&env.run(args), 0).0);
    }
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    outputs.push(env.daemon_log());
    outputs.push(crate::util::database_bytes(&env));
    for text in &outputs {
        for secret in [WRONG, RIGHT, "aW50ZWdyYWRvcjpTM25oNC"] {
            assert!(!text.contains(secret), "a secret leaked:\n{text}");
        }
    }
}

#[test]
fn enqueue_through_the_socket_wakes_an_idle_daemon_instead_of_waiting_for_the_poll() {
    let api = Background::start(Scenario::default()).unwrap();
    // A poll interval far longer than the wait below: only the intake socket's wake-up (the
    // daemon's `handed` notification) can deliver in time.
    let env = Env::build(&api.url(), "", "");
    let config = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("poll_interval = \"100ms\"", "poll_interval = \"10m\"");
    std::fs::write(&env.config, config).unwrap();
    expect_exit(&env.run(&["enqueue", "--order", "0", "--branch", "1", "--reason", "cria o banco"]), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("the first item (sent at start)", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    let (stdout, _) =
        expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "acorda"]), 0);
    assert!(!stdout.contains("spool"), "handed to the daemon, not spooled: {stdout}");
    wait_until("the woken daemon to deliver", Duration::from_secs(60), || env.number(UNFINISHED) == 0);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    assert!(!env.intake_socket().exists(), "the socket is removed on stop");
}
