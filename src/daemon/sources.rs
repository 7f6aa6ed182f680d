//! The polled `[[source]]`s as the daemon runs them: each one's schedule (`Slot`), one run as a
//! task (`run`: the command, the new orders queued through `io::queue` in one transaction, the
//! run recorded), and what a run is worth saying in the journal (`news`, pure: a line when the
//! source's state changes, not one per run).

use std::time::Instant;

use crate::core::item::{NewItem, Origin};
use crate::io::queue::{Queue, WriterQueue};
use crate::io::source::Source;
use crate::io::store::{SourceRun, StoreError};
use crate::io::writer::Writer;

/// A polled source between runs.
pub struct Slot {
    pub source: Source,
    next_at: Instant,
    running: bool,
    /// How the last run went: `None` before the first, then `Some(None)` when it worked, or
    /// the kind of its failure — a log line is written only when this changes.
    last: Option<Option<&'static str>>,
    /// Orders the last run printed with other content than queued (kept as queued).
    changed: usize,
}

impl Slot {
    /// A source that runs at the next tick.
    pub fn new(source: Source, now: Instant) -> Slot {
        Slot { source, next_at: now, running: false, last: None, changed: 0 }
    }

    /// The same slot (schedule and history) for the source's new config.
    pub fn with(self, source: Source) -> Slot {
        Slot { source, ..self }
    }

    /// Whether its run is due at `now`; if so, it is marked running and its next run scheduled.
    pub fn start(&mut self, now: Instant) -> bool {
        if self.running || self.next_at > now {
            return false;
        }
        self.running = true;
        self.next_at = now + self.source.config.interval.get();
        true
    }

    /// Its run ended: what to say of it, and of orders whose content changed at the origin.
    pub fn ended(&mut self, ran: &Ran) -> (News, Option<usize>) {
        self.running = false;
        let before = self.last.replace(ran.failure);
        let news = news(before, ran.failure, ran.run.new_items);
        let changed = (ran.changed != self.changed && ran.changed > 0).then_some(ran.changed);
        self.changed = ran.changed;
        (news, changed)
    }
}

/// What a source's run is worth saying in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// It failed, and did not fail this way on the run before (an error line).
    Failed,
    /// It failed as before (debug only).
    StillFailing,
    /// It works again after failing.
    Recovered,
    /// Its first run worked.
    First,
    /// It works as before and queued new orders.
    NewItems,
    /// It works as before and found nothing new: nothing to say.
    Nothing,
}

/// The news of a run whose failure kind is `failure` (`None`: it worked) after a run that went
/// `before` (`None`: there was none).
pub fn news(before: Option<Option<&'static str>>, failure: Option<&'static str>, new_items: u64) -> News {
    match (failure, before) {
        (Some(_), before) if before != Some(failure) => News::Failed,
        (Some(_), _) => News::StillFailing,
        (None, Some(Some(_))) => News::Recovered,
        (None, None) => News::First,
        (None, Some(None)) if new_items > 0 => News::NewItems,
        (None, Some(None)) => News::Nothing,
    }
}

/// What a source's run did.
pub struct Ran {
    pub name: String,
    pub run: SourceRun,
    /// The failure's kind (`RunError::kind`, or "database"), `None` when it worked.
    pub failure: Option<&'static str>,
    /// Orders printed with other content than queued.
    pub changed: usize,
    /// Recording the run failed.
    pub unrecorded: Option<StoreError>,
}

/// One run of a source: the command, then — if it printed cancellations — the new ones queued
/// through the writer in one transaction (orders already queued are left as they are, found on
/// a read-only connection so the writer sees only what is new), then the run recorded.
pub async fn run(source: Source, queue: WriterQueue, writer: Writer) -> Ran {
    let started = Instant::now();
    let name = source.config.name.clone();
    let outcome = source.run().await;
    let mut changed = 0;
    let (rows, new_items, failure, error) = match outcome {
        Err(error) => (0, 0, Some(error.kind()), Some(error.to_string())),
        Ok(output) => {
            let rows = output.rows as u64;
            let origin = crate::core::item::Origin::Source(name.clone());
            let queued =
                match tokio::task::spawn_blocking(move || queue_new(queue, output.items, origin)).await {
                    Ok(Ok((new, different))) => {
                        changed = different;
                        Ok(new)
                    }
                    Ok(Err(error)) => Err(error),
                    Err(_) => Err(StoreError::Interrupted("a leitura da fila foi interrompida")),
                };
            match queued {
                Ok(new) => (rows, new, None, None),
                Err(error) => (
                    rows,
                    0,
                    Some("database"),
                    Some(format!("os cancelamentos lidos não foram enfileirados: {error}")),
                ),
            }
        }
    };
    let run = SourceRun {
        name: name.clone(),
        at: jiff::Timestamp::now(),
        duration_ms: crate::io::source::elapsed_ms(started),
        // Stored, shown by `status` and logged: bounded whatever the command printed.
        error: error.map(|error| crate::core::text::cut(&error, crate::io::source::MAX_MESSAGE)),
        rows,
        new_items,
    };
    let recording = run.clone();
    let unrecorded = writer
        .call(move |store| store.record_source_run(&recording))
        .await
        .unwrap_or_else(|| Err(crate::io::writer::gone()))
        .err();
    Ran { name, run, failure, changed, unrecorded }
}

/// Queues the items not queued yet, in one transaction; returns how many were new and how many
/// of the others differ from what is queued (kept as queued).
fn queue_new(
    mut queue: WriterQueue,
    items: Vec<NewItem>,
    origin: Origin,
) -> Result<(u64, usize), StoreError> {
    if items.is_empty() {
        return Ok((0, 0));
    }
    let queued = queue.queued(&items)?;
    let different = queue.conflicts(&items)?.len();
    let fresh: Vec<NewItem> =
        items.into_iter().zip(queued).filter(|(_, queued)| !queued).map(|(item, _)| item).collect();
    if fresh.is_empty() {
        return Ok((0, different));
    }
    let outcomes = queue.enqueue(fresh, origin, jiff::Timestamp::now())?;
    Ok((outcomes.iter().filter(|outcome| !outcome.already_queued).count() as u64, different))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_logged_when_its_state_changes_not_on_every_run() {
        assert_eq!(news(None, None, 0), News::First);
        assert_eq!(news(Some(None), None, 0), News::Nothing);
        assert_eq!(news(Some(None), None, 3), News::NewItems);
        assert_eq!(news(Some(None), Some("exit"), 0), News::Failed);
        assert_eq!(news(Some(Some("exit")), Some("exit"), 0), News::StillFailing);
        assert_eq!(news(Some(Some("exit")), Some("timeout"), 0), News::Failed, "another failure is news");
        assert_eq!(news(Some(Some("exit")), None, 0), News::Recovered);
        assert_eq!(news(None, Some("exit"), 0), News::Failed);
    }
}
