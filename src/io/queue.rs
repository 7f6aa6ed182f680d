//! The one way into the queue. Every intake channel — `enqueue` without a daemon, the spool, a
//! polled source, the intake socket — reads what is already queued and queues a batch through
//! `Queue`, all or nothing, idempotent on the order number (`Store::enqueue`, below either
//! implementation):
//!
//! - `Store` itself, for a command that holds the database (`enqueue` with no daemon running);
//! - `WriterQueue`, inside the daemon: reads on a read-only connection of its own (so the
//!   writer sees only what is new) and writes each batch as one job of the daemon's writer, so
//!   claims and records wait behind at most one batch. Blocking: run it off the async loop.
//!
//! A new intake channel validates with `core::intake` and queues here, with an `Origin` that
//! names it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::core::item::{NewItem, Origin};
use crate::io::store::{Access, Conflict, EnqueueOutcome, Store, StoreError};
use crate::io::writer::Writer;

/// Where a channel puts what it read.
pub trait Queue {
    /// For each item, whether its order is already queued (read only).
    fn queued(&mut self, items: &[NewItem]) -> Result<Vec<bool>, StoreError>;
    /// The orders already queued with other content (read only).
    fn conflicts(&mut self, items: &[NewItem]) -> Result<Vec<Conflict>, StoreError>;
    /// Queues one batch, all or nothing.
    fn enqueue(
        &mut self,
        items: Vec<NewItem>,
        origin: Origin,
        now: jiff::Timestamp,
    ) -> Result<Vec<EnqueueOutcome>, StoreError>;
}

impl Queue for Store {
    fn queued(&mut self, items: &[NewItem]) -> Result<Vec<bool>, StoreError> {
        Store::queued(self, items)
    }

    fn conflicts(&mut self, items: &[NewItem]) -> Result<Vec<Conflict>, StoreError> {
        Store::conflicts(self, items)
    }

    fn enqueue(
        &mut self,
        items: Vec<NewItem>,
        origin: Origin,
        now: jiff::Timestamp,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        Store::enqueue(self, &items, &origin, now)
    }
}

/// The daemon's way in: reads on its own read-only connection (opened when first needed),
/// writes through the writer. A clone shares the writer and the stop flag, not the connection.
pub struct WriterQueue {
    writer: Writer,
    database: PathBuf,
    busy_timeout: Duration,
    reader: Option<Store>,
    /// Set when the daemon stops: no batch is queued after it (the channel keeps its input).
    stopping: Arc<AtomicBool>,
}

impl WriterQueue {
    /// A way in through `writer`, reading `database` with `busy_timeout`; `stopping` ends it.
    pub fn new(writer: Writer, database: PathBuf, busy_timeout: Duration, stopping: Arc<AtomicBool>) -> Self {
        WriterQueue { writer, database, busy_timeout, reader: None, stopping }
    }

    fn reader(&mut self) -> Result<&Store, StoreError> {
        if self.reader.is_none() {
            self.reader = Some(Store::open(&self.database, Access::ReadOnly, self.busy_timeout)?);
        }
        Ok(self.reader.as_ref().expect("opened above"))
    }
}

impl Clone for WriterQueue {
    fn clone(&self) -> Self {
        WriterQueue::new(self.writer.clone(), self.database.clone(), self.busy_timeout, self.stopping.clone())
    }
}

impl Queue for WriterQueue {
    fn queued(&mut self, items: &[NewItem]) -> Result<Vec<bool>, StoreError> {
        self.reader()?.queued(items)
    }

    fn conflicts(&mut self, items: &[NewItem]) -> Result<Vec<Conflict>, StoreError> {
        self.reader()?.conflicts(items)
    }

    fn enqueue(
        &mut self,
        items: Vec<NewItem>,
        origin: Origin,
        now: jiff::Timestamp,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(StoreError::Interrupted("o serviço está parando"));
        }
        self.writer
            .call_blocking(move |store| store.enqueue(&items, &origin, now))
            .unwrap_or_else(|| Err(crate::io::writer::gone()))
    }
}
