//! The dispatcher: every decision about an item from its claim to the circuit, as a state
//! machine with no I/O and no clock, the way ntpd-rs keeps its protocol core apart from its
//! daemon. `Dispatcher::handle` takes an `Event` and `now` and answers with `Action`s;
//! `daemon.rs` carries them out (SQLite, HTTP, systemd, the journal) and feeds back what came of
//! them.
//!
//! One item's life, all of it decided here:
//! 1. **Claim.** How many items to claim (concurrency, `api.max_rate`, the circuit), whether the
//!    claim is the circuit's one probe, and which items a probe must not go to (those probed
//!    since it opened). Each claim has its own lease token: the item's record can land only on
//!    the claim it belongs to.
//! 2. **Send or release.** The claimed items' facts come back (`Event::Claimed`); each is sent,
//!    unless the gate closed while the claim was being made — a 02 that paused sending, an
//!    outage that opened the circuit — and then it goes back to the queue unsent, so no item is
//!    sent past a pause (the race that sent an item twice, 7 ms apart, right after "PAUSADO").
//! 3. **Answer.** What came back (`Event::Sent`: the classified exchange) is judged by the
//!    circuit (`policy::Circuit::judge`: does this 04/99 count, does the circuit open or close,
//!    whose earlier failures turn out to be the API's), then `policy::after_attempt` decides the
//!    item's next state, schedule and count.
//! 4. **Record.** The attempt and that decision go to the store (`Action::Record`) under the
//!    claim's lease token; a record that fails is written again, backing off, until 5 s before
//!    its lease ends — then left to the lease expiry, which sends the item again under the same
//!    idempotency key.
//!
//! Every claimed item ends in exactly one `Sent` or `Lost`, and every record in `Recorded` or
//! `Abandon`, so no path can leave a probe "on the wire" for ever (which used to stop all
//! sending). What the status line reports comes from here too.

use std::collections::HashMap;
use std::time::Duration;

use crate::core::classify::{Code, Outcome, Verdict};
use crate::core::policy::{Circuit, Gate, ItemAfter, ItemBefore, Pacer, Permit, Settings};

/// The limits the dispatcher works within, from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub settings: Settings,
    /// `api.concurrency`.
    pub concurrency: usize,
    /// `api.max_rate`.
    pub max_rate: Option<f64>,
}

/// What the dispatcher needs of a claimed item to decide its fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    /// The order number (for the journal; no decision reads it).
    pub order: String,
    /// Counted failures so far.
    pub attempts: u32,
    /// The code of its last attempt, if it failed.
    pub last_code: Option<Code>,
    pub processing_since: Option<jiff::Timestamp>,
    pub poll_url: Option<String>,
}

/// One request's exchange, classified: what the send task brings back.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchanged {
    pub started_at: jiff::Timestamp,
    pub duration: Duration,
    pub verdict: Verdict,
    /// A bounded excerpt of the response body (secrets masked).
    pub excerpt: Option<String>,
}

/// How writing a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// It is on disk, as the item's attempt number `n` (probes and polls included).
    Yes(i64),
    /// The claim it belongs to is over (its lease ended and the item went back to the queue):
    /// nothing was written, and nothing ever will be for it.
    NotLeased,
    /// The database refused it (full disk, a lock held too long): try again.
    Failed,
}

/// What happened, as the daemon tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A turn of the loop: the poll tick, a wake-up from `enqueue`, a timer that ended.
    Turn,
    /// The claim asked for came back with these items (none: nothing was due), leased until
    /// `lease_until` under the claim's token.
    Claimed { claim: Claim, items: Vec<Claimed>, lease_until: jiff::Timestamp },
    /// The claim failed (database trouble): nothing is being sent for it.
    ClaimFailed,
    /// A request is over: what came back.
    Sent { item: i64, exchanged: Exchanged },
    /// A request's task ended without an answer (it was cancelled or panicked).
    Lost { item: i64 },
    /// A record (`Action::Record`) was written, or not.
    Recorded { item: i64, written: Written },
    /// The config was reloaded.
    Reloaded(Limits),
    /// SIGTERM or SIGINT: stop claiming and drain.
    Stop,
}

/// A claim to make: up to `room` items, or exactly one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub room: usize,
    pub probe: bool,
    /// The lease token the claimed items get; their records must carry it.
    pub token: i64,
    /// For a probe: items not to probe again if any other is due (probed since the circuit
    /// opened, oldest first).
    pub avoid: Vec<i64>,
}

/// An attempt and the decision for its item: what the store writes, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub item: i64,
    pub order: String,
    /// The lease token of the claim it belongs to.
    pub token: i64,
    pub probe: bool,
    pub exchanged: Exchanged,
    pub finished_at: jiff::Timestamp,
    pub after: ItemAfter,
    /// Written before and failed: this is a try again.
    pub again: bool,
}

/// What the daemon is to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Claim due items.
    Claim(Claim),
    /// Send this claimed item (a probe, or not).
    Send { item: i64, probe: bool },
    /// Put these claimed items back in the queue unsent (the gate closed while they were being
    /// claimed, or the daemon is stopping).
    Release { items: Vec<i64>, token: i64 },
    /// Write an attempt and its decision.
    Record(Box<Record>),
    /// These attempts (item, start) of 04/99 were counted before the circuit saw the API failing
    /// for everyone: count them no more (their items keep their budget).
    Forgive(Vec<(i64, jiff::Timestamp)>),
    /// Forget the failed record of this item: its lease ended, and the lease expiry sends it
    /// again under the same idempotency key.
    Abandon { item: i64 },
    /// The circuit's gate changed situation (state or code): refresh the status line and say so
    /// in the log, once.
    GateChanged { from: Gate, to: Gate, code: Option<Code> },
    /// Stop: let requests on the wire finish, release the rest.
    Drain,
}

/// A claimed item, from its claim until its record is written or abandoned.
#[derive(Debug, Clone, PartialEq)]
struct Flight {
    facts: Claimed,
    token: i64,
    lease_until: jiff::Timestamp,
    probe: bool,
    stage: Stage,
}

#[derive(Debug, Clone, PartialEq)]
enum Stage {
    /// Its request is on the wire.
    Sending,
    /// Its record is being written (`writing`), or waits to be written again at `next_try`.
    Recording { record: Box<Record>, writing: bool, tries: u32, next_try: jiff::Timestamp },
}

/// How long before its lease ends a failed record stops being retried, so that a record is
/// never even tried on an item the lease expiry may already have returned to the queue (the
/// lease token would refuse it anyway).
const RECORD_MARGIN: Duration = Duration::from_secs(5);
/// The longest wait between two tries of a failed record.
const RECORD_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The dispatcher's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatcher {
    limits: Limits,
    circuit: Circuit,
    pacer: Pacer,
    /// Every claimed item not yet done with, by id.
    flights: HashMap<i64, Flight>,
    /// Requests on the wire (flights in `Stage::Sending`).
    sending: usize,
    /// A claim is being made (one at a time).
    claiming: bool,
    /// The next claim's lease token.
    next_token: i64,
    stopping: bool,
    last_success: Option<jiff::Timestamp>,
}

/// What the status line and the heartbeat report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub gate: Gate,
    pub sending: usize,
    /// Attempts whose record could not be written yet.
    pub unrecorded: usize,
    pub last_success: Option<jiff::Timestamp>,
}

impl Dispatcher {
    /// A dispatcher with a closed circuit and nothing on the wire. Lease tokens start at
    /// `first_token`: the daemon passes the start time in microseconds, so no token of this run
    /// can equal one a record of an earlier run still carries.
    pub fn new(limits: Limits, first_token: i64) -> Dispatcher {
        Dispatcher {
            limits,
            circuit: Circuit::default(),
            pacer: Pacer::new(limits.max_rate),
            flights: HashMap::new(),
            sending: 0,
            claiming: false,
            next_token: first_token,
            stopping: false,
            last_success: None,
        }
    }

    /// Takes one event at `now` and says what to do.
    pub fn handle(&mut self, event: Event, now: jiff::Timestamp) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Turn => self.retry_records(now, &mut actions),
            Event::Claimed { claim, items, lease_until } => {
                self.claimed(claim, items, lease_until, now, &mut actions);
                // Fewer than asked means nothing more is due, and as many as asked fills the
                // room (or the pacer's slot): either way, the next turn or answer looks again.
                return actions;
            }
            Event::ClaimFailed => {
                // The database's trouble: the next turn tries again, not this one at once.
                self.claiming = false;
                return actions;
            }
            Event::Sent { item, exchanged } => self.sent(item, exchanged, now, &mut actions),
            Event::Lost { item } => {
                if let Some(flight) = self.flights.remove(&item) {
                    if flight.stage == Stage::Sending {
                        self.sending = self.sending.saturating_sub(1);
                    }
                    if flight.probe {
                        self.circuit.probe_lost();
                    }
                }
            }
            Event::Recorded { item, written } => self.recorded(item, written, now),
            Event::Reloaded(limits) => {
                self.limits = limits;
                self.pacer = self.pacer.with_rate(limits.max_rate);
                let from = self.circuit.gate;
                self.circuit.on_reload();
                self.gate_changed(from, &mut actions);
            }
            Event::Stop => {
                self.stopping = true;
                actions.push(Action::Drain);
                return actions;
            }
        }
        if let Some(claim) = self.claim(now) {
            self.claiming = true;
            actions.push(Action::Claim(claim));
        }
        actions
    }

    /// A claim came back: each item is sent, or released when the gate no longer lets it go.
    fn claimed(
        &mut self,
        claim: Claim,
        items: Vec<Claimed>,
        lease_until: jiff::Timestamp,
        now: jiff::Timestamp,
        actions: &mut Vec<Action>,
    ) {
        self.claiming = false;
        let permit = self.circuit.permit(now);
        let room = match permit {
            _ if self.stopping => 0,
            Permit::Send if !claim.probe => self.limits.concurrency.saturating_sub(self.sending),
            Permit::Probe if claim.probe => 1,
            // The gate changed while the claim was made: an answer paused or opened it.
            _ => 0,
        };
        let mut released = Vec::new();
        for (index, facts) in items.into_iter().enumerate() {
            if index >= room {
                released.push(facts.id);
                continue;
            }
            self.pacer.sent(now);
            if claim.probe {
                self.circuit.probe_sent(facts.id);
            }
            self.sending += 1;
            actions.push(Action::Send { item: facts.id, probe: claim.probe });
            let flight =
                Flight { facts, token: claim.token, lease_until, probe: claim.probe, stage: Stage::Sending };
            self.flights.insert(flight.facts.id, flight);
        }
        if !released.is_empty() {
            actions.push(Action::Release { items: released, token: claim.token });
        }
    }

    /// A request is over: the circuit judges the answer, the item's fate is decided and recorded.
    fn sent(&mut self, item: i64, exchanged: Exchanged, now: jiff::Timestamp, actions: &mut Vec<Action>) {
        let Some(flight) = self.flights.get_mut(&item) else { return };
        if flight.stage != Stage::Sending {
            return;
        }
        self.sending = self.sending.saturating_sub(1);
        let verdict = &exchanged.verdict;
        if verdict.outcome == Outcome::Success {
            self.last_success = Some(now);
        }
        let settings = self.limits.settings;
        let from = self.circuit.gate;
        let heard = crate::core::policy::Heard {
            item,
            started_at: exchanged.started_at,
            probe: flight.probe,
            known_to_fail: flight
                .facts
                .last_code
                .is_some_and(|code| crate::core::policy::retry_of(code) == crate::core::policy::Retry::Item),
        };
        let judged = self.circuit.judge(heard, verdict, now, &settings);
        let before = ItemBefore {
            id: item,
            attempts: flight.facts.attempts,
            processing_since: flight.facts.processing_since,
            poll_url: flight.facts.poll_url.as_deref(),
        };
        let after = crate::core::policy::after_attempt(before, verdict, judged.counts, now, &settings);
        let record = Box::new(Record {
            item,
            order: flight.facts.order.clone(),
            token: flight.token,
            probe: flight.probe,
            exchanged,
            finished_at: now,
            after,
            again: false,
        });
        flight.stage = Stage::Recording { record: record.clone(), writing: true, tries: 0, next_try: now };
        actions.push(Action::Record(record));
        self.gate_changed(from, actions);
        if !judged.forgive.is_empty() {
            self.forgive(&judged.forgive, actions);
        }
    }

    /// Attempts the circuit now sees were the API's: their records not yet written are decided
    /// again without counting, and the store forgets the count of those already written.
    fn forgive(&mut self, attempts: &[(i64, jiff::Timestamp)], actions: &mut Vec<Action>) {
        let settings = self.limits.settings;
        for (item, started_at) in attempts {
            let Some(flight) = self.flights.get_mut(item) else { continue };
            let Stage::Recording { record, .. } = &mut flight.stage else { continue };
            if record.exchanged.started_at != *started_at || !record.after.counted {
                continue;
            }
            let before = ItemBefore {
                id: *item,
                attempts: flight.facts.attempts,
                processing_since: flight.facts.processing_since,
                poll_url: flight.facts.poll_url.as_deref(),
            };
            record.after = crate::core::policy::after_attempt(
                before,
                &record.exchanged.verdict,
                false,
                record.finished_at,
                &settings,
            );
        }
        actions.push(Action::Forgive(attempts.to_vec()));
    }

    /// How writing a record went.
    fn recorded(&mut self, item: i64, written: Written, now: jiff::Timestamp) {
        let Some(flight) = self.flights.get_mut(&item) else { return };
        let Stage::Recording { writing, tries, next_try, .. } = &mut flight.stage else { return };
        match written {
            Written::Yes(_) | Written::NotLeased => {
                self.flights.remove(&item);
            }
            Written::Failed => {
                *writing = false;
                *tries += 1;
                let wait = Duration::from_secs(1 << (*tries).min(5)).min(RECORD_BACKOFF_MAX);
                *next_try = add(now, wait);
            }
        }
    }

    /// Failed records due for another try, or to give up on.
    fn retry_records(&mut self, now: jiff::Timestamp, actions: &mut Vec<Action>) {
        let margin = jiff::SignedDuration::try_from(RECORD_MARGIN).unwrap_or_default();
        let mut abandoned = Vec::new();
        for flight in self.flights.values_mut() {
            let Stage::Recording { record, writing, next_try, .. } = &mut flight.stage else { continue };
            if *writing {
                continue;
            }
            if flight.lease_until.checked_sub(margin).is_ok_and(|last| now >= last) {
                abandoned.push(flight.facts.id);
            } else if now >= *next_try {
                *writing = true;
                actions.push(Action::Record(Box::new(Record { again: true, ..(**record).clone() })));
            }
        }
        for item in abandoned {
            self.flights.remove(&item);
            actions.push(Action::Abandon { item });
        }
    }

    /// Says so when the gate's situation changed (not when a failed probe only moved its time).
    fn gate_changed(&self, from: Gate, actions: &mut Vec<Action>) {
        let to = self.circuit.gate;
        if !from.same_situation(&to) {
            actions.push(Action::GateChanged { from, to, code: to.code() });
        }
    }

    /// The claim to make now, if any.
    fn claim(&mut self, now: jiff::Timestamp) -> Option<Claim> {
        if self.stopping || self.claiming {
            return None;
        }
        let room = self.limits.concurrency.saturating_sub(self.sending);
        let (room, probe) = match self.circuit.permit(now) {
            Permit::Send => (self.pacer.room(now, room), false),
            Permit::Probe => (self.pacer.room(now, room.min(1)), true),
            Permit::WaitUntil(_) => return None,
        };
        if room == 0 {
            return None;
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        let avoid = if probe { self.circuit.probed().to_vec() } else { Vec::new() };
        Some(Claim { room, probe, token, avoid })
    }

    /// When something may change without an event: the circuit's or the pacer's next moment, or
    /// a failed record's next try (or the end of its lease). The loop wakes then (or at its
    /// tick, whichever is first).
    pub fn wake_at(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let circuit = match self.circuit.permit(now) {
            Permit::WaitUntil(until) if until < jiff::Timestamp::MAX => Some(until),
            Permit::WaitUntil(_) => None,
            Permit::Send | Permit::Probe => self.pacer.wait(now),
        };
        let records = self
            .flights
            .values()
            .filter_map(|flight| match &flight.stage {
                Stage::Recording { writing: false, next_try, .. } => Some(*next_try),
                _ => None,
            })
            .min();
        [circuit, records].into_iter().flatten().min()
    }

    /// Requests still on the wire.
    pub fn sending(&self) -> usize {
        self.sending
    }

    /// Nothing claimed is left to send or record: a stopping daemon may release the rest.
    pub fn idle(&self) -> bool {
        self.flights.is_empty() && !self.claiming
    }

    /// What the status line reports.
    pub fn status(&self) -> Status {
        let unrecorded = self
            .flights
            .values()
            .filter(|flight| matches!(flight.stage, Stage::Recording { tries, .. } if tries > 0))
            .count();
        Status { gate: self.circuit.gate, sending: self.sending, unrecorded, last_success: self.last_success }
    }

    /// A last success known from the database (at start).
    pub fn set_last_success(&mut self, at: Option<jiff::Timestamp>) {
        if at > self.last_success {
            self.last_success = at;
        }
    }
}

/// `now + delay`, saturating.
fn add(now: jiff::Timestamp, delay: Duration) -> jiff::Timestamp {
    now.saturating_add(jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests;
