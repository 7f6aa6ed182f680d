//! The spool directory the ERP drops JSON files into.
//!
//! Convention for the ERP side: write `NAME.json.tmp` (or any name not ending in `.json`), then
//! rename it to `NAME.json`; a rename is atomic, so a file is never read half-written. A file
//! written in place by a careless script is still safe: a file is taken only once it has not
//! changed for `queue.spool_quiet`, and one that changes after it was taken (its writer kept
//! writing) is read again and what was added is queued.
//!
//! Each `*.json` file is read whole (at most 64 MiB) and validated in one pass that keeps one
//! record at a time, checked against the queue for conflicts in chunks, then queued in batches
//! of `BATCH` items (each a `synchronous=FULL` transaction, so the daemon's claims and records
//! go on between them) and moved to `processados/`. A file that cannot be imported is moved to
//! `rejeitados/` with `NAME.json.erro` beside it saying why, nothing of it queued — never
//! deleted. A crash (or a full disk) between batches leaves the file in the spool with its first
//! batches queued; the next pass imports it again, which queues the rest: enqueue is idempotent
//! on the order number.
//!
//! The directory is written by another account, so every file operation goes through
//! `safe_fs::Dir` (no link followed, regular files only, FIFOs never opened blocking, nothing
//! replaced); what is refused for what it is (a link, a FIFO, a device, a hard link) is left in
//! place and reported once. `processados/` and `rejeitados/` must belong to the service.
//!
//! The daemon runs the import on a thread of its own (`io::queue::WriterQueue`), never on the
//! loop: a 64 MiB file must not hold claims, records or the watchdog back.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::intake::{self, MAX_DOCUMENT_BYTES};
use crate::core::item::NewItem;
use crate::core::item::Origin;
use crate::core::text::{Listed, io_error, terminal_safe, terminal_safe_lines};
use crate::io::queue::Queue;
use crate::io::safe_fs::{Dir, Identity, OpenError, Refused};
use crate::io::store::StoreError;
use crate::view::local_time;

/// Imported files go here, inside the spool directory.
pub const PROCESSED_DIR: &str = "processados";
/// Rejected files and their `.erro` explanations go here.
pub const REJECTED_DIR: &str = "rejeitados";
/// The suffix of a rejection's explanation file.
pub const ERROR_SUFFIX: &str = ".erro";

/// Items queued per transaction: small enough that a claim waits at most a few milliseconds
/// behind one.
pub const BATCH: usize = 200;

/// Items checked for conflicts per read of the queue.
const CHECK_CHUNK: usize = 1_000;

/// How long a file moved out of the spool is watched for a writer that kept writing.
const WATCH_FOR: Duration = Duration::from_secs(3_600);

/// The most moved files watched at once (the oldest are dropped first).
const MAX_WATCHED: usize = 10_000;

/// Mode of `processados/` and `rejeitados/`: the service writes, its group (the ERP's) reads.
/// (They inherit the spool's set-group-ID bit from the kernel; asking for it here would be
/// refused by the unit's `RestrictSUIDSGID=`.)
const SUBDIR_MODE: u32 = 0o750;

/// Mode of the `.erro` files.
const ERROR_FILE_MODE: u32 = 0o640;

/// What one pass over the spool did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Files queued.
    pub imported: Vec<Imported>,
    /// (file, why): moved to `rejeitados/` with their `.erro`.
    pub rejected: Vec<(String, String)>,
    /// (file, why): left in place for what they are (a link, a FIFO…); each said once.
    pub refused: Vec<(String, String)>,
    /// (file, why): a file taken earlier that changed and cannot be read as it is now (its
    /// writer stopped mid-record, or changed what was there); read again when it changes.
    pub unreadable: Vec<(String, String)>,
}

/// A file queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub file: String,
    pub new: usize,
    pub already: usize,
    /// A file taken before that changed afterwards: what was added.
    pub again: bool,
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
                write!(
                    f,
                    "diretório de spool {} inutilizável: {detail}",
                    terminal_safe(&path.display().to_string())
                )
            }
            SpoolError::Store { file, error } => {
                write!(f, "o arquivo {} fica no spool para a próxima passada: {error}", terminal_safe(file))
            }
        }
    }
}

impl std::error::Error for SpoolError {}

/// The spool and what passes over it remember: files moved out that are still watched, and
/// names already reported as refused.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    /// `queue.spool_quiet`, as of the pass.
    quiet: Duration,
    watched: Vec<Watched>,
    refused: HashMap<String, Identity>,
}

/// A file moved out of the spool, watched for a writer that kept writing to it.
#[derive(Debug, Clone)]
struct Watched {
    place: Place,
    name: String,
    identity: Identity,
    since: jiff::Timestamp,
}

/// Which subdirectory a moved file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Processed,
    Rejected,
}

/// The three directories of one pass.
struct Dirs {
    spool: Dir,
    processed: Dir,
    rejected: Dir,
}

/// What became of one file's content.
enum Taken {
    Queued { new: usize, already: usize },
    Invalid(String),
}

/// Creates the spool directory and its two subdirectories if missing, refusing subdirectories
/// another account planted (a link, or not the service's).
pub fn prepare(spool: &Path) -> Result<(), SpoolError> {
    open_dirs(spool).map(drop)
}

/// Opens the spool and its subdirectories, creating what is missing.
fn open_dirs(path: &Path) -> Result<Dirs, SpoolError> {
    let directory = |path: &Path, error: io::Error| SpoolError::Directory {
        path: path.to_path_buf(),
        detail: match error.raw_os_error() {
            // ENOTDIR, ELOOP: a file or a link took the name.
            Some(20 | 40) => "um arquivo ou link simbólico ocupa o nome (não é seguido): remova-o".to_owned(),
            Some(_) => io_error(&error),
            // Dir::subdir's own refusal.
            None => error.to_string(),
        },
    };
    if let Err(error) = std::fs::create_dir_all(path) {
        return Err(directory(path, error));
    }
    let spool = Dir::open(path).map_err(|error| directory(path, error))?;
    let processed = spool
        .subdir(PROCESSED_DIR, SUBDIR_MODE)
        .map_err(|error| directory(&path.join(PROCESSED_DIR), error))?;
    let rejected = spool
        .subdir(REJECTED_DIR, SUBDIR_MODE)
        .map_err(|error| directory(&path.join(REJECTED_DIR), error))?;
    Ok(Dirs { spool, processed, rejected })
}

impl Spool {
    /// The spool at `path`.
    pub fn new(path: &Path) -> Spool {
        Spool {
            path: path.to_path_buf(),
            quiet: Duration::ZERO,
            watched: Vec::new(),
            refused: HashMap::new(),
        }
    }

    /// Imports every `*.json` file unchanged for `quiet`, oldest name first, then what was added
    /// to files taken earlier.
    pub fn import(
        &mut self,
        queue: &mut dyn Queue,
        quiet: Duration,
        now: jiff::Timestamp,
    ) -> Result<Report, SpoolError> {
        self.quiet = quiet;
        let dirs = open_dirs(&self.path)?;
        let mut report = Report::default();
        let names = dirs
            .spool
            .names()
            .map_err(|error| SpoolError::Directory { path: self.path.clone(), detail: io_error(&error) })?;
        let mut names: Vec<String> =
            names.into_iter().filter(|name| name.ends_with(".json") && !name.starts_with('.')).collect();
        names.sort();
        self.refused.retain(|name, _| names.contains(name));
        for name in names {
            self.import_file(queue, &dirs, &name, now, &mut report)?;
        }
        self.follow_up(queue, &dirs, now, &mut report)?;
        Ok(report)
    }

    /// One file of the spool: taken, rejected, refused, or left for a later pass.
    fn import_file(
        &mut self,
        queue: &mut dyn Queue,
        dirs: &Dirs,
        name: &str,
        now: jiff::Timestamp,
        report: &mut Report,
    ) -> Result<(), SpoolError> {
        let Ok(before) = dirs.spool.identity(name) else { return Ok(()) };
        if !self.settled(&before, now) {
            return Ok(());
        }
        let file = match dirs.spool.read_regular(name, MAX_DOCUMENT_BYTES as u64) {
            Ok(file) => file,
            Err(OpenError::Refused(Refused::TooLarge)) => {
                let why = intake::IntakeError::TooLarge(usize::try_from(before.size).unwrap_or(usize::MAX));
                return self.reject(dirs, name, &why.to_string(), now, report);
            }
            Err(OpenError::Refused(refused)) => {
                if self.refused.insert(name.to_owned(), before) != Some(before) {
                    report.refused.push((name.to_owned(), refused.to_string()));
                }
                return Ok(());
            }
            Err(OpenError::Io(error)) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(OpenError::Io(error)) => {
                let why = format!("não foi possível ler: {}", io_error(&error));
                return self.reject(dirs, name, &why, now, report);
            }
        };
        if file.identity != before {
            // Written to while it was read: next pass.
            return Ok(());
        }
        match take(queue, name, &file.bytes, now)? {
            Taken::Invalid(why) => self.reject(dirs, name, &why, now, report),
            Taken::Queued { new, already } => {
                let target = Spool::move_to(&dirs.spool, name, &dirs.processed, now)?;
                self.watch(Place::Processed, target, file.identity, now);
                report.imported.push(Imported { file: name.to_owned(), new, already, again: false });
                Ok(())
            }
        }
    }

    /// Whether a file last changed at least `quiet` ago.
    fn settled(&self, identity: &Identity, now: jiff::Timestamp) -> bool {
        let quiet = jiff::SignedDuration::try_from(self.quiet).unwrap_or(jiff::SignedDuration::MAX);
        now.checked_sub(quiet).is_ok_and(|limit| identity.modified_at() <= limit)
    }

    /// Files moved out that changed since: their writer kept writing. A processed one is read
    /// again (what was added is queued, the rest is "already queued"); a rejected one that is
    /// now valid is queued and moved to `processados/`, its `.erro` removed.
    fn follow_up(
        &mut self,
        queue: &mut dyn Queue,
        dirs: &Dirs,
        now: jiff::Timestamp,
        report: &mut Report,
    ) -> Result<(), SpoolError> {
        let window = jiff::SignedDuration::try_from(WATCH_FOR).unwrap_or_default();
        self.watched.retain(|watched| now.checked_sub(window).is_ok_and(|limit| watched.since >= limit));
        let mut index = 0;
        while index < self.watched.len() {
            let watched = self.watched[index].clone();
            let dir = match watched.place {
                Place::Processed => &dirs.processed,
                Place::Rejected => &dirs.rejected,
            };
            let Ok(now_identity) = dir.identity(&watched.name) else {
                self.watched.remove(index);
                continue;
            };
            if now_identity == watched.identity || !self.settled(&now_identity, now) {
                index += 1;
                continue;
            }
            let Ok(file) = dir.read_regular(&watched.name, MAX_DOCUMENT_BYTES as u64) else {
                self.watched.remove(index);
                continue;
            };
            self.watched[index].identity = file.identity;
            if file.identity != now_identity {
                index += 1;
                continue;
            }
            match take(queue, &watched.name, &file.bytes, now)? {
                // Still incomplete or wrong: said now, looked at again when it changes.
                Taken::Invalid(why) => {
                    report.unreadable.push((watched.name.clone(), why));
                    index += 1;
                }
                Taken::Queued { new, already } => {
                    if watched.place == Place::Rejected {
                        let target = Spool::move_to(&dirs.rejected, &watched.name, &dirs.processed, now)?;
                        let _ = dirs.rejected.remove(&format!("{}{ERROR_SUFFIX}", watched.name));
                        self.watched[index].place = Place::Processed;
                        self.watched[index].name = target;
                    }
                    report.imported.push(Imported { file: watched.name.clone(), new, already, again: true });
                    index += 1;
                }
            }
        }
        Ok(())
    }

    /// Writes `rejeitados/NAME.erro`, then moves the file beside it. The explanation is written
    /// first (durably, under a name nothing else has), so a rejected file is never found
    /// without one.
    fn reject(
        &mut self,
        dirs: &Dirs,
        name: &str,
        why: &str,
        now: jiff::Timestamp,
        report: &mut Report,
    ) -> Result<(), SpoolError> {
        let identity = dirs.spool.identity(name).ok();
        let explanation = format!(
            "arquivo: {}\nrejeitado em: {}\nmotivo:\n{}\n\nNenhum cancelamento deste arquivo foi importado. \
             Corrija-o e coloque-o de novo em {} (grave como .json.tmp e renomeie para .json).\n",
            terminal_safe(name),
            local_time(now),
            terminal_safe_lines(why),
            terminal_safe(&self.path.display().to_string())
        );
        let fail = |error: io::Error| SpoolError::Directory {
            path: dirs.rejected.path().to_path_buf(),
            detail: io_error(&error),
        };
        for candidate in candidates(name, now) {
            let error_name = format!("{candidate}{ERROR_SUFFIX}");
            if dirs.rejected.exists(&candidate) {
                continue;
            }
            match dirs.rejected.write_new(&error_name, explanation.as_bytes(), ERROR_FILE_MODE) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(fail(error)),
            }
            match dirs.spool.rename_into(name, &dirs.rejected, &candidate) {
                Ok(()) => {
                    if let Some(identity) = identity {
                        self.watch(Place::Rejected, candidate, identity, now);
                    }
                    report.rejected.push((name.to_owned(), why.to_owned()));
                    return Ok(());
                }
                Err(error) => {
                    let _ = dirs.rejected.remove(&error_name);
                    if error.kind() != io::ErrorKind::AlreadyExists {
                        return Err(fail(error));
                    }
                }
            }
        }
        Err(fail(io::Error::other("nenhum nome livre")))
    }

    /// Moves `name` from `from` into `to` under a free name (its own, or one with the time
    /// added) and returns that name.
    fn move_to(from: &Dir, name: &str, to: &Dir, now: jiff::Timestamp) -> Result<String, SpoolError> {
        let fail = |error: io::Error| SpoolError::Directory {
            path: to.path().to_path_buf(),
            detail: io_error(&error),
        };
        for candidate in candidates(name, now) {
            match from.rename_into(name, to, &candidate) {
                Ok(()) => return Ok(candidate),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(fail(error)),
            }
        }
        Err(fail(io::Error::other("nenhum nome livre")))
    }

    /// Starts watching a moved file (the oldest dropped past `MAX_WATCHED`).
    fn watch(&mut self, place: Place, name: String, identity: Identity, now: jiff::Timestamp) {
        if self.watched.len() >= MAX_WATCHED {
            self.watched.remove(0);
        }
        self.watched.push(Watched { place, name, identity, since: now });
    }
}

/// `name`, then `STEM-<millis>.json`, `STEM-<millis>-2.json`, …: the ERP may reuse file names,
/// and an earlier file must not be overwritten.
fn candidates(name: &str, now: jiff::Timestamp) -> impl Iterator<Item = String> + '_ {
    let stem = name.strip_suffix(".json").unwrap_or(name);
    let base = format!("{stem}-{}", now.as_millisecond());
    std::iter::once(name.to_owned()).chain(
        (1..1_000).map(move |n| if n == 1 { format!("{base}.json") } else { format!("{base}-{n}.json") }),
    )
}

/// Validates `bytes` whole and checks it against the queue, then queues it in batches. The
/// first pass keeps one record at a time (and a hash per order, to find an order repeated with
/// other content); the second reads the same bytes again.
fn take(queue: &mut dyn Queue, name: &str, bytes: &[u8], now: jiff::Timestamp) -> Result<Taken, SpoolError> {
    let store_error = |error| SpoolError::Store { file: name.to_owned(), error: Box::new(error) };
    let mut chunk = Vec::with_capacity(CHECK_CHUNK);
    let mut conflicts = Listed::default();
    let mut repeated = None;
    let mut seen: HashMap<u64, Seen> = HashMap::new();
    let mut failed = None;
    let checked = intake::check_document(bytes, |record| {
        if failed.is_some() {
            return;
        }
        let (order, this) = Seen::of(&record.item, record.location.record);
        match seen.get(&order) {
            None => {
                seen.insert(order, this);
            }
            Some(first) if repeated.is_none() && first.conflicts_with(&this) => {
                repeated = Some(format!(
                    "o pedido {} aparece mais de uma vez com conteúdo diferente (registros {} e {}); nada foi importado",
                    terminal_safe(&record.item.order),
                    first.record,
                    this.record
                ));
            }
            Some(_) => {}
        }
        chunk.push(record.item);
        if chunk.len() == CHECK_CHUNK {
            match queue.conflicts(&chunk) {
                Ok(found) => found.into_iter().for_each(|conflict| conflicts.push(conflict)),
                Err(error) => failed = Some(error),
            }
            chunk.clear();
        }
    });
    if let Err(error) = checked {
        return Ok(Taken::Invalid(error.to_string()));
    }
    if let Some(error) = failed {
        return Err(store_error(error));
    }
    if let Some(why) = repeated {
        return Ok(Taken::Invalid(why));
    }
    queue.conflicts(&chunk).map_err(store_error)?.into_iter().for_each(|conflict| conflicts.push(conflict));
    drop(chunk);
    if !conflicts.is_empty() {
        return Ok(Taken::Invalid(StoreError::Conflicts(conflicts).to_string()));
    }
    let (mut new, mut already) = (0, 0);
    let mut batch = Vec::with_capacity(BATCH);
    let mut failed = None;
    let mut flush = |batch: &mut Vec<NewItem>, failed: &mut Option<StoreError>| {
        if failed.is_some() || batch.is_empty() {
            batch.clear();
            return;
        }
        match queue.enqueue(std::mem::take(batch), Origin::Spool(name.to_owned()), now) {
            Ok(outcomes) => {
                let repeated = outcomes.iter().filter(|outcome| outcome.already_queued).count();
                (new, already) = (new + outcomes.len() - repeated, already + repeated);
            }
            Err(error) => *failed = Some(error),
        }
    };
    // The same bytes, validated a moment ago: this pass cannot fail.
    let _ = intake::check_document(bytes, |record| {
        batch.push(record.item);
        if batch.len() == BATCH {
            flush(&mut batch, &mut failed);
        }
    });
    flush(&mut batch, &mut failed);
    match failed {
        Some(error) => Err(store_error(error)),
        None => Ok(Taken::Queued { new, already }),
    }
}

/// What `take` keeps of the first record of each order in a file, to find the order again with
/// other content by the queue's own rule (`store::items::differences`): the fields must be
/// equal, and a `cancelled_at` given again must be the same instant, while an omitted one ("now")
/// matches any. Hashes, not the record: a few dozen bytes per order.
struct Seen {
    /// Branch, reason, customer and extra.
    fields: u64,
    /// The instant of `cancelled_at`, if given.
    cancelled_at: Option<u64>,
    record: usize,
}

impl Seen {
    /// The hash of `item`'s order, and what to keep of it.
    fn of(item: &NewItem, record: usize) -> (u64, Seen) {
        let hash = |feed: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            feed(&mut hasher);
            hasher.finish()
        };
        let order = hash(&|hasher| item.order.hash(hasher));
        let fields = hash(&|hasher| {
            (&item.branch, &item.reason, &item.customer).hash(hasher);
            item.extra
                .as_ref()
                .map(|extra| serde_json::Value::Object(extra.clone()).to_string())
                .hash(hasher);
        });
        let cancelled_at = item
            .cancelled_at
            .as_ref()
            .map(|text| hash(&|hasher| crate::core::item::parse_rfc3339(text).ok().hash(hasher)));
        (order, Seen { fields, cancelled_at, record })
    }

    /// Whether `later`, the same order further on, says something else.
    fn conflicts_with(&self, later: &Seen) -> bool {
        self.fields != later.fields
            || later.cancelled_at.is_some_and(|instant| self.cancelled_at != Some(instant))
    }
}
