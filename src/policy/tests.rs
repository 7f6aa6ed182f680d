//! The schedule, the item transitions and the circuit breaker, without a clock or a network.

use super::*;
use crate::classify::Verdict;

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
        outcome: Outcome::Failure(crate::codes::find(code).map(|info| info.code).unwrap_or(Code::Generic)),
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
    let after = |code| after_attempt(fresh(), &failure(code), false, t(0), &settings);
    for code in ["01", "05", "06", "02", "03"] {
        let result = after(code);
        assert_eq!((result.state, result.counted, result.next_at), (State::Pending, false, t(0)), "{code}");
    }
    let rejected = after("07");
    assert_eq!((rejected.state, rejected.counted, rejected.attempts), (State::Failed, true, 1));
    let limited = after_attempt(
        fresh(),
        &Verdict { retry_after: Some(Duration::from_secs(120)), ..failure("08") },
        false,
        t(0),
        &settings,
    );
    assert_eq!((limited.state, limited.counted, limited.next_at), (State::Pending, false, t(120)));
    for code in ["04", "99"] {
        let result = after(code);
        assert_eq!((result.state, result.counted, result.attempts), (State::Pending, true, 1), "{code}");
        assert!(result.next_at >= t(30) && result.next_at <= t(36), "{code}: {:?}", result.next_at);
    }
    let done = after_attempt(fresh(), &success(), false, t(0), &settings);
    assert_eq!((done.state, done.last_code), (State::Done, None));
}

#[test]
fn max_attempts_item_failures_make_it_failed_but_probes_never_count() {
    let settings = settings();
    let mut item = fresh();
    for _ in 0..2 {
        let result = after_attempt(item, &failure("04"), false, t(0), &settings);
        assert_eq!(result.state, State::Pending);
        item.attempts = result.attempts;
    }
    let last = after_attempt(item, &failure("04"), false, t(0), &settings);
    assert_eq!((last.state, last.attempts), (State::Failed, 3));
    let probe = after_attempt(item, &failure("04"), true, t(0), &settings);
    assert_eq!((probe.state, probe.counted, probe.attempts), (State::Pending, false, 2));
}

#[test]
fn async_answers_poll_until_async_max_wait_then_count_as_04() {
    let settings = settings();
    let first = after_attempt(fresh(), &processing(), false, t(0), &settings);
    assert_eq!((first.state, first.counted, first.next_at), (State::Processing, false, t(10)));
    assert_eq!(first.processing_since, Some(t(0)));
    let item = ItemBefore { processing_since: first.processing_since, ..fresh() };
    let later = after_attempt(item, &processing(), false, t(50), &settings);
    assert_eq!((later.state, later.processing_since), (State::Processing, Some(t(0))));
    let too_late = after_attempt(item, &processing(), false, t(60), &settings);
    assert_eq!(
        (too_late.state, too_late.last_code, too_late.counted),
        (State::Pending, Some(Code::Timeout), true)
    );
    assert_eq!(too_late.verdict.kind, "async_timeout");
    assert_eq!(too_late.processing_since, None);
    let done = after_attempt(item, &success(), false, t(20), &settings);
    assert_eq!(done.state, State::Done);
}

#[test]
fn endpoint_failures_open_the_circuit_and_probes_back_off() {
    let settings = settings();
    let mut circuit = Circuit::default();
    assert_eq!(circuit.permit(t(0)), Permit::Send);
    circuit.on_result(&failure("01"), false, t(0), &settings);
    assert_eq!(circuit.permit(t(0)), Permit::WaitUntil(t(30)));
    // A late answer of a request sent before it opened does not push the probe back.
    circuit.on_result(&failure("01"), false, t(5), &settings);
    assert_eq!(circuit.permit(t(29)), Permit::WaitUntil(t(30)));
    assert_eq!(circuit.permit(t(30)), Permit::Probe);
    circuit.probe_sent();
    assert!(matches!(circuit.permit(t(31)), Permit::WaitUntil(_)), "one probe at a time");
    circuit.on_result(&failure("01"), true, t(31), &settings);
    assert_eq!(circuit.permit(t(31)), Permit::WaitUntil(t(91)), "delay doubles after a failed probe");
    circuit.probe_sent();
    circuit.on_result(&success(), true, t(91), &settings);
    assert_eq!(circuit, Circuit::default());
}

#[test]
fn three_soft_failures_in_a_row_open_it_and_any_answer_resets_the_count() {
    let settings = settings();
    let mut circuit = Circuit::default();
    circuit.on_result(&failure("04"), false, t(0), &settings);
    circuit.on_result(&failure("99"), false, t(0), &settings);
    circuit.on_result(&failure("07"), false, t(0), &settings);
    circuit.on_result(&failure("04"), false, t(0), &settings);
    circuit.on_result(&failure("04"), false, t(0), &settings);
    assert_eq!(circuit.permit(t(0)), Permit::Send, "the 07 reset the count");
    circuit.on_result(&failure("99"), false, t(0), &settings);
    assert!(matches!(circuit.gate, Gate::Open { code: Code::Generic, .. }));
}

#[test]
fn credentials_pause_until_reload_and_rate_limits_until_retry_after() {
    let settings = settings();
    let mut circuit = Circuit::default();
    circuit.on_result(&failure("02"), false, t(0), &settings);
    assert_eq!(circuit.permit(t(299)), Permit::WaitUntil(t(300)));
    assert_eq!(circuit.permit(t(300)), Permit::Probe);
    assert!(matches!(circuit.gate, Gate::Paused { code: Code::InvalidPassword, .. }), "{:?}", circuit.gate);
    circuit.on_reload();
    assert_eq!(circuit.permit(t(1)), Permit::Send);

    let limited = Verdict { retry_after: Some(Duration::from_secs(90)), ..failure("08") };
    circuit.on_result(&limited, false, t(0), &settings);
    assert_eq!(circuit.permit(t(89)), Permit::WaitUntil(t(90)));
    assert_eq!(circuit.permit(t(90)), Permit::Send);
    circuit.on_reload();
    assert_eq!(
        circuit.permit(t(10)),
        Permit::WaitUntil(t(90)),
        "a reload does not override the API's Retry-After"
    );
}

#[test]
fn tls_failures_probe_more_slowly() {
    let settings = settings();
    let mut circuit = Circuit::default();
    circuit.on_result(&failure("06"), false, t(0), &settings);
    assert_eq!(circuit.permit(t(0)), Permit::WaitUntil(t(120)));
}
