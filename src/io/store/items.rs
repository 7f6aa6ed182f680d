//! Items: enqueue (idempotent on the order number, all or nothing), reading with filters, the
//! dispatcher's claim and lease recovery, and the operator's re-send.

use std::fmt;
use std::time::Duration;

use rusqlite::{OptionalExtension, Row, ToSql, params};
use serde::Serialize;
use serde_json::Value;

use super::{Store, StoreError, from_millis, to_millis};
use crate::core::codes::Code;
use crate::core::item::{Attempt, AttemptOutcome, Item, NewItem, Origin, State};

/// What enqueue did with one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnqueueOutcome {
    pub order: String,
    pub id: i64,
    /// `true` when the order was already queued with identical content (a no-op).
    pub already_queued: bool,
    pub state: State,
}

/// An order already queued with different content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub order: String,
    /// The queued item it conflicts with; `None` when the other version is earlier in the same
    /// batch (rolled back with it, so it has no id to name).
    pub id: Option<i64>,
    /// The fields that differ.
    pub fields: Vec<&'static str>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = crate::core::text::terminal_safe(&self.order);
        let fields = self.fields.join(", ");
        match self.id {
            Some(id) => write!(f, "pedido {order} (item {id}): difere em {fields}"),
            None => write!(f, "pedido {order}: repetido no mesmo lote, difere em {fields}"),
        }
    }
}

/// What the dispatcher records for one attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub duration: Duration,
    pub excerpt: Option<&'a str>,
    pub probe: bool,
    /// The decision for the item, which carries the verdict to record.
    pub after: &'a crate::core::policy::ItemAfter,
}

/// The selection shared by `list` and `retry`. Empty fields select everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub ids: Vec<i64>,
    pub states: Vec<State>,
    pub code: Option<String>,
    pub order: Option<String>,
    /// Last update at or after.
    pub since: Option<jiff::Timestamp>,
    /// Last update before.
    pub until: Option<jiff::Timestamp>,
    /// At most this many, newest update first; `None` for all.
    pub limit: Option<u32>,
}

impl Filter {
    /// The `WHERE` clause and its parameters.
    fn to_sql(&self) -> (String, Vec<Box<dyn ToSql>>) {
        let mut clauses: Vec<String> = Vec::new();
        let mut params: Vec<Box<dyn ToSql>> = Vec::new();
        if !self.ids.is_empty() {
            clauses.push(format!("id IN ({})", vec!["?"; self.ids.len()].join(", ")));
            params.extend(self.ids.iter().map(|id| Box::new(*id) as Box<dyn ToSql>));
        }
        if !self.states.is_empty() {
            clauses.push(format!("state IN ({})", vec!["?"; self.states.len()].join(", ")));
            params.extend(self.states.iter().map(|state| Box::new(state.as_str()) as Box<dyn ToSql>));
        }
        if let Some(code) = &self.code {
            clauses.push("last_code = ?".to_owned());
            params.push(Box::new(code.clone()));
        }
        if let Some(order) = &self.order {
            clauses.push("order_number = ?".to_owned());
            params.push(Box::new(order.clone()));
        }
        if let Some(since) = self.since {
            clauses.push("updated_at >= ?".to_owned());
            params.push(Box::new(to_millis(since)));
        }
        if let Some(until) = self.until {
            clauses.push("updated_at < ?".to_owned());
            params.push(Box::new(to_millis(until)));
        }
        let sql =
            if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
        (sql, params)
    }
}

/// The columns `read_item` expects, in order.
const ITEM_COLUMNS: &str = "id, order_number, branch, reason, cancelled_at, customer, extra, state, \
     attempts, last_code, last_message, next_at, created_at, updated_at, idempotency_key, source, \
     processing_since, sent, receipt, poll_url";

/// How many of the items due longest a probe's claim looks through for one never sent.
const PROBE_LOOKAHEAD: usize = 1_000;

/// The claim of up to `limit` due items, `processing` (due for their next poll) and `pending`
/// alike, oldest due first: one statement, each state read on the `items_due` index (only the
/// `limit` oldest of each are merged and sorted). `avoid` (a probe's items already probed) are
/// skipped. The limit and the ids are literals, because a bound LIMIT makes SQLite re-prepare
/// the statement whenever its value changes; each limit is its own cached statement.
fn claim_sql(limit: usize, avoid: &[i64]) -> String {
    let avoid = if avoid.is_empty() {
        String::new()
    } else {
        let ids: Vec<String> = avoid.iter().map(i64::to_string).collect();
        format!(" AND id NOT IN ({})", ids.join(", "))
    };
    let due = |state: &str| {
        format!(
            "SELECT * FROM (SELECT id, next_at FROM items WHERE state = '{state}' AND next_at <= ?1{avoid} \
             ORDER BY next_at LIMIT {limit})"
        )
    };
    format!(
        "UPDATE items SET state = 'in_flight', lease_until = ?2, lease_token = ?3, updated_at = ?1 \
         WHERE id IN (SELECT id FROM ({processing} UNION ALL {pending}) ORDER BY next_at LIMIT {limit}) \
         RETURNING {ITEM_COLUMNS}",
        processing = due(State::Processing.as_str()),
        pending = due(State::Pending.as_str()),
    )
}

/// Reads an `ITEM_COLUMNS` row. Bad stored values surface as conversion errors.
fn read_item(row: &Row<'_>) -> rusqlite::Result<Item> {
    let conversion = |index: usize, message: String| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, message.into())
    };
    let state: String = row.get(7)?;
    let state: State = state.parse().map_err(|message| conversion(7, message))?;
    let extra: Option<String> = row.get(6)?;
    let extra = extra
        .map(|text| serde_json::from_str(&text).map_err(|error| conversion(6, error.to_string())))
        .transpose()?;
    let next_at: i64 = row.get(11)?;
    let waiting = matches!(state, State::Pending | State::Processing | State::InFlight);
    let source: String = row.get(15)?;
    let source: Origin = source.parse().map_err(|message| conversion(15, message))?;
    let last_code: Option<String> = row.get(9)?;
    Ok(Item {
        id: row.get(0)?,
        order: row.get(1)?,
        branch: row.get(2)?,
        reason: row.get(3)?,
        cancelled_at: row.get(4)?,
        customer: row.get(5)?,
        extra,
        state,
        attempts: row.get(8)?,
        last_code: last_code
            .as_deref()
            .map(|text| stored_code(text).map_err(|message| conversion(9, message)))
            .transpose()?,
        last_message: row.get(10)?,
        next_attempt_at: waiting.then(|| from_millis(next_at)),
        created_at: from_millis(row.get(12)?),
        updated_at: from_millis(row.get(13)?),
        idempotency_key: row.get(14)?,
        source,
        processing_since: row.get::<_, Option<i64>>(16)?.map(from_millis),
        sent: row.get(17)?,
        receipt: row.get(18)?,
        poll_url: row.get(19)?,
    })
}

/// A stored code ("07") back; anything else is a damaged row.
fn stored_code(text: &str) -> Result<Code, String> {
    crate::core::codes::find(text)
        .map(|info| info.code)
        .ok_or_else(|| format!("código desconhecido: {text:?}"))
}

/// The stored fields of an existing item, for the identity check.
struct Existing {
    id: i64,
    branch: String,
    reason: String,
    cancelled_at: String,
    customer: Option<String>,
    extra: Option<String>,
    state: String,
}

impl Existing {
    /// The statement that finds the stored item of an order; `find` reads its row.
    const SQL: &'static str =
        "SELECT id, branch, reason, cancelled_at, customer, extra, state FROM items WHERE order_number = ?1";

    /// The stored item of `order`, if it is queued, through a statement prepared from `SQL`.
    fn find(
        statement: &mut rusqlite::CachedStatement<'_>,
        order: &str,
    ) -> rusqlite::Result<Option<Existing>> {
        statement
            .query_row([order], |row| {
                Ok(Existing {
                    id: row.get(0)?,
                    branch: row.get(1)?,
                    reason: row.get(2)?,
                    cancelled_at: row.get(3)?,
                    customer: row.get(4)?,
                    extra: row.get(5)?,
                    state: row.get(6)?,
                })
            })
            .optional()
    }
}

/// Which fields of `new` differ from `existing`. An omitted `cancelled_at` ("now") matches any, so
/// running the same `enqueue` command twice is a no-op rather than a conflict.
fn differences(new: &NewItem, extra: Option<&str>, existing: &Existing) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if new.branch != existing.branch {
        fields.push("branch");
    }
    if new.reason != existing.reason {
        fields.push("reason");
    }
    if let Some(cancelled_at) = &new.cancelled_at {
        let same_instant = crate::core::item::parse_rfc3339(cancelled_at).ok()
            == crate::core::item::parse_rfc3339(&existing.cancelled_at).ok();
        if !same_instant {
            fields.push("cancelled_at");
        }
    }
    if new.customer != existing.customer {
        fields.push("customer");
    }
    if extra != existing.extra.as_deref() {
        fields.push("extra");
    }
    fields
}

impl Store {
    /// Queues a batch: all of it, or — when any order is already queued with other content —
    /// none of it (`StoreError::Conflicts`). Identical re-submissions are reported, not stored.
    pub fn enqueue(
        &mut self,
        items: &[NewItem],
        origin: &Origin,
        now: jiff::Timestamp,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        // The intake's promise ("enfileirado" only once on disk) holds on any connection.
        self.durably("gravar os cancelamentos", |store| store.enqueue_now(items, origin, now))
    }

    fn enqueue_now(
        &mut self,
        items: &[NewItem],
        origin: &Origin,
        now: jiff::Timestamp,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        const ACTION: &str = "gravar os cancelamentos";
        let source = origin.as_text();
        let now_ms = to_millis(now);
        let (tx, context) = self.write(ACTION)?;
        let mut outcomes = Vec::with_capacity(items.len());
        let mut conflicts = Vec::new();
        // Ids this batch inserted: rolled back with it if it is refused, so never named.
        let mut inserted = std::collections::HashSet::new();
        {
            let mut find = tx.prepare_cached(Existing::SQL).map_err(|e| context.fail(e))?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO items (order_number, branch, reason, cancelled_at, customer, extra, \
                     idempotency_key, source, state, next_at, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?9, ?9)",
                )
                .map_err(|e| context.fail(e))?;
            for item in items {
                let extra = item.extra.as_ref().map(|extra| Value::Object(extra.clone()).to_string());
                let existing = Existing::find(&mut find, &item.order).map_err(|e| context.fail(e))?;
                match existing {
                    Some(existing) => {
                        let fields = differences(item, extra.as_deref(), &existing);
                        if fields.is_empty() {
                            let state = existing.state.parse().map_err(|detail| StoreError::Corrupt {
                                path: context.path.clone(),
                                detail,
                            })?;
                            outcomes.push(EnqueueOutcome {
                                order: item.order.clone(),
                                id: existing.id,
                                already_queued: true,
                                state,
                            });
                        } else {
                            let id = (!inserted.contains(&existing.id)).then_some(existing.id);
                            conflicts.push(Conflict { order: item.order.clone(), id, fields });
                        }
                    }
                    None => {
                        let cancelled_at = item
                            .cancelled_at
                            .clone()
                            .unwrap_or_else(|| now.round(jiff::Unit::Second).unwrap_or(now).to_string());
                        // Stable for the item's whole life, unique across databases in practice.
                        let key = format!("extrator-{}-{now_ms}", item.order);
                        insert
                            .execute(params![
                                item.order,
                                item.branch,
                                item.reason,
                                cancelled_at,
                                item.customer,
                                extra,
                                key,
                                source,
                                now_ms
                            ])
                            .map_err(|e| context.fail(e))?;
                        let id = tx.last_insert_rowid();
                        inserted.insert(id);
                        outcomes.push(EnqueueOutcome {
                            order: item.order.clone(),
                            id,
                            already_queued: false,
                            state: State::Pending,
                        });
                    }
                }
            }
        }
        if !conflicts.is_empty() {
            // Dropping the transaction rolls it back: nothing of the batch is kept.
            return Err(StoreError::Conflicts(conflicts.into_iter().collect()));
        }
        tx.commit().map_err(|e| context.fail(e))?;
        Ok(outcomes)
    }

    /// Which of `items` are queued already (whatever their content), read without writing: what
    /// `check` shows of a source's dry run.
    pub fn queued(&self, items: &[NewItem]) -> Result<Vec<bool>, StoreError> {
        let read = || -> rusqlite::Result<Vec<bool>> {
            let mut find = self.conn.prepare_cached(Existing::SQL)?;
            items
                .iter()
                .map(|item| Existing::find(&mut find, &item.order).map(|found| found.is_some()))
                .collect()
        };
        read().map_err(|e| self.error("ler a fila", e))
    }

    /// The orders of `items` already queued with other content, read without writing: a spool
    /// file is checked whole before its first batch goes in.
    pub fn conflicts(&self, items: &[NewItem]) -> Result<Vec<Conflict>, StoreError> {
        let read = || -> rusqlite::Result<Vec<Conflict>> {
            let mut find = self.conn.prepare_cached(Existing::SQL)?;
            let mut conflicts = Vec::new();
            for item in items {
                if let Some(existing) = Existing::find(&mut find, &item.order)? {
                    let extra = item.extra.as_ref().map(|extra| Value::Object(extra.clone()).to_string());
                    let fields = differences(item, extra.as_deref(), &existing);
                    if !fields.is_empty() {
                        conflicts.push(Conflict { order: item.order.clone(), id: Some(existing.id), fields });
                    }
                }
            }
            Ok(conflicts)
        };
        read().map_err(|e| self.error("ler a fila", e))
    }

    /// Items matching `filter`, most recently updated first.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Item>, StoreError> {
        let (where_sql, params) = filter.to_sql();
        let limit = filter.limit.map_or_else(String::new, |limit| format!(" LIMIT {limit}"));
        let sql =
            format!("SELECT {ITEM_COLUMNS} FROM items{where_sql} ORDER BY updated_at DESC, id DESC{limit}");
        let read = || -> rusqlite::Result<Vec<Item>> {
            let mut statement = self.conn.prepare(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(params.iter()), read_item)?;
            rows.collect()
        };
        read().map_err(|e| self.error("ler os itens", e))
    }

    /// The `limit` items that failed last, newest first: a walk down the `items_due` index (a
    /// failed item's `next_at` is when it failed), however many have failed.
    pub fn recent_failures(&self, limit: u32) -> Result<Vec<Item>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE state = 'failed' ORDER BY next_at DESC LIMIT {limit}"
        );
        let read = || -> rusqlite::Result<Vec<Item>> {
            let mut statement = self.conn.prepare_cached(&sql)?;
            let rows = statement.query_map([], read_item)?;
            rows.collect()
        };
        read().map_err(|e| self.error("ler os itens que falharam", e))
    }

    /// How many items match `filter`, ignoring its limit.
    pub fn count(&self, filter: &Filter) -> Result<u64, StoreError> {
        let (where_sql, params) = filter.to_sql();
        self.conn
            .query_row(
                &format!("SELECT COUNT(*) FROM items{where_sql}"),
                rusqlite::params_from_iter(params.iter()),
                |row| row.get::<_, i64>(0),
            )
            .map(|count| u64::try_from(count).unwrap_or(0))
            .map_err(|e| self.error("contar os itens", e))
    }

    /// One item by id.
    pub fn get(&self, id: i64) -> Result<Option<Item>, StoreError> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = ?1");
        self.conn.query_row(&sql, [id], read_item).optional().map_err(|e| self.error("ler o item", e))
    }

    /// The pending item due soonest (what the daemon sends next), if any.
    pub fn next_pending(&self) -> Result<Option<Item>, StoreError> {
        let sql =
            format!("SELECT {ITEM_COLUMNS} FROM items WHERE state = 'pending' ORDER BY next_at LIMIT 1");
        self.conn.query_row(&sql, [], read_item).optional().map_err(|e| self.error("ler a fila", e))
    }

    /// One item by order number.
    pub fn get_by_order(&self, order: &str) -> Result<Option<Item>, StoreError> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE order_number = ?1");
        self.conn.query_row(&sql, [order], read_item).optional().map_err(|e| self.error("ler o item", e))
    }

    /// Every attempt of an item, oldest first.
    pub fn attempts(&self, item_id: i64) -> Result<Vec<Attempt>, StoreError> {
        self.read_attempts(item_id, None)
    }

    /// The `limit` newest attempts of an item, oldest first, and how many it has in all: the
    /// status page's search, which an item probed through a long outage must not make read
    /// thousands of rows (and their excerpts) for one page.
    pub fn last_attempts(&self, item_id: i64, limit: u32) -> Result<(Vec<Attempt>, u64), StoreError> {
        let total: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM attempts WHERE item_id = ?1", [item_id], |row| row.get(0))
            .map_err(|e| self.error("ler as tentativas", e))?;
        Ok((self.read_attempts(item_id, Some(limit))?, u64::try_from(total).unwrap_or(0)))
    }

    /// An item's attempts in order (on the `attempts_item` index), all or the newest `limit`.
    fn read_attempts(&self, item_id: i64, limit: Option<u32>) -> Result<Vec<Attempt>, StoreError> {
        const COLUMNS: &str = "number, started_at, duration_ms, outcome, code, kind, http_status, message, \
                               body_excerpt, probe, counted, receipt, id";
        let sql = match limit {
            None => format!("SELECT {COLUMNS} FROM attempts WHERE item_id = ?1 ORDER BY number, id"),
            Some(limit) => format!(
                "SELECT * FROM (SELECT {COLUMNS} FROM attempts WHERE item_id = ?1 ORDER BY number DESC, id DESC \
                 LIMIT {limit}) ORDER BY number, id"
            ),
        };
        let read = || -> rusqlite::Result<Vec<Attempt>> {
            let mut statement = self.conn.prepare(&sql)?;
            let rows = statement.query_map([item_id], |row| {
                let conversion = |index: usize, message: String| {
                    rusqlite::Error::FromSqlConversionFailure(
                        index,
                        rusqlite::types::Type::Text,
                        message.into(),
                    )
                };
                let outcome: String = row.get(3)?;
                let code: Option<String> = row.get(4)?;
                Ok(Attempt {
                    number: row.get(0)?,
                    started_at: from_millis(row.get(1)?),
                    duration_ms: row.get(2)?,
                    outcome: outcome.parse().map_err(|message| conversion(3, message))?,
                    code: code
                        .as_deref()
                        .map(|text| stored_code(text).map_err(|message| conversion(4, message)))
                        .transpose()?,
                    kind: row.get(5)?,
                    http_status: row.get(6)?,
                    message: row.get(7)?,
                    body_excerpt: row.get(8)?,
                    probe: row.get(9)?,
                    counted: row.get(10)?,
                    receipt: row.get(11)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| self.error("ler as tentativas", e))
    }

    /// Moves the given items back to `pending`, due now, with a fresh attempt budget. An item is
    /// touched only if it is still in the state it was selected in (and never while `in_flight`),
    /// so a concurrent change by the daemon wins. Returns how many moved.
    pub fn requeue(&mut self, selected: &[Item], now: jiff::Timestamp) -> Result<usize, StoreError> {
        const ACTION: &str = "reenfileirar os itens";
        let (tx, context) = self.write(ACTION)?;
        let mut moved = 0;
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE items SET state = 'pending', attempts = 0, next_at = ?1, updated_at = ?1, \
                     lease_until = NULL, processing_since = NULL, poll_url = NULL \
                     WHERE id = ?2 AND state = ?3 AND state <> 'in_flight'",
                )
                .map_err(|e| context.fail(e))?;
            for item in selected {
                moved += update
                    .execute(params![to_millis(now), item.id, item.state.as_str()])
                    .map_err(|e| context.fail(e))?;
            }
        }
        tx.commit().map_err(|e| context.fail(e))?;
        Ok(moved)
    }

    /// Claims up to `limit` items that have been due longest — `processing` items due for their
    /// next poll and `pending` ones alike, by due time, so neither kind can starve the other —
    /// and leases them until `now + lease` under `token`, which their records must carry. One
    /// statement on the `items_due` index, so claims stay cheap with a million items waiting.
    pub fn claim(
        &mut self,
        now: jiff::Timestamp,
        lease: Duration,
        limit: usize,
        token: i64,
    ) -> Result<Vec<Item>, StoreError> {
        self.claim_where(now, lease, token, &claim_sql(limit, &[]), true)
    }

    /// Claims the one item the circuit's probe goes to, under `token`: the order due longest
    /// that was never sent, if one is among the first `PROBE_LOOKAHEAD` due (its answer is the
    /// best news of the API: an order that failed before may well fail again for its own
    /// reasons); else the item due longest that is not in `avoid` (probed since the circuit
    /// opened); else, when only those are due, the one due longest.
    pub fn claim_probe(
        &mut self,
        now: jiff::Timestamp,
        lease: Duration,
        token: i64,
        avoid: &[i64],
    ) -> Result<Option<Item>, StoreError> {
        let fresh = format!(
            "UPDATE items SET state = 'in_flight', lease_until = ?2, lease_token = ?3, updated_at = ?1 \
             WHERE id = (SELECT id FROM (SELECT id, sent, next_at FROM items WHERE state = 'pending' \
                                         AND next_at <= ?1 ORDER BY next_at LIMIT {PROBE_LOOKAHEAD}) \
                         WHERE sent = 0 ORDER BY next_at LIMIT 1) \
             RETURNING {ITEM_COLUMNS}"
        );
        let mut claimed = self.claim_where(now, lease, token, &fresh, true)?;
        if claimed.is_empty() && !avoid.is_empty() {
            // The list changes with each probe: not worth a place in the statement cache.
            claimed = self.claim_where(now, lease, token, &claim_sql(1, avoid), false)?;
        }
        if claimed.is_empty() {
            claimed = self.claim_where(now, lease, token, &claim_sql(1, &[]), true)?;
        }
        Ok(claimed.pop())
    }

    /// Runs a claim statement (`?1` now, `?2` the lease's end, `?3` the token).
    fn claim_where(
        &mut self,
        now: jiff::Timestamp,
        lease: Duration,
        token: i64,
        sql: &str,
        cached: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let now_ms = to_millis(now);
        let lease_until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let claim = || -> rusqlite::Result<Vec<Item>> {
            let params = params![now_ms, lease_until, token];
            if cached {
                let mut statement = self.conn.prepare_cached(sql)?;
                statement.query_map(params, read_item)?.collect()
            } else {
                let mut statement = self.conn.prepare(sql)?;
                statement.query_map(params, read_item)?.collect()
            }
        };
        claim().map_err(|e| self.error("reservar itens", e))
    }

    /// Puts claimed items back where they were (`pending`, or `processing` if the API had
    /// accepted them), unsent, with their due time as it was — only while they are still under
    /// the claim `token`.
    pub fn release(&mut self, items: &[i64], token: i64, now: jiff::Timestamp) -> Result<usize, StoreError> {
        const ACTION: &str = "devolver itens à fila";
        let (tx, context) = self.write(ACTION)?;
        let mut released = 0;
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE items SET state = CASE WHEN processing_since IS NULL THEN 'pending' ELSE 'processing' END, \
                     lease_until = NULL, lease_token = NULL, updated_at = ?3 \
                     WHERE id = ?1 AND state = 'in_flight' AND lease_token = ?2",
                )
                .map_err(|e| context.fail(e))?;
            for item in items {
                released +=
                    update.execute(params![item, token, to_millis(now)]).map_err(|e| context.fail(e))?;
            }
        }
        tx.commit().map_err(|e| context.fail(e))?;
        Ok(released)
    }

    /// Counts no more the 04/99 attempts (item, start) that the circuit found were the API's
    /// failures, not the items': each gets `counted = 0` and its item one attempt of its budget
    /// back — only while the item waits (`pending`/`processing`): one that gave up on it stays
    /// `failed`, and one claimed again keeps what its next record says. Returns how many.
    pub fn forgive(&mut self, attempts: &[(i64, jiff::Timestamp)]) -> Result<usize, StoreError> {
        const ACTION: &str = "descontar tentativas";
        let (tx, context) = self.write(ACTION)?;
        let mut forgiven = 0;
        {
            let mut attempt = tx
                .prepare_cached(
                    "UPDATE attempts SET counted = 0 WHERE item_id = ?1 AND started_at = ?2 AND counted = 1 \
                     AND code IN ('04', '99') \
                     AND EXISTS (SELECT 1 FROM items WHERE id = ?1 AND state IN ('pending', 'processing') \
                                 AND attempts > 0)",
                )
                .map_err(|e| context.fail(e))?;
            let mut item = tx
                .prepare_cached("UPDATE items SET attempts = attempts - 1 WHERE id = ?1")
                .map_err(|e| context.fail(e))?;
            for (id, started_at) in attempts {
                if attempt.execute(params![id, to_millis(*started_at)]).map_err(|e| context.fail(e))? > 0 {
                    item.execute([id]).map_err(|e| context.fail(e))?;
                    forgiven += 1;
                }
            }
        }
        tx.commit().map_err(|e| context.fail(e))?;
        Ok(forgiven)
    }

    /// Brings every waiting item due after `latest` back to `latest`: a due time stored by an
    /// older version from an unbounded `Retry-After` (the year 5195, say) must not hold an item
    /// for ever. Returns how many moved.
    pub fn cap_due(&mut self, latest: jiff::Timestamp) -> Result<usize, StoreError> {
        const ACTION: &str = "limitar a espera dos itens";
        let (tx, context) = self.write(ACTION)?;
        let moved = tx
            .execute(
                "UPDATE items SET next_at = ?1 WHERE state IN ('pending', 'processing') AND next_at > ?1",
                [to_millis(latest)],
            )
            .map_err(|e| context.fail(e))?;
        tx.commit().map_err(|e| context.fail(e))?;
        Ok(moved)
    }

    /// Records one attempt and applies its decision to the item, in one transaction, after the
    /// HTTP exchange is over (no transaction is ever held across a request).
    /// Returns the attempt's number for the item (1, 2, …, probes included).
    /// The record lands only on the claim `token` it belongs to: a record that comes after its
    /// lease ended (and the item was claimed again) is `StoreError::NotLeased`, and so is one
    /// written a second time.
    pub fn record_attempt(
        &mut self,
        item_id: i64,
        token: i64,
        record: &AttemptRecord<'_>,
    ) -> Result<i64, StoreError> {
        const ACTION: &str = "registrar a tentativa";
        let (tx, context) = self.write(ACTION)?;
        let after = record.after;
        let verdict = &after.verdict;
        let outcome = match verdict.outcome {
            crate::core::classify::Outcome::Success => AttemptOutcome::Success,
            crate::core::classify::Outcome::Processing => AttemptOutcome::Processing,
            crate::core::classify::Outcome::Failure(_) => AttemptOutcome::Failure,
        }
        .as_str();
        // The item first: its `sent` counter numbers the attempt. (Taking the number from
        // `attempts` with a MAX() look-up made SQLite re-prepare that statement on every use.)
        let number: i64 = tx
            .prepare_cached(
                "UPDATE items SET state = ?2, attempts = ?3, last_code = ?4, last_message = ?5, next_at = ?6, \
                 processing_since = ?7, lease_until = NULL, lease_token = NULL, updated_at = ?8, sent = sent + 1, \
                 receipt = COALESCE(?9, receipt), poll_url = ?10 \
                 WHERE id = ?1 AND state = 'in_flight' AND lease_token = ?11 \
                 RETURNING sent",
            )
            .and_then(|mut statement| {
                statement.query_row(
                    params![
                        item_id,
                        after.state.as_str(),
                        after.attempts,
                        after.last_code.map(crate::core::codes::Code::as_str),
                        verdict.message,
                        to_millis(after.next_at),
                        after.processing_since.map(to_millis),
                        to_millis(record.finished_at),
                        verdict.receipt,
                        after.poll_url,
                        token,
                    ],
                    |row| row.get(0),
                )
            })
            .map_err(|error| match error {
                // Not this claim's any more: the lease ran out and it went back to the queue (and
                // maybe out again under another token), or this record was written already.
                rusqlite::Error::QueryReturnedNoRows => StoreError::NotLeased(item_id),
                other => context.fail(other),
            })?;
        tx.prepare_cached(
            "INSERT INTO attempts (item_id, number, started_at, duration_ms, outcome, code, kind, http_status, \
             message, body_excerpt, probe, counted, receipt) \
             VALUES (?1, ?12, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?13)",
        )
        .and_then(|mut statement| statement.execute(params![
                item_id,
                to_millis(record.started_at),
                i64::try_from(record.duration.as_millis()).unwrap_or(i64::MAX),
                outcome,
                verdict.code().map(crate::core::codes::Code::as_str),
                verdict.kind.to_string(),
                verdict.http_status,
                verdict.message,
                record.excerpt,
                record.probe,
                after.counted,
                number,
                verdict.receipt,
            ]))
        .map_err(|e| context.fail(e))?;
        tx.commit().map_err(|e| context.fail(e))?;
        Ok(number)
    }

    /// Deletes up to `limit` attempt records of items delivered before `cutoff` (`[history]
    /// retention`), so one call is a short transaction; call again while it deletes `limit`.
    /// Items themselves are kept, and nothing of an item that is not `done` is ever deleted.
    pub fn purge_history(&mut self, cutoff: jiff::Timestamp, limit: usize) -> Result<usize, StoreError> {
        const ACTION: &str = "apagar o histórico antigo";
        let (tx, context) = self.write(ACTION)?;
        let deleted = tx
            .execute(
                &format!(
                    "DELETE FROM attempts WHERE id IN (SELECT a.id FROM attempts a JOIN items i ON i.id = a.item_id \
                     WHERE i.state = 'done' AND i.updated_at < ?1 LIMIT {limit})"
                ),
                [to_millis(cutoff)],
            )
            .map_err(|e| context.fail(e))?;
        tx.commit().map_err(|e| context.fail(e))?;
        Ok(deleted)
    }

    /// Returns `in_flight` items whose lease ended before `now` to where they were:
    /// `processing` if the API had accepted them, else `pending`, due at once. A crash between
    /// sending and recording therefore re-sends under the same idempotency key; nothing is lost.
    pub fn recover_leases(&mut self, now: jiff::Timestamp) -> Result<usize, StoreError> {
        self.return_in_flight("recuperar itens em envio", now, " AND lease_until <= ?1")
    }

    /// Returns every `in_flight` item to where it was, as `recover_leases` does, whatever its
    /// lease: at start, where the daemon lock proves no other daemon has them, and at a clean
    /// stop. Their update time is `now`.
    pub fn release_all(&mut self, now: jiff::Timestamp) -> Result<usize, StoreError> {
        self.return_in_flight("devolver à fila os itens em envio", now, "")
    }

    /// Moves the `in_flight` items that match `condition` back to `processing` or `pending`.
    fn return_in_flight(
        &mut self,
        action: &'static str,
        now: jiff::Timestamp,
        condition: &str,
    ) -> Result<usize, StoreError> {
        let (tx, context) = self.write(action)?;
        let moved = tx
            .execute(
                &format!(
                    "UPDATE items SET state = CASE WHEN processing_since IS NULL THEN 'pending' \
                     ELSE 'processing' END, lease_until = NULL, lease_token = NULL, next_at = MIN(next_at, ?1), \
                     updated_at = ?1 \
                     WHERE state = 'in_flight'{condition}"
                ),
                [to_millis(now)],
            )
            .map_err(|e| context.fail(e))?;
        tx.commit().map_err(|e| context.fail(e))?;
        Ok(moved)
    }

    /// The query plan of the claim statement itself, for the test that keeps it on the index.
    pub fn claim_query_plan(&self) -> Result<String, StoreError> {
        let read = || -> rusqlite::Result<String> {
            let mut statement = self.conn.prepare(&format!("EXPLAIN QUERY PLAN {}", claim_sql(4, &[])))?;
            let details = statement.query_map([0_i64, 0_i64, 0_i64], |row| row.get::<_, String>(3))?;
            Ok(details.collect::<rusqlite::Result<Vec<_>>>()?.join("\n"))
        };
        read().map_err(|e| self.error("ler o plano de consulta", e))
    }
}
