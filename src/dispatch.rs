//! The dispatcher's decisions as a state machine with no I/O and no clock, the way ntpd-rs keeps
//! its protocol core apart from its daemon: `Dispatcher::handle` takes an `Event` and `now` and
//! answers with `Action`s; `daemon.rs` carries them out (SQLite, HTTP, systemd, the journal) and
//! feeds back what came of them.
//!
//! What it decides: how many items to claim and whether the next is a probe (the circuit
//! breaker, the concurrency, `api.max_rate`); what a finished request does to the circuit; what
//! becomes of an attempt whose record failed (written again until its lease runs out — then the
//! lease expiry returns the item to the queue, to be sent again under the same idempotency key);
//! when the loop must wake next; and what the status line reports. Every claimed item and every
//! probe ends in exactly one `Answered` or `Lost`, so no path can leave a probe "on the wire" for
//! ever (which used to stop all sending).

use std::time::Duration;

use crate::classify::{Code, Outcome, Verdict};
use crate::policy::{Circuit, Gate, Pacer, Permit, Settings};

/// The limits the dispatcher works within, from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub settings: Settings,
    /// `api.concurrency`.
    pub concurrency: usize,
    /// `api.max_rate`.
    pub max_rate: Option<f64>,
}

impl Limits {
    /// The limits of a config.
    pub fn from_config(config: &crate::config::Config) -> Limits {
        Limits {
            settings: Settings::from_config(config),
            concurrency: usize::try_from(config.api.concurrency).unwrap_or(1).max(1),
            max_rate: config.api.max_rate,
        }
    }
}

/// What happened, as the daemon tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A turn of the loop: the poll tick, a wake-up from `enqueue`, a timer that ended.
    Turn,
    /// The claim asked for came back with `got` items, now being sent (0: nothing was due).
    Claimed { claim: Claim, got: usize },
    /// The claim failed (database trouble): nothing is being sent for it.
    ClaimFailed,
    /// A request is over.
    Answered(Answer),
    /// A request's task ended without an answer (it was cancelled or panicked).
    Lost { item: i64, probe: bool },
    /// A record written again (`Action::Record`) worked, or failed again.
    Rerecorded { item: i64, written: bool },
    /// The config was reloaded.
    Reloaded(Limits),
    /// SIGTERM or SIGINT: stop claiming and drain.
    Stop,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub item: i64,
    pub probe: bool,
    /// The verdict as recorded (after `policy::after_attempt`).
    pub verdict: Verdict,
    /// Whether its attempt record was written.
    pub recorded: bool,
    /// Until when the item's lease holds: a failed record may be written again until then.
    pub lease_until: jiff::Timestamp,
}

/// A claim to make: up to `room` items, or exactly one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub room: usize,
    pub probe: bool,
}

/// What the daemon is to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Claim due items and send each one.
    Claim(Claim),
    /// Write the failed attempt record of this item again.
    Record { item: i64 },
    /// Forget the failed record of this item: its lease ended, and the lease expiry sends it
    /// again under the same idempotency key.
    Abandon { item: i64 },
    /// The circuit's gate changed: refresh the status line and say so in the log.
    GateChanged { from: Gate, to: Gate, code: Option<Code> },
    /// Stop: let requests on the wire finish, release the rest.
    Drain,
}

/// A record that failed and is written again until its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unrecorded {
    item: i64,
    lease_until: jiff::Timestamp,
    next_try: jiff::Timestamp,
    tries: u32,
    /// A try is being written now.
    writing: bool,
}

/// How long before its lease ends a failed record stops being retried, so that the record
/// can never land on an item the lease expiry already returned to the queue.
const RECORD_MARGIN: Duration = Duration::from_secs(5);
/// The longest wait between two tries of a failed record.
const RECORD_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The dispatcher's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatcher {
    limits: Limits,
    circuit: Circuit,
    pacer: Pacer,
    /// Requests handed to senders that have not answered.
    sending: usize,
    /// A claim is being made (one at a time).
    claiming: bool,
    unrecorded: Vec<Unrecorded>,
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
    /// A dispatcher with a closed circuit and nothing on the wire.
    pub fn new(limits: Limits) -> Dispatcher {
        Dispatcher {
            limits,
            circuit: Circuit::default(),
            pacer: Pacer::new(limits.max_rate),
            sending: 0,
            claiming: false,
            unrecorded: Vec::new(),
            stopping: false,
            last_success: None,
        }
    }

    /// Takes one event at `now` and says what to do.
    pub fn handle(&mut self, event: Event, now: jiff::Timestamp) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Turn => self.retry_records(now, &mut actions),
            Event::Claimed { claim, got } => {
                self.claiming = false;
                self.sending += got;
                for _ in 0..got {
                    self.pacer.sent(now);
                }
                if claim.probe && got > 0 {
                    self.circuit.probe_sent();
                }
                // Fewer than asked means nothing more is due, and as many as asked fills the room
                // (or the pacer's slot): either way, the next turn or answer looks again.
                return actions;
            }
            Event::ClaimFailed => {
                self.claiming = false;
                return actions;
            }
            Event::Answered(answer) => self.answered(answer, now, &mut actions),
            Event::Lost { probe, .. } => {
                self.sending = self.sending.saturating_sub(1);
                if probe {
                    self.circuit.probe_lost();
                }
            }
            Event::Rerecorded { item, written } => {
                if written {
                    self.unrecorded.retain(|unrecorded| unrecorded.item != item);
                } else if let Some(unrecorded) =
                    self.unrecorded.iter_mut().find(|unrecorded| unrecorded.item == item)
                {
                    unrecorded.writing = false;
                    unrecorded.tries += 1;
                    let wait = Duration::from_secs(1 << unrecorded.tries.min(5)).min(RECORD_BACKOFF_MAX);
                    unrecorded.next_try = add(now, wait);
                }
            }
            Event::Reloaded(limits) => {
                self.limits = limits;
                self.pacer = self.pacer.with_rate(limits.max_rate);
                let from = self.circuit.gate;
                self.circuit.on_reload();
                if self.circuit.gate != from {
                    actions.push(Action::GateChanged { from, to: self.circuit.gate, code: None });
                }
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

    /// A finished request: the circuit learns from it, a failed record is kept to write again.
    fn answered(&mut self, answer: Answer, now: jiff::Timestamp, actions: &mut Vec<Action>) {
        self.sending = self.sending.saturating_sub(1);
        if answer.verdict.outcome == Outcome::Success {
            self.last_success = Some(now);
        }
        let from = self.circuit.gate;
        self.circuit.on_result(&answer.verdict, answer.probe, now, &self.limits.settings);
        if self.circuit.gate != from {
            actions.push(Action::GateChanged { from, to: self.circuit.gate, code: answer.verdict.code() });
        }
        if !answer.recorded && !self.unrecorded.iter().any(|unrecorded| unrecorded.item == answer.item) {
            self.unrecorded.push(Unrecorded {
                item: answer.item,
                lease_until: answer.lease_until,
                next_try: add(now, Duration::from_secs(1)),
                tries: 0,
                writing: false,
            });
        }
    }

    /// Failed records due for another try, or to give up on.
    fn retry_records(&mut self, now: jiff::Timestamp, actions: &mut Vec<Action>) {
        let margin = jiff::SignedDuration::try_from(RECORD_MARGIN).unwrap_or_default();
        self.unrecorded.retain(|unrecorded| {
            let give_up = unrecorded.lease_until.checked_sub(margin).is_ok_and(|last| now >= last);
            if give_up && !unrecorded.writing {
                actions.push(Action::Abandon { item: unrecorded.item });
                return false;
            }
            true
        });
        for unrecorded in &mut self.unrecorded {
            if !unrecorded.writing && now >= unrecorded.next_try {
                unrecorded.writing = true;
                actions.push(Action::Record { item: unrecorded.item });
            }
        }
    }

    /// The claim to make now, if any.
    fn claim(&self, now: jiff::Timestamp) -> Option<Claim> {
        if self.stopping || self.claiming {
            return None;
        }
        let room = self.limits.concurrency.saturating_sub(self.sending);
        let claim = match self.circuit.permit(now) {
            Permit::Send => Claim { room: self.pacer.room(now, room), probe: false },
            Permit::Probe => Claim { room: self.pacer.room(now, room.min(1)), probe: true },
            Permit::WaitUntil(_) => return None,
        };
        (claim.room > 0).then_some(claim)
    }

    /// When something may change without an event: the circuit's or the pacer's next moment, or
    /// a failed record's next try. The loop wakes then (or at its tick, whichever is first).
    pub fn wake_at(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let circuit = match self.circuit.permit(now) {
            Permit::WaitUntil(until) if until < jiff::Timestamp::MAX => Some(until),
            Permit::WaitUntil(_) => None,
            Permit::Send | Permit::Probe => self.pacer.wait(now),
        };
        let records = self
            .unrecorded
            .iter()
            .filter(|unrecorded| !unrecorded.writing)
            .map(|unrecorded| unrecorded.next_try)
            .min();
        [circuit, records].into_iter().flatten().min()
    }

    /// Requests still on the wire.
    pub fn sending(&self) -> usize {
        self.sending
    }

    /// What the status line reports.
    pub fn status(&self) -> Status {
        Status {
            gate: self.circuit.gate,
            sending: self.sending,
            unrecorded: self.unrecorded.len(),
            last_success: self.last_success,
        }
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
