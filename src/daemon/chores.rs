//! The tick's chores — lease recovery, the heartbeat with the circuit's state, attempts counted
//! by hour, waiting counts, the history purge in batches — run as one job on the store thread,
//! and the two decisions around them, kept pure so they are tested without a clock: when the
//! purge runs (`PurgeCadence`), and when a database error is worth a line in the journal
//! (`Problems`).

use std::time::{Duration, Instant};

use crate::core::policy::Gate;
use crate::io::store::{Store, StoreError};

/// How often old attempt records are purged.
pub const PURGE_EVERY: Duration = Duration::from_secs(3_600);
/// Attempt records deleted per purge transaction.
pub const PURGE_BATCH: usize = 5_000;
/// How long the same database error stays quiet in the journal after it was logged.
pub const PROBLEM_QUIET: Duration = Duration::from_secs(60);

/// What the tick's chores found.
pub struct Chores {
    /// The database was deleted or replaced under the daemon (why, in pt-BR): stop.
    pub replaced: Option<String>,
    pub recovered: Result<usize, StoreError>,
    pub heartbeat: Result<(), StoreError>,
    pub counts: Result<(u64, u64, u64), StoreError>,
    pub last_success: Result<Option<jiff::Timestamp>, StoreError>,
    pub purged: Result<usize, StoreError>,
    /// The attempts since the last tick counted into `attempt_hours` (the page's charts).
    pub hours: Result<usize, StoreError>,
}

impl Chores {
    /// Does the chores on the store thread: `gate` is the circuit's state for the heartbeat, and
    /// the purge deletes records of items delivered before `retention` ago when `purge` says so.
    pub fn run(store: &mut Store, gate: &Gate, purge: bool, retention: Duration) -> Chores {
        let now = jiff::Timestamp::now();
        let retention = jiff::SignedDuration::try_from(retention).unwrap_or_default();
        Chores {
            replaced: store.replaced(),
            recovered: store.recover_leases(now),
            // Before the purge, so an attempt is counted before it can go.
            hours: store.count_attempt_hours(),
            heartbeat: store.heartbeat(now, gate),
            purged: if purge {
                store.purge_history(now.saturating_sub(retention).unwrap_or(now), PURGE_BATCH)
            } else {
                Ok(0)
            },
            counts: store.waiting_counts(),
            last_success: store.last_success(),
        }
    }
}

/// When the history purge runs: once an hour, and again at the next tick while a batch came
/// back full (so a large backlog is deleted in short transactions, not in one long one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCadence {
    last: Option<Instant>,
    more: bool,
}

impl PurgeCadence {
    /// Whether this tick purges (and, if it starts a new round, notes when).
    pub fn due(&mut self, now: Instant) -> bool {
        let due = self.more || self.last.is_none_or(|last| now.duration_since(last) >= PURGE_EVERY);
        if due && !self.more {
            self.last = Some(now);
        }
        due
    }

    /// A purge deleted `deleted` records: a full batch means there is more.
    pub fn purged(&mut self, deleted: usize) {
        self.more = deleted >= PURGE_BATCH;
    }
}

/// The database's trouble as the journal and the status line see it: a problem is logged when
/// it is new, or once a minute while it lasts (a full disk must not flood the journal), and
/// shown in the status line until writes work again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    current: Option<(String, Instant)>,
}

impl Problems {
    /// A database operation failed with `problem`: whether to log it now.
    pub fn report(&mut self, problem: String, now: Instant) -> bool {
        let repeat = self
            .current
            .as_ref()
            .is_some_and(|(last, when)| *last == problem && now.duration_since(*when) < PROBLEM_QUIET);
        if !repeat {
            self.current = Some((problem, now));
        }
        !repeat
    }

    /// A write worked: whether there was a problem until now (say it is over).
    pub fn cleared(&mut self) -> bool {
        self.current.take().is_some()
    }

    /// The problem of the moment, for the status line.
    pub fn current(&self) -> Option<&str> {
        self.current.as_ref().map(|(problem, _)| problem.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_runs_hourly_and_again_while_batches_come_back_full() {
        let start = Instant::now();
        let mut cadence = PurgeCadence::default();
        assert!(cadence.due(start), "the first tick purges");
        cadence.purged(PURGE_BATCH);
        assert!(cadence.due(start + Duration::from_secs(1)), "a full batch: go on at the next tick");
        cadence.purged(10);
        assert!(!cadence.due(start + Duration::from_secs(2)));
        assert!(
            !cadence.due(start + PURGE_EVERY - Duration::from_secs(1)),
            "the hour counts from the round's start"
        );
        assert!(cadence.due(start + PURGE_EVERY));
    }

    #[test]
    fn a_database_error_is_logged_when_new_and_once_a_minute_while_it_lasts() {
        let start = Instant::now();
        let mut problems = Problems::default();
        assert!(problems.report("disco cheio".into(), start));
        assert!(!problems.report("disco cheio".into(), start + Duration::from_secs(59)));
        assert!(
            problems.report("banco travado".into(), start + Duration::from_secs(59)),
            "another problem is news"
        );
        assert!(problems.report("banco travado".into(), start + Duration::from_secs(59) + PROBLEM_QUIET));
        assert_eq!(problems.current(), Some("banco travado"));
        assert!(problems.cleared());
        assert!(!problems.cleared(), "said once");
        assert_eq!(problems.current(), None);
    }
}
