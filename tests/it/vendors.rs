//! The shipped examples against the vendors' own public OpenAPI documents (APIs.guru's
//! collection), served by Prism (`@stoplight/prism-cli`, npm) with request validation on: every
//! request the example builds is checked as the vendor describes it — path, headers, body,
//! security. VTEX (Brazilian) with its AppKey/AppToken pair from secret files, Adyen with an API
//! key header from a secret file, Velo Payments with OAuth2 from a real authorization server.
//! A deliberately wrong config gets Prism's validation message recorded as the item's 07.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Env, Killed, expect_exit, free_port, record, signal, test_tools, wait_until_or};

/// Items not yet in a final state.
const UNFINISHED: &str = "SELECT COUNT(*) FROM items WHERE state NOT IN ('done', 'failed')";

/// Prism serving `spec` (a file of `target/test-tools/specs`) on a free port.
fn prism(tools: &Path, spec: &str) -> (Killed, String) {
    let port = free_port();
    let child = Command::new(tools.join("node_modules/.bin/prism"))
        .args(["mock", "--errors", "-h", "127.0.0.1", "-p", &port.to_string()])
        .arg(tools.join("specs").join(spec))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let process = Killed(child);
    wait_until_or(
        "Prism to listen",
        Duration::from_secs(90),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        || spec.to_owned(),
    );
    (process, format!("http://127.0.0.1:{port}"))
}

/// The example `file` of docs/exemplos, sending to `origin` instead of the vendor's, with its
/// `/etc/extrator/` files in the installation's directory, `secrets` written there.
fn example(
    file: &str,
    vendor: &str,
    origin: &str,
    secrets: &[(&str, &str)],
    edit: impl Fn(String) -> String,
) -> Env {
    let text =
        std::fs::read_to_string(format!("{}/docs/exemplos/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let env = Env::with_config(&edit(text).replace(vendor, origin));
    let dir = env.dir.path().display().to_string();
    let config = std::fs::read_to_string(&env.config).unwrap().replace("/etc/extrator/", &format!("{dir}/"));
    std::fs::write(&env.config, config).unwrap();
    for (name, value) in secrets {
        std::fs::write(env.dir.path().join(name), format!("{value}\n")).unwrap();
    }
    env
}

/// Queues `json`, runs the daemon until it is final: (state, code, message, receipt).
fn deliver(env: &Env, json: &str) -> (String, Option<String>, Option<String>, Option<String>) {
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json.as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until_or(
        "the item to be final",
        Duration::from_secs(30),
        || env.number(UNFINISHED) == 0,
        || {
            let attempts: Vec<String> = env
                .db()
                .prepare("SELECT code || ' ' || kind || ': ' || COALESCE(message, '') FROM attempts")
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            format!(
                "{}
{attempts:?}",
                env.daemon_log()
            )
        },
    );
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    let (stdout, _) = expect_exit(
        &env.run(&[
            "show",
            "--order",
            &env.db().query_row("SELECT order_number FROM items", [], |row| row.get::<_, String>(0)).unwrap(),
        ]),
        0,
    );
    eprintln!("{stdout}");
    env.db()
        .query_row("SELECT state, last_code, last_message, receipt FROM items", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
}

/// An order with these `extra` fields.
fn order_with(order: &str, extra: &str) -> String {
    format!(
        r#"{{"order": "{order}", "branch": "1", "reason": "cliente desistiu da compra", "extra": {extra}}}"#
    )
}

#[test]
#[ignore = "precisa de node e das ferramentas de teste (Prism, oidc-provider): roda com scripts/test como root"]
fn vtex_orders_api_with_appkey_and_apptoken_from_secret_files() {
    let tools = test_tools("the VTEX example against its OpenAPI document (Prism)");
    let (_prism, origin) = prism(&tools, "vtex.local--Orders-API.json");
    let secrets = [("vtex-app-key", "vtexappkey-minhaloja-ABCDEF"), ("vtex-app-token", "T0k3n/Da+VTEX==")];
    let env = example(
        "vtex-pedidos.toml",
        "https://minhaloja.vtexcommercestable.com.br",
        &origin,
        &secrets,
        |text| text,
    );
    let (state, code, message, receipt) =
        deliver(&env, &format!("{}\n", record("1172452900788-01", "cliente desistiu")));
    assert_eq!((state.as_str(), code), ("done", None), "{message:?}\n{}", env.daemon_log());
    assert!(receipt.is_some_and(|receipt| !receipt.is_empty()), "the receipt of the vendor's example answer");
    let (check, _) = expect_exit(&env.run(&["check"]), 0);
    assert!(
        check.contains("X-VTEX-API-AppKey: ***") && check.contains("X-VTEX-API-AppToken: ***"),
        "{check}"
    );
    for (_, secret) in secrets {
        for output in [&check, &env.daemon_log()] {
            assert!(!output.contains(secret), "{secret} leaked");
        }
    }

    // A config the vendor's document refuses: the reason sent as a number. Prism's validation
    // message is what the item records (problem details, with the field).
    let wrong = example(
        "vtex-pedidos.toml",
        "https://minhaloja.vtexcommercestable.com.br",
        &origin,
        &secrets,
        |text| text.replace("reason = \"{reason}\"", "reason = \"{branch:number}\""),
    );
    let (state, code, message, _) = deliver(&wrong, &format!("{}\n", record("1172452900788-01", "x")));
    assert_eq!((state.as_str(), code.as_deref()), ("failed", Some("07")));
    let message = message.unwrap_or_default();
    assert!(message.contains("body.reason") && message.contains("must be string"), "{message}");
}

#[test]
#[ignore = "precisa de node e das ferramentas de teste (Prism, oidc-provider): roda com scripts/test como root"]
fn adyen_checkout_cancels_with_an_api_key_header_from_a_secret_file() {
    let tools = test_tools("the Adyen example against its OpenAPI document (Prism)");
    let (_prism, origin) = prism(&tools, "adyen.com--CheckoutService-v71.json");
    let secrets = [("adyen-api-key", "AQEyhmfxK4/Adyen+Chave==")];
    let env = example(
        "adyen-cancelamento.toml",
        "https://checkout-test.adyen.com/v71",
        &origin,
        &secrets,
        |text| text,
    );
    let (state, code, message, receipt) =
        deliver(&env, &format!("{}\n", order_with("500123", r#"{"psp_reference": "QFQTPCQ8HXSKGK82"}"#)));
    assert_eq!((state.as_str(), code), ("done", None), "{message:?}\n{}", env.daemon_log());
    assert!(receipt.is_some(), "Adyen's pspReference");
    // Without the key, the vendor's document refuses the request: 02, sending pauses, the
    // order is not failed.
    let keyless = example(
        "adyen-cancelamento.toml",
        "https://checkout-test.adyen.com/v71",
        &origin,
        &secrets,
        |text| text.replace("X-API-Key = \"{secret:adyen_api_key}\"", "X-Outro = \"{secret:adyen_api_key}\""),
    );
    expect_exit(
        &keyless.run_with_input(
            &["enqueue", "--json", "-"],
            format!("{}\n", order_with("500124", r#"{"psp_reference": "X"}"#)).as_bytes(),
        ),
        0,
    );
    let mut daemon = keyless.spawn_daemon();
    wait_until_or(
        "the pause",
        Duration::from_secs(30),
        || keyless.number("SELECT COUNT(*) FROM daemon WHERE gate LIKE 'paused 02 %'") == 1,
        || keyless.daemon_log(),
    );
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    assert_eq!(keyless.number("SELECT COUNT(*) FROM items WHERE state = 'pending'"), 1);
    let log = env.daemon_log() + &keyless.daemon_log();
    assert!(!log.contains("AQEyhmfxK4"), "the key leaked");
}

#[test]
#[ignore = "precisa de node e das ferramentas de teste (Prism, oidc-provider): roda com scripts/test como root"]
fn velo_payments_withdraws_with_oauth2_from_a_real_authorization_server() {
    let tools = test_tools("the OAuth2 example against its OpenAPI document (Prism, oidc-provider)");
    let (_prism, origin) = prism(&tools, "velopayments.com.json");
    // The authorization server: the same as tests/it/auth.rs.
    let script = tools.join("oauth2-server.mjs");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/oauth2-server.mjs"), &script).unwrap();
    let port = free_port();
    let client = "3f0d5c1e-7b2a-4c69-9e1d-winthor";
    let secret = "S3gr3do-Do-Cliente-Velo";
    let server = Killed(
        Command::new("node")
            .arg(&script)
            .args([&port.to_string(), client, secret, "600", "basic"])
            .current_dir(&tools)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until_or(
        "the authorization server",
        Duration::from_secs(30),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        String::new,
    );
    let env = example(
        "oauth2-velo.toml",
        "https://api.sandbox.velopayments.com",
        &origin,
        &[("oauth2-client-secret", secret)],
        |text| {
            text.replace(
                "token_url = \"https://api.sandbox.velopayments.com/v1/authenticate\"",
                &format!("token_url = \"http://127.0.0.1:{port}/token\""),
            )
        },
    );
    let (state, code, message, _) = deliver(
        &env,
        &format!(
            "{}\n",
            order_with("700001", r#"{"velo_payment_id": "4f0d5c1e-7b2a-4c69-9e1d-3b1c5a6f7d90"}"#)
        ),
    );
    assert_eq!((state.as_str(), code), ("done", None), "{message:?}\n{}", env.daemon_log());
    let (check, _) = expect_exit(&env.run(&["check"]), 0);
    assert!(check.contains("✓ credenciais: token obtido em"), "{check}");
    assert!(!check.contains(secret) && !env.daemon_log().contains(secret));
    drop(server);
}

#[test]
fn the_status_read_by_get_decides_an_async_cancellation() {
    use extrator::simulator::{Background, Behavior, Scenario};
    let pending = |protocol: &str| {
        Behavior::json(200, &format!(r#"{{"protocolo": "{protocol}", "situacao": "pendente"}}"#))
    };
    let scenario = Scenario::default()
        .order(
            "9001",
            vec![pending("P-9001"), pending("P-9001"), Behavior::json(200, r#"{"situacao": "cancelado"}"#)],
        )
        .order(
            "9002",
            vec![
                pending("P-9002"),
                Behavior::json(200, r#"{"situacao": "rejeitado", "motivo_rejeicao": "NF-e já escriturada"}"#),
            ],
        );
    let api = Background::start(scenario).unwrap();
    let origin = format!("http://{}", api.addr);
    let env = example(
        "status-por-get.toml",
        "https://nfe.exemplo.com.br",
        &origin,
        &[("senha", "S3nh4-NFe")],
        |text| text.replace("async_poll_interval = \"30s\"", "async_poll_interval = \"100ms\""),
    );
    let records =
        format!("{}\n{}\n", record("9001", "erro de digitação"), record("9002", "erro de digitação"));
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], records.as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until_or("both final", Duration::from_secs(30), || env.number(UNFINISHED) == 0, || env.daemon_log());
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    let item = |order: &str| -> (String, Option<String>, Option<String>, Option<String>) {
        env.db()
            .query_row(
                "SELECT state, last_code, last_message, receipt FROM items WHERE order_number = ?1",
                [order],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .unwrap()
    };
    assert_eq!(item("9001"), ("done".into(), None, None, Some("P-9001".into())));
    assert_eq!(
        item("9002"),
        ("failed".into(), Some("07".into()), Some("NF-e já escriturada".into()), Some("P-9002".into()))
    );
    // One POST each, then GETs of the status URL (never the cancellation sent again).
    let requests: Vec<(String, String)> = api
        .shared
        .received()
        .iter()
        .filter(|request| request.order.as_deref() == Some("9001"))
        .map(|request| (request.method.clone(), request.path.clone()))
        .collect();
    assert_eq!(
        requests,
        [
            ("POST".to_owned(), "/v1/nfe/9001/cancelamento".to_owned()),
            ("GET".to_owned(), "/v1/nfe/9001/cancelamento?protocolo=P-9001".to_owned()),
            ("GET".to_owned(), "/v1/nfe/9001/cancelamento?protocolo=P-9001".to_owned()),
        ]
    );
}

#[test]
fn every_shipped_example_loads_and_builds_its_request() {
    let dir = format!("{}/docs/exemplos", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        let env = Env::with_config(&std::fs::read_to_string(format!("{dir}/{name}")).unwrap());
        let (stdout, stderr) = expect_exit(&env.run(&["preview"]), 0);
        assert!(stdout.contains("Requisição para um pedido de exemplo"), "{name}: {stdout}{stderr}");
    }
}

#[test]
fn winthors_own_api_logs_in_and_sends_the_token() {
    use extrator::simulator::{Background, Behavior, Scenario};
    let api = Background::start(Scenario {
        default: Behavior::json(200, r#"{"accessToken": "tok-WinThor-51f2", "expiresIn": 3600}"#),
        ..Scenario::default()
    })
    .unwrap();
    let origin = format!("http://{}", api.addr);
    let env = example(
        "winthor-api.toml",
        "https://winthor.exemplo.com.br",
        &origin,
        &[("senha", "S3nh4-WinThor")],
        |text| text,
    );
    let (state, code, message, _) = deliver(&env, &format!("{}\n", record("321654", "cliente desistiu")));
    assert_eq!((state.as_str(), code), ("done", None), "{message:?}");
    let received = api.shared.received();
    let login = &received[0];
    assert_eq!((login.method.as_str(), login.path.as_str()), ("POST", "/winthor/autenticacao/v1/login"));
    let body: serde_json::Value = serde_json::from_str(&login.body).unwrap();
    assert_eq!(body, serde_json::json!({"username": "integracao", "password": "S3nh4-WinThor"}));
    let cancel = &received[1];
    assert_eq!(cancel.path, "/winthor/pedidos/v1/cancelamentos");
    assert_eq!(cancel.header("authorization"), Some("Bearer tok-WinThor-51f2"));
    assert!(!env.daemon_log().contains("tok-WinThor-51f2") && !env.daemon_log().contains("S3nh4-WinThor"));
}
