//! `extrator run`: the daemon, in the foreground (what systemd runs). This file sets it up —
//! config, logging, the single-daemon lock, the store, the HTTP client — and hands over to
//! `daemon::Daemon`, whose doc lists what each turn of the loop does.
//!
//! Only one daemon may use a queue: it holds an exclusive lock on `DATABASE.lock` for its whole
//! life, which also makes every `in_flight` item found at start an orphan of a crash, recovered
//! at once.

use std::fs::File;
use std::path::Path;

use super::load_config;
use crate::core::failure::{EXIT_CONFIG, Failure, Outcome};
use crate::daemon::Daemon;
use crate::io::api::Client;
use crate::io::spool;
use crate::io::store::{Access, Durability, Store, StoreError};
use crate::io::writer::Writer;

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(config_path: &Path) -> Outcome {
    let loaded = load_config(config_path)?;
    crate::io::logging::init(loaded.config.log.level);
    let config = loaded.config;
    tracing::info!(config = %loaded.path.display(), "configuração carregada");
    let client = Client::new(&config).map_err(|message| Failure { exit_code: EXIT_CONFIG, message })?;
    let sources = crate::io::source::Source::all(&config.sources)
        .map_err(|message| Failure { exit_code: EXIT_CONFIG, message })?;
    let _lock = lock_queue(&config.queue.database)?;
    // Before READY: a port that cannot be had stops the start with the reason (exit 1), an
    // unreadable metrics.password_file too (exit 78).
    let listener = crate::web::bind(&config)?;
    // Claims and attempt records commit with synchronous=NORMAL (a power loss can only make the
    // daemon send an item again, under its idempotency key); the spool import, like `enqueue`,
    // always commits FULL (`Store::enqueue`): a file leaves the spool only once it is on disk.
    // Another process's lock is waited for at most DAEMON_BUSY_TIMEOUT: longer, and the store
    // thread's stall would hold the watchdog back (see daemon.rs).
    let mut store = Store::open(
        &config.queue.database,
        Access::ReadWrite(Durability::Normal),
        config.queue.busy_timeout.get().min(crate::daemon::DAEMON_BUSY_TIMEOUT),
    )?;
    match spool::prepare(&config.queue.spool_dir) {
        Ok(()) => {}
        // A subdirectory another account planted (a link, or not the service's) must not keep
        // the service from delivering: each pass says so until it is removed.
        Err(error) if matches!(&error, spool::SpoolError::Directory { path, .. } if *path != config.queue.spool_dir) =>
        {
            tracing::error!("{error}");
        }
        Err(error) => return Err(Failure::failed(error.to_string())),
    }
    // The lock proves no other daemon has them: every item left in flight is a crash's orphan.
    let recovered = store.release_all(jiff::Timestamp::now())?;
    if recovered > 0 {
        let said = if recovered == 1 {
            "1 item que estava em envio quando o serviço parou voltou para a fila".to_owned()
        } else {
            format!("{recovered} itens que estavam em envio quando o serviço parou voltaram para a fila")
        };
        tracing::warn!(items = recovered, "{said}");
    }
    // A due time past the longest wait (stored by an older version from an unbounded
    // Retry-After) is brought back to it.
    let capped = store.cap_due(
        jiff::Timestamp::now()
            .saturating_add(jiff::SignedDuration::try_from(config.retry.max_delay.get()).unwrap_or_default())
            .unwrap_or_else(|_| jiff::Timestamp::now()),
    )?;
    if capped > 0 {
        tracing::warn!(
            items = capped,
            "itens agendados para além de retry.max_delay foram trazidos para dentro dele"
        );
    }
    store.daemon_started(std::process::id(), jiff::Timestamp::now())?;
    let names: Vec<String> = config.sources.iter().map(|source| source.name.clone()).collect();
    store.keep_sources(&names)?;
    tracing::info!(
        database = %config.queue.database.display(),
        spool = %config.queue.spool_dir.display(),
        api = %config.api.url,
        "extrator iniciado"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::failed(format!("não foi possível iniciar o runtime: {error}")))?;
    if let Some(address) = listener.as_ref().and_then(|listener| listener.socket.local_addr().ok()) {
        tracing::info!("painel em http://{address}/ e métricas em http://{address}/metrics");
    }
    let daemon = Daemon::new(config_path.to_path_buf(), config, Writer::spawn(store), client)
        .with_listener(listener)
        .with_sources(sources);
    runtime.block_on(daemon.run())?;
    tracing::info!("extrator parado");
    Ok(())
}

/// Takes the exclusive daemon lock beside the database, or says who has it. It is never opened
/// through a link. Two configs that reach one queue through a linked directory lock the same
/// file; through a linked database file they cannot both run, since the store refuses a
/// database path that is a link.
fn lock_queue(database: &Path) -> Result<File, Failure> {
    use rustix::fs::{Mode, OFlags};
    let directory = crate::io::store::directory_of(database);
    let _ = std::fs::create_dir_all(directory);
    let mut name = database.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    let path = directory.join(name);
    let cannot = |what: &str, error: std::io::Error| {
        let detail = if error.raw_os_error() == Some(40) {
            "é um link simbólico (remova-o; o serviço recria a trava)".to_owned()
        } else {
            crate::core::text::io_error(&error)
        };
        Failure::failed(format!("não foi possível {what} {}: {detail}", path.display()))
    };
    let file = rustix::fs::open(
        &path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map(File::from)
    .map_err(|error| cannot("criar a trava", error.into()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(database.to_path_buf()).into()),
        Err(std::fs::TryLockError::Error(error)) => Err(cannot("travar", error)),
    }
}
