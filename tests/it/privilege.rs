//! Least privilege, tried as a hostile (or careless) account would: links planted where the
//! database, its lock or its companions go, the database replaced under the daemon, one queue
//! reached by two paths. The tests that need root (root's own writes) run in CI, which is root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use crate::util::{Env, expect_exit, signal, wait_until};

#[test]
fn a_linked_database_or_lock_is_refused_and_its_target_untouched() {
    let env = Env::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("alvo");
    std::fs::write(&target, "não me toque").unwrap();
    std::os::unix::fs::symlink(&target, env.database()).unwrap();
    for args in
        [&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"][..], &["status"][..], &["run"][..]]
    {
        let (_, stderr) = expect_exit(&env.run(args), 1);
        assert!(stderr.contains("é um link simbólico"), "{args:?}: {stderr}");
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "não me toque");

    // The lock as a link: `run` refuses rather than create or truncate what it points at.
    std::fs::remove_file(env.database()).unwrap();
    let lock = env.dir.path().join("fila.db.lock");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(elsewhere.path().join("novo"), &lock).unwrap();
    let (_, stderr) = expect_exit(&env.run(&["run"]), 1);
    assert!(stderr.contains("fila.db.lock: é um link simbólico"), "{stderr}");
    assert!(!elsewhere.path().join("novo").exists(), "nothing created through the lock link");
}

#[test]
fn a_second_daemon_cannot_reach_a_running_queue_through_a_link() {
    let env = Env::new();
    let mut daemon = env.spawn_daemon();
    wait_until("the daemon's intake socket", Duration::from_secs(30), || env.intake_socket().exists());
    let elsewhere = tempfile::tempdir().unwrap();
    // Through a linked directory: the same lock file, so the second is told the queue is taken.
    let alias = elsewhere.path().join("estado");
    std::os::unix::fs::symlink(env.dir.path(), &alias).unwrap();
    // Through a linked database file: its own lock file beside the link, so only the refusal to
    // open a database through a link keeps the two apart.
    let link = elsewhere.path().join("atalho.db");
    std::os::unix::fs::symlink(env.database(), &link).unwrap();
    let original = std::fs::read_to_string(&env.config).unwrap();
    let cases = [
        (
            original.replace(&env.dir.path().display().to_string(), &alias.display().to_string()),
            "já está usando a fila",
        ),
        (
            original.replace(&env.database().display().to_string(), &link.display().to_string()),
            "é um link simbólico",
        ),
    ];
    for (index, (text, words)) in cases.into_iter().enumerate() {
        let other = elsewhere.path().join(format!("outra-{index}.toml"));
        std::fs::write(&other, text).unwrap();
        let output = env.command(&["run"]).env("EXTRATOR_CONFIG", &other).output().unwrap();
        let (_, stderr) = expect_exit(&output, 1);
        assert!(stderr.contains(words), "{words}: {stderr}");
    }
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
}

#[test]
fn a_database_deleted_or_replaced_under_the_daemon_stops_it_with_the_reason() {
    for (how, words) in [("apagar", "foi apagado"), ("substituir", "foi substituído")] {
        let env = Env::new();
        expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
        let mut daemon = env.spawn_daemon();
        wait_until("the daemon's intake socket", Duration::from_secs(30), || env.intake_socket().exists());
        let moved = env.dir.path().join("guardado.db");
        std::fs::rename(env.database(), &moved).unwrap();
        if how == "substituir" {
            std::fs::copy(&moved, env.database()).unwrap();
        }
        wait_until("the daemon to stop", Duration::from_secs(30), || daemon.try_wait().unwrap().is_some());
        let status = daemon.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{how}: {}", env.daemon_log());
        assert!(env.daemon_log().contains(words), "{how}: {}", env.daemon_log());
    }
}

/// Fails the (ignored-unless-asked) test unless it runs as root.
fn root() {
    crate::util::privileged("the root-only privilege test", "nothing more", true)
}

#[test]
#[ignore = "precisa de root: roda com scripts/test como root"]
fn root_never_follows_a_link_planted_beside_the_database() {
    root();
    // As if the service's account (or anyone able to write the state directory) planted
    // `-wal` and `-shm` links to a root-owned file before root's next write.
    let env = Env::new();
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
    let elsewhere = tempfile::tempdir().unwrap();
    let shadow = elsewhere.path().join("shadow");
    std::fs::write(&shadow, "root:segredo\n").unwrap();
    std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(env.dir.path(), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(env.database(), Some(65534), Some(65534)).unwrap();
    for suffix in ["-wal", "-shm"] {
        let path = format!("{}{suffix}", env.database().display());
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(&shadow, &path).unwrap();
    }
    let output = env.run(&["retry", "--state", "pending", "--yes"]);
    let meta = std::fs::metadata(&shadow).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600), "retry: {output:?}");
    assert_eq!(std::fs::read_to_string(&shadow).unwrap(), "root:segredo\n");
    let output = env.run(&["enqueue", "--order", "2", "--branch", "1", "--reason", "x"]);
    let meta = std::fs::metadata(&shadow).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600), "enqueue: {output:?}");
    assert_eq!(std::fs::read_to_string(&shadow).unwrap(), "root:segredo\n");
}

#[test]
#[ignore = "precisa de root: roda com scripts/test como root"]
fn root_refuses_to_write_a_database_in_a_directory_others_can_write() {
    root();
    let env = Env::new();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o2770)).unwrap();
    let (_, stderr) =
        expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 1);
    assert!(stderr.contains("pode ser alterado por outras contas (modo 2770)"), "{stderr}");
    assert!(!env.database().exists());
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o2750)).unwrap();
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
}

#[test]
fn enqueue_hands_the_batch_to_the_running_daemon_which_validates_it_again() {
    use std::io::{Read, Write};
    let env = Env::new();
    let mut daemon = env.spawn_daemon();
    wait_until("the intake socket", Duration::from_secs(30), || env.intake_socket().exists());
    let mode = std::fs::metadata(env.intake_socket()).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o660, "only the socket's group may connect");
    let (stdout, _) =
        expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
    assert!(stdout.contains("pedido 1: enfileirado (item 1)"), "{stdout}");
    let (stdout, _) =
        expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
    assert!(stdout.contains("já na fila"), "{stdout}");
    wait_until("the daemon's log line", Duration::from_secs(30), || {
        env.daemon_log().contains("1 cancelamento recebido pelo socket de entrada")
    });

    // A client that skips the validation: the daemon refuses the batch whole, in pt-BR.
    for raw in [
        &b"{\"order\": \"2\", \"branch\": \"1\", \"reason\": \"x\"}\n{\"order\": \"3\"}\n"[..],
        b"\xff\xfe lixo",
    ] {
        let mut stream = std::os::unix::net::UnixStream::connect(env.intake_socket()).unwrap();
        stream.write_all(raw).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["ok"], false, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains("inválid"), "{answer}");
    }
    assert_eq!(env.item_count(), 1, "nothing of a refused batch is queued");
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    assert!(!env.intake_socket().exists(), "the socket is removed at stop");
}

#[test]
fn a_password_file_that_is_not_a_small_regular_file_is_refused_not_read() {
    for (path, words) in [("/dev/zero", "não é um arquivo comum"), ("/dev/stdin", "não é um arquivo comum")]
    {
        let env = Env::build(
            "http://127.0.0.1:1/c",
            &format!("[api.auth]\nmode = \"basic\"\nuser = \"u\"\npassword_file = \"{path}\"\n"),
            "",
        );
        let output = env.run(&["run"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{path}: {stderr}");
        assert!(stderr.contains(words), "{path}: {stderr}");
    }
}

#[test]
fn a_batch_too_large_for_the_socket_goes_through_the_spool_and_is_all_queued() {
    let env = Env::new();
    let mut daemon = env.spawn_daemon();
    wait_until("the intake socket", Duration::from_secs(30), || env.intake_socket().exists());
    let count = 100_000;
    let batch = crate::util::json_lines(1, count);
    assert!(batch.len() > extrator::io::handoff::MAX_BATCH_BYTES);
    let output = env.run_with_input(&["enqueue", "--json", "-"], batch.as_bytes());
    let (stdout, _) = expect_exit(&output, 0);
    assert!(stdout.contains("100000 cancelamentos gravados no spool"), "{stdout}");
    assert!(stdout.contains("um lote grande (100000 cancelamentos) vai pelo spool"), "{stdout}");
    wait_until("the batch imported from the spool", Duration::from_secs(120), || {
        env.item_count() == count as i64
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
}
