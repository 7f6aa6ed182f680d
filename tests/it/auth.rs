//! Credentials against real servers: OAuth2 client credentials with a real authorization server
//! from the npm registry (panva's oidc-provider, `tests/tools/oauth2-server.mjs` configures it),
//! a login endpoint that takes a form, and secrets kept out of the config — none of which may
//! leak in any form into a log, a record, `show`, `preview` or `check`.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use extrator::simulator::{Background, Behavior, Scenario};

use crate::util::{
    Env, Killed, database_bytes, expect_exit, free_port, json_lines, signal, test_tools, wait_until,
};

/// Items not yet in a final state.
const UNFINISHED: &str = "SELECT COUNT(*) FROM items WHERE state NOT IN ('done', 'failed')";

/// The client's secret: `"`, `/`, `+`, `&`, `%` and a space, so every encoding differs from it
/// (RFC 6749 allows only printable ASCII in a client secret: no accents).
const CLIENT_SECRET: &str = "S3gr3do/do+Cliente \"aspas\" & 100%";

/// The real authorization server, and the tokens it issued as it printed them.
struct AuthServer {
    url: String,
    issued: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<Vec<String>>>,
    _process: Killed,
}

impl AuthServer {
    /// oidc-provider on a free port, its client `extrator` with `CLIENT_SECRET`, tokens lasting
    /// `ttl` seconds, the client authenticated by `method` (`basic` or `post`).
    fn start(tools: &std::path::Path, ttl: u64, method: &str) -> AuthServer {
        let script = tools.join("oauth2-server.mjs");
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/oauth2-server.mjs"), &script)
            .unwrap();
        let port = free_port();
        let mut child = Command::new("node")
            .arg(&script)
            .args([&port.to_string(), "extrator", CLIENT_SECRET, &ttl.to_string(), method])
            .current_dir(tools)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (issued, refused) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (issued_in, refused_in) = (issued.clone(), refused.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                match event["event"].as_str() {
                    Some("ready") => {
                        let _ = ready_tx.send(());
                    }
                    Some("issued") => {
                        issued_in.lock().unwrap().push(event["token"].as_str().unwrap().to_owned())
                    }
                    Some("refused") => {
                        refused_in.lock().unwrap().push(event["error"].as_str().unwrap_or("").to_owned())
                    }
                    _ => {}
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(30)).expect("the authorization server starts");
        AuthServer { url: format!("http://127.0.0.1:{port}/token"), issued, refused, _process: Killed(child) }
    }

    fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }
}

/// An API that accepts only a Bearer token the server issued and the test has not revoked.
fn api_taking_tokens_from(server: &AuthServer, revoked: Arc<Mutex<Vec<String>>>) -> Background {
    let api = Background::start(Scenario::default()).unwrap();
    let issued = server.issued.clone();
    api.shared.authorize_with(move |request| {
        let Some(token) = request.header("authorization").and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        issued.lock().unwrap().iter().any(|known| known == token)
            && !revoked.lock().unwrap().iter().any(|gone| gone == token)
    });
    api
}

/// An installation whose `[api.auth]` is OAuth2 against `server`, the client secret in a file.
fn oauth2_env(api: &Background, server: &AuthServer, secret: &str, client_auth: &str) -> Env {
    let env = Env::build(&api.url(), "concurrency = 4\n", "");
    let secret_file = env.dir.path().join("segredo-oauth2");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!(
            "{config}\n[api.auth]\nmode = \"oauth2\"\ntoken_url = \"{}\"\nclient_id = \"extrator\"\n\
             client_secret_file = \"{}\"\nscope = \"cancelamentos\"\nclient_auth = \"{client_auth}\"\n",
            server.url,
            secret_file.display()
        ),
    )
    .unwrap();
    env
}

/// A secret in the forms it could leak in: as it is, JSON-escaped, percent-encoded, in base64.
fn leak_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let mut forms = vec![
        secret.to_owned(),
        serde_json::to_string(secret).unwrap().trim_matches('"').to_owned(),
        form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ];
    forms.sort();
    forms.dedup();
    forms
}

/// Asserts no form of `secrets` is in `outputs`.
fn assert_no_leak(outputs: &[(String, String)], secrets: &[String]) {
    for secret in secrets {
        for form in leak_forms(secret) {
            for (name, output) in outputs {
                assert!(
                    !output.contains(&form),
                    "{form:?} (from a secret) leaked into {name}:\n{}",
                    &output[..output.len().min(2000)]
                );
            }
        }
    }
}

#[test]
#[ignore = "precisa de node e das ferramentas de teste (oidc-provider): roda com scripts/test como root"]
fn oauth2_client_credentials_from_a_real_authorization_server_cached_renewed_and_never_leaked() {
    let tools = test_tools("the OAuth2 test (oidc-provider)");
    // Tokens that last 6 s: renewed 3 s early (a tenth of their life, at most half).
    let server = AuthServer::start(&tools, 6, "basic");
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let api = api_taking_tokens_from(&server, revoked.clone());
    let env = oauth2_env(&api, &server, CLIENT_SECRET, "basic");
    let mut daemon = env.spawn_daemon();
    wait_until("the intake socket", Duration::from_secs(10), || env.intake_socket().exists());

    // Many orders, one token.
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 40).as_bytes()), 0);
    wait_until("the first 40 delivered", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    assert_eq!(server.issued().len(), 1, "one token for 40 orders");
    assert_eq!(api.shared.count(), 40, "no request refused");

    // Past its renewal time, the next order gets a new token first (no 401 on the way).
    std::thread::sleep(Duration::from_secs(4));
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(100, 5).as_bytes()), 0);
    wait_until("5 more delivered", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    assert_eq!(server.issued().len(), 2, "renewed before expiry");
    assert_eq!(api.shared.count(), 45, "without a refused request: {:?}", api.shared.received().len());

    // The API stops taking the token (revoked, rotated): one 401, a new token, delivered.
    revoked.lock().unwrap().extend(server.issued());
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(200, 3).as_bytes()), 0);
    wait_until("3 more delivered", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    assert_eq!(server.issued().len(), 3, "renewed after the 401");
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'done'"), 48);
    assert_eq!(
        env.number("SELECT COUNT(*) FROM attempts WHERE outcome = 'failure'"),
        0,
        "the 401 was followed by a renewal"
    );
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());

    // `check` obtains a token for real and says so.
    let (check, check_err) = expect_exit(&env.run(&["check"]), 0);
    assert!(check.contains("✓ credenciais: token obtido em"), "{check}");
    assert!(check.contains("Tudo certo"), "{check}");
    let (preview, _) = expect_exit(&env.run(&["preview"]), 0);
    assert!(preview.contains("Authorization: Bearer *** (token OAuth2 obtido em"), "{preview}");

    let mut outputs = vec![
        ("the journal".to_owned(), env.daemon_log()),
        ("the database".to_owned(), database_bytes(&env)),
        ("check".to_owned(), check + &check_err),
        ("preview".to_owned(), preview),
    ];
    for args in [&["show", "--order", "1", "--json"][..], &["list", "--json"], &["status"]] {
        let (stdout, stderr) = expect_exit(&env.run(args), 0);
        outputs.push((args.join(" "), stdout + &stderr));
    }
    let mut secrets = server.issued();
    secrets.push(CLIENT_SECRET.to_owned());
    assert_no_leak(&outputs, &secrets);
}

#[test]
#[ignore = "precisa de node e das ferramentas de teste (oidc-provider): roda com scripts/test como root"]
fn a_wrong_client_secret_pauses_sending_and_fails_no_item() {
    let tools = test_tools("the OAuth2 test (oidc-provider)");
    let server = AuthServer::start(&tools, 600, "post");
    let api = api_taking_tokens_from(&server, Arc::new(Mutex::new(Vec::new())));
    let env = oauth2_env(&api, &server, "segredo-errado-123", "body");
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 3).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("the pause", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM daemon WHERE gate LIKE 'paused 02 %'") == 1
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    assert!(
        server.refused.lock().unwrap().iter().any(|error| error == "invalid_client"),
        "the server refused the client"
    );
    assert_eq!(api.shared.count(), 0, "nothing reached the API without a token");
    assert_eq!(
        env.number("SELECT COUNT(*) FROM items WHERE state = 'pending' AND attempts = 0"),
        3,
        "no item failed or counted"
    );
    let (code, kind, message): (String, String, String) = env
        .db()
        .query_row("SELECT code, kind, message FROM attempts ORDER BY id LIMIT 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap();
    assert_eq!((code.as_str(), kind.as_str()), ("02", "token_http_401"));
    assert!(
        message.contains("servidor de tokens") && message.contains("client authentication failed"),
        "{message}"
    );
    let (check, _) = expect_exit(&env.run(&["check"]), 1);
    assert!(check.contains("✗ credenciais: erro 02 Senha inválida: o servidor de tokens"), "{check}");
    assert!(!check.contains("segredo-errado-123"), "{check}");
}

#[test]
fn a_login_that_takes_a_form_and_keys_from_secret_files() {
    // The login endpoint: a form with the user and the password, a token back.
    let login = Background::start(Scenario {
        default: Behavior::json(200, r#"{"dados": {"token": "tok-Do-Login-8c1f", "expires_in": 600}}"#),
        ..Scenario::default()
    })
    .unwrap();
    let api = Background::start(Scenario::default()).unwrap();
    let key = "chave-API/Secreta+01";
    api.shared.authorize_with(move |request| {
        request.header("authorization") == Some("Bearer tok-Do-Login-8c1f")
            && request.header("x-api-key") == Some(key)
            && request.path.contains("apikey=chave-API%2FSecreta%2B01")
    });
    let env = Env::build(&api.url(), "", "");
    let dir = env.dir.path();
    std::fs::write(dir.join("senha"), "S3nh4-do-Login\n").unwrap();
    std::fs::write(dir.join("chave"), format!("{key}\n")).unwrap();
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!(
            "{config}\n[secrets]\nchave_api = \"{}\"\n\n[api.headers]\nX-Api-Key = \"{{secret:chave_api}}\"\n\n\
             [api.request]\nurl = \"{}?apikey={{secret:chave_api}}\"\n\n\
             [api.auth]\nmode = \"login\"\nformat = \"form\"\nlogin_url = \"{}\"\nuser = \"integracao\"\n\
             password_file = \"{}\"\nuser_field = \"usuario\"\npassword_field = \"senha\"\ntoken_field = \"dados.token\"\n",
            dir.join("chave").display(),
            api.url(),
            login.url(),
            dir.join("senha").display()
        ),
    )
    .unwrap();
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 2).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("both delivered", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'done'"), 2, "{}", env.daemon_log());
    let logins = login.shared.received();
    assert_eq!(logins.len(), 1, "one login for both");
    assert_eq!(logins[0].header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(logins[0].body, "usuario=integracao&senha=S3nh4-do-Login");
    let (preview, _) = expect_exit(&env.run(&["preview"]), 0);
    assert!(preview.contains("apikey=%2A%2A%2A") && preview.contains("X-Api-Key: ***"), "{preview}");
    let outputs = vec![
        ("the journal".to_owned(), env.daemon_log()),
        ("preview".to_owned(), preview),
        ("the database".to_owned(), database_bytes(&env)),
    ];
    assert_no_leak(&outputs, &[key.to_owned(), "S3nh4-do-Login".to_owned(), "tok-Do-Login-8c1f".to_owned()]);
}
