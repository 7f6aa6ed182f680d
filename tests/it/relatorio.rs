//! `extrator relatorio`, the support bundle, after a run with failures: one text file with each
//! section, and not one configured secret in it in any encoding (the API echoes the request, so
//! the secrets did come back and were recorded — masked — in the messages the report quotes).

use base64::Engine as _;
use extrator::simulator::{Background, Behavior, Scenario};

use crate::util::{Env, expect_exit, json_lines, signal, wait_until};

#[test]
fn the_report_has_every_section_and_no_secret_in_any_form() {
    const PASSWORD: &str = "Senha/Relatório-2026";
    const API_KEY: &str = "chave-fixa-do-relatorio-77";
    const TOKEN: &str = "token-de-segredo-do-relatorio";
    const ORACLE: &str = "Oracle-Relatorio-Senha-5";
    // The API echoes every request (headers and body) as escaped JSON with a 400: refused, 07.
    let api =
        Background::start(Scenario { default: Behavior::EchoJson(400), ..Scenario::default() }).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let password_file = scratch.path().join("senha");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let token_file = scratch.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let environment = scratch.path().join("oracle.env");
    std::fs::write(&environment, format!("ORACLE_CONN=leitura/{ORACLE}@erp\n")).unwrap();
    let script = scratch.path().join("fonte.sh");
    std::fs::write(&script, "echo \"ORA-01017: logon denied ($ORACLE_CONN)\" >&2\nexit 1\n").unwrap();
    let env = Env::build(
        &api.url(),
        &format!("[api.headers]\nX-Api-Key = \"{API_KEY}\"\nX-Token = \"{{secret:token}}\"\n"),
        &format!(
            "[retry]\nmax_attempts = 1\n[secrets]\ntoken = \"{}\"\n[api.auth]\nmode = \"basic\"\nuser = \"integrador\"\n\
             password_file = \"{}\"\n[[source]]\nname = \"erp\"\ninterval = \"1h\"\nenvironment_file = \"{}\"\n\
             command = [\"sh\", \"{}\"]\n",
            token_file.display(),
            password_file.display(),
            environment.display(),
            script.display()
        ),
    );
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 3).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("the three refused", std::time::Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM items WHERE state = 'failed'") == 3
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());

    let path = scratch.path().join("relatorio.txt");
    let (_, stderr) = expect_exit(&env.run(&["relatorio", "--output", path.to_str().unwrap()]), 0);
    assert!(stderr.contains("relatório gravado em"), "{stderr}");
    let report = std::fs::read_to_string(&path).unwrap();
    for section in [
        "===== relatório =====",
        "===== configuração (segredos mascarados) =====",
        "===== extrator check =====",
        "===== extrator status =====",
        "===== últimas 50 falhas",
        "===== journal do serviço",
        "===== unidade systemd",
    ] {
        assert!(report.contains(section), "no {section}:\n{report}");
    }
    // What support needs is there: the version, the failures with their (masked) messages, the
    // source's complaint, the config's shape.
    assert!(
        report.contains(env!("CARGO_PKG_VERSION")) && report.contains("\"last_code\": \"07\""),
        "{report}"
    );
    assert!(report.contains("requisição inválida") && report.contains("ORA-01017"), "{report}");
    assert!(report.contains("X-Api-Key = \"***\"") && report.contains("password_file = "), "{report}");
    // No secret, in any form it takes on the way out.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("integrador:{PASSWORD}"));
    let forms = [
        PASSWORD.to_owned(),
        "Senha\\/Relat\\u00f3rio-2026".to_owned(),
        "Senha%2FRelat%C3%B3rio-2026".to_owned(),
        basic,
        API_KEY.to_owned(),
        TOKEN.to_owned(),
        ORACLE.to_owned(),
    ];
    for form in &forms {
        assert!(!report.contains(form.as_str()), "{form} is in the report:\n{report}");
    }
    // Never over an existing file.
    let (_, stderr) = expect_exit(&env.run(&["relatorio", "--output", path.to_str().unwrap()]), 1);
    assert!(stderr.contains("já existe"), "{stderr}");
}
