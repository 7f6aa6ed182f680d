//! The I/O of one item's delivery, as the dispatcher orders it: the send task (the request and
//! its classification, nothing else — the dispatcher decides what it means), writing the record
//! the dispatcher decided, and saying what happened in the journal and `/metrics`.
//!
//! The journal gets the items' own failures (counted ones), every give-up and delivery, and the
//! API's changes of state (`daemon::act`, once each); a failure that does not count — a probe
//! during an outage, an answer that is part of it — is a debug line only, so an outage is three
//! lines however long it lasts: when it starts, when it changes, when it ends.

use std::sync::Arc;

use crate::core::classify::Outcome;
use crate::core::dispatch::{Exchanged, Record};
use crate::core::item::Item;
use crate::core::item::State;
use crate::io::api::Client;
use crate::io::journal::Message;
use crate::io::store::{AttemptRecord, Store, StoreError};
use crate::web::metrics::Metrics;

/// Sends one item and classifies what came back.
pub async fn send(item: Item, client: Arc<Client>) -> (i64, Exchanged) {
    let exchanged = client.send(&item).await;
    (item.id, exchanged)
}

/// Writes a record on the store thread, under its claim's lease token.
pub fn write(store: &mut Store, record: &Record) -> Result<i64, StoreError> {
    let attempt = AttemptRecord {
        started_at: record.exchanged.started_at,
        finished_at: record.finished_at,
        duration: record.exchanged.duration,
        excerpt: record.exchanged.excerpt.as_deref(),
        probe: record.probe,
        after: &record.after,
    };
    store.record_attempt(record.item, record.token, &attempt)
}

/// An attempt ended (recorded as attempt `number`, or not yet): counted, and one log event
/// with the fields journald filters on and the `MESSAGE_ID` of its catalog entry. Text from the
/// API is escaped.
pub fn attempt_done(record: &Record, number: Option<i64>, metrics: &Metrics) {
    let after = &record.after;
    let exchanged = &record.exchanged;
    metrics.attempt(&after.verdict, exchanged.started_at, exchanged.duration, after.state == State::Failed);
    if let Some(asked) = after.capped_delay {
        tracing::warn!(
            item = record.item,
            order = %crate::core::text::terminal_safe(&record.order),
            "pedido {}: a API pediu para esperar {} (Retry-After); o extrator espera no máximo retry.max_delay e \
             tenta às {}",
            crate::core::text::terminal_safe(&record.order),
            crate::core::text::rounded(asked),
            crate::view::local_time(after.next_at)
        );
    }
    log_attempt(record, number.unwrap_or(0));
}

/// One log event per attempt.
fn log_attempt(record: &Record, attempt: i64) {
    let verdict = &record.after.verdict;
    let status = verdict.http_status;
    let message = crate::core::text::terminal_safe(verdict.message.as_deref().unwrap_or("")).into_owned();
    let kind = verdict.kind.to_string();
    let (item, order, kind) =
        (record.item, crate::core::text::terminal_safe(&record.order).into_owned(), kind.as_str());
    let probe = record.probe;
    match (verdict.outcome, record.after.state) {
        (Outcome::Success, _) => match verdict.receipt.as_deref() {
            Some(receipt) => {
                let receipt = crate::core::text::terminal_safe(receipt).into_owned();
                tracing::info!(
                    message_id = %Message::Delivered.id(),
                    item,
                    order,
                    attempt,
                    http_status = status,
                    kind,
                    receipt,
                    "pedido {order}: cancelamento entregue (protocolo da API: {receipt})"
                );
            }
            None => tracing::info!(
                message_id = %Message::Delivered.id(),
                item,
                order,
                attempt,
                http_status = status,
                kind,
                "pedido {order}: cancelamento entregue"
            ),
        },
        (Outcome::Processing, _) => tracing::info!(
            item,
            order,
            attempt,
            http_status = status,
            kind,
            "pedido {order}: cancelamento aceito pela API; aguardando a resposta final"
        ),
        (Outcome::Failure(code), State::Failed) => tracing::error!(
            message_id = %Message::GaveUp.id(),
            code = code.as_str(),
            item,
            order,
            attempt,
            http_status = status,
            kind,
            "pedido {order}: cancelamento falhou definitivamente: erro {}: {message} (reenvie com extrator retry)",
            code.label()
        ),
        (Outcome::Failure(code), _) if !record.after.counted => tracing::debug!(
            code = code.as_str(),
            item,
            order,
            attempt,
            http_status = status,
            kind,
            probe,
            "pedido {order}: falha no envio que não conta para o item (a API está fora ou recusou as \
             credenciais): erro {}: {message}",
            code.label()
        ),
        (Outcome::Failure(code), _) => tracing::warn!(
            message_id = %Message::AttemptFailed(code).id(),
            code = code.as_str(),
            item,
            order,
            attempt,
            http_status = status,
            kind,
            probe,
            "pedido {order}: falha no envio: erro {}: {message}; nova tentativa a partir de {}",
            code.label(),
            crate::view::local_time(record.after.next_at)
        ),
    }
}
