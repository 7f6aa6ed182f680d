//! The daemon's working loop.
//!
//! Each turn, woken by the poll tick, a finished request, a signal or the circuit's deadline:
//! - on the tick: import the spool, return expired leases, write the heartbeat (with the
//!   circuit's state) that `status` reads, and purge attempt records older than
//!   `history.retention` of delivered items;
//! - on a finished request: feed its verdict to the circuit breaker and log it;
//! - then claim due items and send them, up to `api.concurrency`, as the circuit permits (one
//!   probe at a time while it is open or paused).
//!
//! SIGHUP reloads the config (kept as it was if the new one is invalid); SIGTERM/SIGINT stop
//! claiming, let requests on the wire finish within a bound, and put the rest back in the queue.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::api::Client;
use crate::classify::{Outcome, Verdict};
use crate::config::Config;
use crate::failure::Failure;
use crate::item::State;
use crate::policy::{self, Circuit, ItemBefore, Pacer, Permit, Settings};
use crate::spool;
use crate::store::{AttemptRecord, ItemRow};
use crate::systemd::Notifier;
use crate::writer::Writer;

/// The results of one tick's chores on the store thread.
struct Chores {
    spool: Result<spool::Report, spool::SpoolError>,
    recovered: Result<usize, crate::store::StoreError>,
    heartbeat: Result<(), crate::store::StoreError>,
    purged: Result<usize, crate::store::StoreError>,
    counts: Result<(u64, u64, u64), crate::store::StoreError>,
    last_success: Result<Option<jiff::Timestamp>, crate::store::StoreError>,
}

/// What a finished request reports back to the loop.
struct Finished {
    item: i64,
    order: String,
    probe: bool,
    verdict: Verdict,
    state: State,
    /// The attempt's number for the item (probes included).
    attempt: i64,
    next_at: jiff::Timestamp,
}

/// The running daemon.
pub struct Daemon {
    config_path: PathBuf,
    config: Config,
    writer: Writer,
    client: Arc<Client>,
    settings: Settings,
    circuit: Circuit,
    /// Keeps requests under `api.max_rate`.
    pacer: Pacer,
    in_flight: JoinSet<Option<Finished>>,
    /// When the history was last purged; the purge scans delivered items, so it runs hourly.
    last_purge: Option<std::time::Instant>,
    notifier: Notifier,
    last_success: Option<jiff::Timestamp>,
    /// Pending, processing and failed items at the last tick.
    counts: (u64, u64, u64),
    /// The database failure of the last ticks and when it was last logged, until writes work.
    store_problem: Option<(String, std::time::Instant)>,
}

/// How often old attempt records are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3_600);

impl Daemon {
    /// A daemon over an open store (moved onto its thread) and a built client.
    pub fn new(config_path: PathBuf, config: Config, writer: Writer, client: Client) -> Daemon {
        let settings = Settings::from_config(&config);
        let pacer = Pacer::new(config.api.max_rate);
        Daemon {
            config_path,
            config,
            writer,
            client: Arc::new(client),
            settings,
            circuit: Circuit::default(),
            pacer,
            in_flight: JoinSet::new(),
            last_purge: None,
            notifier: Notifier::new(),
            last_success: None,
            counts: (0, 0, 0),
            store_problem: None,
        }
    }

    /// Runs until SIGTERM or SIGINT.
    pub async fn run(self) -> Result<(), Failure> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until SIGTERM, SIGINT or `stop` completes (the demo stops it that way).
    pub async fn run_until(mut self, stop: impl std::future::Future<Output = ()>) -> Result<(), Failure> {
        tokio::pin!(stop);
        let signal_error =
            |error: std::io::Error| Failure::failed(format!("não foi possível tratar sinais: {error}"));
        let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
        let mut hangup = signal(SignalKind::hangup()).map_err(signal_error)?;
        let mut ticker = self.ticker();
        let wake = crate::wake::listen(&self.config.queue.database);
        let mut wake_buffer = [0_u8; 16];
        let mut watchdog =
            tokio::time::interval(self.notifier.watchdog_every().unwrap_or(Duration::from_secs(3_600)));
        // Ready before the first tick's chores: counting a million pending items for the status
        // line is not part of being up. The first tick comes at once and fills the line in.
        let status = self.status_line();
        self.notifier.ready(&status);
        tracing::info!("pronto: {status}");
        loop {
            let circuit_wait = self.circuit_wait();
            tokio::select! {
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                () = &mut stop => break,
                _ = hangup.recv() => {
                    self.notifier.reloading();
                    self.reload();
                    ticker = self.ticker();
                    let status = self.status_line();
                    self.notifier.ready(&status);
                }
                _ = watchdog.tick() => {}
                _ = ticker.tick() => self.housekeeping().await?,
                Some(joined) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Ok(Some(finished)) = joined {
                        self.finish(finished);
                    }
                }
                _ = tokio::time::sleep(circuit_wait) => {}
                () = woken(wake.as_ref(), &mut wake_buffer) => {}
            }
            self.fill().await?;
            self.notifier.watchdog();
        }
        self.notifier.stopping();
        let _ = std::fs::remove_file(crate::wake::socket_path(&self.config.queue.database));
        tracing::info!("sinal de parada recebido: não reservo mais itens");
        self.drain().await
    }

    /// The poll tick.
    fn ticker(&self) -> tokio::time::Interval {
        let mut ticker = tokio::time::interval(self.config.queue.poll_interval.get());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    }

    /// How long until the circuit and the rate limit let something out (at most one poll
    /// interval).
    fn circuit_wait(&self) -> Duration {
        let poll = self.config.queue.poll_interval.get();
        let now = jiff::Timestamp::now();
        let until = match self.circuit.permit(now) {
            Permit::WaitUntil(until) => Some(until),
            Permit::Send | Permit::Probe => self.pacer.wait(now),
        };
        let Some(until) = until else { return poll };
        let micros = until.as_microsecond().saturating_sub(now.as_microsecond());
        Duration::from_micros(u64::try_from(micros).unwrap_or(0)).min(poll)
    }

    /// How long an `in_flight` item is leased before it is presumed abandoned.
    fn lease(&self) -> Duration {
        self.config.api.connect_timeout.get()
            + self.config.api.request_timeout.get()
            + Duration::from_secs(60)
    }

    /// Spool import, lease recovery and heartbeat. Database trouble is logged and retried on the
    /// next tick; only a dead store thread is fatal.
    async fn housekeeping(&mut self) -> Result<(), Failure> {
        let spool_dir = self.config.queue.spool_dir.clone();
        let gate = self.circuit.describe();
        let retention =
            jiff::SignedDuration::try_from(self.config.history.retention.get()).unwrap_or_default();
        let purge = self.last_purge.is_none_or(|last| last.elapsed() >= PURGE_EVERY);
        if purge {
            self.last_purge = Some(std::time::Instant::now());
        }
        let done = self
            .writer
            .call(move |store| {
                let now = jiff::Timestamp::now();
                Chores {
                    spool: spool::import(store, &spool_dir, now),
                    recovered: store.recover_leases(now),
                    heartbeat: store.heartbeat(now, &gate),
                    purged: if purge {
                        store.purge_history(now.saturating_sub(retention).unwrap_or(now))
                    } else {
                        Ok(0)
                    },
                    counts: store.waiting_counts(),
                    last_success: store.last_success(),
                }
            })
            .await
            .ok_or_else(store_thread_died)?;
        match done.spool {
            Ok(report) => {
                for (file, new, already) in &report.imported {
                    tracing::info!(file = %file, new_items = new, already_queued = already, "arquivo do spool importado");
                }
                for (file, why) in &report.rejected {
                    tracing::warn!(file = %file, reason = %why, "arquivo do spool rejeitado (veja rejeitados/{file}.erro)");
                }
            }
            Err(error) => self.store_error(error.to_string()),
        }
        match done.recovered {
            Ok(0) => {}
            Ok(count) => tracing::warn!(items = count, "itens com reserva vencida voltaram para a fila"),
            Err(error) => self.store_error(error.to_string()),
        }
        match done.purged {
            Ok(0) => {}
            Ok(count) => {
                tracing::info!(attempts = count, "histórico de itens concluídos apagado (history.retention)")
            }
            Err(error) => self.store_error(error.to_string()),
        }
        // The heartbeat is a write on every tick: whether it works says whether the database
        // takes writes (a full disk, a lock held too long).
        match done.heartbeat {
            Ok(()) => {
                if self.store_problem.take().is_some() {
                    tracing::info!("o banco de dados voltou a aceitar gravações");
                }
            }
            Err(error) => self.store_error(error.to_string()),
        }
        match done.counts {
            Ok(counts) => self.counts = counts,
            Err(error) => self.store_error(error.to_string()),
        }
        if let Ok(Some(at)) = done.last_success {
            self.last_success = Some(at);
        }
        let status = self.status_line();
        self.notifier.status(&status);
        Ok(())
    }

    /// The one-line pt-BR summary for systemd's `STATUS=`: the circuit first when it is not
    /// sending, then the queue and the last success.
    fn status_line(&self) -> String {
        let line = status_line(&self.circuit, self.counts, self.last_success);
        match &self.store_problem {
            Some((problem, _)) => format!("ERRO NO BANCO DE DADOS: {problem} · {line}"),
            None => line,
        }
    }

    /// Records a database failure: logged when it is new or a minute after the last report (a
    /// full disk must not flood the journal), and shown in the status line until writes work.
    fn store_error(&mut self, problem: String) {
        let repeat = self
            .store_problem
            .as_ref()
            .is_some_and(|(last, when)| *last == problem && when.elapsed() < Duration::from_secs(60));
        if !repeat {
            tracing::error!("{problem}");
            self.store_problem = Some((problem, std::time::Instant::now()));
        }
    }

    /// Claims and sends due items while the circuit and the concurrency allow.
    async fn fill(&mut self) -> Result<(), Failure> {
        let concurrency = usize::try_from(self.config.api.concurrency).unwrap_or(1);
        while self.in_flight.len() < concurrency {
            let now = jiff::Timestamp::now();
            let (probe, room) = match self.circuit.permit(now) {
                Permit::Send => (false, concurrency - self.in_flight.len()),
                Permit::Probe => (true, 1),
                Permit::WaitUntil(_) => return Ok(()),
            };
            let room = self.pacer.room(now, room);
            if room == 0 {
                return Ok(());
            }
            let lease = self.lease();
            let claimed = self
                .writer
                .call_grouped(move |store| store.claim_many(jiff::Timestamp::now(), lease, room))
                .await
                .ok_or_else(store_thread_died)?;
            let items = match claimed {
                Ok(items) if items.is_empty() => return Ok(()),
                Ok(items) => items,
                Err(error) => {
                    self.store_error(error.to_string());
                    return Ok(());
                }
            };
            for item in items {
                self.pacer.sent(jiff::Timestamp::now());
                if probe {
                    self.circuit.probe_sent();
                    tracing::info!(order = %item.order, item = item.id, "testando a API com um envio (sonda)");
                }
                let (client, writer, settings) = (self.client.clone(), self.writer.clone(), self.settings);
                self.in_flight.spawn(deliver(item, probe, client, writer, settings));
            }
            if probe {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Feeds a verdict to the circuit and logs it.
    fn finish(&mut self, finished: Finished) {
        if finished.verdict.outcome == Outcome::Success {
            self.last_success = Some(jiff::Timestamp::now());
        }
        let before = self.circuit.gate;
        self.circuit.on_result(&finished.verdict, finished.probe, jiff::Timestamp::now(), &self.settings);
        log_attempt(&finished);
        if self.circuit.gate != before {
            // The status line follows the circuit at once; counts refresh on the tick.
            let status = self.status_line();
            self.notifier.status(&status);
            match self.circuit.gate {
                policy::Gate::Closed => tracing::info!("envio retomado: a API voltou a responder"),
                _ => tracing::error!(
                    code = finished.verdict.code().unwrap_or(""),
                    "envio suspenso: {}",
                    self.circuit.describe()
                ),
            }
        }
    }

    /// Re-reads the config; an invalid one is refused and the running one kept.
    fn reload(&mut self) {
        let loaded = match crate::config::load(&self.config_path) {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!("recarga recusada, a configuração anterior continua valendo: {error}");
                return;
            }
        };
        let client = match Client::new(&loaded.config) {
            Ok(client) => client,
            Err(error) => {
                tracing::error!("recarga recusada, a configuração anterior continua valendo: {error}");
                return;
            }
        };
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        if loaded.config.queue.database != self.config.queue.database
            || loaded.config.queue.spool_dir != self.config.queue.spool_dir
        {
            tracing::warn!(
                "queue.database e queue.spool_dir só mudam ao reiniciar o serviço (systemctl restart extrator)"
            );
        }
        let mut config = loaded.config;
        config.queue.database = self.config.queue.database.clone();
        config.queue.spool_dir = self.config.queue.spool_dir.clone();
        self.settings = Settings::from_config(&config);
        self.pacer = self.pacer.with_rate(config.api.max_rate);
        self.client = Arc::new(client);
        self.config = config;
        self.circuit.on_reload();
        tracing::info!(config = %self.config_path.display(), "configuração recarregada");
    }

    /// Lets requests on the wire finish within a bound, then puts what is left back in the queue
    /// and records the stop.
    async fn drain(mut self) -> Result<(), Failure> {
        let grace =
            (self.config.api.request_timeout.get() + Duration::from_secs(2)).min(Duration::from_secs(30));
        let waited = tokio::time::timeout(grace, async {
            while let Some(joined) = self.in_flight.join_next().await {
                if let Ok(Some(finished)) = joined {
                    log_attempt(&finished);
                }
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!(
                items = self.in_flight.len(),
                "envios ainda sem resposta abandonados; voltam para a fila"
            );
            self.in_flight.shutdown().await;
        }
        let done = self
            .writer
            .call(|store| {
                let released = store.recover_leases(jiff::Timestamp::MAX);
                let stopped = store.daemon_stopped(jiff::Timestamp::now());
                (released, stopped)
            })
            .await
            .ok_or_else(store_thread_died)?;
        done.0?;
        done.1?;
        Ok(())
    }
}

/// The status line of a circuit, the (pending, processing, failed) counts and the last success.
pub fn status_line(
    circuit: &Circuit,
    counts: (u64, u64, u64),
    last_success: Option<jiff::Timestamp>,
) -> String {
    let (pending, processing, failed) = counts;
    let mut parts = Vec::new();
    if circuit.gate != policy::Gate::Closed {
        parts.push(circuit.describe());
    }
    parts.push(format!("{pending} pendente(s), {processing} processando, {failed} falharam"));
    parts.push(match last_success {
        Some(at) => format!("último envio com sucesso {}", crate::text::local_time(at)),
        None => "nenhum envio com sucesso ainda".to_owned(),
    });
    if circuit.gate == policy::Gate::Closed {
        parts.push("enviando normalmente".to_owned());
    }
    parts.join(" · ")
}

/// Sends one item, decides its fate and records the attempt.
async fn deliver(
    item: ItemRow,
    probe: bool,
    client: Arc<Client>,
    writer: Writer,
    settings: Settings,
) -> Option<Finished> {
    let attempt = client.send(&item).await;
    let finished_at = jiff::Timestamp::now();
    let before = ItemBefore {
        id: item.id,
        attempts: u32::try_from(item.attempts).unwrap_or(0),
        processing_since: item.processing_since,
        poll_url: item.poll_url.as_deref(),
    };
    let after = policy::after_attempt(before, &attempt.verdict, probe, finished_at, &settings);
    let finished = Finished {
        item: item.id,
        order: item.order.clone(),
        probe,
        verdict: after.verdict.clone(),
        state: after.state,
        attempt: 0,
        next_at: after.next_at,
    };
    let recorded = writer
        .call_grouped(move |store| {
            let record = AttemptRecord {
                started_at: attempt.started_at,
                finished_at,
                duration: attempt.duration,
                excerpt: attempt.excerpt.as_deref(),
                probe,
                after: &after,
            };
            store.record_attempt(item.id, &record)
        })
        .await?;
    match recorded {
        Ok(number) => Some(Finished { attempt: number, ..finished }),
        Err(error) => {
            // The item stays leased; lease expiry returns it to the queue, to be sent again under
            // the same idempotency key.
            tracing::error!(item = finished.item, order = %finished.order, "{error}");
            None
        }
    }
}

/// One log event per attempt, with the fields journald filters on.
fn log_attempt(finished: &Finished) {
    let status = finished.verdict.http_status;
    let message = finished.verdict.message.as_deref().unwrap_or("");
    let (item, order, attempt, kind) =
        (finished.item, finished.order.as_str(), finished.attempt, finished.verdict.kind.as_str());
    match (finished.verdict.outcome, finished.state) {
        (Outcome::Success, _) => match finished.verdict.receipt.as_deref() {
            Some(receipt) => tracing::info!(
                item,
                order,
                attempt,
                http_status = status,
                kind,
                receipt,
                "pedido {order}: cancelamento entregue (protocolo da API: {receipt})"
            ),
            None => tracing::info!(
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
            code,
            item,
            order,
            attempt,
            http_status = status,
            kind,
            "pedido {order}: cancelamento falhou definitivamente: erro {}: {message} (reenvie com extrator retry)",
            crate::codes::label(code)
        ),
        (Outcome::Failure(code), _) => tracing::warn!(
            code,
            item,
            order,
            attempt,
            http_status = status,
            kind,
            probe = finished.probe,
            "pedido {order}: falha no envio: erro {}: {message}; nova tentativa a partir de {}",
            crate::codes::label(code),
            crate::text::local_time(finished.next_at)
        ),
    }
}

/// Completes when `enqueue` signals new items on the wake socket; never without a socket.
async fn woken(socket: Option<&tokio::net::UnixDatagram>, buffer: &mut [u8]) {
    match socket {
        Some(socket) => {
            let _ = socket.recv(buffer).await;
        }
        None => std::future::pending().await,
    }
}

/// The fatal error of a store thread that panicked.
fn store_thread_died() -> Failure {
    Failure::failed("a thread do banco de dados parou inesperadamente")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_leads_with_what_stops_sending() {
        let settings = Settings {
            max_attempts: 3,
            first_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(60),
            async_poll_interval: Duration::from_secs(30),
            async_max_wait: Duration::from_secs(60),
        };
        let mut circuit = Circuit::default();
        let line = status_line(&circuit, (12, 1, 3), None);
        assert_eq!(
            line,
            "12 pendente(s), 1 processando, 3 falharam · nenhum envio com sucesso ainda · enviando normalmente"
        );
        let refused = Verdict {
            outcome: Outcome::Failure("02"),
            kind: "http_401".into(),
            http_status: Some(401),
            message: None,
            retry_after: None,
            receipt: None,
            poll_url: None,
        };
        circuit.on_result(&refused, false, jiff::Timestamp::now(), &settings);
        let line = status_line(&circuit, (12, 0, 0), Some(jiff::Timestamp::now()));
        assert!(
            line.starts_with("PAUSADO: erro 02 Senha inválida; corrija as credenciais e recarregue"),
            "{line}"
        );
        assert!(line.contains("último envio com sucesso"), "{line}");
    }
}
