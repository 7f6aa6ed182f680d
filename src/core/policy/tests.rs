//! The schedule, the item transitions and the circuit breaker, without a clock or a network.

use super::*;
use crate::core::classify::Verdict;

fn settings() -> Settings {
    Settings {
        max_attempts: 3,
        first_delay: Duration::from_secs(30),
        max_delay: Duration::from_secs(3_600),
        async_poll_interval: Duration::from_secs(10),
        async_max_wait: Duration::from_secs(60),
    }
}

fn t(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

/// A failure with the code written as support does.
fn failure(code: &str) -> Verdict {
    Verdict {
        outcome: Outcome::Failure(
            crate::core::codes::find(code).map(|info| info.code).unwrap_or(Code::Generic),
        ),
        kind: Kind::Transport,
        http_status: None,
        message: None,
        retry_after: None,
        receipt: None,
        poll_url: None,
    }
}

fn success() -> Verdict {
    Verdict { outcome: Outcome::Success, ..failure("99") }
}

fn processing() -> Verdict {
    Verdict { outcome: Outcome::Processing, ..failure("99") }
}

fn fresh() -> ItemBefore<'static> {
    ItemBefore { id: 7, attempts: 0, processing_since: None, poll_url: None }
}

#[test]
fn the_schedule_grows_with_jitter_within_bounds() {
    let settings = settings();
    for failures in 1..=20 {
        for seed in 0..50 {
            let delay = retry_delay(failures, seed, &settings);
            assert!(
                delay >= settings.first_delay && delay <= settings.max_delay,
                "{failures}/{seed}: {delay:?}"
            );
            let base =
                settings.first_delay.saturating_mul(1 << (failures - 1).min(30)).min(settings.max_delay);
            assert!(
                delay >= base.mul_f64(0.8).max(settings.first_delay),
                "{failures}: {delay:?} < 0.8·{base:?}"
            );
            assert!(
                delay <= base.mul_f64(1.2).min(settings.max_delay),
                "{failures}: {delay:?} > 1.2·{base:?}"
            );
        }
    }
    assert_eq!(retry_delay(4, 9, &settings), retry_delay(4, 9, &settings), "pure");
    let spread: std::collections::HashSet<_> = (0..20).map(|seed| retry_delay(3, seed, &settings)).collect();
    assert!(spread.len() > 10, "jitter should spread retries: {spread:?}");
}

#[test]
fn each_code_does_what_the_table_says_to_the_item() {
    let settings = settings();
    let after = |code| after_attempt(fresh(), &failure(code), true, t(0), &settings);
    for code in ["01", "05", "06", "02", "03"] {
        let result = after(code);
        assert_eq!((result.state, result.counted, result.next_at), (State::Pending, false, t(0)), "{code}");
    }
    let rejected = after("07");
    assert_eq!((rejected.state, rejected.counted, rejected.attempts), (State::Failed, true, 1));
    let limited = after_attempt(
        fresh(),
        &Verdict { retry_after: Some(Duration::from_secs(120)), ..failure("08") },
        true,
        t(0),
        &settings,
    );
    assert_eq!((limited.state, limited.counted, limited.next_at), (State::Pending, false, t(120)));
    for code in ["04", "99"] {
        let result = after(code);
        assert_eq!((result.state, result.counted, result.attempts), (State::Pending, true, 1), "{code}");
        assert!(result.next_at >= t(30) && result.next_at <= t(36), "{code}: {:?}", result.next_at);
    }
    let done = after_attempt(fresh(), &success(), true, t(0), &settings);
    assert_eq!((done.state, done.last_code), (State::Done, None));
}

#[test]
fn max_attempts_item_failures_make_it_failed_but_uncounted_ones_never_do() {
    let settings = settings();
    let mut item = fresh();
    for _ in 0..2 {
        let result = after_attempt(item, &failure("04"), true, t(0), &settings);
        assert_eq!(result.state, State::Pending);
        item.attempts = result.attempts;
    }
    let last = after_attempt(item, &failure("04"), true, t(0), &settings);
    assert_eq!((last.state, last.attempts), (State::Failed, 3));
    let probe = after_attempt(item, &failure("04"), false, t(0), &settings);
    assert_eq!((probe.state, probe.counted, probe.attempts, probe.next_at), (State::Pending, false, 2, t(0)));
}

#[test]
fn async_answers_poll_until_async_max_wait_then_count_as_04() {
    let settings = settings();
    let first = after_attempt(fresh(), &processing(), true, t(0), &settings);
    assert_eq!((first.state, first.counted, first.next_at), (State::Processing, false, t(10)));
    assert_eq!(first.processing_since, Some(t(0)));
    let item = ItemBefore { processing_since: first.processing_since, ..fresh() };
    let later = after_attempt(item, &processing(), true, t(50), &settings);
    assert_eq!((later.state, later.processing_since), (State::Processing, Some(t(0))));
    let too_late = after_attempt(item, &processing(), true, t(60), &settings);
    assert_eq!(
        (too_late.state, too_late.last_code, too_late.counted),
        (State::Pending, Some(Code::Timeout), true)
    );
    assert_eq!(too_late.verdict.kind, Kind::AsyncTimeout);
    assert_eq!(too_late.processing_since, None);
    let done = after_attempt(item, &success(), true, t(20), &settings);
    assert_eq!(done.state, State::Done);
}

/// The circuit's judgement of item `item`'s answer (its request started at `at` too); the item
/// has no failure before this one.
fn judge(circuit: &mut Circuit, item: i64, verdict: &Verdict, probe: bool, at: i64) -> Judged {
    let heard = Heard { item, started_at: t(at), probe, known_to_fail: false };
    circuit.judge(heard, verdict, t(at), &settings())
}

/// `judge` for an item whose previous attempt failed with 04/99.
fn judge_again(circuit: &mut Circuit, item: i64, verdict: &Verdict, at: i64) -> Judged {
    let heard = Heard { item, started_at: t(at), probe: false, known_to_fail: true };
    circuit.judge(heard, verdict, t(at), &settings())
}

#[test]
fn async_checks_that_keep_failing_end_with_a_counted_04_at_async_max_wait() {
    let settings = settings();
    let item = ItemBefore { processing_since: Some(t(0)), ..fresh() };
    let failing = after_attempt(item, &failure("99"), false, t(30), &settings);
    assert_eq!(
        (failing.state, failing.counted, failing.processing_since),
        (State::Processing, false, Some(t(0)))
    );
    for (code, counts) in [("99", false), ("04", false), ("99", true), ("04", true)] {
        let late = after_attempt(item, &failure(code), counts, t(60), &settings);
        assert_eq!(
            (late.state, late.last_code, late.counted, late.verdict.kind),
            (State::Pending, Some(Code::Timeout), true, Kind::AsyncTimeout),
            "{code}, counted by the circuit: {counts}"
        );
        let message = late.verdict.message.unwrap_or_default();
        assert!(message.contains("api.async_max_wait") && message.contains(code), "{message}");
    }
    // A final answer past the wait is still the answer; an outage is still not the item's.
    assert_eq!(after_attempt(item, &failure("07"), true, t(90), &settings).last_code, Some(Code::Rejected));
    let outage = after_attempt(item, &failure("01"), false, t(90), &settings);
    assert_eq!(
        (outage.state, outage.counted, outage.last_code),
        (State::Processing, false, Some(Code::ConnectionRefused))
    );
}

#[test]
fn a_server_delay_is_capped_at_max_delay_and_says_so() {
    let settings = settings();
    let huge = Verdict { retry_after: Some(Duration::from_secs(99_999_999_999)), ..failure("08") };
    let after = after_attempt(fresh(), &huge, true, t(0), &settings);
    assert_eq!(after.next_at, t(3_600), "retry.max_delay");
    assert_eq!(after.capped_delay, Some(Duration::from_secs(99_999_999_999)));
    let mut circuit = Circuit::default();
    judge(&mut circuit, 1, &huge, false, 0);
    assert_eq!(circuit.permit(t(3_599)), Permit::WaitUntil(t(3_600)));
    assert_eq!(circuit.permit(t(3_600)), Permit::Send, "sending resumes after the cap");
    let fair = Verdict { retry_after: Some(Duration::from_secs(90)), ..failure("08") };
    assert_eq!(server_delay(&fair, &settings), (Duration::from_secs(90), None));
}

#[test]
fn endpoint_failures_open_the_circuit_and_probes_back_off() {
    let settings = settings();
    let mut circuit = Circuit::default();
    assert_eq!(circuit.permit(t(0)), Permit::Send);
    judge(&mut circuit, 1, &failure("01"), false, 0);
    assert_eq!(circuit.permit(t(0)), Permit::WaitUntil(t(30)));
    // A late answer of a request sent before it opened does not push the probe back.
    judge(&mut circuit, 2, &failure("01"), false, 5);
    assert_eq!(circuit.permit(t(29)), Permit::WaitUntil(t(30)));
    assert_eq!(circuit.permit(t(30)), Permit::Probe);
    circuit.probe_sent(1);
    assert!(matches!(circuit.permit(t(31)), Permit::WaitUntil(_)), "one probe at a time");
    judge(&mut circuit, 1, &failure("01"), true, 31);
    assert_eq!(circuit.permit(t(31)), Permit::WaitUntil(t(91)), "delay doubles after a failed probe");
    assert_eq!(circuit.probed(), [1], "the next probe goes to another item");
    circuit.probe_sent(2);
    judge(&mut circuit, 2, &failure("01"), true, 91);
    assert_eq!(circuit.permit(t(91)), Permit::WaitUntil(t(91 + 120)));
    for probe in 3..20 {
        circuit.probe_sent(probe);
        judge(&mut circuit, probe, &failure("01"), true, 10_000 * probe);
    }
    assert_eq!(
        circuit.permit(t(10_000 * 19)),
        Permit::WaitUntil(t(10_000 * 19 + 3_600)),
        "the delay stops growing at retry.max_delay"
    );
    circuit.probe_sent(20);
    judge(&mut circuit, 20, &success(), true, 200_000);
    assert_eq!(circuit.gate, Gate::Closed);
    assert!(circuit.probed().is_empty());
    let _ = settings;
}

#[test]
fn soft_failures_open_it_only_when_the_api_fails_for_most_distinct_items() {
    // One item failing again and again is the item's business: it never opens the circuit.
    let mut circuit = Circuit::default();
    for at in 0..10 {
        let judged = judge(&mut circuit, 7, &failure("04"), false, at);
        assert!(judged.counts, "the item's own failure counts");
    }
    assert_eq!(circuit.gate, Gate::Closed);

    // Nor does a run of retries of orders that failed before, with nothing else going on.
    let mut circuit = Circuit::default();
    judge(&mut circuit, 1, &success(), false, 0);
    for item in 10..60 {
        assert!(judge_again(&mut circuit, item, &failure("99"), item).counts);
    }
    assert_eq!(circuit.gate, Gate::Closed, "known to fail: no news of the API");

    // Three distinct items failing with nothing else answering: the API is down.
    let mut circuit = Circuit::default();
    assert!(judge(&mut circuit, 1, &failure("04"), false, 0).counts);
    assert!(judge(&mut circuit, 2, &failure("99"), false, 0).counts);
    let judged = judge(&mut circuit, 3, &failure("04"), false, 0);
    assert!(matches!(circuit.gate, Gate::Open { code: Code::Timeout, .. }), "{:?}", circuit.gate);
    assert!(!judged.counts, "the answer that shows the outage does not count");
    assert_eq!(judged.forgive, [(1, t(0)), (2, t(0))], "nor do those before it");
    let late = judge(&mut circuit, 4, &failure("04"), false, 1);
    assert!(!late.counts && late.forgive.is_empty(), "a late answer is part of the outage");

    // A few flaky orders retried among many that go through: closed.
    let mut circuit = Circuit::default();
    for item in 0..100 {
        let verdict = if item % 10 == 0 { failure("99") } else { success() };
        assert!(judge(&mut circuit, item, &verdict, false, item).counts);
        let flaky = item - item % 10;
        assert!(judge_again(&mut circuit, flaky, &failure("99"), item).counts, "a retry of a flaky order");
    }
    assert_eq!(circuit.gate, Gate::Closed);

    // Most of the recent items failing opens it, whatever succeeded long ago.
    for item in 100..120 {
        judge(&mut circuit, item, &failure("04"), false, item);
    }
    assert!(matches!(circuit.gate, Gate::Open { .. }));
}

#[test]
fn a_probe_goes_to_another_item_and_counts_only_when_nothing_else_is_due() {
    let mut circuit = Circuit::default();
    for item in 1..=3 {
        judge(&mut circuit, item, &failure("04"), false, 0);
    }
    assert_eq!(circuit.permit(t(30)), Permit::Probe);
    // Several items due: the probes rotate, and none counts (a long outage fails no item).
    for (round, item) in [1, 2, 3, 1, 2, 3].into_iter().enumerate() {
        circuit.probe_sent(item);
        let judged = judge(&mut circuit, item, &failure("04"), true, 1_000 * (round as i64 + 1));
        assert!(!judged.counts, "probe {round} of item {item}");
    }
    // Only one item is due, so it is probed twice in a row: the second time it counts.
    circuit.probe_sent(3);
    assert!(judge(&mut circuit, 3, &failure("04"), true, 9_000).counts);
    circuit.probe_sent(3);
    assert!(
        !judge(&mut circuit, 3, &failure("99"), true, 10_000).counts,
        "another code: not the same failure"
    );
    circuit.probe_sent(3);
    assert!(judge(&mut circuit, 3, &failure("99"), true, 11_000).counts);
}

#[test]
fn credentials_pause_until_reload_and_rate_limits_until_retry_after() {
    let settings = settings();
    let mut circuit = Circuit::default();
    judge(&mut circuit, 1, &failure("02"), false, 0);
    assert_eq!(circuit.permit(t(299)), Permit::WaitUntil(t(300)));
    assert_eq!(circuit.permit(t(300)), Permit::Probe);
    assert!(matches!(circuit.gate, Gate::Paused { code: Code::InvalidPassword, .. }), "{:?}", circuit.gate);
    circuit.on_reload();
    assert_eq!(circuit.permit(t(1)), Permit::Send);

    let limited = Verdict { retry_after: Some(Duration::from_secs(90)), ..failure("08") };
    judge(&mut circuit, 1, &limited, false, 0);
    assert_eq!(circuit.permit(t(89)), Permit::WaitUntil(t(90)));
    judge(&mut circuit, 2, &success(), false, 1);
    assert_eq!(
        circuit.permit(t(89)),
        Permit::WaitUntil(t(90)),
        "an earlier request's success does not lift it"
    );
    assert_eq!(circuit.permit(t(90)), Permit::Send);
    circuit.on_reload();
    assert_eq!(
        circuit.permit(t(10)),
        Permit::WaitUntil(t(90)),
        "a reload does not override the API's Retry-After"
    );
    let _ = settings;
}

#[test]
fn tls_failures_probe_more_slowly() {
    let mut circuit = Circuit::default();
    judge(&mut circuit, 1, &failure("06"), false, 0);
    assert_eq!(circuit.permit(t(0)), Permit::WaitUntil(t(120)));
}

#[test]
fn a_failed_probe_only_moves_the_time_not_the_situation() {
    let open = Gate::Open { code: Code::Timeout, next_probe_at: t(30) };
    assert!(open.same_situation(&Gate::Open { code: Code::Timeout, next_probe_at: t(90) }));
    assert!(!open.same_situation(&Gate::Open { code: Code::ConnectionRefused, next_probe_at: t(30) }));
    assert!(!open.same_situation(&Gate::Closed));
}
