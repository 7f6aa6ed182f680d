//! The daemon's working loop: the I/O around `dispatch::Dispatcher`, which makes every decision.
//!
//! Each turn, woken by the poll tick, a finished task, a signal, `enqueue`'s wake-up or the
//! dispatcher's own next moment, the loop turns what happened into an `Event`, and carries out
//! the `Action`s the dispatcher answers: claims (on the store thread), one task per request
//! (send, then record), a failed record written again, the status line and the log. Nothing the
//! loop does waits for the store or the network: claims, records, the tick's chores and the
//! spool import are tasks whose results come back as events, so the loop keeps turning — and
//! pinging the watchdog — while the store works. It stops pinging when the store thread itself
//! stops getting through its jobs (`Writer::stalled_for`), so a stuck store still gets the
//! service restarted.
//!
//! On the tick: import the spool (in its own task, one at a time), return expired leases, write
//! the heartbeat with the circuit's state, and purge old attempt records of delivered items in
//! short batches. SIGHUP reloads the config (kept as it was if the new one is invalid);
//! SIGTERM/SIGINT stop claiming, let requests on the wire finish within a bound, and put the rest
//! back in the queue.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::api::{Attempt, Client};
use crate::classify::{Code, Outcome};
use crate::config::Config;
use crate::dispatch::{Action, Answer, Claim, Dispatcher, Event, Limits, Status};
use crate::failure::Failure;
use crate::item::State;
use crate::journal::Message;
use crate::metrics::Metrics;
use crate::policy::{self, Gate, ItemAfter, ItemBefore};
use crate::spool;
use crate::store::{AttemptRecord, ItemRow, StoreError};
use crate::systemd::Notifier;
use crate::writer::Writer;

/// How often old attempt records are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3_600);
/// Attempt records deleted per purge transaction.
const PURGE_BATCH: usize = 5_000;
/// How long the store thread may go without finishing a job before the watchdog is no longer
/// pinged: well under the unit's `WatchdogSec=30`, well over `DAEMON_BUSY_TIMEOUT`.
const STORE_STALL: Duration = Duration::from_secs(20);
/// The longest the daemon's connection waits for another process's write lock
/// (`queue.busy_timeout` is for the commands; the daemon just tries again on the next turn).
pub const DAEMON_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An attempt and the decision for its item, owned, so a failed record can be written again.
#[derive(Debug, Clone)]
struct Record {
    attempt: Attempt,
    finished_at: jiff::Timestamp,
    probe: bool,
    after: ItemAfter,
}

impl Record {
    /// Writes it on the store thread.
    fn write(&self, store: &mut crate::store::Store, item: i64) -> Result<i64, StoreError> {
        let record = AttemptRecord {
            started_at: self.attempt.started_at,
            finished_at: self.finished_at,
            duration: self.attempt.duration,
            excerpt: self.attempt.excerpt.as_deref(),
            probe: self.probe,
            after: &self.after,
        };
        store.record_attempt(item, &record)
    }
}

/// What a request's task brings back.
struct Delivery {
    item: i64,
    order: String,
    lease_until: jiff::Timestamp,
    record: Record,
    /// The attempt's number for the item (probes included), or why it was not recorded.
    recorded: Result<i64, StoreError>,
}

/// What the tick's chores found.
struct Chores {
    /// The database was deleted or replaced under the daemon (why, in pt-BR): stop.
    replaced: Option<String>,
    recovered: Result<usize, StoreError>,
    heartbeat: Result<(), StoreError>,
    counts: Result<(u64, u64, u64), StoreError>,
    last_success: Result<Option<jiff::Timestamp>, StoreError>,
    purged: Result<usize, StoreError>,
    /// The attempts since the last tick counted into `attempt_hours` (the page's charts).
    hours: Result<usize, StoreError>,
}

/// A task of the loop other than a request, and what came of it.
enum Done {
    Claimed {
        claim: Claim,
        items: Result<Vec<ItemRow>, StoreError>,
    },
    Rerecorded {
        item: i64,
        result: Result<i64, StoreError>,
    },
    Chores(Box<Chores>),
    /// A pass over the spool ended; the spool's memory comes back with it.
    Spool(Box<spool::Spool>, Result<spool::Report, spool::SpoolError>),
    /// The store thread is gone.
    StoreDied,
}

/// A polled source between runs.
struct SourceSlot {
    source: crate::source::Source,
    next_at: std::time::Instant,
    running: bool,
    /// How the last run went: `None` before the first, then `Some(None)` when it worked, or
    /// the kind of its failure — a log line is written only when this changes.
    last: Option<Option<&'static str>>,
    /// Orders the last run printed with other content than queued (kept as queued).
    changed: usize,
}

/// What a source's run did.
struct SourceRan {
    name: String,
    run: crate::store::SourceRun,
    /// The failure's kind (`RunError::kind`, or "database"), `None` when it worked.
    failure: Option<&'static str>,
    /// Orders printed with other content than queued.
    changed: usize,
    /// Recording the run failed.
    unrecorded: Option<StoreError>,
}

/// The running daemon.
pub struct Daemon {
    config_path: PathBuf,
    config: Config,
    writer: Writer,
    client: Arc<Client>,
    dispatcher: Dispatcher,
    /// One task per request on the wire, and what each is (for a task that ends without answer).
    sends: JoinSet<Delivery>,
    sending: HashMap<tokio::task::Id, (i64, String, bool)>,
    /// Claims, records written again, chores and the spool import.
    work: JoinSet<Done>,
    /// Runs of the polled sources: aborted at once on stop (a run queues all or nothing, and its
    /// process group dies with it), so a slow source never holds the stop back.
    source_runs: JoinSet<SourceRan>,
    /// Records that failed, by item, until written or abandoned.
    unrecorded: HashMap<i64, Record>,
    chores_running: bool,
    /// The spool, between passes (`None` while a pass runs on its thread).
    spool: Option<Box<spool::Spool>>,
    /// When the history was last purged; the purge scans delivered items, so it runs hourly.
    last_purge: Option<std::time::Instant>,
    /// The purge found more to delete than one batch: go on at the next tick.
    purge_more: bool,
    notifier: Notifier,
    /// Pending, processing and failed items at the last tick.
    counts: (u64, u64, u64),
    /// The database failure of the last ticks and when it was last logged, until writes work.
    store_problem: Option<(String, std::time::Instant)>,
    /// The watchdog is held back because the store thread stalled (logged once).
    store_stalled: bool,
    /// Tells a running spool import to end (at stop).
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// What `/metrics` shows; counted whether or not anyone serves it.
    metrics: Arc<Metrics>,
    /// `[metrics] listen`, bound before READY (`web::bind`).
    listener: Option<crate::web::Listener>,
    /// The polled `[[source]]`s.
    sources: Vec<SourceSlot>,
}

impl Daemon {
    /// A daemon over an open store (moved onto its thread) and a built client.
    pub fn new(config_path: PathBuf, config: Config, writer: Writer, client: Client) -> Daemon {
        let dispatcher = Dispatcher::new(Limits::from_config(&config));
        let spool = spool::Spool::new(&config.queue.spool_dir);
        Daemon {
            config_path,
            config,
            writer,
            client: Arc::new(client),
            dispatcher,
            sends: JoinSet::new(),
            sending: HashMap::new(),
            work: JoinSet::new(),
            source_runs: JoinSet::new(),
            unrecorded: HashMap::new(),
            chores_running: false,
            spool: Some(Box::new(spool)),
            last_purge: None,
            purge_more: false,
            notifier: Notifier::new(),
            counts: (0, 0, 0),
            store_problem: None,
            store_stalled: false,
            stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            metrics: Arc::new(Metrics::new()),
            listener: None,
            sources: Vec::new(),
        }
    }

    /// Polls these sources while running (the first run of each at the first tick).
    pub fn with_sources(mut self, sources: Vec<crate::source::Source>) -> Daemon {
        self.adopt_sources(sources);
        self
    }

    /// Takes these sources as the ones to poll: one already polled keeps its state (by name), a
    /// new one runs at the next tick.
    fn adopt_sources(&mut self, sources: Vec<crate::source::Source>) {
        let mut slots = std::mem::take(&mut self.sources);
        let now = std::time::Instant::now();
        self.sources = sources
            .into_iter()
            .map(|source| match slots.iter().position(|slot| slot.source.config.name == source.config.name) {
                Some(index) => SourceSlot { source, ..slots.swap_remove(index) },
                None => SourceSlot { source, next_at: now, running: false, last: None, changed: 0 },
            })
            .collect();
    }

    /// Serves `/metrics` and the status page on this listener while running.
    pub fn with_listener(mut self, listener: Option<crate::web::Listener>) -> Daemon {
        self.listener = listener;
        self
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
        // Cancellations handed in through the socket by accounts that cannot write the queue.
        let handed = Arc::new(tokio::sync::Notify::new());
        let intake = crate::handoff::listen(&self.config.queue.socket).map(|listener| {
            tokio::spawn(crate::handoff::serve(listener, self.writer.clone(), handed.clone()))
        });
        let site = self.listener.take().map(|listener| {
            let site = Arc::new(crate::web::Site::new(self.metrics.clone(), &self.config, &listener));
            tokio::spawn(crate::web::serve(listener, site))
        });
        let mut watchdog =
            tokio::time::interval(self.notifier.watchdog_every().unwrap_or(Duration::from_secs(3_600)));
        // Ready before the first tick's chores: counting a million pending items for the status
        // line is not part of being up. The first tick comes at once and fills the line in.
        let status = self.status_line();
        self.notifier.ready(&status);
        tracing::info!(message_id = %Message::Started.id(), "pronto: {status}");
        loop {
            let wait = self.wait();
            let event = tokio::select! {
                _ = terminate.recv() => Event::Stop,
                _ = interrupt.recv() => Event::Stop,
                () = &mut stop => Event::Stop,
                _ = hangup.recv() => {
                    self.notifier.reloading();
                    let event = self.reload();
                    ticker = self.ticker();
                    let status = self.status_line();
                    self.notifier.ready(&status);
                    event.unwrap_or(Event::Turn)
                }
                _ = watchdog.tick() => Event::Turn,
                _ = ticker.tick() => {
                    self.tick();
                    Event::Turn
                }
                Some(joined) = self.sends.join_next_with_id(), if !self.sends.is_empty() => self.delivered(joined),
                Some(ran) = self.source_runs.join_next(), if !self.source_runs.is_empty() => match ran {
                    Ok(ran) => {
                        self.source_ran(ran);
                        Event::Turn
                    }
                    // Only a panic ends a run without an answer (none is expected): as for the
                    // other tasks, stop with the reason rather than never run the source again.
                    Err(_) => return Err(Failure::failed("a execução de uma fonte parou inesperadamente")),
                },
                Some(done) = self.work.join_next(), if !self.work.is_empty() => match done {
                    Ok(done) => self.done(done)?,
                    Err(_) => return Err(store_thread_died()),
                },
                _ = tokio::time::sleep(wait) => Event::Turn,
                () = woken(wake.as_ref(), &mut wake_buffer) => Event::Turn,
                () = handed.notified() => Event::Turn,
            };
            let stopping = event == Event::Stop;
            self.handle(event);
            if stopping {
                break;
            }
            self.ping_watchdog();
        }
        self.notifier.stopping();
        let _ = std::fs::remove_file(crate::wake::socket_path(&self.config.queue.database));
        // A batch cut off here gets no answer: `enqueue` then writes it to the spool (intake is
        // idempotent, so a batch that did get in is "já na fila" there).
        if let Some(intake) = intake {
            intake.abort();
            let _ = std::fs::remove_file(&self.config.queue.socket);
        }
        if let Some(site) = site {
            site.abort();
        }
        tracing::info!("sinal de parada recebido: não reservo mais itens");
        self.drain().await
    }

    /// The poll tick.
    fn ticker(&self) -> tokio::time::Interval {
        let mut ticker = tokio::time::interval(self.config.queue.poll_interval.get());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    }

    /// How long until the dispatcher's next moment (at most one poll interval).
    fn wait(&self) -> Duration {
        let poll = self.config.queue.poll_interval.get();
        let now = jiff::Timestamp::now();
        let Some(until) = self.dispatcher.wake_at(now) else { return poll };
        let micros = until.as_microsecond().saturating_sub(now.as_microsecond());
        Duration::from_micros(u64::try_from(micros).unwrap_or(0)).min(poll)
    }

    /// Feeds an event to the dispatcher and carries out what it says.
    fn handle(&mut self, event: Event) {
        let mut events = vec![event];
        while let Some(event) = events.pop() {
            for action in self.dispatcher.handle(event, jiff::Timestamp::now()) {
                if let Some(next) = self.act(action) {
                    events.push(next);
                }
            }
        }
    }

    /// Carries out one action; an action that completes at once returns its event.
    fn act(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Claim(claim) => {
                let lease = self.lease();
                let writer = self.writer.clone();
                self.work.spawn(async move {
                    let claimed = writer
                        .call_grouped(move |store| {
                            store.claim_many(jiff::Timestamp::now(), lease, claim.room)
                        })
                        .await;
                    match claimed {
                        Some(items) => Done::Claimed { claim, items },
                        None => Done::StoreDied,
                    }
                });
            }
            Action::Record { item } => {
                let Some(record) = self.unrecorded.get(&item).cloned() else {
                    return Some(Event::Rerecorded { item, written: true });
                };
                let writer = self.writer.clone();
                self.work.spawn(async move {
                    match writer.call_grouped(move |store| record.write(store, item)).await {
                        Some(result) => Done::Rerecorded { item, result },
                        None => Done::StoreDied,
                    }
                });
            }
            Action::Abandon { item } => {
                self.unrecorded.remove(&item);
                tracing::error!(
                    item,
                    "a tentativa do item {item} não pôde ser gravada até a reserva vencer: ele volta para \
                     a fila e será enviado de novo com a mesma chave de idempotência"
                );
            }
            Action::GateChanged { to, code, .. } => {
                // The status line follows the circuit at once; counts refresh on the tick.
                let status = self.status_line();
                self.notifier.status(&status);
                self.metrics.gate(&to);
                let message = match to {
                    Gate::Closed => Message::CircuitClosed,
                    Gate::Open { .. } => Message::CircuitOpened,
                    Gate::Paused { .. } => Message::Paused,
                    Gate::RateLimited { .. } => Message::RateLimited,
                };
                match to {
                    Gate::Closed => tracing::info!(
                        message_id = %message.id(),
                        "envio retomado: a API voltou a responder"
                    ),
                    _ => tracing::error!(
                        message_id = %message.id(),
                        code = code.map_or("", Code::as_str),
                        "envio suspenso: {}",
                        describe_gate(&to)
                    ),
                }
            }
            Action::Drain => {}
        }
        None
    }

    /// How long an `in_flight` item is leased before it is presumed abandoned.
    fn lease(&self) -> Duration {
        let api = &self.config.api;
        api.connect_timeout
            .get()
            .saturating_add(api.request_timeout.get())
            .saturating_add(Duration::from_secs(60))
    }

    /// A request's task ended: its answer, or its loss.
    fn delivered(&mut self, joined: Result<(tokio::task::Id, Delivery), tokio::task::JoinError>) -> Event {
        match joined {
            Ok((id, delivery)) => {
                self.sending.remove(&id);
                let recorded = match &delivery.recorded {
                    Ok(_) => true,
                    Err(StoreError::NotLeased(_)) => {
                        tracing::warn!(item = delivery.item, order = %delivery.order, "{}", delivery.recorded.as_ref().err().map(ToString::to_string).unwrap_or_default());
                        true
                    }
                    Err(error) => {
                        tracing::error!(
                            item = delivery.item,
                            order = %delivery.order,
                            "pedido {}: a tentativa não foi gravada ({error}); tento gravá-la de novo",
                            delivery.order
                        );
                        self.unrecorded.insert(delivery.item, delivery.record.clone());
                        false
                    }
                };
                attempt_done(&delivery, &self.metrics);
                Event::Answered(Answer {
                    item: delivery.item,
                    probe: delivery.record.probe,
                    verdict: delivery.record.after.verdict.clone(),
                    recorded,
                    lease_until: delivery.lease_until,
                })
            }
            Err(error) => {
                let (item, order, probe) =
                    self.sending.remove(&error.id()).unwrap_or((0, String::new(), false));
                tracing::error!(item, order = %order, "pedido {order}: o envio terminou sem resposta ({error}); o item volta para a fila quando a reserva vencer");
                Event::Lost { item, probe }
            }
        }
    }

    /// A task other than a request ended.
    fn done(&mut self, done: Done) -> Result<Event, Failure> {
        Ok(match done {
            Done::StoreDied => return Err(store_thread_died()),
            Done::Claimed { claim, items } => match items {
                Ok(items) => {
                    let got = items.len();
                    let lease_until = add(jiff::Timestamp::now(), self.lease());
                    for item in items {
                        if claim.probe {
                            tracing::info!(order = %item.order, item = item.id, "testando a API com um envio (sonda)");
                        }
                        let (client, writer, settings) =
                            (self.client.clone(), self.writer.clone(), self.dispatcher_settings());
                        let about = (item.id, item.order.clone(), claim.probe);
                        let handle = self.sends.spawn(deliver(
                            item,
                            claim.probe,
                            client,
                            writer,
                            settings,
                            lease_until,
                        ));
                        self.sending.insert(handle.id(), about);
                    }
                    Event::Claimed { claim, got }
                }
                Err(error) => {
                    self.store_error(error.to_string());
                    Event::ClaimFailed
                }
            },
            Done::Rerecorded { item, result } => {
                let written = match result {
                    Ok(_) => {
                        tracing::info!(item, "a tentativa do item {item} foi gravada na nova tentativa");
                        self.unrecorded.remove(&item);
                        true
                    }
                    Err(StoreError::NotLeased(_)) => {
                        self.unrecorded.remove(&item);
                        true
                    }
                    Err(error) => {
                        self.store_error(error.to_string());
                        false
                    }
                };
                Event::Rerecorded { item, written }
            }
            Done::Chores(chores) => {
                if let Some(why) = chores.replaced {
                    return Err(Failure::failed(why));
                }
                self.chores_running = false;
                self.chores_done(*chores);
                Event::Turn
            }
            Done::Spool(spool, report) => {
                self.spool = Some(spool);
                match report {
                    Ok(report) => {
                        self.metrics.spool(&report);
                        log_spool(&report);
                    }
                    Err(error) => self.store_error(error.to_string()),
                }
                Event::Turn
            }
        })
    }

    /// The retry settings the request tasks decide with.
    fn dispatcher_settings(&self) -> policy::Settings {
        policy::Settings::from_config(&self.config)
    }

    /// The tick: start the chores and the spool import, unless they are still running.
    fn tick(&mut self) {
        if let Some(mut spool) = self.spool.take() {
            let mut queue = spool_queue(&self.config, self.writer.clone(), self.stopping.clone());
            let quiet = self.config.queue.spool_quiet.get();
            self.work.spawn(async move {
                let imported = tokio::task::spawn_blocking(move || {
                    let report = spool.import(&mut queue, quiet, jiff::Timestamp::now());
                    (spool, report)
                })
                .await;
                match imported {
                    Ok((spool, report)) => Done::Spool(spool, report),
                    Err(_) => Done::StoreDied,
                }
            });
        }
        self.start_sources();
        if self.chores_running {
            return;
        }
        self.chores_running = true;
        let gate = describe_gate(&self.dispatcher.status().gate);
        let retention =
            jiff::SignedDuration::try_from(self.config.history.retention.get()).unwrap_or_default();
        let purge = self.purge_more || self.last_purge.is_none_or(|last| last.elapsed() >= PURGE_EVERY);
        if purge && !self.purge_more {
            self.last_purge = Some(std::time::Instant::now());
        }
        let writer = self.writer.clone();
        self.work.spawn(async move {
            let chores = writer
                .call(move |store| {
                    let now = jiff::Timestamp::now();
                    Chores {
                        replaced: store.replaced(),
                        recovered: store.recover_leases(now),
                        // Before the purge, so an attempt is counted before it can go.
                        hours: store.count_attempt_hours(),
                        heartbeat: store.heartbeat(now, &gate),
                        purged: if purge {
                            store.purge_history(now.saturating_sub(retention).unwrap_or(now), PURGE_BATCH)
                        } else {
                            Ok(0)
                        },
                        counts: store.waiting_counts(),
                        last_success: store.last_success(),
                    }
                })
                .await;
            match chores {
                Some(chores) => Done::Chores(Box::new(chores)),
                None => Done::StoreDied,
            }
        });
    }

    /// Starts each source whose time has come and that is not running yet.
    fn start_sources(&mut self) {
        let now = std::time::Instant::now();
        for slot in self.sources.iter_mut().filter(|slot| !slot.running && slot.next_at <= now) {
            slot.running = true;
            slot.next_at = now + slot.source.config.interval.get();
            let (source, writer) = (slot.source.clone(), self.writer.clone());
            let (database, busy_timeout) = (
                self.config.queue.database.clone(),
                self.config.queue.busy_timeout.get().min(DAEMON_BUSY_TIMEOUT),
            );
            self.source_runs.spawn(run_source(source, writer, database, busy_timeout));
        }
    }

    /// A source's run ended: counted, and logged when its state changed or it brought items.
    fn source_ran(&mut self, ran: SourceRan) {
        self.metrics.source_run(&ran.name, ran.failure, ran.run.at);
        if let Some(error) = &ran.unrecorded {
            self.store_error(error.to_string());
        }
        let Some(slot) = self.sources.iter_mut().find(|slot| slot.source.config.name == ran.name) else {
            return;
        };
        slot.running = false;
        let before = slot.last.replace(ran.failure);
        let name = crate::text::terminal_safe(&ran.name).into_owned();
        let (rows, new) = (ran.run.rows, ran.run.new_items);
        match (&ran.run.error, before) {
            (Some(error), before) if before != Some(ran.failure) => tracing::error!(
                message_id = %Message::SourceFailed.id(),
                source = %name,
                "fonte {name}: {error}; nada desta execução entrou na fila (tento de novo a cada {})",
                slot.source.config.interval
            ),
            (Some(error), _) => tracing::debug!(source = %name, "fonte {name} continua falhando: {error}"),
            (None, Some(Some(_))) => tracing::info!(
                source = %name,
                rows,
                new_items = new,
                "fonte {name} voltou a funcionar: {rows} linha(s) lida(s), {new} cancelamento(s) novo(s) na fila"
            ),
            (None, None) => tracing::info!(
                source = %name,
                rows,
                new_items = new,
                "fonte {name}: primeira execução, {rows} linha(s) lida(s), {new} cancelamento(s) novo(s) na fila"
            ),
            (None, _) if new > 0 => tracing::info!(
                source = %name,
                rows,
                new_items = new,
                "fonte {name}: {new} cancelamento(s) novo(s) na fila ({rows} linha(s) lida(s))"
            ),
            (None, _) => {}
        }
        if ran.changed != slot.changed && ran.changed > 0 {
            tracing::warn!(
                source = %name,
                orders = ran.changed,
                "fonte {name}: {} pedido(s) já enfileirado(s) aparecem com outro conteúdo na origem; \
                 fica valendo o que foi enfileirado primeiro",
                ran.changed
            );
        }
        slot.changed = ran.changed;
    }

    /// What the chores found: logged, and the status line refreshed.
    fn chores_done(&mut self, chores: Chores) {
        match chores.recovered {
            Ok(0) => {}
            Ok(count) => tracing::warn!(items = count, "itens com reserva vencida voltaram para a fila"),
            Err(error) => self.store_error(error.to_string()),
        }
        if let Err(error) = chores.hours {
            self.store_error(error.to_string());
        }
        self.purge_more = false;
        match chores.purged {
            Ok(0) => {}
            Ok(count) => {
                self.purge_more = count >= PURGE_BATCH;
                tracing::info!(attempts = count, "histórico de itens concluídos apagado (history.retention)");
            }
            Err(error) => self.store_error(error.to_string()),
        }
        // The heartbeat is a write on every tick: whether it works says whether the database
        // takes writes (a full disk, a lock held too long).
        match chores.heartbeat {
            Ok(()) => {
                if self.store_problem.take().is_some() {
                    tracing::info!("o banco de dados voltou a aceitar gravações");
                }
            }
            Err(error) => self.store_error(error.to_string()),
        }
        match chores.counts {
            Ok(counts) => self.counts = counts,
            Err(error) => self.store_error(error.to_string()),
        }
        if let Ok(at) = chores.last_success {
            self.dispatcher.set_last_success(at);
            self.metrics.set_last_success(at);
        }
        let status = self.status_line();
        self.notifier.status(&status);
    }

    /// Pings the watchdog, unless the store thread has stopped getting through its work.
    fn ping_watchdog(&mut self) {
        match self.writer.stalled_for() {
            Some(stalled) if stalled >= STORE_STALL => {
                if !self.store_stalled {
                    self.store_stalled = true;
                    tracing::error!(
                        "o banco de dados não conclui uma operação há {}: o watchdog do systemd deixa de ser avisado \
                         e reinicia o serviço se isso continuar",
                        crate::text::rounded(stalled)
                    );
                }
            }
            _ => {
                self.store_stalled = false;
                self.notifier.watchdog();
            }
        }
    }

    /// The one-line pt-BR summary for systemd's `STATUS=`.
    fn status_line(&self) -> String {
        let line = status_line(&self.dispatcher.status(), self.counts);
        match &self.store_problem {
            Some((problem, _)) => format!("ERRO NO BANCO DE DADOS: {problem} · {line}"),
            None => line,
        }
    }

    /// Records a database failure: logged when it is new or a minute after the last report (a
    /// full disk must not flood the journal), and shown in the status line until writes work.
    fn store_error(&mut self, problem: String) {
        self.metrics.database_error();
        let repeat = self
            .store_problem
            .as_ref()
            .is_some_and(|(last, when)| *last == problem && when.elapsed() < Duration::from_secs(60));
        if !repeat {
            tracing::error!(message_id = %Message::DatabaseError.id(), "{problem}");
            self.store_problem = Some((problem, std::time::Instant::now()));
        }
    }

    /// Re-reads the config; an invalid one is refused and the running one kept.
    fn reload(&mut self) -> Option<Event> {
        let metrics = self.metrics.clone();
        let refused = |error: &dyn std::fmt::Display| {
            metrics.reload(false);
            tracing::error!(
                message_id = %Message::ReloadRefused.id(),
                "recarga recusada, a configuração anterior continua valendo: {error}"
            );
        };
        let loaded = match crate::config::load(&self.config_path) {
            Ok(loaded) => loaded,
            Err(error) => {
                refused(&error);
                return None;
            }
        };
        let client = match Client::new(&loaded.config) {
            Ok(client) => client,
            Err(error) => {
                refused(&error);
                return None;
            }
        };
        let sources = match crate::source::Source::all(&loaded.config.sources) {
            Ok(sources) => sources,
            Err(error) => {
                refused(&error);
                return None;
            }
        };
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        if loaded.config.queue.database != self.config.queue.database
            || loaded.config.queue.spool_dir != self.config.queue.spool_dir
            || loaded.config.queue.socket != self.config.queue.socket
            || loaded.config.metrics.address() != self.config.metrics.address()
        {
            tracing::warn!(
                "queue.database, queue.spool_dir, queue.socket e metrics.listen só mudam ao reiniciar o serviço \
                 (systemctl restart extrator)"
            );
        }
        let mut config = loaded.config;
        config.queue.database = self.config.queue.database.clone();
        config.queue.spool_dir = self.config.queue.spool_dir.clone();
        config.queue.socket = self.config.queue.socket.clone();
        config.metrics = self.config.metrics.clone();
        self.metrics.reload(true);
        self.client = Arc::new(client);
        // The rows of sources removed go (a failure here is only a stale line in `status`).
        let names: Vec<String> = sources.iter().map(|source| source.config.name.clone()).collect();
        let writer = self.writer.clone();
        tokio::spawn(async move { writer.call(move |store| store.keep_sources(&names)).await });
        self.adopt_sources(sources);
        let limits = Limits::from_config(&config);
        self.config = config;
        tracing::info!(config = %self.config_path.display(), "configuração recarregada");
        Some(Event::Reloaded(limits))
    }

    /// Lets requests on the wire finish within a bound, writes failed records once more, then
    /// puts what is left back in the queue and records the stop.
    async fn drain(mut self) -> Result<(), Failure> {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        self.source_runs.shutdown().await;
        let grace =
            (self.config.api.request_timeout.get() + Duration::from_secs(2)).min(Duration::from_secs(30));
        let deadline = tokio::time::Instant::now() + grace;
        let waited = tokio::time::timeout_at(deadline, async {
            while let Some(joined) = self.sends.join_next_with_id().await {
                if let Ok((_, delivery)) = joined {
                    if delivery.recorded.is_err() {
                        self.unrecorded.insert(delivery.item, delivery.record.clone());
                    }
                    attempt_done(&delivery, &self.metrics);
                }
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!(
                items = self.sends.len(),
                "envios ainda sem resposta abandonados; voltam para a fila"
            );
            self.sends.shutdown().await;
        }
        // Claims under way must land before the release, or their items would stay leased.
        let _ = tokio::time::timeout_at(deadline + Duration::from_secs(5), async {
            while self.work.join_next().await.is_some() {}
        })
        .await;
        self.work.shutdown().await;
        let unrecorded = std::mem::take(&mut self.unrecorded);
        let done = self
            .writer
            .call(move |store| {
                for (item, record) in &unrecorded {
                    let _ = record.write(store, *item);
                }
                let now = jiff::Timestamp::now();
                (store.release_all(now), store.daemon_stopped(now))
            })
            .await
            .ok_or_else(store_thread_died)?;
        done.0?;
        done.1?;
        Ok(())
    }
}

/// The spool import's way into the queue from its own thread: conflicts are read on a
/// read-only connection of its own, batches are written by the daemon's writer, one job each,
/// so the claims and records queue up between them rather than behind the whole file.
struct WriterQueue {
    writer: Writer,
    database: PathBuf,
    busy_timeout: Duration,
    reader: Option<crate::store::Store>,
    /// Set when the daemon stops: the import ends before its next batch, the file stays.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// The `WriterQueue` of a config.
fn spool_queue(config: &Config, writer: Writer, stopping: Arc<std::sync::atomic::AtomicBool>) -> WriterQueue {
    WriterQueue {
        writer,
        database: config.queue.database.clone(),
        busy_timeout: config.queue.busy_timeout.get().min(DAEMON_BUSY_TIMEOUT),
        reader: None,
        stopping,
    }
}

impl spool::Queue for WriterQueue {
    fn conflicts(
        &mut self,
        items: &[crate::item::NewItem],
    ) -> Result<Vec<crate::store::Conflict>, StoreError> {
        let reader = match self.reader.take() {
            Some(reader) => reader,
            None => {
                crate::store::Store::open(&self.database, crate::store::Access::ReadOnly, self.busy_timeout)?
            }
        };
        let conflicts = reader.conflicts(items);
        self.reader = Some(reader);
        conflicts
    }

    fn enqueue(
        &mut self,
        items: Vec<crate::item::NewItem>,
        origin: crate::store::Origin,
        now: jiff::Timestamp,
    ) -> Result<Vec<crate::store::EnqueueOutcome>, StoreError> {
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Group("o serviço está parando".to_owned()));
        }
        self.writer
            .call_blocking(move |store| store.enqueue(&items, &origin, now))
            .unwrap_or_else(|| Err(StoreError::Group("a thread do banco de dados parou".to_owned())))
    }
}

/// One run of a source: the command, then — if it printed cancellations — the new ones queued
/// through the writer in one transaction (orders already queued are left as they are, found on
/// a read-only connection so the writer sees only what is new), then the run recorded.
async fn run_source(
    source: crate::source::Source,
    writer: Writer,
    database: PathBuf,
    busy_timeout: Duration,
) -> SourceRan {
    let started = std::time::Instant::now();
    let name = source.config.name.clone();
    let outcome = source.run().await;
    let mut changed = 0;
    let (rows, new_items, failure, error) = match outcome {
        Err(error) => (0, 0, Some(error.kind()), Some(error.to_string())),
        Ok(output) => {
            let rows = output.rows as u64;
            let origin = crate::store::Origin::Source(name.clone());
            let queued =
                match tokio::task::spawn_blocking(move || new_items(output.items, &database, busy_timeout))
                    .await
                {
                    Ok(Ok((fresh, different))) => {
                        changed = different;
                        if fresh.is_empty() {
                            Ok(0)
                        } else {
                            writer
                                .call(move |store| store.enqueue(&fresh, &origin, jiff::Timestamp::now()))
                                .await
                                .unwrap_or_else(|| {
                                    Err(StoreError::Group("a thread do banco de dados parou".to_owned()))
                                })
                                .map(|outcomes| {
                                    outcomes.iter().filter(|outcome| !outcome.already_queued).count() as u64
                                })
                        }
                    }
                    Ok(Err(error)) => Err(error),
                    Err(_) => Err(StoreError::Group("a leitura da fila foi interrompida".to_owned())),
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
    let run = crate::store::SourceRun {
        name: name.clone(),
        at: jiff::Timestamp::now(),
        duration_ms: crate::source::elapsed_ms(started),
        error,
        rows,
        new_items,
    };
    let recording = run.clone();
    let unrecorded = writer
        .call(move |store| store.record_source_run(&recording))
        .await
        .unwrap_or_else(|| Err(StoreError::Group("a thread do banco de dados parou".to_owned())))
        .err();
    SourceRan { name, run, failure, changed, unrecorded }
}

/// The items not queued yet, and how many of the others differ from what is queued.
fn new_items(
    items: Vec<crate::item::NewItem>,
    database: &std::path::Path,
    busy_timeout: Duration,
) -> Result<(Vec<crate::item::NewItem>, usize), StoreError> {
    if items.is_empty() {
        return Ok((items, 0));
    }
    let reader = crate::store::Store::open(database, crate::store::Access::ReadOnly, busy_timeout)?;
    let queued = reader.queued(&items)?;
    let different = reader.conflicts(&items)?.len();
    let fresh = items.into_iter().zip(queued).filter(|(_, queued)| !queued).map(|(item, _)| item).collect();
    Ok((fresh, different))
}

/// What a pass over the spool did, in the journal: file names are the ERP's text, escaped.
fn log_spool(report: &spool::Report) {
    for imported in &report.imported {
        let file = crate::text::terminal_safe(&imported.file);
        if imported.again {
            tracing::info!(file = %file, new_items = imported.new, already_queued = imported.already,
                "arquivo do spool mudou depois de importado (quem o escrevia continuou): {} item(ns) novo(s) enfileirado(s)", imported.new);
        } else {
            tracing::info!(file = %file, new_items = imported.new, already_queued = imported.already, "arquivo do spool importado");
        }
    }
    for (file, why) in &report.rejected {
        let file = crate::text::terminal_safe(file);
        let why = crate::text::terminal_safe(why);
        tracing::warn!(message_id = %Message::SpoolRejected.id(), file = %file, reason = %why, "arquivo do spool rejeitado (veja rejeitados/{file}.erro)");
    }
    for (file, why) in &report.refused {
        let file = crate::text::terminal_safe(file);
        tracing::warn!(file = %file, reason = %why, "arquivo do spool recusado e deixado no lugar: {file} {why}");
    }
    for (file, why) in &report.unreadable {
        let file = crate::text::terminal_safe(file);
        let why = crate::text::terminal_safe(why);
        tracing::warn!(file = %file, reason = %why,
            "arquivo do spool já importado mudou e o que foi acrescentado não pôde ser lido (será lido de novo se mudar): {file}: {why}");
    }
}

/// A one-line pt-BR description of the gate, for `status` and the systemd status line.
pub fn describe_gate(gate: &Gate) -> String {
    match *gate {
        Gate::Closed => "enviando normalmente".to_owned(),
        Gate::Open { code, next_probe_at } => format!(
            "CIRCUITO ABERTO: erro {}; próximo teste às {}",
            code.label(),
            crate::text::local_time(next_probe_at)
        ),
        Gate::Paused { code, .. } => format!(
            "PAUSADO: erro {}; corrija as credenciais e recarregue (systemctl reload extrator)",
            code.label()
        ),
        Gate::RateLimited { until } => {
            format!(
                "AGUARDANDO a API: erro {} até {}",
                Code::RateLimited.label(),
                crate::text::local_time(until)
            )
        }
    }
}

/// The status line of the dispatcher's status and the (pending, processing, failed) counts.
pub fn status_line(status: &Status, counts: (u64, u64, u64)) -> String {
    let (pending, processing, failed) = counts;
    let mut parts = Vec::new();
    if status.gate != Gate::Closed {
        parts.push(describe_gate(&status.gate));
    }
    parts.push(format!("{pending} pendente(s), {processing} processando, {failed} falharam"));
    if status.unrecorded > 0 {
        parts.push(format!("{} tentativa(s) ainda não gravada(s)", status.unrecorded));
    }
    parts.push(match status.last_success {
        Some(at) => format!("último envio com sucesso {}", crate::text::local_time(at)),
        None => "nenhum envio com sucesso ainda".to_owned(),
    });
    if status.gate == Gate::Closed {
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
    settings: policy::Settings,
    lease_until: jiff::Timestamp,
) -> Delivery {
    let attempt = client.send(&item).await;
    let finished_at = jiff::Timestamp::now();
    let before = ItemBefore {
        id: item.id,
        attempts: u32::try_from(item.attempts).unwrap_or(0),
        processing_since: item.processing_since,
        poll_url: item.poll_url.as_deref(),
    };
    let after = policy::after_attempt(before, &attempt.verdict, probe, finished_at, &settings);
    let record = Record { attempt, finished_at, probe, after };
    let writing = record.clone();
    let id = item.id;
    let recorded = writer
        .call_grouped(move |store| writing.write(store, id))
        .await
        .unwrap_or_else(|| Err(StoreError::Group("a thread do banco de dados parou".to_owned())));
    Delivery { item: item.id, order: item.order, lease_until, record, recorded }
}

/// An attempt ended: counted, and one log event with the fields journald filters on and the
/// `MESSAGE_ID` of its catalog entry. Text from the API is escaped.
fn attempt_done(delivery: &Delivery, metrics: &Metrics) {
    let after = &delivery.record.after;
    let attempt = &delivery.record.attempt;
    metrics.attempt(&after.verdict, attempt.started_at, attempt.duration, after.state == State::Failed);
    log_attempt(delivery);
}

/// One log event per attempt.
fn log_attempt(delivery: &Delivery) {
    let verdict = &delivery.record.after.verdict;
    let status = verdict.http_status;
    let message = crate::text::terminal_safe(verdict.message.as_deref().unwrap_or("")).into_owned();
    let kind = verdict.kind.to_string();
    let (item, order, kind) =
        (delivery.item, crate::text::terminal_safe(&delivery.order).into_owned(), kind.as_str());
    let attempt = *delivery.recorded.as_ref().unwrap_or(&0);
    let probe = delivery.record.probe;
    match (verdict.outcome, delivery.record.after.state) {
        (Outcome::Success, _) => match verdict.receipt.as_deref() {
            Some(receipt) => {
                let receipt = crate::text::terminal_safe(receipt).into_owned();
                tracing::info!(
                    message_id = %Message::Delivered.id(),
                    item,
                    order,
                    attempt,
                    http_status = status,
                    kind,
                    receipt,
                    "pedido {order}: cancelamento entregue (protocolo da API: {receipt})"
                );
            }
            None => tracing::info!(
                message_id = %Message::Delivered.id(),
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
            message_id = %Message::GaveUp.id(),
            code = code.as_str(),
            item,
            order,
            attempt,
            http_status = status,
            kind,
            "pedido {order}: cancelamento falhou definitivamente: erro {}: {message} (reenvie com extrator retry)",
            code.label()
        ),
        (Outcome::Failure(code), _) => tracing::warn!(
            message_id = %Message::AttemptFailed(code).id(),
            code = code.as_str(),
            item,
            order,
            attempt,
            http_status = status,
            kind,
            probe,
            "pedido {order}: falha no envio: erro {}: {message}; nova tentativa a partir de {}",
            code.label(),
            crate::text::local_time(delivery.record.after.next_at)
        ),
    }
}

/// `now + delay`, saturating.
fn add(now: jiff::Timestamp, delay: Duration) -> jiff::Timestamp {
    now.saturating_add(jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(now)
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
        let status = Status { gate: Gate::Closed, sending: 0, unrecorded: 0, last_success: None };
        assert_eq!(
            status_line(&status, (12, 1, 3)),
            "12 pendente(s), 1 processando, 3 falharam · nenhum envio com sucesso ainda · enviando normalmente"
        );
        let paused = Status {
            gate: Gate::Paused { code: Code::InvalidPassword, next_probe_at: jiff::Timestamp::now() },
            unrecorded: 2,
            last_success: Some(jiff::Timestamp::now()),
            ..status
        };
        let line = status_line(&paused, (12, 0, 0));
        assert!(
            line.starts_with("PAUSADO: erro 02 Senha inválida; corrija as credenciais e recarregue"),
            "{line}"
        );
        assert!(
            line.contains("2 tentativa(s) ainda não gravada(s)") && line.contains("último envio com sucesso"),
            "{line}"
        );
    }
}
