//! The figures `extrator status` shows, and the daemon's heartbeat row that tells whether the
//! daemon is alive.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, from_millis, to_millis};
use crate::core::item::State;
use crate::core::policy::Gate;

/// The daemon's own row: who it is and when it last proved it was working.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonRow {
    pub pid: i64,
    pub version: String,
    pub started_at: jiff::Timestamp,
    pub heartbeat_at: jiff::Timestamp,
    /// Set on a clean stop.
    pub stopped_at: Option<jiff::Timestamp>,
    /// The circuit breaker's state as of the last heartbeat, typed (rendered in pt-BR at the
    /// edge with the reader's `now`: a probe time that has passed is never shown as the future).
    /// `None` when unknown (no heartbeat yet, or written by an older version as prose).
    #[serde(skip)]
    pub gate: Option<Gate>,
    /// When the client certificate it uses expires (mutual TLS), if it uses one.
    pub certificate_expires_at: Option<jiff::Timestamp>,
}

/// The stored form of a gate: `closed`, `open 04 <ms>`, `paused 02 <ms>`, `rate_limited <ms>`.
fn gate_to_stored(gate: &Gate) -> String {
    match *gate {
        Gate::Closed => "closed".to_owned(),
        Gate::Open { code, next_probe_at } => format!("open {} {}", code.as_str(), to_millis(next_probe_at)),
        Gate::Paused { code, next_probe_at } => {
            format!("paused {} {}", code.as_str(), to_millis(next_probe_at))
        }
        Gate::RateLimited { until } => format!("rate_limited {}", to_millis(until)),
    }
}

/// A stored gate back; `None` for anything else (an older version stored pt-BR prose).
fn gate_from_stored(text: &str) -> Option<Gate> {
    let parts: Vec<&str> = text.split(' ').collect();
    let code = |text: &str| crate::core::codes::find(text).map(|info| info.code);
    let at = |text: &str| text.parse::<i64>().ok().map(from_millis);
    match parts.as_slice() {
        ["closed"] => Some(Gate::Closed),
        ["open", c, ms] => Some(Gate::Open { code: code(c)?, next_probe_at: at(ms)? }),
        ["paused", c, ms] => Some(Gate::Paused { code: code(c)?, next_probe_at: at(ms)? }),
        ["rate_limited", ms] => Some(Gate::RateLimited { until: at(ms)? }),
        _ => None,
    }
}

/// When the oldest pending item was queued: the partial index `items_pending_since` (migration
/// 5) answers it at once; `INDEXED BY` makes the statement fail rather than walk the items.
pub(super) const OLDEST_PENDING: &str =
    "SELECT MIN(created_at) FROM items INDEXED BY items_pending_since WHERE state = 'pending'";

/// What the queue holds: `/metrics` reads it at each scrape, `status` within its snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueFigures {
    /// Items per state, every state present (zero included), in lifecycle order.
    pub counts: Vec<(State, u64)>,
    /// When the oldest pending item was queued.
    pub oldest_pending: Option<jiff::Timestamp>,
}

/// Health at a glance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Items per state, every state present (zero included), in lifecycle order.
    pub counts: Vec<(State, u64)>,
    /// Failed attempts per code since the given moment (the last 24 h for `status`).
    pub failures_by_code: Vec<(String, u64)>,
    pub oldest_pending: Option<jiff::Timestamp>,
    pub last_success: Option<jiff::Timestamp>,
    pub daemon: Option<DaemonRow>,
}

impl Store {
    /// Reads the status figures; failures are counted from `since`.
    pub fn snapshot(&self, since: jiff::Timestamp) -> Result<Snapshot, StoreError> {
        let read = || -> rusqlite::Result<Snapshot> {
            let QueueFigures { counts, oldest_pending } = self.read_queue_figures()?;
            let mut statement = self.conn.prepare(
                "SELECT COALESCE(code, '99'), COUNT(*) FROM attempts \
                 WHERE started_at >= ?1 AND outcome = 'failure' GROUP BY 1 ORDER BY 1",
            )?;
            let failures_by_code = statement
                .query_map([to_millis(since)], |row| {
                    Ok((row.get(0)?, u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0)))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let last_success: Option<i64> = self
                .conn
                .query_row(
                    "SELECT started_at FROM attempts WHERE outcome = 'success' \
                     ORDER BY started_at DESC LIMIT 1",
                    [],
                    |row| row.get(0),
                )
                .optional()?;
            let daemon = self.read_daemon_row()?;
            Ok(Snapshot {
                counts,
                failures_by_code,
                oldest_pending,
                last_success: last_success.map(from_millis),
                daemon,
            })
        };
        read().map_err(|e| self.error("ler o estado da fila", e))
    }

    /// The daemon's row, if a daemon ever ran on this database.
    pub fn daemon_row(&self) -> Result<Option<DaemonRow>, StoreError> {
        self.read_daemon_row().map_err(|e| self.error("ler o estado do serviço", e))
    }

    fn read_daemon_row(&self) -> rusqlite::Result<Option<DaemonRow>> {
        self.conn
            .query_row(
                "SELECT pid, version, started_at, heartbeat_at, stopped_at, gate, certificate_expires_at \
                 FROM daemon WHERE id = 1",
                [],
                |row| {
                    Ok(DaemonRow {
                        pid: row.get(0)?,
                        version: row.get(1)?,
                        started_at: from_millis(row.get(2)?),
                        heartbeat_at: from_millis(row.get(3)?),
                        stopped_at: row.get::<_, Option<i64>>(4)?.map(from_millis),
                        gate: row.get::<_, Option<String>>(5)?.as_deref().and_then(gate_from_stored),
                        certificate_expires_at: row.get::<_, Option<i64>>(6)?.map(from_millis),
                    })
                },
            )
            .optional()
    }

    /// Attempts per hour (Unix hours) and result (a failure's code, else `success` or
    /// `processing`) from `since` on: the `attempt_hours` table the attempts' trigger keeps.
    pub fn attempt_hours(&self, since: jiff::Timestamp) -> Result<Vec<(i64, String, u64)>, StoreError> {
        let read = || -> rusqlite::Result<Vec<(i64, String, u64)>> {
            let mut statement =
                self.conn.prepare_cached("SELECT hour, result, count FROM attempt_hours WHERE hour >= ?1")?;
            let rows = statement.query_map([to_millis(since) / 3_600_000], |row| {
                Ok((row.get(0)?, row.get(1)?, u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0)))
            })?;
            rows.collect()
        };
        read().map_err(|e| self.error("ler as tentativas por hora", e))
    }

    /// Items per state and when the oldest pending item was queued: what `/metrics` shows of
    /// the queue.
    pub fn queue_figures(&self) -> Result<QueueFigures, StoreError> {
        self.read_queue_figures().map_err(|e| self.error("ler o estado da fila", e))
    }

    /// In one read transaction: the items not done counted on their `items_due` ranges (small
    /// in a healthy queue), the done ones as all items (SQLite counts a table from its pages,
    /// without reading rows) minus those; the oldest pending from its partial index.
    fn read_queue_figures(&self) -> rusqlite::Result<QueueFigures> {
        let read = self.conn.unchecked_transaction()?;
        let total: i64 =
            read.prepare_cached("SELECT COUNT(*) FROM items")?.query_row([], |row| row.get(0))?;
        let mut counts = Vec::with_capacity(State::ALL.len());
        let mut not_done = 0;
        for state in State::ALL.into_iter().filter(|state| *state != State::Done) {
            let count: i64 = read
                .prepare_cached("SELECT COUNT(*) FROM items WHERE state = ?1")?
                .query_row([state.as_str()], |row| row.get(0))?;
            not_done += count;
            counts.push((state, u64::try_from(count).unwrap_or(0)));
        }
        let done = u64::try_from(total - not_done).unwrap_or(0);
        let at = State::ALL.iter().position(|state| *state == State::Done).unwrap_or(counts.len());
        counts.insert(at, (State::Done, done));
        let oldest_pending: Option<i64> = read.query_row(OLDEST_PENDING, [], |row| row.get(0))?;
        Ok(QueueFigures { counts, oldest_pending: oldest_pending.map(from_millis) })
    }

    /// Counts the attempts recorded since the last call into `attempt_hours`, and moves the
    /// mark, in one transaction: a crash in between counts them at the next call, never twice.
    /// Run by the daemon's chores (the daemon alone records attempts).
    pub fn count_attempt_hours(&mut self) -> Result<usize, StoreError> {
        const ACTION: &str = "contar as tentativas por hora";
        // Nothing new (an idle daemon, every tick): no write transaction at all.
        let behind: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM attempts WHERE id > \
                 (SELECT last_attempt FROM attempt_hours_done WHERE id = 1))",
            )
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(|e| self.error(ACTION, e))?;
        if !behind {
            return Ok(0);
        }
        let (tx, context) = self.write(ACTION)?;
        let counted = tx
            .execute(
                "INSERT INTO attempt_hours (hour, result, count) \
                 SELECT started_at / 3600000, COALESCE(code, outcome), COUNT(*) FROM attempts \
                 WHERE id > (SELECT last_attempt FROM attempt_hours_done WHERE id = 1) GROUP BY 1, 2 \
                 ON CONFLICT (hour, result) DO UPDATE SET count = count + excluded.count",
                [],
            )
            .and_then(|rows| {
                tx.execute(
                    "UPDATE attempt_hours_done SET last_attempt = \
                     (SELECT COALESCE(MAX(id), last_attempt) FROM attempts) WHERE id = 1",
                    [],
                )
                .map(|_| rows)
            })
            .map_err(|e| context.fail(e))?;
        tx.commit().map_err(|e| context.fail(e))?;
        Ok(counted)
    }

    /// Items waiting (pending or being sent), processing and failed: range counts on the
    /// `items_due` index, cheap enough for the daemon's status line on every tick (done items are
    /// not counted).
    pub fn waiting_counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let count = |state: State| -> rusqlite::Result<u64> {
            self.conn
                .prepare_cached("SELECT COUNT(*) FROM items WHERE state = ?1")?
                .query_row([state.as_str()], |row| row.get::<_, i64>(0))
                .map(|count| u64::try_from(count).unwrap_or(0))
        };
        let read = || {
            Ok((
                count(State::Pending)? + count(State::InFlight)?,
                count(State::Processing)?,
                count(State::Failed)?,
            ))
        };
        read().map_err(|e: rusqlite::Error| self.error("contar a fila", e))
    }

    /// When the last successful attempt started, if any.
    pub fn last_success(&self) -> Result<Option<jiff::Timestamp>, StoreError> {
        self.conn
            .query_row(
                "SELECT started_at FROM attempts WHERE outcome = 'success' ORDER BY started_at DESC LIMIT 1",
                [],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|at| at.map(from_millis))
            .map_err(|e| self.error("ler o último sucesso", e))
    }

    /// Records that a daemon started (replacing the previous daemon's row).
    pub fn daemon_started(&mut self, pid: u32, now: jiff::Timestamp) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO daemon (id, pid, version, started_at, heartbeat_at, stopped_at) \
                 VALUES (1, ?1, ?2, ?3, ?3, NULL)",
                params![pid, env!("CARGO_PKG_VERSION"), to_millis(now)],
            )
            .map(drop)
            .map_err(|e| self.error("registrar o início do serviço", e))
    }

    /// The client certificate's expiry the daemon uses from now on (at start and reload).
    pub fn set_certificate(&mut self, expires_at: Option<jiff::Timestamp>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE daemon SET certificate_expires_at = ?1 WHERE id = 1",
                [expires_at.map(to_millis)],
            )
            .map(drop)
            .map_err(|e| self.error("registrar o certificado do serviço", e))
    }

    /// The daemon's proof of life, written from its working loop, with the circuit's state.
    pub fn heartbeat(&mut self, now: jiff::Timestamp, gate: &Gate) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE daemon SET heartbeat_at = ?1, gate = ?2 WHERE id = 1",
                params![to_millis(now), gate_to_stored(gate)],
            )
            .map(drop)
            .map_err(|e| self.error("registrar o sinal de vida", e))
    }

    /// Records a clean stop, so `status` can tell "stopped" from "died".
    pub fn daemon_stopped(&mut self, now: jiff::Timestamp) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE daemon SET stopped_at = ?1, heartbeat_at = ?1 WHERE id = 1", [to_millis(now)])
            .map(drop)
            .map_err(|e| self.error("registrar a parada do serviço", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codes::Code;

    #[test]
    fn a_gate_is_stored_typed_and_read_back_and_old_prose_is_unknown() {
        let at = jiff::Timestamp::from_millisecond(1_800_000_000_123).unwrap();
        for gate in [
            Gate::Closed,
            Gate::Open { code: Code::Timeout, next_probe_at: at },
            Gate::Paused { code: Code::InvalidPassword, next_probe_at: at },
            Gate::RateLimited { until: at },
        ] {
            assert_eq!(gate_from_stored(&gate_to_stored(&gate)), Some(gate));
        }
        assert_eq!(gate_from_stored("enviando normalmente"), None);
        assert_eq!(gate_from_stored("open 42 1"), None, "not a code");
    }
}
