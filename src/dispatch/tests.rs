//! The dispatcher driven through outages, probes, pauses, reloads, rate limits and failed
//! records, with no clock, network or SQLite: time is a number of seconds passed in.

use std::time::Duration;

use super::*;
use crate::classify::Kind;

fn t(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn limits(concurrency: usize) -> Limits {
    Limits {
        settings: Settings {
            max_attempts: 10,
            first_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(300),
            async_poll_interval: Duration::from_secs(30),
            async_max_wait: Duration::from_secs(3_600),
        },
        concurrency,
        max_rate: None,
    }
}

fn verdict(outcome: Outcome, kind: Kind) -> Verdict {
    Verdict {
        outcome,
        kind,
        http_status: None,
        message: None,
        retry_after: None,
        receipt: None,
        poll_url: None,
    }
}

fn ok() -> Verdict {
    verdict(Outcome::Success, Kind::Http(200))
}

fn refused() -> Verdict {
    verdict(Outcome::Failure(Code::ConnectionRefused), Kind::ConnectRefused)
}

/// An answer for item `item`, recorded or not, with a lease of a minute and a half from `at`.
fn answer(item: i64, probe: bool, verdict: Verdict, recorded: bool, at: i64) -> Event {
    Event::Answered(Answer { item, probe, verdict, recorded, lease_until: t(at + 90) })
}

fn claims(actions: &[Action]) -> Vec<Claim> {
    actions
        .iter()
        .filter_map(|action| if let Action::Claim(claim) = action { Some(*claim) } else { None })
        .collect()
}

/// Claims `got` of what the dispatcher asks for, as the store would.
fn claim_all(dispatcher: &mut Dispatcher, actions: Vec<Action>, got: usize, at: i64) -> Vec<Action> {
    let claim = claims(&actions).pop().expect("a claim");
    dispatcher.handle(Event::Claimed { claim, got: got.min(claim.room) }, t(at))
}

#[test]
fn it_fills_the_concurrency_and_looks_again_only_when_something_changes() {
    let mut dispatcher = Dispatcher::new(limits(4));
    let actions = dispatcher.handle(Event::Turn, t(0));
    assert_eq!(claims(&actions), [Claim { room: 4, probe: false }]);
    // A second turn while the claim is out asks for nothing more.
    assert!(claims(&dispatcher.handle(Event::Turn, t(0))).is_empty());
    let actions = claim_all(&mut dispatcher, actions, 3, 0);
    assert!(actions.is_empty(), "fewer than asked: nothing more is due until the next turn");
    assert_eq!(dispatcher.sending(), 3);
    assert_eq!(claims(&dispatcher.handle(Event::Turn, t(0))), [Claim { room: 1, probe: false }]);
    dispatcher.handle(Event::ClaimFailed, t(0));
    let actions = dispatcher.handle(answer(1, false, ok(), true, 0), t(1));
    assert_eq!(claims(&actions), [Claim { room: 2, probe: false }]);
    assert_eq!(dispatcher.status().last_success, Some(t(1)));
}

#[test]
fn an_outage_sends_one_probe_at_a_time_and_a_good_probe_resumes() {
    let mut dispatcher = Dispatcher::new(limits(4));
    let actions = dispatcher.handle(Event::Turn, t(0));
    claim_all(&mut dispatcher, actions, 2, 0);
    let actions = dispatcher.handle(answer(1, false, refused(), true, 0), t(1));
    assert!(matches!(
        actions[0],
        Action::GateChanged { to: Gate::Open { code: Code::ConnectionRefused, .. }, .. }
    ));
    assert!(claims(&actions).is_empty(), "the circuit is open");
    assert!(dispatcher.handle(answer(2, false, refused(), true, 0), t(1)).is_empty());
    let probe_at = dispatcher.wake_at(t(1)).expect("a probe is scheduled");
    assert_eq!(probe_at, t(31), "first_delay after opening");
    assert!(claims(&dispatcher.handle(Event::Turn, t(30))).is_empty(), "not before its time");
    let actions = dispatcher.handle(Event::Turn, t(31));
    assert_eq!(claims(&actions), [Claim { room: 1, probe: true }]);
    claim_all(&mut dispatcher, actions, 1, 31);
    assert!(claims(&dispatcher.handle(Event::Turn, t(200))).is_empty(), "one probe at a time");
    // A failed probe: the next one waits longer.
    dispatcher.handle(answer(3, true, refused(), true, 31), t(32));
    assert_eq!(dispatcher.wake_at(t(32)), Some(t(92)));
    let actions = dispatcher.handle(Event::Turn, t(92));
    claim_all(&mut dispatcher, actions, 1, 92);
    let actions = dispatcher.handle(answer(3, true, ok(), true, 92), t(93));
    assert!(matches!(actions[0], Action::GateChanged { to: Gate::Closed, .. }), "{actions:?}");
    assert_eq!(claims(&actions), [Claim { room: 4, probe: false }]);
}

#[test]
fn a_probe_whose_record_fails_does_not_stop_sending_and_the_record_is_written_again() {
    let mut dispatcher = Dispatcher::new(limits(2));
    let actions = dispatcher.handle(Event::Turn, t(0));
    claim_all(&mut dispatcher, actions, 1, 0);
    dispatcher.handle(answer(1, false, refused(), true, 0), t(0));
    let actions = dispatcher.handle(Event::Turn, t(30));
    claim_all(&mut dispatcher, actions, 1, 30);
    // The disk is full: the probe's answer came, its record did not land.
    let actions = dispatcher.handle(answer(2, true, refused(), false, 30), t(31));
    assert!(claims(&actions).is_empty());
    assert_eq!(dispatcher.status().unrecorded, 1);
    // The next probe is scheduled (it used to wait for ever).
    let next_probe = t(91);
    assert_eq!(dispatcher.wake_at(t(31)), Some(t(32)), "first the record's next try");
    let actions = dispatcher.handle(Event::Turn, t(32));
    assert_eq!(actions, [Action::Record { item: 2 }]);
    let actions = dispatcher.handle(Event::Rerecorded { item: 2, written: false }, t(33));
    assert!(actions.is_empty());
    assert_eq!(dispatcher.wake_at(t(33)), Some(t(35)), "backing off");
    let actions = dispatcher.handle(Event::Turn, t(91));
    assert!(actions.contains(&Action::Record { item: 2 }));
    let probe = claims(&actions);
    assert_eq!(probe, [Claim { room: 1, probe: true }], "the next probe goes as planned: {next_probe}");
    dispatcher.handle(Event::Claimed { claim: probe[0], got: 1 }, t(91));
    dispatcher.handle(Event::Rerecorded { item: 2, written: true }, t(91));
    let actions = dispatcher.handle(answer(3, true, ok(), true, 91), t(92));
    assert_eq!(claims(&actions), [Claim { room: 2, probe: false }], "sending resumed");
    assert_eq!(dispatcher.status().unrecorded, 0);
}

#[test]
fn a_record_that_cannot_be_written_before_its_lease_ends_is_abandoned_to_the_lease_expiry() {
    let mut dispatcher = Dispatcher::new(limits(1));
    let actions = dispatcher.handle(Event::Turn, t(0));
    claim_all(&mut dispatcher, actions, 1, 0);
    dispatcher.handle(answer(7, false, ok(), false, 0), t(1));
    let mut now = 1;
    while now < 200 {
        now += 1;
        for action in dispatcher.handle(Event::Turn, t(now)) {
            match action {
                Action::Record { item } => {
                    dispatcher.handle(Event::Rerecorded { item, written: false }, t(now));
                }
                Action::Abandon { item } => {
                    assert_eq!(item, 7);
                    assert!(now >= 85, "not before its lease is nearly over: {now}");
                    assert!(now < 90, "before the lease ends: {now}");
                    assert_eq!(dispatcher.status().unrecorded, 0);
                    return;
                }
                _ => {}
            }
        }
    }
    panic!("never abandoned");
}

#[test]
fn credentials_pause_until_a_reload_and_a_lost_probe_frees_the_next_one() {
    let mut dispatcher = Dispatcher::new(limits(2));
    let actions = dispatcher.handle(Event::Turn, t(0));
    claim_all(&mut dispatcher, actions, 1, 0);
    let password = verdict(Outcome::Failure(Code::InvalidPassword), Kind::Http(401));
    let actions = dispatcher.handle(answer(1, false, password, true, 0), t(1));
    assert!(matches!(actions[0], Action::GateChanged { to: Gate::Paused { .. }, .. }));
    assert_eq!(dispatcher.wake_at(t(1)), Some(t(301)), "a probe every 5 minutes");
    let actions = dispatcher.handle(Event::Turn, t(301));
    claim_all(&mut dispatcher, actions, 1, 301);
    // The probe's task was lost (cancelled): the next probe may go.
    let actions = dispatcher.handle(Event::Lost { item: 2, probe: true }, t(302));
    assert_eq!(claims(&actions), [Claim { room: 1, probe: true }]);
    let mut dispatcher = Dispatcher::new(limits(2));
    let actions = dispatcher.handle(Event::Turn, t(0));
    claim_all(&mut dispatcher, actions, 1, 0);
    let password = verdict(Outcome::Failure(Code::UserNotFound), Kind::Http(404));
    dispatcher.handle(answer(1, false, password, true, 0), t(1));
    let actions = dispatcher.handle(Event::Reloaded(limits(3)), t(2));
    assert!(matches!(actions[0], Action::GateChanged { to: Gate::Closed, .. }));
    assert_eq!(claims(&actions), [Claim { room: 3, probe: false }], "the reload's concurrency");
}

#[test]
fn a_rate_limit_waits_for_retry_after_and_max_rate_spaces_the_claims() {
    let mut dispatcher = Dispatcher::new(limits(4));
    let actions = dispatcher.handle(Event::Turn, t(0));
    claim_all(&mut dispatcher, actions, 1, 0);
    let limited = Verdict {
        retry_after: Some(Duration::from_secs(90)),
        ..verdict(Outcome::Failure(Code::RateLimited), Kind::Http(429))
    };
    dispatcher.handle(answer(1, false, limited, true, 0), t(0));
    assert!(claims(&dispatcher.handle(Event::Turn, t(89))).is_empty());
    assert_eq!(dispatcher.wake_at(t(89)), Some(t(90)));
    assert_eq!(claims(&dispatcher.handle(Event::Turn, t(90))), [Claim { room: 4, probe: false }]);

    let mut paced = Dispatcher::new(Limits { max_rate: Some(2.0), ..limits(4) });
    let actions = paced.handle(Event::Turn, t(0));
    assert_eq!(claims(&actions), [Claim { room: 1, probe: false }], "one at a time");
    let actions = claim_all(&mut paced, actions, 1, 0);
    assert!(claims(&actions).is_empty(), "the next slot is half a second away");
    let half = t(0).checked_add(jiff::SignedDuration::from_millis(500)).unwrap();
    assert_eq!(paced.wake_at(t(0)), Some(half));
    assert_eq!(claims(&paced.handle(Event::Turn, half)), [Claim { room: 1, probe: false }]);
}

#[test]
fn a_request_the_mapping_could_not_build_leaves_the_circuit_as_it_was() {
    let mut dispatcher = Dispatcher::new(limits(1));
    let actions = dispatcher.handle(Event::Turn, t(0));
    claim_all(&mut dispatcher, actions, 1, 0);
    dispatcher.handle(answer(1, false, refused(), true, 0), t(0));
    let actions = dispatcher.handle(Event::Turn, t(30));
    claim_all(&mut dispatcher, actions, 1, 30);
    let not_sent = verdict(Outcome::Failure(Code::Rejected), Kind::RequestMapping);
    let actions = dispatcher.handle(answer(2, true, not_sent, true, 30), t(30));
    assert!(!actions.iter().any(|action| matches!(action, Action::GateChanged { .. })), "{actions:?}");
    assert_eq!(claims(&actions), [Claim { room: 1, probe: true }], "the next item probes at once");
}

#[test]
fn stop_drains_and_claims_nothing_more() {
    let mut dispatcher = Dispatcher::new(limits(2));
    let actions = dispatcher.handle(Event::Turn, t(0));
    claim_all(&mut dispatcher, actions, 1, 0);
    assert_eq!(dispatcher.handle(Event::Stop, t(1)), [Action::Drain]);
    assert!(claims(&dispatcher.handle(answer(1, false, ok(), true, 0), t(2))).is_empty());
    assert!(claims(&dispatcher.handle(Event::Turn, t(3))).is_empty());
}
