//! Store tests on a real SQLite file in a temporary directory.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::core::item::{self, NewItem, Origin, State};

const BUSY: Duration = Duration::from_secs(5);

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("fila.db"), Access::ReadWrite(Durability::Full), BUSY).unwrap()
}

fn item(order: &str, reason: &str) -> NewItem {
    item::from_json(&json!({"order": order, "branch": "1", "reason": reason})).unwrap()
}

fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

#[test]
fn enqueue_is_idempotent_on_identical_content() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let first = store.enqueue(&[item("10", "a"), item("11", "b")], &Origin::Command, at(0)).unwrap();
    assert!(first.iter().all(|outcome| !outcome.already_queued));
    let again = store.enqueue(&[item("10", "a")], &Origin::Command, at(60)).unwrap();
    assert!(again[0].already_queued);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(store.count(&Filter::default()).unwrap(), 2);
}

#[test]
fn a_conflict_refuses_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.enqueue(&[item("10", "a")], &Origin::Command, at(0)).unwrap();
    let error =
        store.enqueue(&[item("12", "new"), item("10", "outro motivo")], &Origin::Command, at(1)).unwrap_err();
    let StoreError::Conflicts(conflicts) = &error else { panic!("{error}") };
    assert_eq!(conflicts.first[0].order, "10");
    assert_eq!(conflicts.first[0].fields, vec!["reason"]);
    assert!(error.to_string().contains("pedido 10 (item 1): difere em reason"), "{error}");
    assert_eq!(store.count(&Filter::default()).unwrap(), 1, "item 12 must not be kept");
}

#[test]
fn a_conflict_inside_one_batch_names_no_rolled_back_item() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.enqueue(&[item("1", "a")], &Origin::Command, at(0)).unwrap();
    let error = store
        .enqueue(&[item("5001", "a"), item("5002", "um"), item("5002", "outro")], &Origin::Command, at(1))
        .unwrap_err();
    let StoreError::Conflicts(conflicts) = &error else { panic!("{error}") };
    assert_eq!(conflicts.first[0].id, None);
    let text = error.to_string();
    assert!(text.contains("pedido 5002: repetido no mesmo lote, difere em reason"), "{text}");
    assert!(!text.contains("item 3"), "item 3 was rolled back: {text}");
    assert_eq!(store.count(&Filter::default()).unwrap(), 1);
}

#[test]
fn omitted_cancelled_at_matches_but_a_different_one_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let mut stamped = item("10", "a");
    stamped.cancelled_at = Some("2026-11-22T10:00:00-03:00".to_owned());
    store.enqueue(&[stamped.clone()], &Origin::Command, at(0)).unwrap();
    assert!(store.enqueue(&[item("10", "a")], &Origin::Command, at(5)).unwrap()[0].already_queued);
    stamped.cancelled_at = Some("2026-11-22T13:00:00Z".to_owned());
    assert!(store.enqueue(&[stamped.clone()], &Origin::Command, at(5)).unwrap()[0].already_queued);
    stamped.cancelled_at = Some("2026-11-22T13:00:01Z".to_owned());
    assert!(store.enqueue(&[stamped], &Origin::Command, at(5)).is_err());
}

/// Claims the item due longest, under `token`.
fn claim_one(store: &mut Store, now: jiff::Timestamp, token: i64) -> Option<crate::core::item::Item> {
    store.claim(now, Duration::from_secs(60), 1, token).unwrap().into_iter().next()
}

#[test]
fn claim_takes_the_longest_due_and_leases_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.enqueue(&[item("1", "a")], &Origin::Command, at(10)).unwrap();
    store.enqueue(&[item("2", "b")], &Origin::Command, at(0)).unwrap();
    assert_eq!(claim_one(&mut store, at(-1), 1), None, "nothing due yet");
    let claimed = claim_one(&mut store, at(20), 1).unwrap();
    assert_eq!(claimed.order, "2");
    assert_eq!(claimed.state, State::InFlight);
    assert_eq!(claim_one(&mut store, at(20), 2).unwrap().order, "1");
    assert_eq!(claim_one(&mut store, at(20), 3), None);

    assert_eq!(store.recover_leases(at(79)).unwrap(), 0, "leases still valid");
    assert_eq!(store.recover_leases(at(80)).unwrap(), 2);
    let back = store.get_by_order("2").unwrap().unwrap();
    assert_eq!(back.state, State::Pending);
    assert!(back.next_attempt_at.unwrap() <= at(80));
}

#[test]
fn the_claim_uses_the_due_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let plan = store.claim_query_plan().unwrap();
    assert_eq!(
        plan.matches("INDEX items_due (state=? AND next_at<?)").count(),
        2,
        "one search per state: {plan}"
    );
    assert!(!plan.contains("SCAN items"), "the claim must not walk the table: {plan}");
    // The only sort is the merge of the two states' few oldest (at most twice the claim's size).
    assert_eq!(plan.matches("TEMP B-TREE").count(), 1, "{plan}");
}

#[test]
fn the_claim_takes_processing_and_pending_items_by_due_time_and_a_probe_avoids_the_probed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.enqueue(&[item("1", "a"), item("2", "b"), item("3", "c")], &Origin::Command, at(0)).unwrap();
    // Order 1 was accepted asynchronously and is due for its poll after the others.
    store
        .conn
        .execute(
            "UPDATE items SET state = 'processing', processing_since = ?1, next_at = ?2 WHERE order_number = '1'",
            [at(0).as_millisecond(), at(5).as_millisecond()],
        )
        .unwrap();
    let orders =
        |rows: Vec<crate::core::item::Item>| rows.into_iter().map(|row| row.order).collect::<Vec<_>>();
    let claimed = store.claim(at(10), Duration::from_secs(60), 2, 1).unwrap();
    let mut got = orders(claimed);
    got.sort();
    assert_eq!(got, ["2", "3"], "a poll due later does not go before pending items due earlier");
    assert_eq!(orders(store.claim(at(10), Duration::from_secs(60), 2, 2).unwrap()), ["1"]);
    store.release_all(at(11)).unwrap();
    let id = |order: &str| store.get_by_order(order).unwrap().unwrap().id;
    let (one, two, three) = (id("1"), id("2"), id("3"));
    // 1 and 2 were sent before (they failed); 3 never was, though due after them.
    store.conn.execute("UPDATE items SET sent = 1 WHERE order_number IN ('1', '2')", []).unwrap();
    store
        .conn
        .execute("UPDATE items SET next_at = ?1 WHERE order_number = '3'", [at(8).as_millisecond()])
        .unwrap();
    let probe = store.claim_probe(at(20), Duration::from_secs(60), 3, &[]).unwrap().unwrap();
    assert_eq!(probe.id, three, "the probe goes to an order never sent");
    store.release(&[three], 3, at(20)).unwrap();
    store.conn.execute("UPDATE items SET sent = 1 WHERE id = ?1", [three]).unwrap();
    let probe = store.claim_probe(at(20), Duration::from_secs(60), 4, &[one, two]).unwrap().unwrap();
    assert_eq!(probe.id, three, "else to one not probed since the circuit opened");
    store.release(&[three], 4, at(20)).unwrap();
    let probe = store.claim_probe(at(20), Duration::from_secs(60), 5, &[one, two, three]).unwrap();
    assert!(probe.is_some(), "when only probed items are due, one of them after all");
}

#[test]
fn a_record_lands_only_on_its_own_claim_and_only_once() {
    use crate::core::classify::{Outcome, Verdict};
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.enqueue(&[item("1", "a")], &Origin::Command, at(0)).unwrap();
    let first = claim_one(&mut store, at(10), 100).unwrap();
    // Its record is slow to commit: the lease runs out and the item is claimed again.
    assert_eq!(store.recover_leases(at(70)).unwrap(), 1);
    let second = claim_one(&mut store, at(71), 101).unwrap();
    assert_eq!(second.id, first.id);
    let verdict = Verdict {
        outcome: Outcome::Success,
        kind: crate::core::classify::Kind::Http(200),
        http_status: Some(200),
        message: None,
        retry_after: None,
        receipt: None,
        poll_url: None,
    };
    let after = crate::core::policy::ItemAfter {
        state: State::Done,
        counted: false,
        attempts: 0,
        last_code: None,
        next_at: at(72),
        processing_since: None,
        poll_url: None,
        verdict,
        capped_delay: None,
    };
    let attempt = AttemptRecord {
        started_at: at(10),
        finished_at: at(72),
        duration: Duration::from_millis(1),
        excerpt: None,
        probe: false,
        after: &after,
    };
    // The late record of the first claim: refused, and the second claim untouched.
    assert!(matches!(store.record_attempt(first.id, 100, &attempt), Err(StoreError::NotLeased(_))));
    let row = store.get(first.id).unwrap().unwrap();
    assert_eq!((row.state, row.sent), (State::InFlight, 0));
    // A release of the first claim does not return the second's item either.
    assert_eq!(store.release(&[first.id], 100, at(72)).unwrap(), 0);
    assert_eq!(store.record_attempt(first.id, 101, &attempt).unwrap(), 1);
    assert!(
        matches!(store.record_attempt(first.id, 101, &attempt), Err(StoreError::NotLeased(_))),
        "never twice"
    );
    assert_eq!(store.attempts(first.id).unwrap().len(), 1);
    assert_eq!(store.get(first.id).unwrap().unwrap().state, State::Done);
}

#[test]
fn a_release_puts_items_back_unsent_and_forgiveness_gives_the_budget_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.enqueue(&[item("1", "a"), item("2", "b")], &Origin::Command, at(0)).unwrap();
    let claimed = store.claim(at(10), Duration::from_secs(60), 2, 7).unwrap();
    let ids: Vec<i64> = claimed.iter().map(|row| row.id).collect();
    assert_eq!(store.release(&ids, 7, at(11)).unwrap(), 2);
    let back = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((back.state, back.sent, back.next_attempt_at), (State::Pending, 0, Some(at(0))), "as it was");
    // Two counted timeouts; the circuit then saw the API was down for everyone.
    for (id, started) in [(ids[0], 20), (ids[1], 21)] {
        store.conn.execute("UPDATE items SET attempts = 1, last_code = '04' WHERE id = ?1", [id]).unwrap();
        store
            .conn
            .execute(
                "INSERT INTO attempts (item_id, number, started_at, duration_ms, outcome, code, kind, counted) \
                 VALUES (?1, 1, ?2, 30000, 'failure', '04', 'read_timeout', 1)",
                [id, at(started).as_millisecond()],
            )
            .unwrap();
    }
    store.conn.execute("UPDATE items SET state = 'failed' WHERE id = ?1", [ids[1]]).unwrap();
    assert_eq!(store.forgive(&[(ids[0], at(20)), (ids[1], at(21)), (ids[0], at(99))]).unwrap(), 1);
    assert_eq!(store.get(ids[0]).unwrap().unwrap().attempts, 0);
    assert!(!store.attempts(ids[0]).unwrap()[0].counted);
    assert_eq!(store.get(ids[1]).unwrap().unwrap().attempts, 1, "an item that gave up on it stays as it is");
    assert_eq!(store.forgive(&[(ids[0], at(20))]).unwrap(), 0, "once");
}

#[test]
fn a_due_time_past_the_longest_wait_is_brought_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.enqueue(&[item("1", "a"), item("2", "b")], &Origin::Command, at(0)).unwrap();
    // What an unbounded Retry-After stored: the year 5195.
    store.conn.execute("UPDATE items SET next_at = 100000000000000 WHERE order_number = '1'", []).unwrap();
    assert_eq!(store.cap_due(at(3_600)).unwrap(), 1);
    assert_eq!(store.get_by_order("1").unwrap().unwrap().next_attempt_at, Some(at(3_600)));
    assert_eq!(store.get_by_order("2").unwrap().unwrap().next_attempt_at, Some(at(0)));
}

#[test]
fn requeue_resets_only_items_still_in_the_selected_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.enqueue(&[item("1", "a"), item("2", "b")], &Origin::Command, at(0)).unwrap();
    store.conn.execute("UPDATE items SET state = 'failed', attempts = 10, last_code = '07'", []).unwrap();
    let selected = store.list(&Filter { states: vec![State::Failed], ..Filter::default() }).unwrap();
    assert_eq!(selected.len(), 2);
    // The daemon changes item 2 between selection and confirmation.
    store.conn.execute("UPDATE items SET state = 'in_flight' WHERE order_number = '2'", []).unwrap();
    assert_eq!(store.requeue(&selected, at(100)).unwrap(), 1);
    let one = store.get_by_order("1").unwrap().unwrap();
    assert_eq!((one.state, one.attempts), (State::Pending, 0));
    assert_eq!(
        one.last_code,
        Some(crate::core::codes::Code::Rejected),
        "history of the last failure stays visible"
    );
    assert_eq!(store.get_by_order("2").unwrap().unwrap().state, State::InFlight);
}

#[test]
fn filters_combine() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    for (order, when) in [("1", 0), ("2", 100), ("3", 200)] {
        store.enqueue(&[item(order, "x")], &Origin::Command, at(when)).unwrap();
    }
    store.conn.execute("UPDATE items SET last_code = '04' WHERE order_number IN ('2', '3')", []).unwrap();
    let pick = |filter: Filter| -> Vec<String> {
        store.list(&filter).unwrap().into_iter().map(|row| row.order).collect()
    };
    assert_eq!(pick(Filter { code: Some("04".into()), ..Filter::default() }), ["3", "2"]);
    assert_eq!(pick(Filter { since: Some(at(100)), until: Some(at(200)), ..Filter::default() }), ["2"]);
    assert_eq!(pick(Filter { ids: vec![1, 3], ..Filter::default() }), ["3", "1"]);
    assert_eq!(pick(Filter { order: Some("2".into()), ..Filter::default() }), ["2"]);
    assert_eq!(pick(Filter { limit: Some(1), ..Filter::default() }), ["3"]);
    assert_eq!(store.count(&Filter { limit: Some(1), ..Filter::default() }).unwrap(), 3);
}

#[test]
fn read_only_open_never_creates_and_refuses_old_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fila.db");
    assert!(matches!(Store::open(&path, Access::ReadOnly, BUSY), Err(StoreError::Missing(_))));
    assert!(!path.exists());
    drop(open(&dir));
    Store::open(&path, Access::ReadOnly, BUSY).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", 99).unwrap();
    let error = Store::open(&path, Access::ReadOnly, BUSY).err().unwrap();
    assert!(error.to_string().contains("versão 99"), "{error}");
}

#[test]
fn garbage_file_is_named_as_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fila.db");
    std::fs::write(&path, vec![0xAB_u8; 8192]).unwrap();
    let error = Store::open(&path, Access::ReadWrite(Durability::Full), BUSY).err().unwrap().to_string();
    assert!(error.contains("não é um banco de dados SQLite"), "{error}");
    assert!(error.contains("fila.db"), "{error}");
}

#[test]
fn recording_an_attempt_updates_the_item_and_history_purges_only_done_items() {
    use crate::core::classify::{Outcome, Verdict};
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.enqueue(&[item("1", "a"), item("2", "b")], &Origin::Command, at(0)).unwrap();
    let record = |store: &mut Store, order: &str, outcome: Outcome, state: State, when: i64| {
        let claimed = claim_one(store, at(when), when).unwrap();
        assert_eq!(claimed.order, order);
        let verdict = Verdict {
            outcome,
            kind: crate::core::classify::Kind::Http(200),
            http_status: Some(200),
            message: Some("m".into()),
            retry_after: None,
            receipt: None,
            poll_url: None,
        };
        let after = crate::core::policy::ItemAfter {
            state,
            counted: false,
            attempts: 0,
            last_code: verdict.code(),
            next_at: at(when),
            processing_since: None,
            poll_url: None,
            verdict,
            capped_delay: None,
        };
        let attempt = AttemptRecord {
            started_at: at(when),
            finished_at: at(when),
            duration: Duration::from_millis(12),
            excerpt: Some("{}"),
            probe: false,
            after: &after,
        };
        store.record_attempt(claimed.id, when, &attempt).unwrap();
    };
    record(&mut store, "1", Outcome::Success, State::Done, 10);
    record(&mut store, "2", Outcome::Failure(crate::core::codes::Code::Rejected), State::Failed, 20);
    let done = store.get_by_order("1").unwrap().unwrap();
    assert_eq!((done.state, done.last_message.as_deref()), (State::Done, Some("m")));
    assert_eq!(store.attempts(done.id).unwrap()[0].duration_ms, 12);
    assert_eq!(store.get_by_order("2").unwrap().unwrap().last_code, Some(crate::core::codes::Code::Rejected));

    assert_eq!(store.purge_history(at(15), 100).unwrap(), 1);
    assert!(store.attempts(done.id).unwrap().is_empty());
    assert_eq!(store.attempts(2).unwrap().len(), 1, "a failed item keeps its history");
    assert_eq!(store.count(&Filter::default()).unwrap(), 2, "items are never deleted");
    // The hourly counts, counted before the purge, stay after it; counting again adds nothing.
    assert_eq!(figure_counts(&store), walked_counts(&store));
    let hours: Vec<(i64, String, i64)> = store
        .conn
        .prepare("SELECT hour, result, count FROM attempt_hours ORDER BY result")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(hours.is_empty(), "counted by the chores, not by the purge: {hours:?}");
}

/// Items per state as `queue_figures` reads them (not zero only).
fn figure_counts(store: &Store) -> Vec<(String, i64)> {
    let mut counts: Vec<(String, i64)> = store
        .queue_figures()
        .unwrap()
        .counts
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(state, count)| (state.as_str().to_owned(), count as i64))
        .collect();
    counts.sort();
    counts
}

/// Items per state, counted the long way.
fn walked_counts(store: &Store) -> Vec<(String, i64)> {
    let mut statement =
        store.conn.prepare("SELECT state, COUNT(*) FROM items GROUP BY state ORDER BY state").unwrap();
    statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

/// `attempt_hours`, summed per result.
fn hour_totals(store: &Store) -> Vec<(String, i64)> {
    let mut statement = store
        .conn
        .prepare("SELECT result, SUM(count) FROM attempt_hours GROUP BY result ORDER BY result")
        .unwrap();
    statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn queue_figures_and_hourly_counts_match_the_rows_and_migration_5_fills_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fila.db");
    {
        // A queue at schema 4, with items in three states and attempts in two hours.
        let conn = rusqlite::Connection::open(&path).unwrap();
        for migration in &schema::MIGRATIONS[..4] {
            conn.execute_batch(migration).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute_batch(
            "INSERT INTO items (id, order_number, branch, reason, cancelled_at, idempotency_key, source, \
             state, next_at, created_at, updated_at) VALUES \
             (1, '1', '1', 'a', 'x', 'k1', 'enqueue', 'pending', 0, 7000, 0), \
             (2, '2', '1', 'b', 'x', 'k2', 'enqueue', 'done', 0, 0, 0), \
             (3, '3', '1', 'c', 'x', 'k3', 'enqueue', 'failed', 0, 0, 0); \
             INSERT INTO attempts (item_id, number, started_at, duration_ms, outcome, code, kind) VALUES \
             (2, 1, 0, 5, 'success', NULL, 'http'), (3, 1, 3600000, 5, 'failure', '07', 'http'), \
             (3, 2, 3600001, 5, 'failure', '07', 'http');",
        )
        .unwrap();
    }
    let mut store = Store::open(&path, Access::ReadWrite(Durability::Full), BUSY).unwrap();
    assert_eq!(figure_counts(&store), walked_counts(&store));
    assert_eq!(store.queue_figures().unwrap().oldest_pending.map(|at| at.as_millisecond()), Some(7000));
    assert_eq!(hour_totals(&store), vec![("07".to_owned(), 2), ("success".to_owned(), 1)]);
    assert_eq!(store.count_attempt_hours().unwrap(), 0, "the migration counted them already");

    store.enqueue(&[item("4", "d"), item("5", "e")], &Origin::Command, at(0)).unwrap();
    let claimed = store.claim(at(10), Duration::from_secs(60), 2, 1).unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(figure_counts(&store), walked_counts(&store));
    store.release_all(at(20)).unwrap();
    let failed = store.list(&Filter { states: vec![State::Failed], ..Filter::default() }).unwrap();
    store.requeue(&failed, at(30)).unwrap();
    assert_eq!(figure_counts(&store), vec![("done".to_owned(), 1), ("pending".to_owned(), 4)]);
    assert_eq!(figure_counts(&store), walked_counts(&store));
    // New attempts are counted once by the chores, however often they run.
    store
        .conn
        .execute_batch(
            "INSERT INTO attempts (item_id, number, started_at, duration_ms, outcome, code, kind) VALUES \
             (1, 1, 7200000, 5, 'failure', '04', 'timeout'), (1, 2, 7200001, 5, 'processing', NULL, 'http');",
        )
        .unwrap();
    assert!(store.count_attempt_hours().unwrap() > 0);
    assert_eq!(store.count_attempt_hours().unwrap(), 0);
    assert_eq!(
        hour_totals(&store),
        vec![
            ("04".to_owned(), 1),
            ("07".to_owned(), 2),
            ("processing".to_owned(), 1),
            ("success".to_owned(), 1)
        ]
    );
    // The partial index answers the oldest pending item (`INDEXED BY` fails if it cannot).
    let plan: String = store
        .conn
        .query_row(&format!("EXPLAIN QUERY PLAN {}", status::OLDEST_PENDING), [], |row| row.get(3))
        .unwrap();
    assert!(plan.contains("items_pending_since"), "{plan}");
}

#[test]
fn a_new_database_is_readable_by_its_group_and_writable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    let mode = std::fs::metadata(dir.path().join("fila.db")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "{mode:o}");
}

#[test]
fn a_database_reached_through_a_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    let link = dir.path().join("atalho.db");
    std::os::unix::fs::symlink(dir.path().join("fila.db"), &link).unwrap();
    for access in [Access::ReadOnly, Access::ReadWrite(Durability::Full)] {
        let error = Store::open(&link, access, BUSY).err().expect("refused");
        assert!(matches!(error, StoreError::Symlink(_)), "{error}");
        assert!(error.to_string().contains("é um link simbólico"), "{error}");
    }
}

#[test]
fn a_database_deleted_or_replaced_under_the_store_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(store.replaced(), None);
    let path = dir.path().join("fila.db");
    std::fs::rename(&path, dir.path().join("antigo.db")).unwrap();
    assert!(store.replaced().unwrap().contains("foi apagado"));
    std::fs::write(&path, "outro arquivo").unwrap();
    assert!(store.replaced().unwrap().contains("foi substituído"));
}

#[test]
fn a_group_commits_its_units_together_and_a_failed_unit_rolls_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.enqueue(&[item("1", "a")], &Origin::Command, at(0)).unwrap();
    store.begin_group().unwrap();
    store.enqueue(&[item("2", "b")], &Origin::Command, at(1)).unwrap();
    assert!(store.enqueue(&[item("3", "c"), item("1", "outro")], &Origin::Command, at(1)).is_err());
    assert_eq!(store.claim(at(5), Duration::from_secs(60), 10, 1).unwrap().len(), 2);
    store.end_group().unwrap();
    let orders: Vec<String> =
        store.list(&Filter::default()).unwrap().into_iter().map(|row| row.order).collect();
    assert_eq!(orders.len(), 2, "order 3 was in the failed unit: {orders:?}");
    assert_eq!(store.list(&Filter { states: vec![State::InFlight], ..Filter::default() }).unwrap().len(), 2);
}

#[test]
fn the_intake_commits_full_even_on_a_normal_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut store =
        Store::open(&dir.path().join("fila.db"), Access::ReadWrite(Durability::Normal), BUSY).unwrap();
    let synchronous = |store: &Store| -> i64 {
        store.conn.pragma_query_value(None, "synchronous", |row| row.get(0)).unwrap()
    };
    assert_eq!(synchronous(&store), 1, "NORMAL");
    let inside = store.durably("testar", |store| Ok(synchronous(store))).unwrap();
    assert_eq!((inside, synchronous(&store)), (2, 1), "FULL inside, NORMAL again after");
    store.enqueue(&[item("1", "a")], &Origin::Command, at(0)).unwrap();
    assert_eq!(synchronous(&store), 1);
    // Inside a group SQLite cannot switch to FULL: the intake refuses instead of committing with
    // less than it promises (the daemon imports the spool alone, never in a group).
    store.begin_group().unwrap();
    let refused = store.enqueue(&[item("2", "b")], &Origin::Command, at(1)).unwrap_err().to_string();
    store.end_group().unwrap();
    assert!(refused.contains("gravar os cancelamentos"), "{refused}");
    assert_eq!(store.list(&Filter::default()).unwrap().len(), 1);
}

#[test]
fn migration_2_counts_the_requests_already_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fila.db");
    {
        // A queue written by the first release (schema 1), with two attempts for item 1.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO items (id, order_number, branch, reason, cancelled_at, idempotency_key, source, \
             state, next_at, created_at, updated_at) VALUES \
             (1, '1', '1', 'a', 'x', 'k1', 'enqueue', 'pending', 0, 0, 0), \
             (2, '2', '1', 'b', 'x', 'k2', 'enqueue', 'pending', 0, 0, 0); \
             INSERT INTO attempts (item_id, number, started_at, duration_ms, outcome, kind) VALUES \
             (1, 1, 0, 5, 'failure', 'timeout'), (1, 2, 0, 5, 'failure', 'timeout');",
        )
        .unwrap();
    }
    let store = Store::open(&path, Access::ReadWrite(Durability::Full), BUSY).unwrap();
    let sent: Vec<(String, i64)> =
        store.list(&Filter::default()).unwrap().into_iter().map(|row| (row.order, row.sent)).collect();
    assert!(sent.contains(&("1".to_owned(), 2)) && sent.contains(&("2".to_owned(), 0)), "{sent:?}");
}

#[test]
fn the_last_attempts_are_the_newest_in_order_with_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let id = store.enqueue(&[item("1", "a")], &Origin::Command, at(0)).unwrap()[0].id;
    for number in 1..=5 {
        store
            .conn
            .execute(
                "INSERT INTO attempts (item_id, number, started_at, duration_ms, outcome, code, kind) \
                 VALUES (?1, ?2, 0, 5, 'failure', '04', 'timeout')",
                [id, number],
            )
            .unwrap();
    }
    let (last, total) = store.last_attempts(id, 2).unwrap();
    assert_eq!(last.iter().map(|attempt| attempt.number).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(total, 5);
    assert_eq!(store.attempts(id).unwrap().len(), 5);
}
