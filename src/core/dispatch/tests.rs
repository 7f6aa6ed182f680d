//! The dispatcher driven through outages, probes, pauses, reloads, rate limits, poison orders
//! and failed records, with no clock, network or SQLite: time is a number of seconds passed in,
//! and `World` plays the store (due items, leases, records) and a scripted API around it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::core::classify::Kind;
use crate::core::item::State;

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

fn timeout() -> Verdict {
    verdict(Outcome::Failure(Code::Timeout), Kind::ReadTimeout)
}

fn password() -> Verdict {
    verdict(Outcome::Failure(Code::InvalidPassword), Kind::Http(401))
}

fn claims(actions: &[Action]) -> Vec<Claim> {
    actions
        .iter()
        .filter_map(|action| if let Action::Claim(claim) = action { Some(claim.clone()) } else { None })
        .collect()
}

fn sends(actions: &[Action]) -> Vec<i64> {
    actions
        .iter()
        .filter_map(|action| if let Action::Send { item, .. } = action { Some(*item) } else { None })
        .collect()
}

fn records(actions: &[Action]) -> Vec<Record> {
    actions
        .iter()
        .filter_map(
            |action| if let Action::Record(record) = action { Some((**record).clone()) } else { None },
        )
        .collect()
}

fn facts(id: i64) -> Claimed {
    Claimed {
        id,
        order: id.to_string(),
        attempts: 0,
        last_code: None,
        processing_since: None,
        poll_url: None,
    }
}

/// The exchange of a request that started at `at`.
fn exchanged(verdict: Verdict, at: i64) -> Exchanged {
    Exchanged { started_at: t(at), duration: Duration::from_millis(10), verdict, excerpt: None }
}

/// An item as the store would keep it.
#[derive(Debug, Clone)]
struct Item {
    due: i64,
    state: State,
    attempts: u32,
    last_code: Option<Code>,
    processing_since: Option<jiff::Timestamp>,
    lease: Option<i64>,
    /// Every attempt: (start, counted, code).
    history: Vec<(jiff::Timestamp, bool, Option<Code>)>,
}

/// A request on the wire: it answers at `at`.
struct Wire {
    item: i64,
    started: i64,
    at: i64,
    verdict: Verdict,
}

/// The dispatcher with a store and an API around it, stepped a second at a time.
struct World {
    dispatcher: Dispatcher,
    now: i64,
    items: BTreeMap<i64, Item>,
    wire: Vec<Wire>,
    /// What the API answers for an item at a time, and how long it takes.
    api: Box<dyn Fn(i64, i64) -> (Verdict, i64)>,
    /// Every request: (item, when, probe).
    sent: Vec<(i64, i64, bool)>,
    /// Every gate the dispatcher reported, with when.
    gates: Vec<(i64, Gate)>,
}

impl World {
    fn new(limits: Limits, api: impl Fn(i64, i64) -> (Verdict, i64) + 'static) -> World {
        World {
            dispatcher: Dispatcher::new(limits, 1),
            now: 0,
            items: BTreeMap::new(),
            wire: Vec::new(),
            api: Box::new(api),
            sent: Vec::new(),
            gates: Vec::new(),
        }
    }

    /// Queues an item, due now.
    fn enqueue(&mut self, id: i64) {
        let item = Item {
            due: self.now,
            state: State::Pending,
            attempts: 0,
            last_code: None,
            processing_since: None,
            lease: None,
            history: Vec::new(),
        };
        self.items.insert(id, item);
    }

    fn event(&mut self, event: Event) {
        let actions = self.dispatcher.handle(event, t(self.now));
        self.act(actions);
    }

    /// Carries out actions as the daemon and the store would.
    fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Claim(claim) => {
                    let claimed = self.claim(&claim);
                    let lease_until = t(self.now + 90);
                    self.event(Event::Claimed { claim, items: claimed, lease_until });
                }
                Action::Send { item, probe } => {
                    let (verdict, latency) = (self.api)(item, self.now);
                    self.sent.push((item, self.now, probe));
                    self.wire.push(Wire { item, started: self.now, at: self.now + latency, verdict });
                }
                Action::Release { items, token } => {
                    for id in items {
                        let item = self.items.get_mut(&id).unwrap();
                        if item.lease == Some(token) {
                            item.lease = None;
                            item.state = if item.processing_since.is_some() {
                                State::Processing
                            } else {
                                State::Pending
                            };
                        }
                    }
                }
                Action::Record(record) => {
                    let written = self.record(&record);
                    self.event(Event::Recorded { item: record.item, written });
                }
                Action::Forgive(attempts) => {
                    for (id, started) in attempts {
                        let item = self.items.get_mut(&id).unwrap();
                        if !matches!(item.state, State::Pending | State::Processing) {
                            continue;
                        }
                        if let Some(entry) =
                            item.history.iter_mut().find(|entry| entry.0 == started && entry.1)
                        {
                            entry.1 = false;
                            item.attempts -= 1;
                        }
                    }
                }
                Action::GateChanged { to, .. } => self.gates.push((self.now, to)),
                Action::Abandon { .. } | Action::Drain => {}
            }
        }
    }

    /// The store's claim: due items by due time; for a probe, one never sent first, then one
    /// not in `avoid`, then any.
    fn claim(&mut self, claim: &Claim) -> Vec<Claimed> {
        let due = |avoid: &[i64], fresh: bool| -> Vec<i64> {
            let mut due: Vec<(i64, i64)> = self
                .items
                .iter()
                .filter(|(id, item)| {
                    matches!(item.state, State::Pending | State::Processing)
                        && item.due <= self.now
                        && !avoid.contains(id)
                        && (!fresh || item.history.is_empty())
                })
                .map(|(id, item)| (item.due, *id))
                .collect();
            due.sort();
            due.into_iter().take(claim.room).map(|(_, id)| id).collect()
        };
        let mut ids = if claim.probe { due(&[], true) } else { Vec::new() };
        if ids.is_empty() {
            ids = due(&claim.avoid, false);
        }
        if ids.is_empty() {
            ids = due(&[], false);
        }
        ids.into_iter()
            .map(|id| {
                let item = self.items.get_mut(&id).unwrap();
                item.state = State::InFlight;
                item.lease = Some(claim.token);
                Claimed {
                    attempts: item.attempts,
                    last_code: item.last_code,
                    processing_since: item.processing_since,
                    ..facts(id)
                }
            })
            .collect()
    }

    /// The store's record: only under its claim's token.
    fn record(&mut self, record: &Record) -> Written {
        let item = self.items.get_mut(&record.item).unwrap();
        if item.lease != Some(record.token) || item.state != State::InFlight {
            return Written::NotLeased;
        }
        let after = &record.after;
        item.lease = None;
        item.state = after.state;
        item.attempts = after.attempts;
        item.last_code = after.last_code;
        item.processing_since = after.processing_since;
        item.due = after.next_at.as_second() - 1_800_000_000;
        item.history.push((record.exchanged.started_at, after.counted, after.verdict.code()));
        Written::Yes(item.history.len() as i64)
    }

    /// One second passes: answers due come back, then a turn.
    fn step(&mut self) {
        self.now += 1;
        let (done, wire): (Vec<Wire>, Vec<Wire>) =
            std::mem::take(&mut self.wire).into_iter().partition(|wire| wire.at <= self.now);
        self.wire = wire;
        for wire in done {
            self.event(Event::Sent { item: wire.item, exchanged: exchanged(wire.verdict, wire.started) });
        }
        self.event(Event::Turn);
    }

    /// Steps until `done` holds (at most `limit` seconds).
    fn run_until(&mut self, limit: i64, what: &str, done: impl Fn(&World) -> bool) {
        let end = self.now + limit;
        while !done(self) {
            assert!(
                self.now < end,
                "{what}: not after {limit} s (now {}): {:?}",
                self.now,
                self.dispatcher.status()
            );
            self.step();
        }
    }

    fn state(&self, id: i64) -> State {
        self.items[&id].state
    }

    fn open_since(&self) -> bool {
        matches!(self.dispatcher.status().gate, Gate::Open { .. })
    }
}

#[test]
fn it_fills_the_concurrency_and_looks_again_only_when_something_changes() {
    let mut dispatcher = Dispatcher::new(limits(4), 1);
    let actions = dispatcher.handle(Event::Turn, t(0));
    let claim = claims(&actions).pop().expect("a claim");
    assert_eq!((claim.room, claim.probe), (4, false));
    // A second turn while the claim is out asks for nothing more.
    assert!(claims(&dispatcher.handle(Event::Turn, t(0))).is_empty());
    let actions = dispatcher.handle(
        Event::Claimed { claim, items: vec![facts(1), facts(2), facts(3)], lease_until: t(90) },
        t(0),
    );
    assert_eq!(sends(&actions), [1, 2, 3]);
    assert!(claims(&actions).is_empty(), "fewer than asked: nothing more is due until the next turn");
    assert_eq!(dispatcher.sending(), 3);
    let next = claims(&dispatcher.handle(Event::Turn, t(0)));
    assert_eq!(next.iter().map(|claim| claim.room).collect::<Vec<_>>(), [1]);
    assert_ne!(next[0].token, 1, "each claim has its own lease token");
    dispatcher.handle(Event::ClaimFailed, t(0));
    let actions = dispatcher.handle(Event::Sent { item: 1, exchanged: exchanged(ok(), 0) }, t(1));
    let record = records(&actions).pop().expect("its record");
    assert_eq!((record.item, record.token, record.after.state), (1, 1, State::Done));
    assert_eq!(
        claims(&actions).iter().map(|claim| claim.room).collect::<Vec<_>>(),
        [2],
        "the slot is free once answered"
    );
    assert_eq!(dispatcher.status().last_success, Some(t(1)));
    assert!(!dispatcher.idle(), "the record is being written");
    dispatcher.handle(Event::Recorded { item: 1, written: Written::Yes(1) }, t(1));
}

#[test]
fn an_outage_sends_one_probe_at_a_time_and_a_good_probe_resumes() {
    let mut world = World::new(limits(4), |_, now| if now < 100 { (refused(), 0) } else { (ok(), 0) });
    for id in 1..=6 {
        world.enqueue(id);
    }
    world.step();
    world.step();
    assert!(
        matches!(world.gates[0], (2, Gate::Open { code: Code::ConnectionRefused, .. })),
        "{:?}",
        world.gates
    );
    world.run_until(400, "every item delivered", |world| {
        world.items.values().all(|item| item.state == State::Done)
    });
    let probes: Vec<_> = world.sent.iter().filter(|sent| sent.2).collect();
    // Answers come a second after their request here. Opened at 2: probes at 2+30, then
    // 33+60, then 94+120 — the API is back at 100, so the one at 93 failed.
    assert_eq!(probes.iter().map(|sent| sent.1).collect::<Vec<_>>(), [32, 93, 214], "{probes:?}");
    let probed: Vec<i64> = probes.iter().map(|sent| sent.0).collect();
    assert!(probed[0] != probed[1] && probed[1] != probed[2], "each probe goes to another item: {probed:?}");
    let during: Vec<_> = world.sent.iter().filter(|sent| (2..=214).contains(&sent.1) && !sent.2).collect();
    assert!(during.is_empty(), "nothing but probes while open: {during:?}");
    assert_eq!(
        world.gates.len(),
        2,
        "opened once and closed once, whatever the probes did: {:?}",
        world.gates
    );
    assert!(world.items.values().all(|item| item.attempts == 0), "an outage counts nothing");
}

#[test]
fn one_order_the_api_never_answers_fails_on_its_own_and_never_holds_the_circuit() {
    // Alone in the queue: its timeouts are its own, retried on its schedule until max_attempts.
    let mut world = World::new(limits(4), |_, _| (timeout(), 30));
    world.enqueue(1);
    world.run_until(20_000, "the poison order fails", |world| world.state(1) == State::Failed);
    assert_eq!(world.items[&1].attempts, 10, "max_attempts, each counted");
    assert!(world.gates.is_empty(), "the circuit never opened for one order: {:?}", world.gates);

    // Among healthy orders: they flow around it.
    let mut world = World::new(limits(4), |item, _| if item == 1 { (timeout(), 30) } else { (ok(), 0) });
    world.enqueue(1);
    for second in 0..600 {
        if second % 3 == 0 {
            let id = 100 + second;
            world.enqueue(id);
        }
        world.step();
    }
    let waits: Vec<i64> =
        world.sent.iter().filter(|sent| sent.0 >= 100).map(|sent| sent.1 - (sent.0 - 100)).collect();
    assert!(waits.iter().all(|wait| *wait <= 1), "every healthy order sent within a second: {waits:?}");
    assert!(world.gates.is_empty(), "{:?}", world.gates);
    assert!(
        world.items[&1].attempts >= 4,
        "the poison order is retried, counted: {}",
        world.items[&1].attempts
    );
}

#[test]
fn a_healthy_order_arriving_while_a_poison_order_is_probed_goes_within_one_probe_interval() {
    // The API was down (01) and came back, except for order 1, which it never answers.
    let mut world = World::new(limits(4), |item, now| match (item, now) {
        (_, ..50) => (refused(), 0),
        (1, _) => (timeout(), 30),
        _ => (ok(), 0),
    });
    world.enqueue(1);
    world.run_until(5, "the circuit opens", World::open_since);
    // Probed again with nothing else due, its own failure counts.
    world.run_until(2_000, "order 1's second timeout as the probe counts", |world| {
        world.items[&1].attempts >= 1
    });
    let probes: Vec<_> = world.sent.iter().filter(|sent| sent.2).map(|sent| sent.1).collect();
    assert!(probes.len() >= 3, "the outage's probe, then two of order 1's timeouts: {probes:?}");
    let Gate::Open { next_probe_at, .. } = world.dispatcher.status().gate else { panic!("still open") };
    let arrival = world.now;
    world.enqueue(2);
    world.run_until(1_000, "the healthy order is sent", |world| world.sent.iter().any(|sent| sent.0 == 2));
    let sent_at = world.sent.iter().find(|sent| sent.0 == 2).unwrap().1;
    assert!(
        t(sent_at) <= next_probe_at,
        "sent at {sent_at}, arrived at {arrival}, the probe was due at {next_probe_at}"
    );
    world.step();
    assert_eq!(world.dispatcher.status().gate, Gate::Closed, "its success closed the circuit");
    world.run_until(20_000, "order 1 fails on its own", |world| world.state(1) == State::Failed);
    assert_eq!(world.state(2), State::Done);
}

#[test]
fn an_outage_of_every_order_with_04_opens_the_circuit_and_counts_no_attempt() {
    let mut world = World::new(limits(4), |_, now| if now < 2_000 { (timeout(), 30) } else { (ok(), 0) });
    for id in 1..=10 {
        world.enqueue(id);
    }
    world.run_until(100, "the circuit opens", World::open_since);
    world.run_until(3_000, "every item delivered", |world| {
        world.items.values().all(|item| item.state == State::Done)
    });
    assert!(world.items.values().all(|item| item.attempts == 0), "{:?}", world.items);
    let counted: Vec<_> = world
        .items
        .iter()
        .flat_map(|(id, item)| item.history.iter().filter(|entry| entry.1).map(move |entry| (*id, entry.0)))
        .collect();
    assert!(counted.is_empty(), "no attempt counted: {counted:?}");
    let probes = world.sent.iter().filter(|sent| sent.2).count();
    assert!(probes >= 5, "probed through the outage: {probes}");
}

#[test]
fn a_401_pauses_until_the_probe_or_a_reload() {
    let mut world = World::new(limits(4), |_, _| (password(), 0));
    for id in 1..=3 {
        world.enqueue(id);
    }
    world.run_until(5, "the pause", |world| world.dispatcher.status().gate != Gate::Closed);
    assert!(matches!(world.dispatcher.status().gate, Gate::Paused { code: Code::InvalidPassword, .. }));
    let before = world.sent.len();
    for _ in 0..299 {
        world.step();
    }
    assert_eq!(world.sent.len(), before, "nothing sent while paused");
    world.step();
    assert_eq!(world.sent.len(), before + 1, "one probe after 5 minutes");
    assert!(world.items.values().all(|item| item.attempts == 0 && item.state != State::Failed));
    world.api = Box::new(|_, _| (ok(), 0));
    world.event(Event::Reloaded(limits(4)));
    world.run_until(10, "delivered after the reload", |world| {
        world.items.values().all(|item| item.state == State::Done)
    });
}

#[test]
fn items_claimed_while_an_answer_paused_sending_go_back_unsent() {
    let mut dispatcher = Dispatcher::new(limits(4), 1);
    let claim = claims(&dispatcher.handle(Event::Turn, t(0))).pop().unwrap();
    dispatcher.handle(Event::Claimed { claim, items: vec![facts(1), facts(2)], lease_until: t(90) }, t(0));
    // A third order came in: a claim for the free room is on its way to the store…
    let claim = claims(&dispatcher.handle(Event::Turn, t(0))).pop().unwrap();
    assert_eq!(claim.room, 2);
    // …when order 1's answer, 02, pauses sending. Its record puts it back as due at once.
    let actions = dispatcher.handle(Event::Sent { item: 1, exchanged: exchanged(password(), 0) }, t(0));
    assert!(
        actions.iter().any(|action| matches!(action, Action::GateChanged { to: Gate::Paused { .. }, .. }))
    );
    dispatcher.handle(Event::Recorded { item: 1, written: Written::Yes(1) }, t(0));
    // The claim lands after the record: it took order 3 and order 1 again. Neither is sent.
    let token = claim.token;
    let actions = dispatcher
        .handle(Event::Claimed { claim, items: vec![facts(3), facts(1)], lease_until: t(90) }, t(0));
    assert!(sends(&actions).is_empty(), "nothing goes out past a pause: {actions:?}");
    assert!(actions.contains(&Action::Release { items: vec![3, 1], token }), "{actions:?}");
}

#[test]
fn a_probe_whose_record_fails_does_not_stop_sending_and_the_record_is_written_again() {
    let mut dispatcher = Dispatcher::new(limits(2), 1);
    let claim = claims(&dispatcher.handle(Event::Turn, t(0))).pop().unwrap();
    dispatcher.handle(Event::Claimed { claim, items: vec![facts(1)], lease_until: t(90) }, t(0));
    dispatcher.handle(Event::Sent { item: 1, exchanged: exchanged(refused(), 0) }, t(0));
    dispatcher.handle(Event::Recorded { item: 1, written: Written::Yes(1) }, t(0));
    let probe = claims(&dispatcher.handle(Event::Turn, t(30))).pop().unwrap();
    assert!(probe.probe);
    dispatcher.handle(Event::Claimed { claim: probe, items: vec![facts(2)], lease_until: t(120) }, t(30));
    // The disk is full: the probe's answer came, its record did not land.
    let actions = dispatcher.handle(Event::Sent { item: 2, exchanged: exchanged(refused(), 30) }, t(31));
    let record = records(&actions).pop().unwrap();
    assert!(!record.again);
    dispatcher.handle(Event::Recorded { item: 2, written: Written::Failed }, t(31));
    assert_eq!(dispatcher.status().unrecorded, 1);
    assert_eq!(dispatcher.wake_at(t(31)), Some(t(33)), "first the record's next try");
    let again = records(&dispatcher.handle(Event::Turn, t(33)));
    assert_eq!(again.len(), 1);
    assert!(again[0].again && again[0].after == record.after, "the same decision, written again");
    dispatcher.handle(Event::Recorded { item: 2, written: Written::Failed }, t(34));
    assert_eq!(dispatcher.wake_at(t(34)), Some(t(38)), "backing off");
    // The next probe is scheduled as planned (a failed record used to hold it for ever).
    let actions = dispatcher.handle(Event::Turn, t(91));
    let probe = claims(&actions).pop().expect("the next probe");
    assert!(probe.probe && probe.avoid == [2], "{probe:?}");
    dispatcher.handle(Event::Claimed { claim: probe, items: vec![facts(3)], lease_until: t(180) }, t(91));
    dispatcher.handle(Event::Recorded { item: 2, written: Written::Yes(2) }, t(91));
    let actions = dispatcher.handle(Event::Sent { item: 3, exchanged: exchanged(ok(), 91) }, t(92));
    assert_eq!(
        claims(&actions).iter().map(|claim| (claim.room, claim.probe)).collect::<Vec<_>>(),
        [(2, false)],
        "sending resumed"
    );
    assert_eq!(dispatcher.status().unrecorded, 0);
}

#[test]
fn a_record_that_cannot_be_written_before_its_lease_ends_is_abandoned_to_the_lease_expiry() {
    let mut dispatcher = Dispatcher::new(limits(1), 1);
    let claim = claims(&dispatcher.handle(Event::Turn, t(0))).pop().unwrap();
    dispatcher.handle(Event::Claimed { claim, items: vec![facts(7)], lease_until: t(90) }, t(0));
    dispatcher.handle(Event::Sent { item: 7, exchanged: exchanged(ok(), 0) }, t(1));
    dispatcher.handle(Event::Recorded { item: 7, written: Written::Failed }, t(1));
    for now in 2..200 {
        for action in dispatcher.handle(Event::Turn, t(now)) {
            match action {
                Action::Record(record) => {
                    dispatcher
                        .handle(Event::Recorded { item: record.item, written: Written::Failed }, t(now));
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
fn a_lost_probe_frees_the_next_one_and_a_reload_resumes_a_pause() {
    let mut dispatcher = Dispatcher::new(limits(2), 1);
    let claim = claims(&dispatcher.handle(Event::Turn, t(0))).pop().unwrap();
    dispatcher.handle(Event::Claimed { claim, items: vec![facts(1)], lease_until: t(90) }, t(0));
    let actions = dispatcher.handle(Event::Sent { item: 1, exchanged: exchanged(password(), 0) }, t(1));
    assert!(
        actions.iter().any(|action| matches!(action, Action::GateChanged { to: Gate::Paused { .. }, .. }))
    );
    assert_eq!(dispatcher.wake_at(t(1)), Some(t(301)), "a probe every 5 minutes");
    let probe = claims(&dispatcher.handle(Event::Turn, t(301))).pop().unwrap();
    dispatcher.handle(Event::Claimed { claim: probe, items: vec![facts(2)], lease_until: t(400) }, t(301));
    // The probe's task was lost (cancelled): the next probe may go.
    let actions = dispatcher.handle(Event::Lost { item: 2 }, t(302));
    assert!(claims(&actions).pop().is_some_and(|claim| claim.probe));

    let mut dispatcher = Dispatcher::new(limits(2), 1);
    let claim = claims(&dispatcher.handle(Event::Turn, t(0))).pop().unwrap();
    dispatcher.handle(Event::Claimed { claim, items: vec![facts(1)], lease_until: t(90) }, t(0));
    let not_found = verdict(Outcome::Failure(Code::UserNotFound), Kind::Http(404));
    dispatcher.handle(Event::Sent { item: 1, exchanged: exchanged(not_found, 0) }, t(1));
    let actions = dispatcher.handle(Event::Reloaded(limits(3)), t(2));
    assert!(matches!(actions[0], Action::GateChanged { to: Gate::Closed, .. }));
    assert_eq!(claims(&actions).pop().map(|claim| claim.room), Some(3), "the reload's concurrency");
}

#[test]
fn a_rate_limit_waits_for_retry_after_within_max_delay_and_max_rate_spaces_the_claims() {
    let mut dispatcher = Dispatcher::new(limits(4), 1);
    let claim = claims(&dispatcher.handle(Event::Turn, t(0))).pop().unwrap();
    dispatcher.handle(Event::Claimed { claim, items: vec![facts(1)], lease_until: t(90) }, t(0));
    let limited = Verdict {
        retry_after: Some(Duration::from_secs(99_999_999_999)),
        ..verdict(Outcome::Failure(Code::RateLimited), Kind::Http(429))
    };
    let actions = dispatcher.handle(Event::Sent { item: 1, exchanged: exchanged(limited, 0) }, t(0));
    let record = records(&actions).pop().unwrap();
    assert_eq!(record.after.next_at, t(300), "capped at retry.max_delay");
    assert_eq!(record.after.capped_delay, Some(Duration::from_secs(99_999_999_999)));
    assert!(claims(&dispatcher.handle(Event::Turn, t(299))).is_empty());
    assert_eq!(dispatcher.wake_at(t(299)), Some(t(300)));
    assert_eq!(claims(&dispatcher.handle(Event::Turn, t(300))).pop().map(|claim| claim.room), Some(4));

    let mut paced = Dispatcher::new(Limits { max_rate: Some(2.0), ..limits(4) }, 1);
    let claim = claims(&paced.handle(Event::Turn, t(0))).pop().unwrap();
    assert_eq!(claim.room, 1, "one at a time");
    let actions = paced.handle(Event::Claimed { claim, items: vec![facts(1)], lease_until: t(90) }, t(0));
    assert!(claims(&actions).is_empty(), "the next slot is half a second away");
    let half = t(0).checked_add(jiff::SignedDuration::from_millis(500)).unwrap();
    assert_eq!(paced.wake_at(t(0)), Some(half));
    assert_eq!(claims(&paced.handle(Event::Turn, half)).pop().map(|claim| claim.room), Some(1));
}

#[test]
fn a_request_the_mapping_could_not_build_leaves_the_circuit_as_it_was() {
    let mut dispatcher = Dispatcher::new(limits(1), 1);
    let claim = claims(&dispatcher.handle(Event::Turn, t(0))).pop().unwrap();
    dispatcher.handle(Event::Claimed { claim, items: vec![facts(1)], lease_until: t(90) }, t(0));
    dispatcher.handle(Event::Sent { item: 1, exchanged: exchanged(refused(), 0) }, t(0));
    dispatcher.handle(Event::Recorded { item: 1, written: Written::Yes(1) }, t(0));
    let probe = claims(&dispatcher.handle(Event::Turn, t(30))).pop().unwrap();
    dispatcher.handle(Event::Claimed { claim: probe, items: vec![facts(2)], lease_until: t(120) }, t(30));
    let not_sent = verdict(Outcome::Failure(Code::Rejected), Kind::RequestMapping);
    let actions = dispatcher.handle(Event::Sent { item: 2, exchanged: exchanged(not_sent, 30) }, t(30));
    assert!(!actions.iter().any(|action| matches!(action, Action::GateChanged { .. })), "{actions:?}");
    assert!(claims(&actions).pop().is_some_and(|claim| claim.probe), "the next item probes at once");
}

#[test]
fn stop_drains_releases_what_it_claims_and_claims_nothing_more() {
    let mut dispatcher = Dispatcher::new(limits(2), 1);
    let claim = claims(&dispatcher.handle(Event::Turn, t(0))).pop().unwrap();
    dispatcher.handle(Event::Claimed { claim, items: vec![facts(1)], lease_until: t(90) }, t(0));
    let claim = claims(&dispatcher.handle(Event::Turn, t(0))).pop().unwrap();
    assert_eq!(dispatcher.handle(Event::Stop, t(1)), [Action::Drain]);
    let actions =
        dispatcher.handle(Event::Claimed { claim, items: vec![facts(2)], lease_until: t(90) }, t(1));
    assert!(
        sends(&actions).is_empty() && actions.iter().any(|action| matches!(action, Action::Release { .. }))
    );
    let actions = dispatcher.handle(Event::Sent { item: 1, exchanged: exchanged(ok(), 0) }, t(2));
    assert!(claims(&actions).is_empty() && records(&actions).len() == 1, "the answer is still recorded");
    assert!(!dispatcher.idle());
    dispatcher.handle(Event::Recorded { item: 1, written: Written::Yes(1) }, t(2));
    assert!(dispatcher.idle());
    assert!(claims(&dispatcher.handle(Event::Turn, t(3))).is_empty());
}
