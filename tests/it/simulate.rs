//! `extrator simulate` as support uses it to rehearse a new API end to end: a mapping that puts
//! the order in a nested body field still gets each demo order's answer, and the credentials the
//! simulator is told to require are checked (wrong ones are 02).

use std::process::Command;
use std::time::Duration;

use crate::robust::last_attempt;
use crate::util::{Env, Killed, bin, expect_exit, free_port, signal, wait_until};

/// `extrator simulate --demo` on a free port, requiring Basic credentials and an API key.
fn simulator() -> (Killed, String) {
    let port = free_port();
    let child = Command::new(bin())
        .args([
            "simulate",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--demo",
            "--require-basic",
            "integrador:S3nh4-Ensaio",
            "--require-header",
            "X-Api-Key: chave-ensaio",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let address = format!("127.0.0.1:{port}");
    wait_until("the simulator", Duration::from_secs(30), || std::net::TcpStream::connect(&address).is_ok());
    (Killed(child), format!("http://{address}/v2/cancelar"))
}

/// A config for the simulator at `url` with a nested body and the given password.
fn rehearsal(url: &str, password: &str) -> Env {
    let env = Env::build(
        url,
        "[api.headers]\nX-Api-Key = \"chave-ensaio\"\n",
        "[retry]\nmax_attempts = 1\n[api.request.body]\nmotivo = \"{reason}\"\n[api.request.body.pedido]\nnumero = \"{order}\"\n\
         [api.auth]\nmode = \"basic\"\nuser = \"integrador\"\npassword_file = \"senha\"\n",
    );
    let password_file = env.dir.path().join("senha");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        config.replace(
            "password_file = \"senha\"",
            &format!("password_file = \"{}\"", password_file.display()),
        ),
    )
    .unwrap();
    env
}

#[test]
fn a_new_mapping_is_rehearsed_against_the_simulator_with_its_credentials() {
    let (_simulator, url) = simulator();
    let env = rehearsal(&url, "S3nh4-Ensaio");
    let batch = "{\"order\": \"100201\", \"branch\": \"1\", \"reason\": \"r\"}\n{\"order\": \"100203\", \"branch\": \"1\", \"reason\": \"r\"}\n";
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], batch.as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("both final", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM items WHERE state IN ('done', 'failed')") == 2
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE order_number = '100201' AND state = 'done'"), 1);
    let (code, _, message) = last_attempt(&env, "100203");
    assert_eq!(code.as_deref(), Some("07"), "{message:?}");
    assert!(message.unwrap_or_default().contains("pedido já faturado"));

    // The wrong password: the simulator refuses it, and that is 02, never an item's fault.
    let wrong = rehearsal(&url, "senha-errada");
    expect_exit(&wrong.run_with_input(&["enqueue", "--json", "-"], batch.as_bytes()), 0);
    let mut daemon = wrong.spawn_daemon();
    wait_until("the refusal recorded", Duration::from_secs(30), || {
        wrong.number("SELECT COUNT(*) FROM attempts") > 0
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", wrong.daemon_log());
    let code: String =
        wrong.db().query_row("SELECT code FROM attempts LIMIT 1", [], |row| row.get(0)).unwrap();
    assert_eq!(code, "02");
    assert_eq!(wrong.number("SELECT COUNT(*) FROM items WHERE state = 'failed'"), 0);
}

#[test]
fn simulate_help_lists_the_demo_orders_and_a_malformed_requirement_is_a_usage_error() {
    let env = Env::new();
    let (stdout, _) = expect_exit(&env.run(&["simulate", "--help"]), 0);
    assert!(stdout.contains("100204  nunca responde"), "{stdout}");
    let (_, stderr) = expect_exit(&env.run(&["simulate", "--require-header", "sem-dois-pontos"]), 2);
    assert!(stderr.contains("NOME: VALOR"), "{stderr}");
}
