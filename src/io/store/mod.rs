//! The durable queue: the only module that touches SQLite.
//!
//! One `Store` is one connection. Write transactions start `IMMEDIATE` so that a writer either
//! gets the lock up front or waits `busy_timeout` for it — never fails half-way through. Times are
//! Unix milliseconds (UTC) in the database and `jiff::Timestamp` outside it.

mod items;
mod schema;
mod sources;
mod status;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, ffi::ErrorCode};

pub use items::{AttemptRecord, Conflict, EnqueueOutcome, Filter};
pub use sources::{SourceRow, SourceRun};
pub use status::{DaemonRow, QueueFigures, Snapshot};

/// How hard a connection's commits try to reach the disk.
///
/// Whatever the connection's setting, `Store::enqueue` (the intake: `enqueue` and the spool
/// import) always commits with `synchronous=FULL`, since the ERP is told "queued" only once the
/// cancellation is on disk. The setting decides the rest: claims, attempt records, heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: every commit survives a power loss (one fsync each).
    Full,
    /// `synchronous=NORMAL` (in WAL): a power loss may roll back the last commits, never corrupt
    /// the file, and a process crash loses nothing. The daemon's choice: rolling back a claim or
    /// an attempt record can only make it send an item again, under the same idempotency key
    /// (docs/RELIABILITY.md).
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Creates the file if needed and migrates the schema.
    ReadWrite(Durability),
    /// For reading commands: never creates or migrates, so `status` run as root cannot leave a
    /// root-owned database behind the service's back.
    ReadOnly,
}

/// A connection to the queue database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The file opened (device, inode): a database deleted or replaced under a running daemon
    /// is noticed (`replaced`) instead of written into an unlinked file.
    identity: Option<(u64, u64)>,
    busy_timeout: Duration,
    /// The connection's `synchronous` setting (`Full` for read-only stores, which never commit).
    durability: Durability,
}

impl Drop for Store {
    /// With the -wal kept (`persist_wal`), SQLite empties it at the last writer's close (after
    /// that close's checkpoint) only when a size limit is set; without one it only grows, and
    /// every later process re-reads and re-checkpoints all of it (the direct `enqueue` with the
    /// service stopped: 22 MB and 2.4× slower after 1,000). Set here, at the close, rather than
    /// at the open: while the daemon runs, a limit would truncate and regrow the log at every
    /// restart of it, a cost on every item for nothing.
    fn drop(&mut self) {
        let _ = self.conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT);
    }
}

/// Why the queue could not do what was asked. `Display` is pt-BR and names the database.
#[derive(Debug)]
pub enum StoreError {
    /// A SQLite failure while doing `action` (a pt-BR phrase such as "gravar os itens").
    Sqlite { path: PathBuf, action: &'static str, busy_timeout: Duration, source: rusqlite::Error },
    /// The database does not exist and this command does not create it.
    Missing(PathBuf),
    /// This account may not read the database (or reach its directory).
    Unreadable(PathBuf),
    /// The database was written by a newer extrator.
    TooNew { path: PathBuf, found: i64, supported: i64 },
    /// Migrations are pending and this command may not apply them.
    TooOld { path: PathBuf, found: i64, supported: i64 },
    /// The file exists but holds no queue (empty, or emptied).
    Empty(PathBuf),
    /// An enqueue whose orders are already queued with other content.
    Conflicts(crate::core::text::Listed<Conflict>),
    /// Another process holds the daemon lock.
    Locked(PathBuf),
    /// A group commit failed: every unit of work in it was rolled back.
    Group(String),
    /// The work never reached the database, for this reason (the service is stopping, the store
    /// thread is gone): nothing was written.
    Interrupted(&'static str),
    /// A row holds a value this build cannot read.
    Corrupt { path: PathBuf, detail: String },
    /// An attempt record for an item that is no longer leased to the daemon (its lease ran out
    /// and it went back to the queue, to be sent again): not written.
    NotLeased(i64),
    /// The database path is a symbolic link: never opened through one.
    Symlink(PathBuf),
    /// Root was asked to write a database in a directory other accounts can write, where a
    /// link planted beside it could turn root's write against another file.
    UnsafeDirectory { path: PathBuf, mode: u32 },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Sqlite { path, action, busy_timeout, source } => write!(
                f,
                "não foi possível {action} no banco de dados {}: {}",
                path.display(),
                describe_sqlite(source, *busy_timeout)
            ),
            StoreError::Unreadable(path) => write!(
                f,
                "sem permissão para ler o banco de dados {}: consultar a fila precisa do grupo \
                 extrator-leitura (usermod -aG extrator-leitura USUÁRIO, depois entre de novo) ou de root",
                path.display()
            ),
            StoreError::Missing(path) => write!(
                f,
                "o banco de dados {} não existe ainda: o serviço o cria ao iniciar (systemctl start extrator), \
                 e um `extrator enqueue` também; se o serviço já roda, confira queue.database",
                path.display()
            ),
            StoreError::TooNew { path, found, supported } => write!(
                f,
                "o banco de dados {} está na versão {found} do esquema, mais nova que a desta versão \
                 do extrator ({supported}): atualize o extrator",
                path.display()
            ),
            StoreError::TooOld { path, found, supported } => write!(
                f,
                "o banco de dados {} está na versão {found} do esquema e esta versão do extrator usa \
                 a {supported}: reinicie o serviço (systemctl restart extrator) para migrá-lo",
                path.display()
            ),
            StoreError::Empty(path) => write!(
                f,
                "o banco de dados {} está vazio (não tem a fila): o serviço o prepara ao iniciar; se ele \
                 já tinha itens, o arquivo foi truncado ou substituído — restaure o backup",
                path.display()
            ),
            StoreError::Conflicts(conflicts) => {
                write!(
                    f,
                    "{} na fila com conteúdo diferente; nada foi gravado:",
                    crate::core::text::count(conflicts.total as u64, "pedido já está", "pedidos já estão")
                )?;
                conflicts.write_lines(f, ToString::to_string)
            }
            StoreError::Locked(path) => {
                write!(f, "outro `extrator run` já está usando a fila {} (só pode haver um)", path.display())
            }
            StoreError::Group(detail) => write!(f, "{detail} (nada do grupo foi gravado)"),
            StoreError::Interrupted(why) => write!(f, "{why}: nada foi gravado"),
            StoreError::Corrupt { path, detail } => {
                write!(f, "dado ilegível no banco de dados {}: {detail}", path.display())
            }
            StoreError::Symlink(path) => write!(
                f,
                "o banco de dados {} é um link simbólico: o extrator não abre o banco por links \
                 (configure queue.database com o caminho do arquivo)",
                path.display()
            ),
            StoreError::UnsafeDirectory { path, mode } => write!(
                f,
                "o diretório {} do banco de dados pode ser alterado por outras contas (modo {mode:o}): \
                 como root o extrator não grava nele; corrija com `chmod g-w,o-w {}` (o pacote o deixa 2750)",
                path.display(),
                path.display()
            ),
            StoreError::NotLeased(item) => write!(
                f,
                "a tentativa do item {item} não foi gravada: a reserva dele venceu e ele voltou para a fila \
                 (será enviado de novo com a mesma chave de idempotência), ou ela já estava gravada"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for crate::core::failure::Failure {
    fn from(error: StoreError) -> Self {
        Self::failed(error.to_string())
    }
}

/// SQLite's failure in words an administrator can act on.
fn describe_sqlite(error: &rusqlite::Error, busy_timeout: Duration) -> String {
    let Some(code) = error.sqlite_error_code() else { return format!("erro do SQLite ({error})") };
    match code {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => format!(
            "está travado por outro processo há mais de {} (queue.busy_timeout); tente de novo",
            crate::core::duration::format(busy_timeout)
        ),
        ErrorCode::DiskFull => "o disco está cheio; libere espaço e tente de novo".to_owned(),
        ErrorCode::ReadOnly | ErrorCode::PermissionDenied => {
            "sem permissão de escrita (rode como o usuário do serviço, ou confira as permissões)".to_owned()
        }
        ErrorCode::CannotOpen => {
            "não foi possível abrir o arquivo (o diretório existe? há permissão?)".to_owned()
        }
        ErrorCode::NotADatabase => {
            "o arquivo não é um banco de dados SQLite (foi substituído ou sobrescrito): pare o serviço, guarde \
             uma cópia do arquivo e restaure o backup"
                .to_owned()
        }
        ErrorCode::DatabaseCorrupt => "o banco de dados está corrompido (truncado ou danificado): pare o \
             serviço, guarde uma cópia do arquivo e restaure o backup"
            .to_owned(),
        ErrorCode::SystemIoFailure => format!("erro de E/S no disco ({error})"),
        _ => format!("erro do SQLite ({error})"),
    }
}

impl Store {
    /// Opens (and for `ReadWrite`, creates and migrates) the database at `path`.
    pub fn open(path: &Path, access: Access, busy_timeout: Duration) -> Result<Store, StoreError> {
        let fail =
            |action, source| StoreError::Sqlite { path: path.to_path_buf(), action, busy_timeout, source };
        if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink()) {
            return Err(StoreError::Symlink(path.to_path_buf()));
        }
        let flags = match access {
            Access::ReadOnly => {
                match std::fs::File::open(path) {
                    Ok(_) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                        return Err(StoreError::Unreadable(path.to_path_buf()));
                    }
                    Err(_) => return Err(StoreError::Missing(path.to_path_buf())),
                }
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
            }
            Access::ReadWrite(_) => {
                let parent = directory_of(path);
                // Best effort: a missing directory is then reported by SQLite's own open error.
                let _ = std::fs::create_dir_all(parent);
                refuse_unsafe_directory_for_root(parent)?;
                if !path.exists() {
                    create_adopted(path);
                }
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
            }
        };
        let conn = Connection::open_with_flags(path, flags).map_err(|e| fail("abrir o arquivo", e))?;
        conn.busy_timeout(busy_timeout).map_err(|e| fail("configurar a conexão", e))?;
        // Room for every claim shape (two states × up to 64 slots) beside the other statements.
        conn.set_prepared_statement_cache_capacity(192);
        let durability = match access {
            Access::ReadWrite(durability) => durability,
            Access::ReadOnly => Durability::Full,
        };
        let identity = std::fs::symlink_metadata(path).ok().map(|meta| {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        });
        let mut store = Store { conn, path: path.to_path_buf(), identity, busy_timeout, durability };
        match access {
            Access::ReadOnly => store.check_version()?,
            Access::ReadWrite(durability) => {
                store.enable_wal().map_err(|e| fail("ativar o modo WAL", e))?;
                if !persist_wal(&store.conn) {
                    tracing::warn!(
                        "não foi possível manter -wal e -shm do banco de dados: quem só lê a fila (grupo \
                         extrator-leitura) pode não conseguir abri-la com o serviço parado"
                    );
                }
                store
                    .conn
                    .pragma_update(None, "synchronous", durability.pragma())
                    .map_err(|e| fail("configurar a conexão", e))?;
                store
                    .conn
                    .pragma_update(None, "foreign_keys", true)
                    .map_err(|e| fail("configurar a conexão", e))?;
                store.migrate()?;
            }
        }
        Ok(store)
    }

    /// Runs `work` (one transaction of its own) with `synchronous=FULL`, then restores the
    /// connection's setting. In WAL, that commit's fsync also covers every earlier commit of a
    /// `NORMAL` connection. On a `NORMAL` connection inside a group it fails (SQLite refuses to
    /// change the setting inside a transaction) rather than commit with less than promised.
    pub(crate) fn durably<T>(
        &mut self,
        action: &'static str,
        work: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.durability == Durability::Full {
            return work(self);
        }
        let context = self.context(action);
        self.conn.pragma_update(None, "synchronous", "FULL").map_err(|source| context.fail(source))?;
        let result = work(self);
        let restored = self.conn.pragma_update(None, "synchronous", self.durability.pragma());
        let value = result?;
        restored.map_err(|source| context.fail(source))?;
        Ok(value)
    }

    /// Switches the file to WAL (a no-op once it is). SQLite answers a journal-mode change that
    /// races another process's first write with an immediate `SQLITE_BUSY` that skips the busy
    /// handler, so this waits for it by hand, within the same `busy_timeout`.
    fn enable_wal(&self) -> rusqlite::Result<()> {
        let deadline = std::time::Instant::now() + self.busy_timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            match self
                .conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            {
                Ok(_) => return Ok(()),
                Err(error)
                    if error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the file this store opened is no longer the one at its path (deleted, or replaced
    /// by another file), in pt-BR; `None` while it still is. Writing on would put the queue in
    /// a file nobody can open again.
    pub fn replaced(&self) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let opened = self.identity?;
        let path = self.path.display();
        match std::fs::symlink_metadata(&self.path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "o banco de dados {path} foi apagado enquanto o serviço rodava: parando para não gravar num \
                 arquivo que ninguém mais abre (restaure o backup e reinicie: systemctl restart extrator)"
            )),
            Ok(meta) if (meta.dev(), meta.ino()) != opened => Some(format!(
                "o banco de dados {path} foi substituído por outro arquivo enquanto o serviço rodava: parando \
                 (systemctl restart extrator abre o arquivo que está lá agora)"
            )),
            _ => None,
        }
    }

    /// A `StoreError::Sqlite` for this store.
    fn error(&self, action: &'static str, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), action, busy_timeout: self.busy_timeout, source }
    }

    /// The schema version recorded in the file.
    fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| self.error("ler a versão do esquema", e))
    }

    /// Refuses a database this build cannot read without migrating it.
    fn check_version(&self) -> Result<(), StoreError> {
        let found = self.version()?;
        let supported = schema::current_version();
        if found == 0 {
            return Err(StoreError::Empty(self.path.clone()));
        }
        match found.cmp(&supported) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Greater => {
                Err(StoreError::TooNew { path: self.path.clone(), found, supported })
            }
            std::cmp::Ordering::Less => Err(StoreError::TooOld { path: self.path.clone(), found, supported }),
        }
    }

    /// Applies the pending migrations, each in its own `IMMEDIATE` transaction, so that two
    /// processes opening a new database at once do not both apply migration 1.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let supported = schema::current_version();
        loop {
            let (tx, context) = self.write("migrar o esquema")?;
            let found: i64 =
                tx.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| context.fail(e))?;
            if found > supported {
                return Err(StoreError::TooNew { path: context.path, found, supported });
            }
            if found == supported {
                return Ok(());
            }
            let index = usize::try_from(found).unwrap_or(0);
            tx.execute_batch(schema::MIGRATIONS[index])
                .and_then(|()| tx.pragma_update(None, "user_version", found + 1))
                .and_then(|()| tx.commit())
                .map_err(|e| context.fail(e))?;
        }
    }

    /// The context for errors of `action`, owned so it can be used while a transaction borrows
    /// the connection.
    fn context(&self, action: &'static str) -> ErrorContext {
        ErrorContext { path: self.path.clone(), busy_timeout: self.busy_timeout, action }
    }

    /// Starts the unit of work of `action`: an `IMMEDIATE` transaction, or — inside a group
    /// opened by `begin_group` — a savepoint, so a failed unit rolls back alone.
    fn write(&mut self, action: &'static str) -> Result<(Write<'_>, ErrorContext), StoreError> {
        let context = self.context(action);
        let unit = if self.conn.is_autocommit() {
            Write::Transaction(
                self.conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|source| context.fail(source))?,
            )
        } else {
            Write::Savepoint(self.conn.savepoint().map_err(|source| context.fail(source))?)
        };
        Ok((unit, context))
    }

    /// Opens a group commit: the units of work until `end_group` share one transaction and one
    /// fsync. Only the daemon's claims and attempt records are grouped (see `writer.rs`): a lost
    /// group at worst re-sends items under their idempotency keys. Intake is never grouped.
    pub fn begin_group(&mut self) -> Result<(), StoreError> {
        let context = self.context("gravar um grupo de tentativas");
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|source| context.fail(source))
    }

    /// Commits the group opened by `begin_group` (rolling it back if the commit fails).
    pub fn end_group(&mut self) -> Result<(), StoreError> {
        let context = self.context("gravar um grupo de tentativas");
        self.conn.execute_batch("COMMIT").map_err(|source| {
            let _ = self.conn.execute_batch("ROLLBACK");
            context.fail(source)
        })
    }
}

/// A unit of work: a transaction of its own, or a savepoint in a group.
enum Write<'c> {
    Transaction(rusqlite::Transaction<'c>),
    Savepoint(rusqlite::Savepoint<'c>),
}

impl Write<'_> {
    /// Commits the transaction, or releases the savepoint into its group.
    fn commit(self) -> rusqlite::Result<()> {
        match self {
            Write::Transaction(transaction) => transaction.commit(),
            Write::Savepoint(savepoint) => savepoint.commit(),
        }
    }
}

impl std::ops::Deref for Write<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            Write::Transaction(transaction) => transaction,
            Write::Savepoint(savepoint) => savepoint,
        }
    }
}

/// What a SQLite error inside a transaction is reported with.
struct ErrorContext {
    path: PathBuf,
    busy_timeout: Duration,
    action: &'static str,
}

impl ErrorContext {
    /// Wraps a SQLite error.
    fn fail(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            action: self.action,
            busy_timeout: self.busy_timeout,
            source,
        }
    }
}

/// The -wal's size limit set at a writer's close: any non-negative value makes that close
/// truncate the checkpointed log to zero.
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// Keeps the database's `-wal` and `-shm` when this connection closes last
/// (`SQLITE_FCNTL_PERSIST_WAL`), instead of SQLite's default of removing them. Support reads the
/// queue with no write access to its directory (group `extrator-leitura`), and a read-only
/// connection can open a WAL database only while those files exist: without this, the queue
/// would be unreadable to support whenever the service is stopped. Every writer sets it, so
/// whoever closes last leaves them. Returns whether SQLite took it.
///
/// **The crate's one `unsafe` block** (reviewed exception to `unsafe_code = "deny"`; the
/// architecture test keeps it the only one): rusqlite has no wrapper for
/// `sqlite3_file_control`.
#[expect(unsafe_code, reason = "sqlite3_file_control has no safe wrapper in rusqlite")]
fn persist_wal(conn: &Connection) -> bool {
    let mut on: std::ffi::c_int = 1;
    // SAFETY: `handle()` is the live connection's `sqlite3*`, valid while `conn` is borrowed and
    // used on this thread only; "main" is a NUL-terminated static string; for
    // SQLITE_FCNTL_PERSIST_WAL SQLite reads the `int` behind the pointer (and writes the previous
    // setting back into it) during the call and keeps no reference to it.
    let code = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut on).cast(),
        )
    };
    code == rusqlite::ffi::SQLITE_OK
}

/// The directory a database path is in (`.` for a bare name).
pub fn directory_of(path: &Path) -> &Path {
    path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Root writes a database only in a directory no other account can write: there, nobody can
/// plant a link for root's next write to follow (SQLite itself opens every file with
/// `O_NOFOLLOW`, and the database path is checked not to be a link).
fn refuse_unsafe_directory_for_root(directory: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    match std::fs::metadata(directory) {
        // World-writable with the sticky bit (/tmp) keeps others' links from replacing ours,
        // but not from taking a name first: refused too.
        Ok(meta) if meta.mode() & 0o022 != 0 => {
            Err(StoreError::UnsafeDirectory { path: directory.to_path_buf(), mode: meta.mode() & 0o7777 })
        }
        _ => Ok(()),
    }
}

/// A database created by a command (say `extrator enqueue` run by root before the service ever
/// started) must still be the service's: the empty file is made here, before SQLite sees it,
/// exclusively and never through a link, readable by its group (support's read-only access),
/// and — when root creates it — given to the owner and group of its directory (the service's
/// state directory) through the handle. SQLite then gives `-wal` and `-shm` the same owner and
/// mode. Errors are ignored: another process may have created it first.
fn create_adopted(path: &Path) {
    use rustix::fs::{Mode, OFlags};
    let Ok(file) = rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o640),
    ) else {
        return;
    };
    if rustix::process::geteuid().is_root()
        && let Ok(directory) = rustix::fs::stat(directory_of(path))
    {
        let owner = rustix::fs::Uid::from_raw(directory.st_uid);
        let group = rustix::fs::Gid::from_raw(directory.st_gid);
        let _ = rustix::fs::fchown(&file, Some(owner), Some(group));
    }
}

/// Unix milliseconds of a timestamp.
pub fn to_millis(at: jiff::Timestamp) -> i64 {
    at.as_millisecond()
}

/// The timestamp of Unix milliseconds (clamped into jiff's range, which no real value leaves).
pub fn from_millis(millis: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(millis).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests;
