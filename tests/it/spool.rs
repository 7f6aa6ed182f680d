//! The spool directory: imports, rejections with `.erro`, files still being written, and a
//! `kill -9` in the middle of an import.

use std::time::Duration;

use crate::enqueue::malformed_inputs;
use crate::util::{Env, expect_exit, json_lines, record, signal, wait_until};

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
