//! The status page in a real browser: headless Chromium (the Debian package) renders it during a
//! run with failures; the test reads the DOM Chromium built (the counts are the database's, the
//! failed order is listed with the API's message, a search shows the order's attempts, hostile
//! text is text) and saves a screenshot. Off loopback the page asks for a password, which never
//! reaches a log.

use std::process::Command;
use std::time::Duration;

use extrator::simulator::{Background, Behavior};

use crate::util::{Env, expect_exit, free_port, http_get, needs_program, record, signal, wait_until};

/// The Chromium binary the Debian package installs.
const CHROMIUM: &str = "chromium";

/// Runs headless Chromium on `url` with `action` (`--dump-dom`, `--screenshot=…`): no sandbox
/// (CI is root), a fresh profile, no background traffic, and every host name but loopback
/// unresolvable, so nothing leaves the machine.
fn chromium(url: &str, action: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--window-size=1280,2000",
            &format!("--user-data-dir={}", profile.path().display()),
            action,
            url,
        ])
        .output()
        .expect("run chromium");
    assert!(output.status.success(), "chromium {action} {url}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text of the element with this id in a DOM dump (its inner HTML, as Chromium serialised it).
fn element(dom: &str, id: &str) -> String {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let open = start + dom[start..].find('>').unwrap() + 1;
    let close = open + dom[open..].find("</").unwrap();
    dom[open..close].to_owned()
}

#[test]
#[ignore = "precisa do chromium: roda com scripts/test como root"]
fn chromium_renders_the_status_page_of_a_run_with_failures() {
    needs_program("the status page in Chromium", CHROMIUM);
    // The demo's answers, and an order whose reason and API message are markup.
    let scenario = extrator::cli::commands::demo::scenario().order(
        "100207",
        vec![Behavior::json(400, r#"{"message": "<b>pedido</b> <img src=x onerror=alert(2)> inválido"}"#)],
    );
    let api = Background::start(scenario).unwrap();
    let port = free_port();
    let env = Env::build(
        &api.url(),
        "connect_timeout = \"1s\"\nrequest_timeout = \"1s\"\nasync_poll_interval = \"100ms\"\n",
        &format!(
            "[retry]\nmax_attempts = 3\nfirst_delay = \"300ms\"\nmax_delay = \"600ms\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    let mut orders = String::new();
    for order in ["100201", "100202", "100203", "100204", "100205", "100302"] {
        orders.push_str(&record(order, "cliente desistiu"));
        orders.push('\n');
    }
    orders.push_str(&record("100207", "<script>alert(1)</script>"));
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], orders.as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("every item to be final", Duration::from_secs(60), || {
        env.number("SELECT COUNT(*) FROM items WHERE state NOT IN ('done', 'failed')") == 0
    });

    // The charts count attempts at each tick of the daemon's chores.
    wait_until("the attempts counted by hour", Duration::from_secs(30), || {
        env.number("SELECT COALESCE(SUM(count), 0) FROM attempt_hours")
            == env.number("SELECT COUNT(*) FROM attempts")
    });
    let base = format!("http://127.0.0.1:{port}");
    let dom = chromium(&format!("{base}/"), "--dump-dom");
    for state in ["pending", "in_flight", "processing", "done", "failed"] {
        let database = env.number(&format!("SELECT COUNT(*) FROM items WHERE state = '{state}'"));
        assert_eq!(element(&dom, &format!("itens-{state}")), database.to_string(), "{state}");
    }
    assert!(env.number("SELECT COUNT(*) FROM items WHERE state = 'failed'") >= 3);
    let rejected = element(&dom, "falhas-07");
    assert!(rejected.contains("Erro 07 Cancelamento rejeitado pela API"), "{rejected}");
    let failures = &dom[dom.find("id=\"falhas\"").unwrap()..];
    assert!(failures.contains(">100203</a>") && failures.contains("pedido já faturado"), "{failures}");
    // The catalog's steps for the code, beside its items.
    assert!(failures.contains("extrator retry --id ID"), "{failures}");
    // Markup from the API is text: escaped in the DOM, never an element.
    assert!(failures.contains("&lt;img src=x onerror=alert(2)&gt;"), "{failures}");
    assert!(!dom.contains("<img") && !dom.contains("<script") && !dom.contains("<b>pedido"), "{dom}");
    // The charts drew the run's attempts: the SVG's bars hold every attempt of today.
    let attempts = env.number("SELECT COUNT(*) FROM attempts");
    let drawn: i64 = dom
        .split("data-total=\"")
        .skip(1)
        .take(24)
        .map(|rest| rest[..rest.find('"').unwrap()].parse::<i64>().unwrap())
        .sum();
    assert_eq!(drawn, attempts, "the 24-hour chart");

    // The search: the order with every attempt, and a reason that is markup shown as text.
    let found = chromium(&format!("{base}/pedido?numero=100204"), "--dump-dom");
    assert!(found.contains("04 Timeout"), "{found}");
    let recorded = env.number(
        "SELECT COUNT(*) FROM attempts WHERE item_id = (SELECT id FROM items WHERE order_number = '100204')",
    );
    let attempts_table = &found[found.find("id=\"tentativas\"").unwrap()..];
    assert_eq!(
        attempts_table.matches("<tr>").count() - 1,
        recorded as usize,
        "one row per attempt, after the header"
    );
    let hostile = chromium(&format!("{base}/pedido?numero=100207"), "--dump-dom");
    assert!(
        hostile.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !hostile.contains("<script"),
        "{hostile}"
    );
    let missing = chromium(&format!("{base}/pedido?numero=999999"), "--dump-dom");
    assert!(missing.contains("não está na fila"), "{missing}");

    // A screenshot, for the README: docs/imagens/painel.png is a copy of target/tmp/painel.png
    // (copy it again when the page changes).
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("painel.png");
    let _ = std::fs::remove_file(&screenshot);
    chromium(&format!("{base}/"), &format!("--screenshot={}", screenshot.display()));
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());

    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
}

#[test]
fn off_loopback_the_page_asks_for_a_password_that_never_reaches_a_log() {
    use base64::Engine as _;
    const PASSWORD: &str = "Senha-Do-Painel-42";
    let scratch = tempfile::tempdir().unwrap();
    let password_file = scratch.path().join("senha-painel");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let port = free_port();

    let without = Env::build(
        "http://127.0.0.1:1/x",
        "",
        &format!("[metrics]\nlisten = \"0.0.0.0:{port}\"\nallow_remote = true\n"),
    );
    let (_, stderr) = expect_exit(&without.run(&["run"]), 78);
    assert!(stderr.contains("metrics.password_file"), "{stderr}");

    let env = Env::build(
        "http://127.0.0.1:1/x",
        "",
        &format!(
            "[metrics]\nlisten = \"0.0.0.0:{port}\"\nallow_remote = true\nuser = \"suporte\"\npassword_file = \"{}\"\n",
            password_file.display()
        ),
    );
    let mut daemon = env.spawn_daemon();
    let address = format!("127.0.0.1:{port}");
    wait_until("the listener", Duration::from_secs(30), || std::net::TcpStream::connect(&address).is_ok());
    let basic = |pair: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
    for path in ["/", "/metrics", "/pedido?numero=1"] {
        let (status, head, _) = http_get(&address, path, None).unwrap();
        assert_eq!(status, 401, "{path}");
        assert!(head.to_lowercase().contains("www-authenticate: basic realm=\"extrator\""), "{head}");
        assert_eq!(http_get(&address, path, Some(&basic("suporte:senha-errada"))).unwrap().0, 401, "{path}");
        assert_eq!(
            http_get(&address, path, Some(&basic(&format!("outro:{PASSWORD}")))).unwrap().0,
            401,
            "{path}"
        );
    }
    let right = basic(&format!("suporte:{PASSWORD}"));
    let (status, _, page) = http_get(&address, "/", Some(&right)).unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("extrator — painel"));
    // Prometheus scrapes with basic_auth.
    let (status, _, metrics) = http_get(&address, "/metrics", Some(&right)).unwrap();
    assert!(status == 200 && metrics.contains("extrator_build_info"), "{status}: {metrics}");
    let (_, check_stdout) = expect_exit(&env.run(&["check"]), 1);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    for (what, text) in [("the daemon's log", env.daemon_log()), ("check", check_stdout)] {
        assert!(!text.contains(PASSWORD) && !text.contains(&right[6..]), "{what}:\n{text}");
    }
}
