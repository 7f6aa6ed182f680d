//! The second hostile round (issue 24), replayed on the real binary: a password echoed in
//! escaped JSON and API keys echoed in headers are masked everywhere; a placeholder's value never
//! leaves its path segment; idle connections exhaust neither the HTTP listener nor the intake
//! socket; a rebinding `Host` is refused; duplicate keys and absurd dates are refused at intake.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use extrator::simulator::{Background, Behavior, Scenario};

use crate::robust::last_attempt;
use crate::util::{Env, database_bytes, expect_exit, free_port, http_get, record, signal, wait_until};

#[test]
fn a_password_echoed_in_escaped_json_and_an_api_key_echoed_in_headers_are_masked_everywhere() {
    const PASSWORD: &str = "Coração/2026";
    const API_KEY: &str = "chave-api-fixa-2026";
    // What a PHP or Python login endpoint writes back: `\uXXXX` and `\/` escapes.
    let login =
        Background::start(Scenario { default: Behavior::EchoJson(400), ..Scenario::default() }).unwrap();
    let password_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(password_file.path(), format!("{PASSWORD}\n")).unwrap();
    let port = free_port();
    let env = Env::build(
        &login.url(),
        &format!("[api.headers]\nX-Api-Key = \"{API_KEY}\"\n"),
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n[api.auth]\nmode = \"login\"\nlogin_url = \"{}\"\n\
             user = \"integrador\"\npassword_file = \"{}\"\n",
            login.url(),
            password_file.path().display()
        ),
    );
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], record("1", "r").as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("the refused login recorded", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM attempts") > 0
    });
    let address = format!("127.0.0.1:{port}");
    wait_until("the listener", Duration::from_secs(30), || std::net::TcpStream::connect(&address).is_ok());
    let (_, _, page) = http_get(&address, "/pedido?numero=1", None).unwrap();
    let (_, _, home) = http_get(&address, "/", None).unwrap();
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    // The echo did come back, and was read (so the test can fail): the message quotes it.
    let (_, _, message) = last_attempt(&env, "1");
    let message = message.unwrap_or_default();
    assert!(message.contains("requisição inválida") && message.contains("x-api-key: ***"), "{message}");
    let mut outputs = vec![database_bytes(&env), env.daemon_log(), page, home];
    for args in [&["show", "--order", "1"][..], &["show", "--order", "1", "--json"], &["list", "--json"]] {
        let (stdout, stderr) = expect_exit(&env.run(args), 0);
        outputs.push(stdout + &stderr);
    }
    let forms =
        [PASSWORD, "Cora\\u00e7\\u00e3o\\/2026", "Cora%C3%A7%C3%A3o%2F2026", "Cora", API_KEY, "chave-api"];
    for output in &outputs {
        for form in forms {
            assert!(!output.contains(form), "{form} leaked into:\n{}", &output[..output.len().min(3000)]);
        }
    }
}

#[test]
fn fixed_credentials_in_request_headers_are_masked_and_never_sent_twice() {
    let env = Env::build(
        "https://api.exemplo.com.br/v1/c",
        "[api.request.headers]\nAuthorization = \"Bearer tok-fixo-no-cabecalho-77\"\nX-Loja = \"{branch}\"\n",
        "",
    );
    for args in [&["preview"][..], &["check"]] {
        let output = env.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("Authorization: Bearer ***"), "{args:?}: {stdout}");
        assert!(!stdout.contains("tok-fixo"), "{args:?}: {stdout}");
    }
    // With an auth mode that sends its own Authorization, two would go out: refused.
    let both = Env::build(
        "https://api.exemplo.com.br/v1/c",
        "[api.request.headers]\nAuthorization = \"Bearer tok-fixo-no-cabecalho-77\"\n",
        "[api.auth]\nmode = \"basic\"\nuser = \"u\"\npassword = \"senha-qualquer-1\"\n",
    );
    let (_, stderr) = expect_exit(&both.run(&["run"]), 78);
    assert!(stderr.contains("Authorization") && !stderr.contains("tok-fixo"), "{stderr}");
}

#[test]
fn dot_segments_in_an_order_or_branch_never_reach_another_resource() {
    let api = Background::start(Scenario::default()).unwrap();
    let env = Env::build(
        &api.url(),
        "",
        &format!(
            "[retry]\nmax_attempts = 1\n[api.request]\nmethod = \"DELETE\"\nurl = \"{}/v1/lojas/{{branch}}/pedidos/{{order}}\"\n",
            api.url().trim_end_matches("/cancelamentos")
        ),
    );
    let batch = "{\"order\": \"..\", \"branch\": \"..\", \"reason\": \"x\"}\n{\"order\": \"7\", \"branch\": \"1\", \"reason\": \"x\"}\n";
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], batch.as_bytes()), 0);
    let (preview, _) = expect_exit(&env.run(&["preview", "--order", "7"]), 0);
    assert!(preview.contains("/v1/lojas/1/pedidos/7"), "{preview}");
    let mut daemon = env.spawn_daemon();
    wait_until("both final", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM items WHERE state IN ('done', 'failed')") == 2
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    let paths: Vec<String> = api.shared.received().into_iter().map(|request| request.path).collect();
    assert_eq!(paths, ["/v1/lojas/1/pedidos/7"], "nothing else reached the API");
    let (code, kind, message) = last_attempt(&env, "..");
    assert_eq!((code.as_deref(), kind.as_str()), (Some("07"), "request_mapping"), "{message:?}");
    assert!(message.unwrap_or_default().contains("nada foi enviado"));
}

#[test]
fn a_hundred_idle_connections_blind_neither_the_page_nor_the_scrapes() {
    use base64::Engine as _;
    const PASSWORD: &str = "Senha-Do-Painel-Local-9";
    let scratch = tempfile::tempdir().unwrap();
    let password_file = scratch.path().join("senha-painel");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let port = free_port();
    let env = Env::build(
        "http://127.0.0.1:1/x",
        "",
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\nuser = \"suporte\"\npassword_file = \"{}\"\n",
            password_file.display()
        ),
    );
    let mut daemon = env.spawn_daemon();
    let address = format!("127.0.0.1:{port}");
    wait_until("the listener", Duration::from_secs(30), || std::net::TcpStream::connect(&address).is_ok());
    // An attacker without the password holds 100 connections open, sending nothing.
    let idle: Vec<std::net::TcpStream> =
        (0..100).map(|_| std::net::TcpStream::connect(&address).unwrap()).collect();
    let basic =
        format!("basic {}", base64::engine::general_purpose::STANDARD.encode(format!("suporte:{PASSWORD}")));
    let mut answered = 0;
    for _ in 0..20 {
        if let Some((200, _, body)) = http_get(&address, "/metrics", Some(&basic)) {
            answered += usize::from(body.contains("extrator_build_info"));
        }
    }
    assert_eq!(
        answered, 20,
        "every scrape answered (the scheme written in lower case) despite 100 idle connections"
    );
    // A name that is not this machine's (DNS rebinding through a browser) is refused.
    let rebinding = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.0\r\nHost: atacante.example:{port}\r\nAuthorization: {basic}\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    assert!(rebinding.starts_with("HTTP/1.1 421") || rebinding.starts_with("HTTP/1.0 421"), "{rebinding}");
    drop(idle);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
}

#[test]
fn idle_clients_on_the_intake_socket_never_hold_an_enqueue() {
    let env = Env::new();
    let mut daemon = env.spawn_daemon();
    let socket = env.intake_socket();
    wait_until("the intake socket", Duration::from_secs(30), || UnixStream::connect(&socket).is_ok());
    // 200 clients that connect and send nothing.
    let idle: Vec<UnixStream> = (0..200).filter_map(|_| UnixStream::connect(&socket).ok()).collect();
    assert!(idle.len() >= 100, "{} idle clients", idle.len());
    let started = Instant::now();
    let (stdout, stderr) =
        expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], record("1", "r").as_bytes()), 0);
    let took = started.elapsed();
    // Queued, or spooled because the service said it was busy — never after waiting out its
    // answer (the code before this change timed out and spooled it as "não respondeu").
    let said = format!("{stdout}{stderr}");
    assert!(said.contains("1 enfileirado") || said.contains("ocupado"), "{said}");
    assert!(!said.contains("não respondeu"), "{said}");
    eprintln!("enqueue with {} idle clients: {} ms", idle.len(), took.as_millis());
    wait_until("the order queued (directly or from the spool)", Duration::from_secs(30), || {
        env.item_count() == 1
    });
    drop(idle);

    // A daemon that stops answering altogether (stopped, not dead): its backlog fills, and
    // `enqueue` neither blocks in connect() nor waits for ever — the batch goes to the spool.
    signal(&daemon, "STOP");
    let mut flood = Vec::new();
    loop {
        match nonblocking_connect(&socket) {
            Some(stream) => flood.push(stream),
            None => break,
        }
        assert!(flood.len() < 100_000, "the backlog never filled");
    }
    let (stdout, stderr) =
        expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], record("2", "r").as_bytes()), 0);
    assert!(format!("{stdout}{stderr}").contains("ocupado"), "{stdout}{stderr}");
    assert_eq!(env.spool_files("").len(), 1, "the batch is in the spool");
    drop(flood);
    signal(&daemon, "CONT");
    wait_until("the spooled order queued", Duration::from_secs(30), || env.item_count() == 2);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
}

/// A connection that does not wait on a full backlog: `None` once the kernel says it is full.
fn nonblocking_connect(socket: &std::path::Path) -> Option<rustix::fd::OwnedFd> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::NONBLOCK, None)
        .ok()?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(socket).ok()?).ok()?;
    Some(fd)
}

#[test]
fn intake_refuses_duplicate_keys_and_absurd_dates_and_keeps_receipts_as_sent() {
    let env = Env::new();
    for (record, said) in [
        (
            r#"{"order": "1", "order": "2", "branch": "1", "reason": "r"}"#,
            "linha 1, coluna 27: o campo \"order\" aparece duas vezes no mesmo objeto",
        ),
        (
            r#"{"order": "1", "branch": "1", "reason": "r", "cancelled_at": "0000-01-01T00:00:00Z"}"#,
            "cancelled_at",
        ),
    ] {
        let (_, stderr) = expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], record.as_bytes()), 1);
        assert!(stderr.contains(said), "{record}: {stderr}");
    }
    assert_eq!(env.item_count(), 0);

    let api = Background::start(Scenario {
        default: Behavior::json(200, r#"{"protocolo": 12345678901234567890123}"#),
        ..Scenario::default()
    })
    .unwrap();
    let env = Env::build(&api.url(), "", "[api.response]\nreceipt_path = \"protocolo\"\n");
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], record("1", "r").as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("delivered", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM items WHERE state = 'done'") == 1
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    let receipt: String = env.db().query_row("SELECT receipt FROM items", [], |row| row.get(0)).unwrap();
    assert_eq!(receipt, "12345678901234567890123");
}
