//! The spool directory: imports, rejections with `.erro`, files still being written, and a
//! `kill -9` in the middle of an import.

use std::time::Duration;

use crate::enqueue::malformed_inputs;
use crate::util::{Env, expect_exit, json_lines, peak_rss_kib, record, signal, wait_until};

/// Starts the daemon, waits until the spool holds no `*.json`, and stops it with SIGTERM.
fn import_all(env: &Env) {
    let mut daemon = env.spawn_daemon();
    wait_until("the spool to be emptied", Duration::from_secs(60), || {
        env.spool_files("").iter().all(|name| !name.ends_with(".json") || name.starts_with('.'))
    });
    signal(&daemon, "TERM");
    let status = daemon.wait().unwrap();
    assert!(status.success(), "daemon exit {status:?}\n{}", env.daemon_log());
}

#[test]
fn malformed_files_end_in_rejeitados_with_an_erro_each() {
    let env = Env::new();
    let inputs = malformed_inputs();
    for (name, bytes, _) in &inputs {
        env.drop_spool_file(&format!("{name}.json"), bytes);
    }
    env.drop_spool_file("bom.json", json_lines(1, 3).as_bytes());
    import_all(&env);

    assert_eq!(env.spool_files("processados"), ["bom.json"]);
    assert_eq!(env.item_count(), 3);
    let rejected = env.spool_files("rejeitados");
    for (name, _, fragment) in &inputs {
        let file = format!("{name}.json");
        assert!(rejected.contains(&file), "{file} not in rejeitados: {rejected:?}");
        let why =
            std::fs::read_to_string(env.spool().join("rejeitados").join(format!("{file}.erro"))).unwrap();
        assert!(why.contains(&format!("arquivo: {file}")), "{why}");
        assert!(why.contains(fragment), "{file}: {why}");
        assert!(why.contains("Nenhum cancelamento deste arquivo foi importado"), "{why}");
    }
    assert_eq!(rejected.len(), inputs.len() * 2, "each rejected file and its .erro: {rejected:?}");
    assert!(env.daemon_log().contains("arquivo do spool rejeitado"), "{}", env.daemon_log());
}

#[test]
fn a_file_conflicting_with_the_queue_is_rejected_whole() {
    let env = Env::new();
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "original"]), 0);
    let conflicting = format!("{}\n{}\n", record("2", "novo"), record("1", "outro motivo"));
    env.drop_spool_file("conflito.json", conflicting.as_bytes());
    import_all(&env);
    assert_eq!(env.item_count(), 1, "order 2 must not be imported from a rejected file");
    let why = std::fs::read_to_string(env.spool().join("rejeitados/conflito.json.erro")).unwrap();
    assert!(why.contains("pedido 1 (item 1): difere em reason"), "{why}");
}

#[test]
fn files_still_being_written_are_left_alone_and_reused_names_are_kept() {
    let env = Env::new();
    std::fs::create_dir_all(env.spool()).unwrap();
    std::fs::write(env.spool().join("parcial.json.tmp"), "{\"order\": \"1\", \"bra").unwrap();
    std::fs::write(env.spool().join(".oculto.json"), "{").unwrap();
    env.drop_spool_file("lote.json", json_lines(1, 2).as_bytes());
    import_all(&env);
    env.drop_spool_file("lote.json", json_lines(3, 2).as_bytes());
    import_all(&env);

    assert_eq!(env.item_count(), 4);
    let processed = env.spool_files("processados");
    assert_eq!(processed.len(), 2, "the second lote.json must not overwrite the first: {processed:?}");
    assert!(env.spool_files("").contains(&"parcial.json.tmp".to_owned()));
    assert!(env.spool_files("").contains(&".oculto.json".to_owned()));
    assert!(env.spool_files("rejeitados").is_empty());
}

#[test]
fn kill_9_while_importing_200_files_loses_and_duplicates_nothing() {
    const FILES: usize = 200;
    const PER_FILE: usize = 100;
    let env = Env::new();
    for file in 0..FILES {
        let contents = if file % 25 == 7 {
            b"{ isto nao e json".to_vec()
        } else {
            json_lines(file * PER_FILE, PER_FILE).into_bytes()
        };
        env.drop_spool_file(&format!("lote-{file:03}.json"), &contents);
    }
    let bad = (0..FILES).filter(|file| file % 25 == 7).count();

    let mut daemon = env.spawn_daemon();
    wait_until("the first file to be imported", Duration::from_secs(60), || {
        !env.spool_files("processados").is_empty()
    });
    signal(&daemon, "KILL");
    daemon.wait().unwrap();
    let done_at_kill = env.spool_files("processados").len() + env.spool_files("rejeitados").len() / 2;
    assert!(done_at_kill < FILES, "the kill must land mid-import (all {FILES} were already done)");

    import_all(&env);
    assert!(env.spool_files("").iter().all(|name| !name.ends_with(".json")));
    let processed = env.spool_files("processados");
    let rejected: Vec<String> =
        env.spool_files("rejeitados").into_iter().filter(|name| name.ends_with(".json")).collect();
    assert_eq!(processed.len() + rejected.len(), FILES, "every file accounted for exactly once");
    assert_eq!(rejected.len(), bad);
    assert_eq!(
        env.item_count(),
        ((FILES - bad) * PER_FILE) as i64,
        "every good record imported exactly once"
    );
    // Each good file's records, all of them, queued from that file (the order numbers are the
    // file's own range): none lost to the kill, none taken from the wrong file.
    for file in (0..FILES).filter(|file| file % 25 != 7) {
        let (from_file, in_range): (i64, i64) = env
            .db()
            .query_row(
                "SELECT COUNT(*), SUM(CAST(order_number AS INTEGER) BETWEEN ?2 AND ?3) FROM items WHERE source = ?1",
                rusqlite::params![format!("spool:lote-{file:03}.json"), (file * PER_FILE) as i64, (file * PER_FILE + PER_FILE - 1) as i64],
                |row| Ok((row.get(0)?, row.get::<_, Option<i64>>(1)?.unwrap_or(0))),
            )
            .unwrap();
        assert_eq!((from_file, in_range), (PER_FILE as i64, PER_FILE as i64), "lote-{file:03}.json");
    }
    let check: String = env.db().query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
}

/// Whether a process has exited, without reaping it.
fn exited(daemon: &mut std::process::Child) -> bool {
    daemon.try_wait().unwrap().is_some()
}

/// Stops the daemon with SIGTERM and waits until it is gone: it must never be stuck. First waits
/// for its intake socket, which it opens after installing its signal handlers: a SIGTERM sent
/// while it is still starting would end it by the default action, not by its own clean stop.
fn stop(env: &Env, daemon: &mut std::process::Child) {
    wait_until("the daemon running (its intake socket)", Duration::from_secs(30), || {
        std::os::unix::net::UnixStream::connect(env.intake_socket()).is_ok()
    });
    signal(daemon, "TERM");
    wait_until("the daemon to stop on SIGTERM", Duration::from_secs(30), || exited(daemon));
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
}

#[test]
fn links_fifos_and_hard_links_in_the_spool_are_left_in_place_and_said_once() {
    let env = Env::new();
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "na fila"]), 0);
    std::fs::create_dir_all(env.spool()).unwrap();
    let secret = env.dir.path().join("segredo.txt");
    std::fs::write(&secret, "{\"order\": \"segredo\", \"branch\": \"1\", \"reason\": \"x\"}").unwrap();
    std::os::unix::fs::symlink(env.database(), env.spool().join("banco.json")).unwrap();
    std::os::unix::fs::symlink(&secret, env.spool().join("segredo.json")).unwrap();
    std::fs::hard_link(&secret, env.spool().join("fisico.json")).unwrap();
    let fifo = env.spool().join("fifo.json");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    env.drop_spool_file("bom.json", json_lines(10, 2).as_bytes());

    let mut daemon = env.spawn_daemon();
    wait_until("the good file imported", Duration::from_secs(30), || {
        env.spool_files("processados") == ["bom.json"]
    });
    // Many more passes (one every 100 ms): each refusal is said once, not at every pass.
    let at_import = env.item_count();
    let then = jiff::Timestamp::now().as_millisecond();
    wait_until("ten more passes (the heartbeat a second later)", Duration::from_secs(30), || {
        env.number("SELECT COALESCE(MAX(heartbeat_at), 0) FROM daemon") > then + 1_000
    });
    stop(&env, &mut daemon);
    let log = env.daemon_log();
    for (name, why) in [
        ("banco.json", "link simbólico"),
        ("segredo.json", "link simbólico"),
        ("fisico.json", "hard links"),
        ("fifo.json", "FIFO"),
    ] {
        let lines: Vec<&str> = log.lines().filter(|line| line.contains(name)).collect();
        assert_eq!(lines.len(), 1, "{name} said once: {lines:?}");
        assert!(lines[0].contains(why), "{lines:?}");
        assert!(std::fs::symlink_metadata(env.spool().join(name)).is_ok(), "{name} left in place");
    }
    assert_eq!(at_import, 3, "only the good file's two items were added");
    assert_eq!(env.item_count(), 3);
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE order_number = 'segredo'"), 0);
    assert!(env.spool_files("rejeitados").is_empty(), "nothing read through a link reaches a .erro");
    assert_eq!(env.number("SELECT COUNT(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
}

#[test]
fn a_file_swapped_for_a_fifo_during_the_passes_never_blocks_the_daemon() {
    // No quiet period: a FIFO made a moment ago is looked at (it would otherwise wait 2 s and
    // never be opened at all).
    let env = Env::build("http://127.0.0.1:1/c", "", "spool_quiet = \"0s\"\n");
    std::fs::create_dir_all(env.spool()).unwrap();
    let mut daemon = env.spawn_daemon();
    let (name, fifo) = (env.spool().join("troca.json"), env.spool().join(".fifo"));
    // Swap a settled file and a FIFO under the same name for a while, across many passes
    // (every 100 ms): whichever the daemon meets, it must never block on it.
    let swaps = std::thread::spawn(move || {
        for round in 0..300 {
            let _ = std::fs::remove_file(&name);
            if round % 2 == 0 {
                assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
                std::fs::rename(&fifo, &name).unwrap();
            } else {
                std::fs::write(&fifo, "{\"order\": \"1\", \"branch\": \"1\", \"reason\": \"x\"}").unwrap();
                let file = std::fs::File::options().write(true).open(&fifo).unwrap();
                file.set_modified(std::time::SystemTime::now() - Duration::from_secs(60)).unwrap();
                std::fs::rename(&fifo, &name).unwrap();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    swaps.join().unwrap();
    assert!(!exited(&mut daemon), "{}", env.daemon_log());
    assert!(env.daemon_log().contains("é um FIFO"), "the daemon met the FIFO:\n{}", env.daemon_log());
    // A new item still goes through the daemon's passes: it is not stuck in a read.
    env.drop_spool_file("depois.json", json_lines(100, 1).as_bytes());
    wait_until("a later file imported", Duration::from_secs(30), || {
        env.spool_files("processados").iter().any(|name| name.starts_with("depois"))
    });
    stop(&env, &mut daemon);
}

#[test]
fn planted_links_cannot_make_the_daemon_write_or_move_outside_the_spool() {
    let env = Env::new();
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "na fila"]), 0);
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(env.spool()).unwrap();
    // `processados` planted as a link to another directory: files must not leave the spool.
    std::os::unix::fs::symlink(elsewhere.path(), env.spool().join("processados")).unwrap();
    env.drop_spool_file("bom.json", json_lines(10, 1).as_bytes());
    let mut daemon = env.spawn_daemon();
    wait_until("the refusal said", Duration::from_secs(30), || {
        env.daemon_log().contains("processados inutilizável")
    });
    assert!(!exited(&mut daemon), "the daemon stays up:\n{}", env.daemon_log());
    assert!(env.spool_files("").contains(&"bom.json".to_owned()));
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0, "nothing moved out");
    stop(&env, &mut daemon);

    // The link removed, and the temporary names of a rejection's `.erro` taken by links to the
    // database: the `.erro` goes elsewhere, the database is untouched.
    std::fs::remove_file(env.spool().join("processados")).unwrap();
    env.drop_spool_file("ruim.json", b"{ isto nao e json");
    let mut daemon = env.spawn_daemon();
    let pid = daemon.id();
    std::fs::create_dir_all(env.spool().join("rejeitados")).unwrap();
    for name in ["ruim.json.erro", &format!(".ruim.json.erro.{pid}.tmp")] {
        let _ = std::os::unix::fs::symlink(env.database(), env.spool().join("rejeitados").join(name));
    }
    wait_until("the bad file rejected", Duration::from_secs(30), || {
        env.spool_files("rejeitados")
            .iter()
            .any(|name| name.starts_with("ruim-") && name.ends_with(".json.erro"))
    });
    stop(&env, &mut daemon);
    assert_eq!(env.number("SELECT COUNT(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE order_number = '1' AND reason = 'na fila'"), 1);
    assert_eq!(env.item_count(), 2, "the queue is intact: bom.json imported, ruim.json not");
}

#[test]
fn a_file_written_in_place_with_pauses_loses_no_line() {
    let api = extrator::simulator::Background::start(extrator::simulator::Scenario::default()).unwrap();
    let env = Env::build(&api.url(), "", "");
    let config = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("poll_interval = \"100ms\"", "poll_interval = \"100ms\"\nspool_quiet = \"500ms\"");
    std::fs::write(&env.config, config).unwrap();
    std::fs::create_dir_all(env.spool()).unwrap();
    let mut daemon = env.spawn_daemon();
    // A careless writer: no `.tmp` + rename, the final name from the start, pauses longer than
    // the quiet period — once between lines, once in the middle of a line.
    let path = env.spool().join("descuidado.json");
    let mut file = std::fs::File::create(&path).unwrap();
    let lines = json_lines(1, 30);
    let (first, rest) = lines.split_at(lines.match_indices('\n').nth(9).unwrap().0 + 1);
    let (second, third) = rest.split_at(rest.match_indices('\n').nth(9).unwrap().0 + 15);
    for part in [first, second, third] {
        std::io::Write::write_all(&mut file, part.as_bytes()).unwrap();
        file.sync_all().unwrap();
        std::thread::sleep(Duration::from_millis(1_500));
    }
    drop(file);
    wait_until("every line the writer wrote delivered", Duration::from_secs(60), || {
        env.number("SELECT COUNT(*) FROM items WHERE state = 'done'") == 30
    });
    assert_eq!(env.item_count(), 30);
    stop(&env, &mut daemon);
    let log = env.daemon_log();
    assert!(log.contains("mudou depois de importado"), "{log}");
    // The pause in the middle of a line: said, not silently skipped.
    assert!(log.contains("o que foi acrescentado não pôde ser lido"), "{log}");
}

#[test]
fn a_63_mib_spool_file_imports_within_150_mb_of_memory() {
    let env = Env::new();
    std::fs::create_dir_all(env.spool()).unwrap();
    let (lines, records) = crate::util::big_spool_document();
    env.drop_spool_file("grande.json", lines.as_bytes());
    drop(lines);
    let mut daemon = env.spawn_daemon();
    wait_until("the 63 MiB file imported", Duration::from_secs(600), || {
        env.spool_files("processados") == ["grande.json"]
    });
    let peak = peak_rss_kib(daemon.id());
    stop(&env, &mut daemon);
    assert_eq!(env.item_count(), records as i64);
    eprintln!("peak RSS importing 63 MiB ({records} records): {:.1} MB", peak as f64 / 1024.0);
    assert!(peak < 150 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn an_order_repeated_in_one_file_follows_the_queues_rule() {
    let env = Env::new();
    let line = |order: &str, reason: &str, cancelled_at: Option<&str>| {
        let mut record = serde_json::json!({"order": order, "branch": "1", "reason": reason});
        if let Some(at) = cancelled_at {
            record["cancelled_at"] = at.into();
        }
        record.to_string() + "\n"
    };
    // Repeated as the queue would take it: the same content, an omitted cancelled_at after a
    // given one, the same instant in another offset.
    let same = line("1", "a", Some("2026-11-22T10:00:00-03:00"))
        + &line("1", "a", None)
        + &line("1", "a", Some("2026-11-22T13:00:00Z"));
    env.drop_spool_file("mesmo.json", same.as_bytes());
    // Repeated with other content: another reason; a cancelled_at given after an omitted one.
    env.drop_spool_file("motivo.json", (line("2", "a", None) + &line("2", "b", None)).as_bytes());
    env.drop_spool_file(
        "data.json",
        (line("3", "a", None) + &line("3", "a", Some("2026-11-22T10:00:00-03:00"))).as_bytes(),
    );
    import_all(&env);
    assert_eq!(env.spool_files("processados"), ["mesmo.json"]);
    assert_eq!(env.item_count(), 1, "nothing of a rejected file is queued");
    for (file, records) in [("motivo.json", "registros 1 e 2"), ("data.json", "registros 1 e 2")] {
        let why =
            std::fs::read_to_string(env.spool().join("rejeitados").join(format!("{file}.erro"))).unwrap();
        assert!(
            why.contains("aparece mais de uma vez com conteúdo diferente") && why.contains(records),
            "{why}"
        );
    }
}
