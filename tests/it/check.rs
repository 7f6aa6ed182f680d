//! `extrator check`: each step ✓ or ✗, and the failing step named with its code and what to do.
//! (The DNS step's failures are in `dns.rs`, inside a network namespace.)

use extrator::simulator::{Background, Scenario};

use crate::util::{Env, expect_exit};

#[test]
fn all_steps_pass_against_a_working_api() {
    let api = Background::start(Scenario::default()).unwrap();
    let env = Env::build(&api.url(), "", "");
    let (stdout, _) = expect_exit(&env.run(&["check"]), 0);
    for step in [
        "✓ configuração: válida",
        "✓ banco de dados:",
        "✓ DNS: 127.0.0.1 → 127.0.0.1",
        "✓ TCP: conectou em 127.0.0.1:",
        "✓ credenciais: sem autenticação",
        "✓ requisição de teste: GET",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    assert!(api.shared.received().iter().all(|request| request.method == "GET"), "check must never POST");
}

#[test]
fn a_closed_port_fails_at_tcp_with_01() {
    let port = crate::util::free_port();
    let env = Env::build(&format!("http://localhost:{port}/c"), "", "");
    let (stdout, _) = expect_exit(&env.run(&["check"]), 1);
    assert!(stdout.contains("✓ DNS: localhost"), "{stdout}");
    assert!(stdout.contains("✗ TCP: erro 01 Conexão recusada"), "{stdout}");
    assert!(stdout.contains("O que fazer:"), "{stdout}");
    assert!(!stdout.contains("requisição de teste"), "later steps are not run: {stdout}");
    // Portuguese and true: no system English, and no advice to run what is running.
    assert!(!stdout.contains("os error") && !stdout.contains("Connection refused"), "{stdout}");
    assert!(!stdout.contains("rode `extrator check`"), "{stdout}");
}

#[test]
fn bad_credentials_fail_at_the_credentials_step_with_02() {
    let api = Background::start(Scenario::default()).unwrap();
    api.shared.require_authorization("Basic outra-coisa");
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("senha");
    std::fs::write(&password_file, "S3nh4-Qualquer\n").unwrap();
    let auth = format!(
        "\n[api.auth]\nmode = \"basic\"\nuser = \"u\"\npassword_file = \"{}\"\n",
        password_file.display()
    );
    let env = Env::build(&api.url(), "", &auth);
    let (stdout, stderr) = expect_exit(&env.run(&["check"]), 1);
    assert!(stdout.contains("✗ credenciais: erro 02 Senha inválida"), "{stdout}");
    assert!(!stdout.contains("S3nh4-Qualquer") && !stderr.contains("S3nh4-Qualquer"), "the password leaked");
}

#[test]
fn an_invalid_config_is_the_first_failing_step_and_exits_78() {
    let env = Env::build("https://x.com.br/c", "timeout = \"5s\"\n", "");
    let (stdout, stderr) = expect_exit(&env.run(&["check"]), 78);
    assert!(stdout.contains("✗ configuração: configuração inválida em"), "{stdout}");
    assert!(stdout.contains("chave desconhecida `timeout`"), "{stdout}");
    assert!(stderr.contains("a configuração é inválida"), "{stderr}");
}

/// What the unit's `ExecReload=` runs before the service rereads the file: the same loading as
/// the service (secret files included), no network, 78 with the reason when it would refuse it.
#[test]
fn config_only_validates_what_a_reload_would_and_touches_no_network() {
    // The API's port is closed: a full check would fail on TCP; this one never tries.
    let env = Env::build("http://127.0.0.1:1/x", "", "");
    let (stdout, _) = expect_exit(&env.run(&["check", "--config-only"]), 0);
    assert!(stdout.contains("✓ configuração: válida"), "{stdout}");
    let missing = env.dir.path().join("nao-existe.senha");
    let env = Env::build(
        "http://127.0.0.1:1/x",
        "",
        &format!("[api.auth]\nmode = \"basic\"\nuser = \"u\"\npassword_file = \"{}\"\n", missing.display()),
    );
    let (_, stderr) = expect_exit(&env.run(&["check", "--config-only"]), 78);
    assert!(stderr.contains("nao-existe.senha"), "{stderr}");
    let env = Env::build("http://127.0.0.1:1/x", "request_timeout = \"5s\"\n", "");
    let (_, stderr) = expect_exit(&env.run(&["check", "--config-only"]), 78);
    assert!(stderr.contains("connect_timeout = \"5s\""), "the fix is said: {stderr}");
}
