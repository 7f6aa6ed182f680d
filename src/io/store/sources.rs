//! The last run of each polled `[[source]]` (`sources` table): written by the daemon after each
//! run, read by `status`.

use rusqlite::params;
use serde::Serialize;

use super::{Store, StoreError, from_millis, to_millis};

/// How one run of a source went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceRun {
    pub name: String,
    pub at: jiff::Timestamp,
    pub duration_ms: u64,
    /// `None` when it worked; why not otherwise (pt-BR, secrets masked).
    pub error: Option<String>,
    pub rows: u64,
    pub new_items: u64,
}

/// A source's row: its last run, its last good run, and the failures in a row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceRow {
    pub last: SourceRun,
    pub last_ok_at: Option<jiff::Timestamp>,
    pub failures: u64,
}

impl Store {
    /// Records a run, keeping the time of the last good one and counting failures in a row.
    pub fn record_source_run(&mut self, run: &SourceRun) -> Result<(), StoreError> {
        let ok = run.error.is_none();
        let at = to_millis(run.at);
        self.conn
            .execute(
                "INSERT INTO sources (name, last_run_at, duration_ms, ok, rows, new_items, error, last_ok_at, failures) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN ?4 THEN ?2 END, CASE WHEN ?4 THEN 0 ELSE 1 END) \
                 ON CONFLICT (name) DO UPDATE SET last_run_at = ?2, duration_ms = ?3, ok = ?4, rows = ?5, \
                 new_items = ?6, error = ?7, last_ok_at = CASE WHEN ?4 THEN ?2 ELSE last_ok_at END, \
                 failures = CASE WHEN ?4 THEN 0 ELSE failures + 1 END",
                params![
                    run.name,
                    at,
                    i64::try_from(run.duration_ms).unwrap_or(i64::MAX),
                    ok,
                    i64::try_from(run.rows).unwrap_or(i64::MAX),
                    i64::try_from(run.new_items).unwrap_or(i64::MAX),
                    run.error
                ],
            )
            .map(drop)
            .map_err(|e| self.error("registrar a execução da fonte", e))
    }

    /// Deletes the rows of sources no longer configured, so `status` shows only the sources
    /// there are.
    pub fn keep_sources(&mut self, names: &[String]) -> Result<(), StoreError> {
        let keep = serde_json::to_string(names).unwrap_or_default();
        self.conn
            .execute("DELETE FROM sources WHERE name NOT IN (SELECT value FROM json_each(?1))", [keep])
            .map(drop)
            .map_err(|e| self.error("atualizar as fontes", e))
    }

    /// Every source's row, by name.
    pub fn source_rows(&self) -> Result<Vec<SourceRow>, StoreError> {
        let read = || -> rusqlite::Result<Vec<SourceRow>> {
            let mut statement = self.conn.prepare(
                "SELECT name, last_run_at, duration_ms, rows, new_items, error, last_ok_at, failures \
                 FROM sources ORDER BY name",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(SourceRow {
                    last: SourceRun {
                        name: row.get(0)?,
                        at: from_millis(row.get(1)?),
                        duration_ms: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                        rows: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                        new_items: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                        error: row.get(5)?,
                    },
                    last_ok_at: row.get::<_, Option<i64>>(6)?.map(from_millis),
                    failures: u64::try_from(row.get::<_, i64>(7)?).unwrap_or(0),
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| self.error("ler as fontes", e))
    }
}
