//! The spool as the daemon imports it: a pass runs on a thread of its own and queues through
//! the daemon's writer one batch at a time (`WriterQueue`), so claims and records wait behind at
//! most one batch; what it did is logged with the ERP's file names escaped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::io::journal::Message;
use crate::io::spool;
use crate::io::store::StoreError;
use crate::io::writer::Writer;

/// The spool import's way into the queue from its own thread: conflicts are read on a
/// read-only connection of its own, batches are written by the daemon's writer, one job each,
/// so the claims and records queue up between them rather than behind the whole file.
pub struct WriterQueue {
    writer: Writer,
    database: PathBuf,
    busy_timeout: Duration,
    reader: Option<crate::io::store::Store>,
    /// Set when the daemon stops: the import ends before its next batch, the file stays.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// The `WriterQueue` of a config.
pub fn spool_queue(
    config: &Config,
    writer: Writer,
    stopping: Arc<std::sync::atomic::AtomicBool>,
) -> WriterQueue {
    WriterQueue {
        writer,
        database: config.queue.database.clone(),
        busy_timeout: config.queue.busy_timeout.get().min(super::DAEMON_BUSY_TIMEOUT),
        reader: None,
        stopping,
    }
}

impl spool::Queue for WriterQueue {
    fn conflicts(
        &mut self,
        items: &[crate::core::item::NewItem],
    ) -> Result<Vec<crate::io::store::Conflict>, StoreError> {
        let reader = match self.reader.take() {
            Some(reader) => reader,
            None => crate::io::store::Store::open(
                &self.database,
                crate::io::store::Access::ReadOnly,
                self.busy_timeout,
            )?,
        };
        let conflicts = reader.conflicts(items);
        self.reader = Some(reader);
        conflicts
    }

    fn enqueue(
        &mut self,
        items: Vec<crate::core::item::NewItem>,
        origin: crate::core::item::Origin,
        now: jiff::Timestamp,
    ) -> Result<Vec<crate::io::store::EnqueueOutcome>, StoreError> {
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Interrupted("o serviço está parando"));
        }
        self.writer
            .call_blocking(move |store| store.enqueue(&items, &origin, now))
            .unwrap_or_else(|| Err(super::store_gone()))
    }
}

/// What a pass over the spool did, in the journal: file names are the ERP's text, escaped.
pub fn log(report: &spool::Report) {
    for imported in &report.imported {
        let file = crate::core::text::terminal_safe(&imported.file);
        if imported.again {
            tracing::info!(file = %file, new_items = imported.new, already_queued = imported.already,
                "arquivo do spool mudou depois de importado (quem o escrevia continuou): {} na fila",
                crate::core::text::count(imported.new as u64, "item novo", "itens novos"));
        } else {
            tracing::info!(file = %file, new_items = imported.new, already_queued = imported.already, "arquivo do spool importado");
        }
    }
    for (file, why) in &report.rejected {
        let file = crate::core::text::terminal_safe(file);
        let why = crate::core::text::terminal_safe(why);
        tracing::warn!(message_id = %Message::SpoolRejected.id(), file = %file, reason = %why, "arquivo do spool rejeitado (veja rejeitados/{file}.erro)");
    }
    for (file, why) in &report.refused {
        let file = crate::core::text::terminal_safe(file);
        tracing::warn!(file = %file, reason = %why, "arquivo do spool recusado e deixado no lugar: {file} {why}");
    }
    for (file, why) in &report.unreadable {
        let file = crate::core::text::terminal_safe(file);
        let why = crate::core::text::terminal_safe(why);
        tracing::warn!(file = %file, reason = %why,
            "arquivo do spool já importado mudou e o que foi acrescentado não pôde ser lido (será lido de novo se mudar): {file}: {why}");
    }
}
