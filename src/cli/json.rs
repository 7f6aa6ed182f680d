//! The `--json` contract of `list` and `show`: field names and text forms scripts rely on, kept
//! apart from the read model (`core::item`) so a change there is a decision here. Every value is
//! as stored — codes as "07", times in RFC 3339 UTC, the origin as `spool:FILE`; the documents
//! are snapshot-tested whole (tests/it/snapshots).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::core::item::{Attempt, Item, State};

/// One item.
#[derive(Serialize)]
pub struct ItemJson<'a> {
    id: i64,
    order: &'a str,
    branch: &'a str,
    reason: &'a str,
    cancelled_at: &'a str,
    customer: Option<&'a str>,
    extra: Option<&'a Map<String, Value>>,
    state: State,
    attempts: i64,
    last_code: Option<&'static str>,
    last_message: Option<&'a str>,
    next_attempt_at: Option<jiff::Timestamp>,
    created_at: jiff::Timestamp,
    updated_at: jiff::Timestamp,
    idempotency_key: &'a str,
    source: String,
    processing_since: Option<jiff::Timestamp>,
    sent: i64,
    receipt: Option<&'a str>,
    poll_url: Option<&'a str>,
}

impl<'a> From<&'a Item> for ItemJson<'a> {
    fn from(item: &'a Item) -> Self {
        ItemJson {
            id: item.id,
            order: &item.order,
            branch: &item.branch,
            reason: &item.reason,
            cancelled_at: &item.cancelled_at,
            customer: item.customer.as_deref(),
            extra: item.extra.as_ref(),
            state: item.state,
            attempts: item.attempts,
            last_code: item.last_code.map(|code| code.as_str()),
            last_message: item.last_message.as_deref(),
            next_attempt_at: item.next_attempt_at,
            created_at: item.created_at,
            updated_at: item.updated_at,
            idempotency_key: &item.idempotency_key,
            source: item.source.as_text(),
            processing_since: item.processing_since,
            sent: item.sent,
            receipt: item.receipt.as_deref(),
            poll_url: item.poll_url.as_deref(),
        }
    }
}

/// One attempt.
#[derive(Serialize)]
pub struct AttemptJson<'a> {
    number: i64,
    started_at: jiff::Timestamp,
    duration_ms: i64,
    outcome: &'static str,
    code: Option<&'static str>,
    kind: &'a str,
    http_status: Option<i64>,
    message: Option<&'a str>,
    body_excerpt: Option<&'a str>,
    probe: bool,
    counted: bool,
    receipt: Option<&'a str>,
}

impl<'a> From<&'a Attempt> for AttemptJson<'a> {
    fn from(attempt: &'a Attempt) -> Self {
        AttemptJson {
            number: attempt.number,
            started_at: attempt.started_at,
            duration_ms: attempt.duration_ms,
            outcome: attempt.outcome.as_str(),
            code: attempt.code.map(|code| code.as_str()),
            kind: &attempt.kind,
            http_status: attempt.http_status,
            message: attempt.message.as_deref(),
            body_excerpt: attempt.body_excerpt.as_deref(),
            probe: attempt.probe,
            counted: attempt.counted,
            receipt: attempt.receipt.as_deref(),
        }
    }
}

/// `show --json`: the item and its attempts.
#[derive(Serialize)]
pub struct ShowJson<'a> {
    item: ItemJson<'a>,
    attempts: Vec<AttemptJson<'a>>,
}

impl<'a> ShowJson<'a> {
    pub fn new(item: &'a Item, attempts: &'a [Attempt]) -> Self {
        ShowJson { item: item.into(), attempts: attempts.iter().map(AttemptJson::from).collect() }
    }
}

/// `list --json`: the items.
pub fn items(items: &[Item]) -> Vec<ItemJson<'_>> {
    items.iter().map(ItemJson::from).collect()
}
