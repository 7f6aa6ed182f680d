//! `extrator run`: clean stop on SIGTERM, one daemon per queue, and recovery of items left
//! `in_flight` by a crash.

use std::time::Duration;

use crate::util::{Env, expect_exit, signal, wait_until};

/// The daemon's heartbeat row exists once it is up.
fn wait_started(env: &Env) {
    wait_until("the daemon to record its start", Duration::from_secs(30), || {
        env.database().exists()
            && env
                .db()
                .query_row("SELECT COUNT(*) FROM daemon WHERE stopped_at IS NULL", [], |row| {
                    row.get::<_, i64>(0)
                })
                .unwrap_or(0)
                == 1
    });
}

#[test]
fn sigterm_stops_cleanly_and_status_tells_alive_from_stopped() {
    let env = Env::new();
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
    let mut daemon = env.spawn_daemon();
    wait_started(&env);
    let (stdout, _) = expect_exit(&env.run(&["status"]), 0);
    assert!(stdout.contains("Serviço:               ativo desde"), "{stdout}");
    let (stdout, _) = expect_exit(&env.run(&["status", "--json"]), 0);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["daemon"], "alive");

    let (_, stderr) = expect_exit(&env.run(&["run"]), 1);
    assert!(stderr.contains("outro `extrator run` já está usando a fila"), "{stderr}");

    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    let (stdout, _) = expect_exit(&env.run(&["status", "--json"]), 0);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["daemon"], "stopped");
    assert!(env.daemon_log().contains("extrator parado"), "{}", env.daemon_log());
}

#[test]
fn items_left_in_flight_by_a_crash_are_recovered_on_start() {
    let env = Env::new();
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
    expect_exit(&env.run(&["enqueue", "--order", "2", "--branch", "1", "--reason", "y"]), 0);
    // As a crashed dispatcher would leave them: claimed, with leases far in the future.
    let far = 4_000_000_000_000_i64;
    env.db().execute("UPDATE items SET state = 'in_flight', lease_until = ?1", [far]).unwrap();
    env.db().execute("UPDATE items SET processing_since = 1 WHERE order_number = '2'", []).unwrap();

    let mut daemon = env.spawn_daemon();
    wait_started(&env);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    let states: Vec<String> = env
        .db()
        .prepare("SELECT state FROM items ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(states, ["pending", "processing"], "an accepted item goes back to polling, not to sending");
    // The start-time recovery said so (the tick's recovery of expired leases says otherwise, and
    // these leases were far from expired).
    assert!(
        env.daemon_log().contains("2 itens que estavam em envio quando o serviço parou voltaram para a fila"),
        "{}",
        env.daemon_log()
    );
}

#[test]
fn an_unwritable_spool_is_a_clear_error() {
    let env = Env::new();
    std::fs::write(env.spool(), "não sou um diretório").unwrap();
    let (_, stderr) = expect_exit(&env.run(&["run"]), 1);
    assert!(
        stderr.contains(&format!("diretório de spool {} inutilizável", env.spool().display())),
        "{stderr}"
    );
}
