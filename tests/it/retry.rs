//! `extrator retry`: selection by id, order, state, code and period; `--dry-run`; confirmation.

use crate::util::{Env, expect_exit, json_lines};

/// Ten items; 1–6 failed with codes and update times set directly in the real database.
fn queue_with_failures() -> Env {
    let env = Env::new();
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 10).as_bytes()), 0);
    let day = 86_400_000_i64;
    let base = 1_790_000_000_000_i64; // 2026-09-21
    let conn = env.db();
    for (id, code, days) in
        [(1, "07", 0), (2, "07", 1), (3, "04", 2), (4, "04", 3), (5, "02", 4), (6, "99", 5)]
    {
        conn.execute(
            "UPDATE items SET state = 'failed', attempts = 10, last_code = ?1, updated_at = ?2 WHERE id = ?3",
            rusqlite::params![code, base + days * day, id],
        )
        .unwrap();
    }
    conn.execute("UPDATE items SET state = 'done' WHERE id = 10", []).unwrap();
    env
}

/// Ids that are pending with a fresh budget (no counted attempt: the fixture gave them 10).
fn requeued(env: &Env) -> Vec<i64> {
    let conn = env.db();
    let mut statement = conn
        .prepare("SELECT id FROM items WHERE state = 'pending' AND attempts = 0 AND id IN (1, 2, 3, 4, 5, 6, 10) ORDER BY id")
        .unwrap();
    statement.query_map([], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn dry_run_changes_nothing() {
    let env = queue_with_failures();
    let before = env.dump();
    let (stdout, _) = expect_exit(&env.run(&["retry", "--dry-run"]), 0);
    assert!(stdout.contains("simulação: 6 itens seriam reenviados; nada foi alterado"), "{stdout}");
    assert_eq!(env.dump(), before);
}

#[test]
fn selects_by_id_order_code_state_and_period() {
    let cases: [(&[&str], &[i64]); 6] = [
        (&["--id", "2", "--id", "5"], &[2, 5]),
        (&["--order", "3"], &[3]),
        (&["--code", "4"], &[3, 4]),
        (&["--since", "2026-09-22T00:00:00Z", "--until", "2026-09-24T00:00:00Z"], &[2, 3]),
        (&["--state", "done"], &[10]),
        (&[], &[1, 2, 3, 4, 5, 6]),
    ];
    for (filters, expected) in cases {
        let env = queue_with_failures();
        let mut args = vec!["retry", "--yes"];
        args.extend_from_slice(filters);
        let (stdout, _) = expect_exit(&env.run(&args), 0);
        let said = match expected.len() {
            1 => "1 item voltou para a fila como pendente".to_owned(),
            n => format!("{n} itens voltaram para a fila como pendentes"),
        };
        assert!(stdout.contains(&said), "{filters:?}: {stdout}");
        assert_eq!(requeued(&env), expected, "{filters:?}");
    }
}

#[test]
fn asks_for_confirmation_unless_yes() {
    let env = queue_with_failures();
    let before = env.dump();
    let (_, stderr) = expect_exit(&env.run_with_input(&["retry", "--code", "07"], b"n\n"), 1);
    assert!(stderr.contains("Reenviar 2 itens? [s/N]"), "{stderr}");
    assert!(stderr.contains("cancelado; nada foi alterado"), "{stderr}");
    assert_eq!(env.dump(), before);
    // No answer at all (stdin closed) is a "no" too.
    expect_exit(&env.run(&["retry", "--code", "07"]), 1);
    assert_eq!(env.dump(), before);

    expect_exit(&env.run_with_input(&["retry", "--code", "07"], b"s\n"), 0);
    assert_eq!(requeued(&env), [1, 2]);
}

#[test]
fn in_flight_items_cannot_be_retried_and_empty_selections_say_so() {
    let env = queue_with_failures();
    let (_, stderr) = expect_exit(&env.run(&["retry", "--state", "in_flight", "--yes"]), 2);
    assert!(stderr.contains("in_flight"), "{stderr}");
    let (stdout, _) = expect_exit(&env.run(&["retry", "--order", "999", "--yes"]), 0);
    assert!(stdout.contains("nenhum item corresponde aos filtros"), "{stdout}");
}
