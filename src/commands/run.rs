//! `extrator run`: the daemon, in the foreground (what systemd runs).
//!
//! Each turn of the loop, every `queue.poll_interval` and at once on start:
//! - imports the spool directory;
//! - returns expired `in_flight` leases to the queue;
//! - writes the heartbeat that `status` reads.
//!
//! SIGTERM or SIGINT ends the loop after the current turn; the stop is recorded. Only one daemon
//! may use a queue: it holds an exclusive lock on `DATABASE.lock` for its whole life, which also
//! makes every `in_flight` item found at start an orphan of a crash, recovered at once.

use std::fs::File;
use std::path::{Path, PathBuf};

use tokio::signal::unix::{SignalKind, signal};

use super::load_config;
use crate::config::Config;
use crate::failure::{Failure, Outcome};
use crate::spool;
use crate::store::{Access, Durability, Store, StoreError};

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(config_path: &Path) -> Outcome {
    let loaded = load_config(config_path)?;
    crate::logging::init(loaded.config.log.level);
    let config = loaded.config;
    tracing::info!(config = %loaded.path.display(), "configuração carregada");
    let _lock = lock_queue(&config.queue.database)?;
    let mut store = open_store_for_daemon(&config)?;
    spool::prepare(&config.queue.spool_dir).map_err(|error| Failure::failed(error.to_string()))?;
    let far_future = jiff::Timestamp::MAX;
    let recovered = store.recover_leases(far_future)?;
    if recovered > 0 {
        tracing::warn!(
            itens = recovered,
            "itens que estavam em envio quando o serviço parou voltaram para a fila"
        );
    }
    store.daemon_started(std::process::id(), jiff::Timestamp::now())?;
    tracing::info!(
        banco = %config.queue.database.display(),
        spool = %config.queue.spool_dir.display(),
        "extrator iniciado"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::failed(format!("não foi possível iniciar o runtime: {error}")))?;
    let store = runtime.block_on(main_loop(store, &config))?;
    drop(runtime);
    let mut store = store;
    store.daemon_stopped(jiff::Timestamp::now())?;
    tracing::info!("extrator parado");
    Ok(())
}

/// Opens the queue for the daemon. The daemon's writes use `synchronous=FULL` for now: its only
/// writes are spool imports, which must be on disk before the file leaves the spool.
fn open_store_for_daemon(config: &Config) -> Result<Store, Failure> {
    Ok(Store::open(
        &config.queue.database,
        Access::ReadWrite(Durability::Full),
        config.queue.busy_timeout.get(),
    )?)
}

/// Takes the exclusive daemon lock beside the database, or says who has it.
fn lock_queue(database: &Path) -> Result<File, Failure> {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    let path = PathBuf::from(path);
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(parent);
    }
    let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(|error| {
        Failure::failed(format!(
            "não foi possível criar a trava {}: {}",
            path.display(),
            crate::text::io_error(&error)
        ))
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(database.to_path_buf()).into()),
        Err(std::fs::TryLockError::Error(error)) => Err(Failure::failed(format!(
            "não foi possível travar {}: {}",
            path.display(),
            crate::text::io_error(&error)
        ))),
    }
}

/// The loop: one turn at once, then one per poll interval, until a stop signal.
async fn main_loop(mut store: Store, config: &Config) -> Result<Store, Failure> {
    let signal_error =
        |error: std::io::Error| Failure::failed(format!("não foi possível tratar sinais: {error}"));
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut ticker = tokio::time::interval(config.queue.poll_interval.get());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let spool_dir = config.queue.spool_dir.clone();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
        let spool_dir = spool_dir.clone();
        store = tokio::task::spawn_blocking(move || {
            turn(&mut store, &spool_dir);
            store
        })
        .await
        .map_err(|error| Failure::failed(format!("a rotina de trabalho falhou: {error}")))?;
    }
    tracing::info!("sinal de parada recebido");
    Ok(store)
}

/// One turn of the working loop. Failures are logged and retried next turn: a full disk or a
/// locked database must not kill the daemon, and nothing is lost by waiting.
fn turn(store: &mut Store, spool_dir: &Path) {
    let now = jiff::Timestamp::now();
    match spool::import(store, spool_dir, now) {
        Ok(report) => {
            for (file, new, already) in &report.imported {
                tracing::info!(arquivo = %file, novos = new, ja_na_fila = already, "arquivo do spool importado");
            }
            for (file, why) in &report.rejected {
                tracing::warn!(arquivo = %file, motivo = %why, "arquivo do spool rejeitado (veja rejeitados/{file}.erro)");
            }
        }
        Err(error) => tracing::error!("{error}"),
    }
    match store.recover_leases(now) {
        Ok(0) => {}
        Ok(count) => tracing::warn!(itens = count, "itens com reserva vencida voltaram para a fila"),
        Err(error) => tracing::error!("{error}"),
    }
    if let Err(error) = store.heartbeat(now) {
        tracing::error!("{error}");
    }
}
