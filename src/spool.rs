//! The spool directory the ERP drops JSON files into.
//!
//! Convention for the ERP side: write `NAME.json.tmp` (or any name not ending in `.json`), then
//! rename it to `NAME.json`; a rename is atomic, so a file is never read half-written. Each
//! `*.json` file is read and validated whole, checked whole against the queue for conflicts, then
//! queued in batches of `BATCH` items (each a `synchronous=FULL` transaction, so the daemon's
//! claims and records go on between them) and moved to `processados/`. A file that cannot be
//! imported is moved to `rejeitados/` with `NAME.json.erro` beside it saying why, nothing of it
//! queued — never deleted. A crash (or a full disk) between batches leaves the file in the spool
//! with its first batches queued; the next pass imports it again, which queues the rest: enqueue
//! is idempotent on the order number.
//!
//! The daemon runs the import on a thread of its own (`Queue` for its writer), never on the
//! loop: a 64 MiB file must not hold claims, records or the watchdog back.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::intake::{self, MAX_DOCUMENT_BYTES};
use crate::item::NewItem;
use crate::store::{Conflict, EnqueueOutcome, Origin, Store, StoreError};
use crate::text::{io_error, local_time};

/// Imported files go here, inside the spool directory.
pub const PROCESSED_DIR: &str = "processados";
/// Rejected files and their `.erro` explanations go here.
pub const REJECTED_DIR: &str = "rejeitados";
/// The suffix of a rejection's explanation file.
pub const ERROR_SUFFIX: &str = ".erro";

/// What one pass over the spool did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// (file, new items, items already queued).
    pub imported: Vec<(String, usize, usize)>,
    /// (file, why).
    pub rejected: Vec<(String, String)>,
}

/// Why a pass stopped early. Files not yet looked at stay in the spool for the next pass.
#[derive(Debug)]
pub enum SpoolError {
    /// The spool (or one of its subdirectories) cannot be used.
    Directory { path: PathBuf, detail: String },
    /// The queue could not take a file right now (disk full, locked, …): not the file's fault.
    Store { file: String, error: Box<StoreError> },
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Directory { path, detail } => {
                write!(f, "diretório de spool {} inutilizável: {detail}", path.display())
            }
            SpoolError::Store { file, error } => {
                write!(f, "o arquivo {file} fica no spool para a próxima passada: {error}")
            }
        }
    }
}

impl std::error::Error for SpoolError {}

/// Creates the spool directory and its two subdirectories if missing.
pub fn prepare(spool: &Path) -> Result<(), SpoolError> {
    for dir in [spool.to_path_buf(), spool.join(PROCESSED_DIR), spool.join(REJECTED_DIR)] {
        std::fs::create_dir_all(&dir)
            .map_err(|error| SpoolError::Directory { path: dir.clone(), detail: io_error(&error) })?;
    }
    Ok(())
}

/// Items queued per transaction: small enough that a claim waits at most a few milliseconds
/// behind one.
pub const BATCH: usize = 200;

/// Where an import puts what it read: the store itself (a command), or the daemon's writer.
pub trait Queue {
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

/// Imports every ready `*.json` file, oldest name first.
pub fn import(queue: &mut dyn Queue, spool: &Path, now: jiff::Timestamp) -> Result<Report, SpoolError> {
    let mut report = Report::default();
    for name in ready_files(spool)? {
        let path = spool.join(&name);
        let items = match read_and_parse(&path) {
            Ok(items) => items,
            Err(why) => {
                reject(spool, &name, &why, now)?;
                report.rejected.push((name, why));
                continue;
            }
        };
        let store_error = |error| SpoolError::Store { file: name.clone(), error: Box::new(error) };
        let conflicts = queue.conflicts(&items).map_err(store_error)?;
        if !conflicts.is_empty() {
            let why = StoreError::Conflicts(conflicts).to_string();
            reject(spool, &name, &why, now)?;
            report.rejected.push((name, why));
            continue;
        }
        let (mut new, mut already) = (0, 0);
        let mut items = items;
        while !items.is_empty() {
            let rest = items.split_off(items.len().min(BATCH));
            let outcomes = queue.enqueue(items, Origin::Spool(name.clone()), now).map_err(store_error)?;
            let repeated = outcomes.iter().filter(|outcome| outcome.already_queued).count();
            (new, already) = (new + outcomes.len() - repeated, already + repeated);
            items = rest;
        }
        move_into(&path, &spool.join(PROCESSED_DIR), &name, now)?;
        report.imported.push((name, new, already));
    }
    Ok(report)
}

/// Names of the regular `*.json` files in the spool, sorted. Hidden files, `.tmp` files and
/// subdirectories are left alone.
fn ready_files(spool: &Path) -> Result<Vec<String>, SpoolError> {
    let entries = std::fs::read_dir(spool)
        .map_err(|error| SpoolError::Directory { path: spool.to_path_buf(), detail: io_error(&error) })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json") && !name.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Reads and validates one file; the error is the pt-BR reason for its `.erro`.
fn read_and_parse(path: &Path) -> Result<Vec<NewItem>, String> {
    let size = std::fs::metadata(path).map_err(|error| io_error(&error))?.len();
    if size > MAX_DOCUMENT_BYTES as u64 {
        return Err(intake::IntakeError::TooLarge(usize::try_from(size).unwrap_or(usize::MAX)).to_string());
    }
    let bytes = std::fs::read(path).map_err(|error| format!("não foi possível ler: {}", io_error(&error)))?;
    let records = intake::parse_document(&bytes).map_err(|error| error.to_string())?;
    Ok(records.into_iter().map(|record| record.item).collect())
}

/// Writes `rejeitados/NAME.erro`, then moves the file beside it. The explanation is written
/// first (atomically), so a rejected file is never found without one.
fn reject(spool: &Path, name: &str, why: &str, now: jiff::Timestamp) -> Result<(), SpoolError> {
    let rejected = spool.join(REJECTED_DIR);
    let target_name = free_name(&rejected, name, now);
    let explanation = format!(
        "arquivo: {name}\nrejeitado em: {}\nmotivo:\n{why}\n\nNenhum cancelamento deste arquivo foi importado. \
         Corrija-o e coloque-o de novo em {} (grave como .json.tmp e renomeie para .json).\n",
        local_time(now),
        spool.display()
    );
    let error_path = rejected.join(format!("{target_name}{ERROR_SUFFIX}"));
    let temporary = rejected.join(format!(".{target_name}{ERROR_SUFFIX}.tmp"));
    std::fs::write(&temporary, explanation)
        .and_then(|()| std::fs::rename(&temporary, &error_path))
        .map_err(|error| SpoolError::Directory { path: rejected.clone(), detail: io_error(&error) })?;
    std::fs::rename(spool.join(name), rejected.join(&target_name))
        .map_err(|error| SpoolError::Directory { path: rejected, detail: io_error(&error) })
}

/// Moves `path` into `dir`, renaming it if a file of that name is already there.
fn move_into(path: &Path, dir: &Path, name: &str, now: jiff::Timestamp) -> Result<(), SpoolError> {
    let target = dir.join(free_name(dir, name, now));
    std::fs::rename(path, &target)
        .map_err(|error| SpoolError::Directory { path: dir.to_path_buf(), detail: io_error(&error) })
}

/// `name`, or `STEM-<millis>.json` (then `-2`, `-3`, …) when `name` is taken in `dir`: the ERP may
/// reuse file names, and an earlier file must not be overwritten.
fn free_name(dir: &Path, name: &str, now: jiff::Timestamp) -> String {
    if !dir.join(name).exists() {
        return name.to_owned();
    }
    let stem = name.strip_suffix(".json").unwrap_or(name);
    let base = format!("{stem}-{}", now.as_millisecond());
    (1..)
        .map(|n| if n == 1 { format!("{base}.json") } else { format!("{base}-{n}.json") })
        .find(|candidate| !dir.join(candidate).exists())
        .unwrap_or_else(|| format!("{base}.json"))
}
