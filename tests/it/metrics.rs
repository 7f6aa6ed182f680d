//! `/metrics` seen from outside: a real Prometheus (the Debian package) scrapes the daemon during
//! a delivery run with failures and evaluates the shipped alert rules; what its PromQL says equals
//! what the database holds. `promtool` checks the page and runs the rules' unit tests. The
//! listener stays on loopback unless told otherwise, and a taken port is a clear error at start.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use extrator::simulator::Background;

use crate::util::{Env, expect_exit, free_port, http_get, json_lines, needs_program, signal, wait_until};

/// A Prometheus server scraping `target` every second, with the shipped alert rules.
struct Prometheus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/extrator-alertas.yml");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: extrator\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, address, _dir: dir };
        wait_until("Prometheus to be ready", Duration::from_secs(60), || {
            http_get(&prometheus.address, "/-/ready", None).is_some_and(|(status, ..)| status == 200)
        });
        prometheus
    }

    /// An instant query: each series' labels and value.
    fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let encoded = percent_encoding::utf8_percent_encode(promql, percent_encoding::NON_ALPHANUMERIC);
        let (status, _, body) =
            http_get(&self.address, &format!("/api/v1/query?query={encoded}"), None).unwrap();
        assert_eq!(status, 200, "{promql}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        answer["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|series| {
                let labels = serde_json::from_value(series["metric"].clone()).unwrap();
                let value = series["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// `sum by (label) (...)` as a map from the label's value to the sum.
    fn by(&self, label: &str, promql: &str) -> BTreeMap<String, i64> {
        self.query(&format!("sum by ({label}) ({promql})"))
            .into_iter()
            .map(|(labels, value)| (labels.get(label).cloned().unwrap_or_default(), value as i64))
            .filter(|(_, value)| *value != 0)
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `SELECT key, COUNT(*) … GROUP BY key` on the real database, as a map.
fn counted(env: &Env, sql: &str) -> BTreeMap<String, i64> {
    let db = env.db();
    let mut statement = db.prepare(sql).unwrap();
    statement
        .query_map([], |row| Ok((row.get::<_, Option<String>>(0)?.unwrap_or_default(), row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
#[ignore = "precisa do programa prometheus: roda com scripts/test como root"]
fn prometheus_scrapes_a_delivery_run_with_failures_and_its_figures_are_the_databases() {
    needs_program("the Prometheus scrape test", "prometheus");
    // The demo's answers: success, 202 → 208 → 200, 07, a stall (04), a 429 (08), a 500 (99).
    // The stall and the 500 are retried on their schedule and give up after three attempts
    // each: two orders failing among twenty-four that go through never open the circuit.
    let scenario = extrator::cli::commands::demo::scenario();
    let api = Background::start(scenario).unwrap();
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let env = Env::build(
        &api.url(),
        "connect_timeout = \"1s\"\nrequest_timeout = \"1s\"\nasync_poll_interval = \"100ms\"\n",
        &format!(
            "[retry]\nmax_attempts = 3\nfirst_delay = \"300ms\"\nmax_delay = \"600ms\"\n\n[metrics]\nlisten = \"{target}\"\n"
        ),
    );
    let mut orders = json_lines(5_000, 20);
    for order in ["100201", "100202", "100203", "100204", "100205", "100302"] {
        orders.push_str(&crate::util::record(order, "motivo"));
        orders.push('\n');
    }

    // The daemon first, scraped at least once before the run: every counter starts at 0 in
    // Prometheus, as on a server that has run for weeks.
    let mut daemon = env.spawn_daemon();
    let prometheus = Prometheus::start(&target);
    wait_until("a first scrape", Duration::from_secs(60), || {
        prometheus.query(r#"up{job="extrator"} == 1"#).len() == 1
    });
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], orders.as_bytes()), 0);
    wait_until("every item to be final", Duration::from_secs(60), || {
        env.number("SELECT COUNT(*) FROM items WHERE state NOT IN ('done', 'failed')") == 0
    });
    // The give-up of 04 (the stall) must fire the shipped alert, evaluated by Prometheus.
    wait_until("the alert ExtratorItensFalharam for code 04", Duration::from_secs(30), || {
        !prometheus
            .query(r#"ALERTS{alertname="ExtratorItensFalharam", alertstate="firing", code="04"}"#)
            .is_empty()
    });
    // Then a scrape taken after everything was final.
    let settled = jiff::Timestamp::now().as_millisecond() as f64 / 1_000.0;
    wait_until("a scrape after the run", Duration::from_secs(30), || {
        prometheus
            .query(r#"timestamp(up{job="extrator"})"#)
            .first()
            .is_some_and(|(_, at)| *at > settled + 0.5)
    });

    let up = prometheus.query(r#"up{job="extrator"}"#);
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].1, 1.0);
    let failures =
        counted(&env, "SELECT code, COUNT(*) FROM attempts WHERE outcome = 'failure' GROUP BY code");
    assert_eq!(
        prometheus.by("code", r#"extrator_attempts_total{outcome="failure"}"#),
        failures,
        "{}",
        env.daemon_log()
    );
    for code in ["04", "07", "08", "99"] {
        assert!(failures.contains_key(code), "the run had no {code}: {failures:?}");
    }
    assert_eq!(
        prometheus.by("outcome", "extrator_attempts_total"),
        counted(&env, "SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome")
    );
    assert_eq!(
        prometheus.by("state", "extrator_items"),
        counted(&env, "SELECT state, COUNT(*) FROM items GROUP BY state")
    );
    assert_eq!(
        prometheus.by("code", "extrator_items_gave_up_total"),
        counted(&env, "SELECT last_code, COUNT(*) FROM items WHERE state = 'failed' GROUP BY last_code")
    );
    let (_, last_success) = prometheus.query("extrator_last_success_timestamp_seconds")[0].clone();
    let newest_success =
        env.number("SELECT MAX(started_at) FROM attempts WHERE outcome = 'success'") as f64 / 1_000.0;
    assert!((last_success - newest_success).abs() < 0.002, "{last_success} vs {newest_success}");
    assert_eq!(prometheus.query("extrator_oldest_pending_age_seconds")[0].1, 0.0);

    // The page itself: clean for promtool, and no order number in it.
    let (status, _, page) = http_get(&target, "/metrics", None).unwrap();
    assert_eq!(status, 200);
    // (In the labels: a value such as 3.0227649450000007 may well contain "5000".)
    let labels: Vec<&str> =
        page.lines().filter_map(|line| Some(&line[line.find('{')?..=line.find('}')?])).collect();
    assert!(labels.iter().all(|labels| !labels.contains("100203") && !labels.contains("5000")), "{page}");
    let (clean, said) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .output_with(page.as_bytes());
    assert!(clean, "promtool check metrics:\n{said}");

    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
}

/// Runs a command with `input` on stdin: whether it succeeded, and its stdout and stderr.
trait OutputWith {
    fn output_with(&mut self, input: &[u8]) -> (bool, String);
}

impl OutputWith for Command {
    fn output_with(&mut self, input: &[u8]) -> (bool, String) {
        let mut child = self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let output = child.wait_with_output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }
}

#[test]
#[ignore = "precisa do programa promtool: roda com scripts/test como root"]
fn the_shipped_alert_rules_pass_their_unit_tests() {
    needs_program("the alert rules' unit tests", "promtool");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for args in [
        vec!["check", "rules", "packaging/extrator-alertas.yml"],
        vec!["test", "rules", "tests/prometheus/extrator-alertas.test.yml"],
    ] {
        let output = Command::new("promtool").args(&args).current_dir(root).output().unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_listener_stays_on_loopback_unless_the_config_says_otherwise() {
    let remote = Env::build("http://127.0.0.1:1/x", "", "[metrics]\nlisten = \"0.0.0.0:9845\"\n");
    let before = remote.dump();
    for command in ["run", "check"] {
        // `check` says it in its report on stdout.
        let (stdout, stderr) = expect_exit(&remote.run(&[command]), 78);
        let said = stdout + &stderr;
        assert!(said.contains("metrics.listen") && said.contains("metrics.allow_remote = true"), "{said}");
    }
    assert_eq!(remote.dump(), before);

    // As written in TOML: a host name, no port, port 0, a terminal escape.
    for listen in ["localhost:9845", "127.0.0.1", "127.0.0.1:0", "\\u001b[31m:1"] {
        let env = Env::build("http://127.0.0.1:1/x", "", &format!("[metrics]\nlisten = \"{listen}\"\n"));
        let (_, stderr) = expect_exit(&env.run(&["run"]), 78);
        assert!(stderr.contains("metrics.listen") && !stderr.contains('\u{1b}'), "{listen}: {stderr}");
    }

    // Allowed explicitly, with a password (the status page shares the listener): it listens on
    // every address, and Prometheus scrapes with basic_auth.
    let port = free_port();
    let password = remote.dir.path().join("senha-metricas");
    std::fs::write(&password, "s3nha\n").unwrap();
    let allowed = Env::build(
        "http://127.0.0.1:1/x",
        "",
        &format!(
            "[metrics]\nlisten = \"0.0.0.0:{port}\"\nallow_remote = true\npassword_file = \"{}\"\n",
            password.display()
        ),
    );
    let mut daemon = allowed.spawn_daemon();
    wait_until("the listener", Duration::from_secs(30), || {
        http_get(&format!("127.0.0.1:{port}"), "/metrics", None).is_some_and(|(status, ..)| status == 401)
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", allowed.daemon_log());
}

#[test]
fn a_port_in_use_is_a_clear_error_at_start_and_the_queue_is_left_alone() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let env = Env::build("http://127.0.0.1:1/x", "", &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 3).as_bytes()), 0);
    let before = env.dump();
    let (_, stderr) = expect_exit(&env.run(&["run"]), 1);
    assert!(
        stderr.contains(&format!("metrics.listen = \"127.0.0.1:{port}\""))
            && stderr.contains("já está em uso"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(env.dump(), before);
    drop(taken);
}
