//! `api.proxy` through a real HTTP proxy (tinyproxy) on loopback: plain HTTP forwarded, HTTPS
//! through a CONNECT tunnel, a proxy that is down, one that refuses the tunnel, and `check`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use extrator::config::Config;
use extrator::simulator::{Background, Scenario};

use crate::client::{TestCa, config_for, expect, send, tls_server};
use crate::util::{Env, expect_exit, needs_program, wait_until};

/// A tinyproxy on a free loopback port, with `extra` config lines; stopped on drop.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start(extra: &str) -> Tinyproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::util::free_port();
        let config = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &config,
            format!("Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\nLogLevel Info\n{extra}\n"),
        )
        .unwrap();
        let log = dir.path().join("tinyproxy.log");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("tinyproxy listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Tinyproxy { child, port, log, _dir: dir }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn can_run() {
    needs_program("the proxy tests", "tinyproxy")
}

/// An HTTPS API on loopback whose certificate `ca` signed (or not), and a config that reaches it
/// through `proxy` trusting `ca` (the server thread serves two connections, then ends).
fn tls_api(ca: &TestCa, signed: bool, proxy: &str) -> (Config, std::thread::JoinHandle<()>) {
    let (certificate, key) = ca.leaf(&["localhost"], signed);
    let (addr, server) = tls_server(&certificate, &key);
    let mut config = config_for(&format!("https://localhost:{}/cancelamentos", addr.port()));
    config.api.ca_file = Some(ca.file.clone());
    config.api.proxy = Some(proxy.to_owned());
    (config, server)
}

#[test]
#[ignore = "precisa do programa tinyproxy: roda com scripts/test como root"]
fn plain_http_is_forwarded_by_the_proxy() {
    can_run();
    let proxy = Tinyproxy::start("");
    let api = Background::start(Scenario::default()).unwrap();
    let mut config = config_for(&api.url());
    config.api.proxy = Some(proxy.url());
    expect(&send(&config, "1"), None, "http_200", Some(200), "");
    // The request reached the API through the proxy, which says so in a Via header.
    let received = api.shared.received();
    let via = received[0].headers.iter().find(|(name, _)| name == "via").map(|(_, value)| value.clone());
    assert!(via.as_deref().is_some_and(|via| via.contains("tinyproxy")), "{:?}", received[0].headers);
}

#[test]
#[ignore = "precisa do programa tinyproxy: roda com scripts/test como root"]
fn https_goes_through_a_connect_tunnel_and_still_verifies_the_certificate() {
    can_run();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let proxy = Tinyproxy::start("");
    let (config, _server) = tls_api(&ca, true, &proxy.url());
    expect(&send(&config, "1"), None, "http_200", Some(200), "");
    assert!(proxy.log().contains("CONNECT"), "{}", proxy.log());

    // End to end through the tunnel: a certificate the CA did not sign is still refused (06).
    let (config, _server) = tls_api(&ca, false, &proxy.url());
    expect(&send(&config, "2"), Some("06"), "tls_certificate", None, "via proxy");
}

#[test]
fn a_proxy_that_is_down_is_01_and_says_it_was_the_proxy() {
    let closed = crate::util::free_port();
    let api = Background::start(Scenario::default()).unwrap();
    let mut config = config_for(&api.url());
    config.api.proxy = Some(format!("http://127.0.0.1:{closed}"));
    expect(
        &send(&config, "1"),
        Some("01"),
        "connect_refused",
        None,
        &format!("via proxy http://127.0.0.1:{closed}"),
    );
    assert!(api.shared.received().is_empty(), "nothing may reach the API around the proxy");
}

#[test]
#[ignore = "precisa do programa tinyproxy: roda com scripts/test como root"]
fn a_proxy_that_refuses_the_tunnel_is_01_not_a_rejected_cancellation() {
    can_run();
    // Tunnels only to port 443: the API's port is refused with a 403 to the CONNECT.
    let proxy = Tinyproxy::start("ConnectPort 443");
    let dir = tempfile::tempdir().unwrap();
    let (config, _server) = tls_api(&TestCa::new(dir.path()), true, &proxy.url());
    expect(&send(&config, "1"), Some("01"), "proxy_refused", None, "recusou abrir o túnel");
}

#[test]
#[ignore = "precisa do programa tinyproxy: roda com scripts/test como root"]
fn check_tests_the_proxy_as_the_first_hop() {
    can_run();
    let proxy = Tinyproxy::start("");
    let api = Background::start(Scenario::default()).unwrap();
    // The DNS and TCP steps test the proxy (the first hop); the GET goes through it.
    let env = Env::build(&api.url(), &format!("proxy = \"{}\"", proxy.url()), "");
    let (stdout, _) = expect_exit(&env.run(&["check"]), 0);
    assert!(
        stdout.contains(&format!("as requisições passam pelo proxy 127.0.0.1:{}", proxy.port)),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("conectou em 127.0.0.1:{}", proxy.port)), "{stdout}");
    assert!(!api.shared.received().is_empty(), "check's GET went through the proxy to the API");
}

#[test]
#[ignore = "precisa do programa tinyproxy: roda com scripts/test como root"]
fn a_proxy_that_asks_for_credentials_gets_them_from_the_password_file() {
    can_run();
    let proxy = Tinyproxy::start("BasicAuth integrador S3nh4-Proxy");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let api = Background::start(Scenario::default()).unwrap();
    let (mut tls, _server) = tls_api(&ca, true, &proxy.url());
    let mut plain = config_for(&api.url());
    plain.api.proxy = Some(proxy.url());

    // Without credentials: the CONNECT is refused with 407 — 01, naming the settings. (A POST of
    // plain HTTP meets tinyproxy's 407 and a reset before its body is read: not deterministic,
    // so the plain 407 is checked with `check`'s GET below.)
    expect(&send(&tls, "2"), Some("01"), "proxy_auth", None, "api.proxy_password_file");
    let env = Env::build(&api.url(), &format!("proxy = \"{}\"", proxy.url()), "");
    let (stdout, _) = expect_exit(&env.run(&["check"]), 1);
    assert!(stdout.contains("✗ requisição de teste: erro 01"), "{stdout}");
    assert!(stdout.contains("api.proxy_password_file"), "{stdout}");
    assert!(api.shared.received().is_empty());

    // With them, both go through; the password is in no message.
    let password_file = dir.path().join("senha-proxy");
    std::fs::write(&password_file, "S3nh4-Proxy\n").unwrap();
    for config in [&mut plain, &mut tls] {
        config.api.proxy_user = Some("integrador".into());
        config.api.proxy_password_file = Some(password_file.clone());
    }
    expect(&send(&plain, "3"), None, "http_200", Some(200), "");
    expect(&send(&tls, "4"), None, "http_200", Some(200), "");

    // A wrong password is the same 01, and is not repeated back.
    std::fs::write(&password_file, "errada\n").unwrap();
    let attempt = send(&tls, "5");
    expect(&attempt, Some("01"), "proxy_refused", None, "api.proxy_password_file");
    assert!(!format!("{:?}", attempt.verdict).contains("errada"));
}
