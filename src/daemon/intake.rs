//! The spool as the daemon imports it: a pass runs on a thread of its own and queues through
//! the daemon's writer one batch at a time (`io::queue::WriterQueue`), so claims and records wait behind at
//! most one batch; what it did is logged with the ERP's file names escaped.

use std::sync::Arc;

use crate::config::Config;
use crate::io::journal::Message;
use crate::io::queue::WriterQueue;
use crate::io::spool;
use crate::io::writer::Writer;

/// The daemon's way into the queue (`io::queue::WriterQueue`) for the spool import, the sources
/// and the intake socket: one writer job per batch, so claims and records queue up between
/// them rather than behind a whole file.
pub fn writer_queue(
    config: &Config,
    writer: Writer,
    stopping: Arc<std::sync::atomic::AtomicBool>,
) -> WriterQueue {
    WriterQueue::new(
        writer,
        config.queue.database.clone(),
        config.queue.busy_timeout.get().min(super::DAEMON_BUSY_TIMEOUT),
        stopping,
    )
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
