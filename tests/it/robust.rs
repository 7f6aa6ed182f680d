//! A core that no answer, config or fault can crash or wedge: hostile answers, echoed secrets,
//! silent errors, absurd values, a stop mid-work, an item stranded by an old version, a corrupt
//! database, and a full disk during an outage.

use std::io::{Read, Write};
use std::time::Duration;

use extrator::simulator::{Background, Behavior, Scenario};

use crate::util::{Env, database_bytes, expect_exit, json_lines, signal, wait_until};

/// Items not yet in a final state.
const UNFINISHED: &str = "SELECT COUNT(*) FROM items WHERE state NOT IN ('done', 'failed')";

/// The last attempt's code, kind and message for `order`.
pub fn last_attempt(env: &Env, order: &str) -> (Option<String>, String, Option<String>) {
    env.db()
        .query_row(
            "SELECT a.code, a.kind, a.message FROM attempts a JOIN items i ON i.id = a.item_id \
             WHERE i.order_number = ?1 ORDER BY a.number DESC LIMIT 1",
            [order],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap()
}

#[test]
fn the_html_answer_that_crashed_the_daemon_is_a_99_and_it_stays_up() {
    let scenario = Scenario::default()
        .order("1", vec![Behavior::with_type(500, "text/html", "İ<title>é</title>")])
        .order("2", vec![Behavior::with_type(502, "text/html", "<TİTLE>ǅ İ</TİTLE><title>Ⅷ ß</title>")]);
    let api = Background::start(scenario).unwrap();
    let env = Env::build(&api.url(), "", "[retry]\nmax_attempts = 1\n");
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 2).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("both items final", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon must stay up: {}", env.daemon_log());
    assert_eq!(last_attempt(&env, "1"), (Some("99".into()), "http_500".into(), Some("é".into())));
    assert_eq!(last_attempt(&env, "2"), (Some("99".into()), "http_502".into(), Some("Ⅷ ß".into())));
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
}

#[test]
fn an_api_that_echoes_the_request_leaves_no_secret_anywhere() {
    const PASSWORD: &str = "S3nh4-Ecoada-\"Forte\"";
    // The forms we send it in: as it is, as a JSON string (login), the Basic header's base64.
    let forms = [PASSWORD, "S3nh4-Ecoada-\\\"Forte\\\"", "aW50ZWdyYWRvcjpTM25oNC1FY29hZGEtIkZvcnRlIg=="];
    const TOKEN: &str = "tok-Ecoado-7f3a9c";
    let echo = Scenario { default: Behavior::Echo(500), ..Scenario::default() };
    let api = Background::start(echo.clone()).unwrap();
    // The login endpoint echoes a refused login too (its answer is the attempt's then).
    let login = Background::start(Scenario::default()).unwrap();
    login.shared.set_scenario(Scenario {
        default: Behavior::json(200, &format!(r#"{{"token": "{TOKEN}"}}"#)),
        ..Scenario::default()
    });
    for (mode, extra) in [("basic", String::new()), ("login", format!("login_url = \"{}\"\n", login.url()))] {
        let password_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(password_file.path(), format!("{PASSWORD}\n")).unwrap();
        let env = Env::build(
            &api.url(),
            "",
            &format!(
                "[retry]\nmax_attempts = 1\n[api.auth]\nmode = \"{mode}\"\nuser = \"integrador\"\npassword_file = \"{}\"\n{extra}",
                password_file.path().display()
            ),
        );
        expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 1).as_bytes()), 0);
        let mut daemon = env.spawn_daemon();
        wait_until("every item final", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
        signal(&daemon, "TERM");
        assert!(daemon.wait().unwrap().success());
        // The echo did reach us (so the test can fail), masked.
        let (_, _, message) = last_attempt(&env, "1");
        let message = message.unwrap_or_default();
        assert!(message.contains("authorization: ") && message.contains("***"), "{mode}: {message}");
        let mut outputs = vec![database_bytes(&env), env.daemon_log()];
        for args in [&["show", "--order", "1"][..], &["show", "--order", "1", "--json"], &["list", "--json"]]
        {
            let (stdout, stderr) = expect_exit(&env.run(args), 0);
            outputs.push(stdout + &stderr);
        }
        let secrets: Vec<&str> = forms.iter().copied().chain([TOKEN]).collect();
        for (output, secret) in
            outputs.iter().flat_map(|output| secrets.iter().map(move |secret| (output, secret)))
        {
            assert!(
                !output.contains(secret),
                "{mode}: {secret} leaked into:\n{}",
                &output[..output.len().min(3000)]
            );
        }
    }
}

#[test]
fn an_empty_error_body_records_the_status_and_a_non_http_answer_its_nature() {
    let scenario = Scenario::default()
        .order("409", vec![Behavior::Respond { status: 409, headers: Vec::new(), body: String::new() }])
        .order("503", vec![Behavior::Respond { status: 503, headers: Vec::new(), body: String::new() }]);
    let api = Background::start(scenario).unwrap();
    let env = Env::build(&api.url(), "", "[retry]\nmax_attempts = 1\n");
    let records = "{\"order\": \"409\", \"branch\": \"1\", \"reason\": \"x\"}\n{\"order\": \"503\", \"branch\": \"1\", \"reason\": \"x\"}\n";
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], records.as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("both items final", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    assert_eq!(
        last_attempt(&env, "409"),
        (
            Some("07".into()),
            "http_409".into(),
            Some("a API respondeu HTTP 409 (Conflict) sem mensagem no corpo".into())
        )
    );
    assert_eq!(
        last_attempt(&env, "503"),
        (
            Some("99".into()),
            "http_503".into(),
            Some("a API respondeu HTTP 503 (Service Unavailable) sem mensagem no corpo".into())
        )
    );

    // A server that answers with something that is not HTTP.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/c", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.read(&mut [0_u8; 4096]);
            let _ = stream.write_all(b"lixo \x1b[31m\xff\xfe\r\n\r\n");
        }
    });
    let attempt = crate::client::send(&crate::client::config_for(&url), "1");
    let message = attempt.verdict.message.unwrap_or_default();
    assert_eq!(attempt.verdict.kind.to_string(), "invalid_response", "{message}");
    assert!(message.starts_with("a API respondeu algo que não é uma resposta HTTP válida"), "{message}");
    assert!(!message.contains("127.0.0.1"), "no URL in the message: {message}");
}

#[test]
fn after_a_stop_mid_work_the_released_items_show_real_times() {
    let api = Background::start(Scenario { default: Behavior::Stall, ..Scenario::default() }).unwrap();
    let env = Env::build(&api.url(), "concurrency = 2\nrequest_timeout = \"1h\"\n", "");
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 5).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("two requests on the wire", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM items WHERE state = 'in_flight'") == 2
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'in_flight'"), 0);
    let now = jiff::Timestamp::now().as_millisecond();
    let newest = env.number("SELECT MAX(updated_at) FROM items");
    assert!(newest <= now && now - newest < 600_000, "updated_at must be now, not the year 9999: {newest}");
    let (stdout, _) = expect_exit(&env.run(&["list", "--since", "1h", "--json"]), 0);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed.len(), 5, "--since finds the released items too");
    let (stdout, _) = expect_exit(&env.run(&["list"]), 0);
    assert!(!stdout.contains("9999"), "{stdout}");
}

#[test]
fn an_item_stranded_in_flight_by_a_huge_lease_is_delivered_after_the_restart() {
    let api = Background::start(Scenario::default()).unwrap();
    // The config of the report is refused now…
    let env = Env::build(&api.url(), "request_timeout = \"200000000000000d\"\n", "");
    let (_, stderr) = expect_exit(&env.run(&["run"]), 78);
    assert!(stderr.contains("chave `api.request_timeout`: deve estar entre 100ms e 1h"), "{stderr}");
    // …and what an older version left behind (a lease to the end of time) comes back at start.
    let env = Env::build(&api.url(), "", "");
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
    env.db().execute("UPDATE items SET state = 'in_flight', lease_until = ?1", [i64::MAX]).unwrap();
    let mut daemon = env.spawn_daemon();
    wait_until("the stranded item delivered", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'done'"), 1);
}

#[test]
fn every_duration_and_count_is_bounded_with_the_key_and_the_range() {
    let env = Env::new();
    let keys = [
        ("api", "connect_timeout", "100ms e 5m"),
        ("api", "request_timeout", "100ms e 1h"),
        ("api", "async_poll_interval", "100ms e 1d"),
        ("api", "async_max_wait", "1s e 30d"),
        ("queue", "poll_interval", "10ms e 1h"),
        ("queue", "busy_timeout", "0s e 10m"),
        ("retry", "first_delay", "100ms e 1d"),
        ("retry", "max_delay", "100ms e 30d"),
        ("history", "retention", "1h e 3650d"),
    ];
    for (section, key, range) in keys {
        let body = format!("{key} = \"18446744073709551615s\"\n");
        let text = if section == "api" {
            format!("[api]\nurl = \"https://x.com.br/c\"\n{body}")
        } else {
            format!("[api]\nurl = \"https://x.com.br/c\"\n[{section}]\n{body}")
        };
        std::fs::write(&env.config, text).unwrap();
        let (_, stderr) = expect_exit(&env.run(&["status"]), 78);
        assert!(stderr.contains(&format!("chave `{section}.{key}`: deve estar entre {range}")), "{stderr}");
    }
    for (key, range) in [
        ("concurrency = 100000", "api.concurrency`: deve estar entre 1 e 64"),
        ("concurrency = 0", "entre 1 e 64"),
    ] {
        std::fs::write(&env.config, format!("[api]\nurl = \"https://x.com.br/c\"\n{key}\n")).unwrap();
        let (_, stderr) = expect_exit(&env.run(&["check"]), 78);
        let _ = stderr;
        let (_, stderr) = expect_exit(&env.run(&["status"]), 78);
        assert!(stderr.contains(range), "{stderr}");
    }
    std::fs::write(&env.config, "[api]\nurl = \"https://x.com.br/c\"\n[retry]\nmax_attempts = 5000\n")
        .unwrap();
    let (_, stderr) = expect_exit(&env.run(&["status"]), 78);
    assert!(stderr.contains("chave `retry.max_attempts`: deve estar entre 1 e 1000"), "{stderr}");
}

#[test]
fn a_corrupt_or_empty_database_is_named_for_what_it_is() {
    let env = Env::new();
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
    let db = env.db();
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    drop(db);
    let file = std::fs::OpenOptions::new().write(true).open(env.database()).unwrap();
    file.set_len(100).unwrap();
    drop(file);
    let (_, stderr) = expect_exit(&env.run(&["status"]), 1);
    assert!(stderr.contains("está corrompido") && stderr.contains("restaure o backup"), "{stderr}");
    assert!(!stderr.contains("migrá-lo"), "{stderr}");
    std::fs::write(env.database(), b"").unwrap();
    let (_, stderr) = expect_exit(&env.run(&["status"]), 1);
    assert!(stderr.contains("está vazio (não tem a fila)"), "{stderr}");
}

#[test]
#[ignore = "precisa de root e mount (um tmpfs cheio): roda com scripts/test como root"]
fn a_full_disk_during_an_outage_fails_probe_records_and_sending_resumes_when_room_returns() {
    crate::util::privileged("the full-disk outage test", "mount", crate::util::has_command("mount"));
    let scratch = tempfile::tempdir().unwrap();
    let disk = crate::torture::Tmpfs::mount(&scratch.path().join("disco"), "4m");
    let port = crate::util::free_port();
    let env = Env::build_with_queue(
        &format!("http://127.0.0.1:{port}/c"),
        "connect_timeout = \"500ms\"\nrequest_timeout = \"1s\"\n",
        "[retry]\nfirst_delay = \"100ms\"\nmax_delay = \"300ms\"\n",
        Some(&disk.0),
    );
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 10).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("the circuit open with a recorded probe", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM attempts WHERE probe = 1") >= 1
    });
    // The API comes back and holds its answer to the probe until the disk is full, so the
    // probe was claimed (a write) before, and its record (a write) must land after.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (answer, hold) = std::sync::mpsc::channel::<()>();
    let hold = std::sync::Arc::new(std::sync::Mutex::new(Some(hold)));
    let (seen, probe_arrived) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (seen, hold) = (seen.clone(), hold.clone());
            std::thread::spawn(move || {
                let mut request = [0_u8; 65_536];
                while stream.read(&mut request).is_ok_and(|read| read > 0) {
                    let _ = seen.send(());
                    let first = hold.lock().unwrap().take();
                    if let Some(first) = first {
                        let _ = first.recv();
                    }
                    if stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    probe_arrived.recv_timeout(Duration::from_secs(30)).expect("the probe reached the API");
    let filler = crate::torture::fill(&disk.0);
    answer.send(()).unwrap();
    wait_until("the failed record said", Duration::from_secs(30), || {
        env.daemon_log().contains("não foi gravada")
    });
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon must stay up");
    std::fs::remove_file(filler).unwrap();
    wait_until("every item delivered once the disk has room", Duration::from_secs(60), || {
        env.number("SELECT COUNT(*) FROM items WHERE state = 'done'") == 10
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'failed'"), 0, "an outage fails nothing");
    assert!(
        env.daemon_log().contains("foi gravada na nova tentativa"),
        "the probe's record written again:\n{}",
        env.daemon_log()
    );
}
