//! The HTTP client and the classifier against real sockets on loopback: a closed port, a server
//! that never answers, one that stalls or resets mid-body, every HTTP answer of SPEC 3 from the
//! simulator, and real TLS with a certificate that does not verify.

use std::sync::Arc;
use std::time::Duration;

use extrator::config::Config;
use extrator::core::classify::Outcome;
use extrator::core::duration::HumanDuration;
use extrator::core::item::Item;
use extrator::core::item::State;
use extrator::io::api::{Attempt, Client};
use extrator::simulator::{Background, Behavior, Scenario, Shared};

/// A config pointing at `url`, with short deadlines.
pub fn config_for(url: &str) -> Config {
    let mut config = Config::default();
    config.api.url = url.to_owned();
    config.api.connect_timeout = HumanDuration(Duration::from_millis(800));
    config.api.request_timeout = HumanDuration(Duration::from_millis(800));
    config
}

/// An item as the store would hand it over.
pub fn item(order: &str) -> Item {
    let now = jiff::Timestamp::now();
    Item {
        id: 1,
        order: order.to_owned(),
        branch: "1".into(),
        reason: "cliente desistiu".into(),
        cancelled_at: "2026-11-22T10:30:00-03:00".into(),
        customer: None,
        extra: None,
        state: State::InFlight,
        attempts: 0,
        last_code: None,
        last_message: None,
        next_attempt_at: None,
        created_at: now,
        updated_at: now,
        idempotency_key: format!("extrator-{order}-1"),
        source: extrator::core::item::Origin::Command,
        processing_since: None,
        sent: 0,
        receipt: None,
        poll_url: None,
    }
}

/// One attempt of `order` with `config`.
pub fn send(config: &Config, order: &str) -> Attempt {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = Client::new(config).unwrap();
        client.send(&item(order)).await
    })
}

#[track_caller]
pub fn expect(attempt: &Attempt, code: Option<&str>, kind: &str, status: Option<u16>, fragment: &str) {
    let verdict = &attempt.verdict;
    assert_eq!(verdict.code().map(extrator::core::codes::Code::as_str), code, "{verdict:?}");
    assert_eq!(verdict.kind.as_str(), kind, "{verdict:?}");
    assert_eq!(verdict.http_status, status, "{verdict:?}");
    let message = verdict.message.clone().unwrap_or_default();
    assert!(message.contains(fragment), "message {message:?} lacks {fragment:?}");
}

#[test]
fn a_closed_port_is_01() {
    let port = crate::util::free_port();
    let attempt = send(&config_for(&format!("http://127.0.0.1:{port}/c")), "1");
    expect(&attempt, Some("01"), "connect_refused", None, "recusada");
}

#[test]
fn a_server_that_accepts_and_never_answers_is_04_read_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/c", listener.local_addr().unwrap());
    let holder = std::thread::spawn(move || {
        // Accept and keep the connection open without a byte of answer.
        let (held, _) = listener.accept().unwrap();
        held
    });
    let attempt = send(&config_for(&url), "1");
    expect(&attempt, Some("04"), "read_timeout", None, "api.request_timeout");
    assert!(attempt.duration >= Duration::from_millis(800), "{:?}", attempt.duration);
    drop(holder.join());
}

#[test]
fn stalled_body_is_04_and_reset_mid_body_is_99() {
    let scenario = Scenario::default()
        .order("stall", vec![Behavior::StallBody])
        .order("reset", vec![Behavior::ResetMidBody]);
    let api = Background::start(scenario).unwrap();
    expect(&send(&config_for(&api.url()), "stall"), Some("04"), "body_timeout", None, "não terminou");
    expect(&send(&config_for(&api.url()), "reset"), Some("99"), "connection_reset", None, "conexão caiu");
}

#[test]
fn every_http_answer_of_the_code_table() {
    let envelopes = [
        r#"{"errors":[{"key":"orderKey","message":"pedido já faturado"}]}"#,
        r#"{"message":"pedido já faturado","code":400}"#,
        r#"{"error":true,"errorMessage":"pedido já faturado","errorCode":"E1","errorDescription":"faturado"}"#,
    ];
    let mut scenario = Scenario::default()
        .order("ok", vec![Behavior::json(200, r#"{"status":"cancelado"}"#)])
        .order("202", vec![Behavior::json(202, r#"{"status":"queued"}"#)])
        .order(
            "208",
            vec![Behavior::json(208, r#"{"errors":[{"key":"orderKey","message":"em processamento"}]}"#)],
        )
        .order("401", vec![Behavior::json(401, r#"{"message":"invalid password"}"#)])
        .order("401-user", vec![Behavior::json(401, r#"{"message":"User not found"}"#)])
        .order("404-user", vec![Behavior::json(404, r#"{"message":"usuário não encontrado"}"#)])
        .order("400-text", vec![Behavior::with_type(400, "text/plain", "pedido já faturado")])
        .order("412", vec![Behavior::json(412, r#"{"message":"Precondition Failed","code":412}"#)])
        .order(
            "success-false",
            vec![Behavior::json(200, r#"{"success":false,"message":"pedido inexistente"}"#)],
        )
        .order("missing-token", vec![Behavior::json(403, r#"{"message":"Missing Authentication Token"}"#)])
        .order("302", vec![Behavior::json(302, "").header("Location", "https://nova.exemplo/v2")])
        .order("429-seconds", vec![Behavior::json(429, "{}").header("Retry-After", "7")])
        .order(
            "429-date",
            vec![Behavior::json(429, "{}").header("Retry-After", "Fri, 01 Jan 2100 00:00:00 GMT")],
        )
        .order(
            "500-html",
            vec![Behavior::with_type(
                500,
                "text/html",
                "<html><head><title>Erro interno</title></head></html>",
            )],
        )
        .order("invalid-json", vec![Behavior::json(200, r#"{"status": "canc"#)]);
    for (index, envelope) in envelopes.iter().enumerate() {
        scenario = scenario.order(&format!("400-{index}"), vec![Behavior::json(400, envelope)]);
    }
    let api = Background::start(scenario).unwrap();
    let config = config_for(&api.url());
    expect(&send(&config, "ok"), None, "http_200", Some(200), "");
    for order in ["202", "208"] {
        let attempt = send(&config, order);
        assert_eq!(attempt.verdict.outcome, Outcome::Processing, "{order}");
    }
    expect(&send(&config, "401"), Some("02"), "http_401", Some(401), "invalid password");
    expect(&send(&config, "401-user"), Some("03"), "http_401", Some(401), "User not found");
    expect(&send(&config, "404-user"), Some("03"), "http_404", Some(404), "usuário não encontrado");
    expect(&send(&config, "400-0"), Some("07"), "http_400", Some(400), "orderKey: pedido já faturado");
    expect(&send(&config, "400-1"), Some("07"), "http_400", Some(400), "pedido já faturado");
    expect(&send(&config, "400-2"), Some("07"), "http_400", Some(400), "pedido já faturado (faturado)");
    expect(&send(&config, "400-text"), Some("07"), "http_400", Some(400), "pedido já faturado");
    expect(&send(&config, "412"), Some("07"), "http_412", Some(412), "Precondition Failed");
    expect(&send(&config, "success-false"), Some("07"), "rejected_in_body", Some(200), "pedido inexistente");
    expect(&send(&config, "missing-token"), Some("07"), "wrong_path", Some(403), "URL da API");
    expect(&send(&config, "302"), Some("07"), "redirect", Some(302), "https://nova.exemplo/v2");
    let limited = send(&config, "429-seconds");
    expect(&limited, Some("08"), "http_429", Some(429), "");
    assert_eq!(limited.verdict.retry_after, Some(Duration::from_secs(7)));
    let dated = send(&config, "429-date");
    assert!(dated.verdict.retry_after.unwrap() > Duration::from_secs(86_400 * 365), "{:?}", dated.verdict);
    expect(&send(&config, "500-html"), Some("99"), "http_500", Some(500), "Erro interno");
    expect(&send(&config, "invalid-json"), Some("99"), "invalid_json", Some(200), "JSON ilegível");

    // Redirects are recorded, never followed: the 302 was the only request for that order.
    let received = api.shared.received();
    assert_eq!(received.iter().filter(|request| request.order.as_deref() == Some("302")).count(), 1);
    let first = received.iter().find(|request| request.order.as_deref() == Some("ok")).unwrap();
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/cancelamentos");
    assert_eq!(first.header("idempotency-key"), Some("extrator-ok-1"));
    assert!(first.header("user-agent").unwrap().starts_with("extrator/"));
    let body: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(body["reason"], "cliente desistiu");
    assert_eq!(body["cancelled_at"], "2026-11-22T10:30:00-03:00");
}

#[test]
fn basic_and_login_auth_send_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("senha");
    std::fs::write(&password_file, "S3nh4-Teste\n").unwrap();
    let api = Background::start(Scenario::default()).unwrap();
    let mut config = config_for(&api.url());
    config.api.auth.mode = extrator::config::AuthMode::Basic;
    config.api.auth.user = Some("integrador".into());
    config.api.auth.password_file = Some(password_file.clone());
    api.shared.require_authorization("Basic aW50ZWdyYWRvcjpTM25oNC1UZXN0ZQ==");
    expect(&send(&config, "1"), None, "http_200", Some(200), "");

    // Login: the token comes from login_url and is sent as Bearer.
    let login = Background::start(Scenario::default().order("", vec![])).unwrap();
    login.shared.set_scenario(Scenario {
        default: Behavior::json(200, r#"{"token": "tok-123"}"#),
        ..Scenario::default()
    });
    config.api.auth.mode = extrator::config::AuthMode::Login;
    config.api.auth.login_url = Some(login.url());
    api.shared.require_authorization("Bearer tok-123");
    expect(&send(&config, "2"), None, "http_200", Some(200), "");
    let login_request = &login.shared.received()[0];
    let body: serde_json::Value = serde_json::from_str(&login_request.body).unwrap();
    assert_eq!((body["user"].as_str(), body["password"].as_str()), (Some("integrador"), Some("S3nh4-Teste")));

    // Another vendor's names: the credentials' fields and a token inside an object.
    login.shared.set_scenario(Scenario {
        default: Behavior::json(200, r#"{"data": {"access_token": "tok-456", "expires_in": 3600}}"#),
        ..Scenario::default()
    });
    config.api.auth.user_field = "login".into();
    config.api.auth.password_field = "senha".into();
    config.api.auth.token_field = "data.access_token".into();
    api.shared.require_authorization("Bearer tok-456");
    expect(&send(&config, "4"), None, "http_200", Some(200), "");
    let login_request = login.shared.received().pop().unwrap();
    let body: serde_json::Value = serde_json::from_str(&login_request.body).unwrap();
    assert_eq!(body, serde_json::json!({"login": "integrador", "senha": "S3nh4-Teste"}));
    // A login answer without the token names the setting to check; it is the credentials'
    // setting, so 02 (sending pauses until it is mended), never an item's failure.
    config.api.auth.token_field = "data.token".into();
    let attempt = send(&config, "5");
    assert_eq!(attempt.verdict.code().map(extrator::core::codes::Code::as_str), Some("02"));
    assert_eq!(attempt.verdict.kind.to_string(), "token_http_200");
    let message = attempt.verdict.message.clone().unwrap_or_default();
    assert!(message.contains("\"data.token\"") && message.contains("api.auth.token_field"), "{message}");
    config.api.auth.token_field = "data.access_token".into();

    // A login refused with 401 is code 02 for the attempt.
    login.shared.set_scenario(Scenario {
        default: Behavior::json(401, r#"{"message":"bad"}"#),
        ..Scenario::default()
    });
    expect(&send(&config, "3"), Some("02"), "token_http_401", Some(401), "bad");
}

/// A TLS server on loopback with `certificate` and `key` (PEM), serving the simulator.
pub fn tls_server(certificate: &str, key: &str) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    use rustls::pki_types::pem::PemObject;
    let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(certificate.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let shared = Shared::new(Scenario::default());
            // Serve a few connections, then stop (each test makes at most one).
            for _ in 0..2 {
                let Ok((stream, _)) = listener.accept().await else { return };
                if let Ok(tls) = acceptor.accept(stream).await {
                    extrator::simulator::serve_connection(TlsConnection(tls), shared.clone()).await;
                }
            }
        });
    });
    (addr, handle)
}

/// A server-side TLS stream the simulator can serve.
struct TlsConnection(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tokio::io::AsyncRead for TlsConnection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl extrator::simulator::Connection for TlsConnection {
    fn abort(self) {}
}

/// A private CA written to `DIR/ca.pem` (for `api.ca_file`), signing server certificates.
pub struct TestCa {
    pub file: std::path::PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(dir: &std::path::Path) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "CA de teste do extrator");
        let certificate = params.self_signed(&key).unwrap();
        let file = dir.join("ca.pem");
        std::fs::write(&file, certificate.pem()).unwrap();
        TestCa { file, issuer: Issuer::new(params, key) }
    }

    /// A certificate and its key (PEM) for `names`, signed by this CA or self-signed.
    pub fn leaf(&self, names: &[&str], signed: bool) -> (String, String) {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>()).unwrap();
        // A distinctive subject, so no root of the system store can be mistaken for its issuer.
        params.distinguished_name.push(DnType::CommonName, format!("extrator teste {}", names[0]));
        let cert = if signed {
            params.signed_by(&key, &self.issuer).unwrap()
        } else {
            params.self_signed(&key).unwrap()
        };
        (cert.pem(), key.serialize_pem())
    }
}

#[test]
fn tls_verifies_against_api_ca_file_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let ca_file = ca.file.clone();
    let leaf = |names: &[&str], signed: bool| ca.leaf(names, signed);
    let attempt_with = |certificate: (String, String)| {
        let (addr, server) = tls_server(&certificate.0, &certificate.1);
        let mut config = config_for(&format!("https://localhost:{}/cancelamentos", addr.port()));
        config.api.ca_file = Some(ca_file.clone());
        let attempt = send(&config, "1");
        drop(server);
        attempt
    };

    // The control: a certificate for the right name from the trusted CA works.
    expect(&attempt_with(leaf(&["localhost"], true)), None, "http_200", Some(200), "");
    expect(
        &attempt_with(leaf(&["localhost"], false)),
        Some("06"),
        "tls_certificate",
        None,
        "autoridade desconhecida",
    );
    expect(
        &attempt_with(leaf(&["outro.exemplo.com.br"], true)),
        Some("06"),
        "tls_certificate",
        None,
        "não vale para o nome",
    );
}
