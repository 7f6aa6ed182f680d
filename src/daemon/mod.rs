//! The daemon's working loop: the I/O around `dispatch::Dispatcher`, which decides everything
//! about an item from its claim to the circuit. The loop turns what happened — the poll tick, a
//! finished task, a signal, an item handed in, the dispatcher's own next moment — into an
//! `Event`, and carries out the `Action`s the dispatcher answers, in order: claims, sends,
//! releases and records on the store thread (handed to it in the order decided), the status
//! line and the journal. It owns no decision about an item.
//!
//! Nothing the loop does waits for the store or the network: claims, records, the tick's chores
//! (`chores.rs`), the spool import (`intake.rs`) and the sources' runs (`sources.rs`) are tasks
//! whose results come back as events, so the loop keeps turning — and pinging the watchdog —
//! while the store works. It stops pinging when the store thread itself stops getting through
//! its jobs (`Writer::stalled_for`), so a stuck store still gets the service restarted.
//!
//! SIGHUP reloads the config (kept as it was if the new one is invalid); SIGTERM/SIGINT stop
//! claiming, abort the sources' runs, let requests on the wire finish and their records land
//! within a bound, and put the rest back in the queue.

mod chores;
mod delivery;
mod intake;
mod sources;
mod status;

pub use status::status_line;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::core::classify::Code;
use crate::core::dispatch::{Action, Claim, Claimed, Dispatcher, Event, Exchanged, Limits, Record, Written};
use crate::core::failure::Failure;
use crate::core::item::Item;
use crate::core::policy::Gate;
use crate::io::api::Client;
use crate::io::journal::Message;
use crate::io::spool;
use crate::io::store::StoreError;
use crate::io::systemd::Notifier;
use crate::io::writer::Writer;
use crate::web::metrics::Metrics;

/// How long the store thread may go without finishing a job before the watchdog is no longer
/// pinged: well under the unit's `WatchdogSec=30`, well over `DAEMON_BUSY_TIMEOUT`.
const STORE_STALL: Duration = Duration::from_secs(20);
/// The longest the daemon's connection waits for another process's write lock
/// (`queue.busy_timeout` is for the commands; the daemon just tries again on the next turn).
pub const DAEMON_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A task of the loop other than a request, and what came of it.
enum Done {
    Claimed {
        claim: Claim,
        lease_until: jiff::Timestamp,
        items: Result<Vec<Item>, StoreError>,
    },
    Recorded {
        record: Box<Record>,
        result: Result<i64, StoreError>,
    },
    /// A write whose only news is its failure (a release, a forgiveness, the sources' rows).
    Wrote(Result<(), StoreError>),
    Chores(Box<chores::Chores>),
    /// A pass over the spool ended; the spool's memory comes back with it.
    Spool(Box<spool::Spool>, Result<spool::Report, spool::SpoolError>),
    /// The store thread is gone.
    StoreDied,
}

/// The tasks serving beside the loop, stopped when it stops.
struct Listeners {
    intake: Option<tokio::task::JoinHandle<()>>,
    site: Option<tokio::task::JoinHandle<()>>,
}

/// The running daemon.
pub struct Daemon {
    config_path: PathBuf,
    config: Config,
    writer: Writer,
    client: Arc<Client>,
    dispatcher: Dispatcher,
    /// One task per request on the wire; the item each is for (for a task that ends without
    /// an answer).
    sends: JoinSet<(i64, Exchanged)>,
    send_items: HashMap<tokio::task::Id, i64>,
    /// Items claimed and not sent yet: the dispatcher says `Send` or `Release` for each.
    claimed: HashMap<i64, Item>,
    /// Claims, records, releases, chores and the spool import.
    work: JoinSet<Done>,
    /// Runs of the polled sources: aborted at once on stop (a run queues all or nothing, and its
    /// process group dies with it), so a slow source never holds the stop back.
    source_runs: JoinSet<sources::Ran>,
    chores_running: bool,
    purge: chores::PurgeCadence,
    /// The spool, between passes (`None` while a pass runs on its thread).
    spool: Option<Box<spool::Spool>>,
    notifier: Notifier,
    /// Pending, processing and failed items at the last tick.
    counts: Option<(u64, u64, u64)>,
    /// The database's trouble of the moment, until writes work.
    problems: chores::Problems,
    /// Why the last reload was refused, until one succeeds: said in the status line, since the
    /// running config is not the file's.
    reload_refused: Option<String>,
    /// The watchdog is held back because the store thread stalled (logged once).
    store_stalled: bool,
    /// Tells a running spool import to end (at stop).
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// What `/metrics` shows; counted whether or not anyone serves it.
    metrics: Arc<Metrics>,
    /// `[metrics] listen`, bound before READY (`web::bind`).
    listener: Option<crate::web::Listener>,
    /// The polled `[[source]]`s.
    sources: Vec<sources::Slot>,
}

impl Daemon {
    /// A daemon over an open store (moved onto its thread) and a built client.
    pub fn new(config_path: PathBuf, config: Config, writer: Writer, client: Client) -> Daemon {
        // Lease tokens of this run start above any an earlier run can have left behind.
        let first_token = jiff::Timestamp::now().as_microsecond();
        let dispatcher = Dispatcher::new(Limits::from_config(&config), first_token);
        let spool = spool::Spool::new(&config.queue.spool_dir);
        Daemon {
            config_path,
            config,
            writer,
            client: Arc::new(client),
            dispatcher,
            sends: JoinSet::new(),
            send_items: HashMap::new(),
            claimed: HashMap::new(),
            work: JoinSet::new(),
            source_runs: JoinSet::new(),
            chores_running: false,
            purge: chores::PurgeCadence::default(),
            spool: Some(Box::new(spool)),
            notifier: Notifier::new(),
            counts: None,
            problems: chores::Problems::default(),
            reload_refused: None,
            store_stalled: false,
            stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            metrics: Arc::new(Metrics::new()),
            listener: None,
            sources: Vec::new(),
        }
    }

    /// Polls these sources while running (the first run of each at the first tick).
    pub fn with_sources(mut self, sources: Vec<crate::io::source::Source>) -> Daemon {
        self.adopt_sources(sources);
        self
    }

    /// Takes these sources as the ones to poll: one already polled keeps its state (by name), a
    /// new one runs at the next tick.
    fn adopt_sources(&mut self, sources: Vec<crate::io::source::Source>) {
        let mut slots = std::mem::take(&mut self.sources);
        let now = std::time::Instant::now();
        self.sources = sources
            .into_iter()
            .map(|source| match slots.iter().position(|slot| slot.source.config.name == source.config.name) {
                Some(index) => slots.swap_remove(index).with(source),
                None => sources::Slot::new(source, now),
            })
            .collect();
    }

    /// Says how the client certificate stands (the log, `/metrics`, the daemon's row for
    /// `status`), at start and after each reload.
    fn certificate_in_use(&mut self) {
        let certificate =
            self.client.certificate().map(|(expires_at, subject)| (expires_at, subject.to_owned()));
        self.metrics.set_certificate(certificate.as_ref().map(|(expires_at, _)| *expires_at));
        if let Some((expires_at, subject)) = &certificate {
            let (expiry, close) = crate::io::api::tls::describe_expiry(*expires_at, jiff::Timestamp::now());
            let subject = crate::core::text::terminal_safe(subject).into_owned();
            if close {
                tracing::warn!("certificado de cliente ({subject}): {expiry}");
            } else {
                tracing::info!("certificado de cliente ({subject}): {expiry}");
            }
        }
        let expires_at = certificate.map(|(expires_at, _)| expires_at);
        let recorded = self.writer.alone(move |store| store.set_certificate(expires_at));
        self.spawn_write(recorded);
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
        // Cancellations handed in through the socket by accounts that cannot write the queue.
        let handed = Arc::new(tokio::sync::Notify::new());
        let listeners = self.spawn_listeners(&handed);
        let mut watchdog =
            tokio::time::interval(self.notifier.watchdog_every().unwrap_or(Duration::from_secs(3_600)));
        // Ready before the first tick's chores: counting a million pending items for the status
        // line is not part of being up. The first tick comes at once and fills the line in.
        self.certificate_in_use();
        let status = self.status_line();
        self.notifier.ready(&status);
        tracing::info!(message_id = %Message::Started.id(), "pronto: {status}");
        loop {
            let wait = self.wait();
            let event = tokio::select! {
                _ = terminate.recv() => Event::Stop,
                _ = interrupt.recv() => Event::Stop,
                () = &mut stop => Event::Stop,
                _ = hangup.recv() => self.hangup(&mut ticker),
                _ = watchdog.tick() => Event::Turn,
                _ = ticker.tick() => {
                    self.tick();
                    Event::Turn
                }
                Some(joined) = self.sends.join_next_with_id(), if !self.sends.is_empty() => self.sent(joined),
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
        // A batch cut off here gets no answer: `enqueue` then writes it to the spool (intake is
        // idempotent, so a batch that did get in is "já na fila" there).
        if let Some(intake) = listeners.intake {
            intake.abort();
            let _ = std::fs::remove_file(&self.config.queue.socket);
        }
        if let Some(site) = listeners.site {
            site.abort();
        }
        tracing::info!("sinal de parada recebido: não reservo mais itens");
        self.drain().await
    }

    /// Starts what the loop serves beside it: the intake socket (a batch queued there notifies
    /// `handed`) and the web listener bound at start.
    fn spawn_listeners(&mut self, handed: &Arc<tokio::sync::Notify>) -> Listeners {
        let intake = crate::io::handoff::listen(&self.config.queue.socket).map(|listener| {
            let queue = intake::writer_queue(&self.config, self.writer.clone(), self.stopping.clone());
            tokio::spawn(crate::io::handoff::serve(listener, queue, handed.clone()))
        });
        let site = self.listener.take().map(|listener| {
            let site = Arc::new(crate::web::Site::new(self.metrics.clone(), &self.config, &listener));
            tokio::spawn(crate::web::serve(listener, site))
        });
        Listeners { intake, site }
    }

    /// SIGHUP: RELOADING, the reload (kept as it was if refused), the ticker at the new poll
    /// interval, READY with the status line.
    fn hangup(&mut self, ticker: &mut tokio::time::Interval) -> Event {
        self.notifier.reloading();
        let event = self.reload();
        *ticker = self.ticker();
        let status = self.status_line();
        self.notifier.ready(&status);
        event.unwrap_or(Event::Turn)
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

    /// Feeds an event to the dispatcher and carries out what it says, in order.
    fn handle(&mut self, event: Event) {
        for action in self.dispatcher.handle(event, jiff::Timestamp::now()) {
            self.act(action);
        }
    }

    /// Carries out one action. Store work is handed to the store thread here, synchronously,
    /// so it runs in the order the dispatcher decided (a record before the forgiveness of its
    /// count, say); only the wait for its answer is a task.
    fn act(&mut self, action: Action) {
        match action {
            Action::Claim(claim) => {
                let lease = self.lease();
                let lease_until = add(jiff::Timestamp::now(), lease);
                let (room, token, probe, avoid) = (claim.room, claim.token, claim.probe, claim.avoid.clone());
                let claimed = self.writer.grouped(move |store| {
                    let now = jiff::Timestamp::now();
                    if probe {
                        store.claim_probe(now, lease, token, &avoid).map(|item| item.into_iter().collect())
                    } else {
                        store.claim(now, lease, room, token)
                    }
                });
                self.work.spawn(async move {
                    match claimed.await {
                        Some(items) => Done::Claimed { claim, lease_until, items },
                        None => Done::StoreDied,
                    }
                });
            }
            Action::Send { item, probe } => {
                let Some(row) = self.claimed.remove(&item) else { return };
                if probe {
                    tracing::debug!(order = %crate::core::text::terminal_safe(&row.order), item, "testando a API com um envio (sonda)");
                }
                let handle = self.sends.spawn(delivery::send(row, self.client.clone()));
                self.send_items.insert(handle.id(), item);
            }
            Action::Release { items, token } => {
                for item in &items {
                    self.claimed.remove(item);
                }
                let released =
                    self.writer.grouped(move |store| store.release(&items, token, jiff::Timestamp::now()));
                self.spawn_write(async move { released.await.map(|result| result.map(drop)) });
            }
            Action::Record(record) => {
                let written = self.writer.grouped_keeping(move |store| {
                    let result = delivery::write(store, &record);
                    (record, result)
                });
                self.work.spawn(async move {
                    match written.await {
                        // A record is on disk only once its group committed.
                        Some(((record, result), commit)) => {
                            Done::Recorded { record, result: commit.and(result) }
                        }
                        None => Done::StoreDied,
                    }
                });
            }
            Action::Forgive(attempts) => {
                let forgiven = self.writer.grouped(move |store| store.forgive(&attempts));
                self.spawn_write(async move { forgiven.await.map(|result| result.map(drop)) });
            }
            Action::Abandon { item } => {
                tracing::error!(
                    item,
                    "a tentativa do item {item} não pôde ser gravada até a reserva vencer: ele volta para \
                     a fila e será enviado de novo com a mesma chave de idempotência"
                );
            }
            Action::GateChanged { to, code, .. } => self.gate_changed(to, code),
            Action::Drain => {}
        }
    }

    /// Waits for a write whose only news is a failure.
    fn spawn_write(
        &mut self,
        written: impl Future<Output = Option<Result<(), StoreError>>> + Send + 'static,
    ) {
        self.work.spawn(async move {
            match written.await {
                Some(result) => Done::Wrote(result),
                None => Done::StoreDied,
            }
        });
    }

    /// The circuit changed situation: the status line at once, `/metrics`, and one line in the
    /// journal (counts refresh on the tick).
    fn gate_changed(&mut self, to: Gate, code: Option<Code>) {
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
            Gate::Closed => {
                tracing::info!(message_id = %message.id(), "envio retomado: a API voltou a responder");
            }
            _ => tracing::error!(
                message_id = %message.id(),
                code = code.map_or("", Code::as_str),
                "envio suspenso: {}",
                crate::view::describe_gate(&to, jiff::Timestamp::now())
            ),
        }
    }

    /// How long an `in_flight` item is leased before it is presumed abandoned.
    fn lease(&self) -> Duration {
        let api = &self.config.api;
        api.connect_timeout
            .get()
            .saturating_add(api.request_timeout.get())
            .saturating_add(Duration::from_secs(60))
    }

    /// A request's task ended: what came back, or its loss.
    fn sent(&mut self, joined: Result<(tokio::task::Id, (i64, Exchanged)), tokio::task::JoinError>) -> Event {
        match joined {
            Ok((id, (item, exchanged))) => {
                self.send_items.remove(&id);
                Event::Sent { item, exchanged }
            }
            Err(error) => {
                let item = self.send_items.remove(&error.id()).unwrap_or(0);
                tracing::error!(
                    item,
                    "item {item}: o envio terminou sem resposta ({error}); ele volta para a fila quando a reserva vencer"
                );
                Event::Lost { item }
            }
        }
    }

    /// A task other than a request ended.
    fn done(&mut self, done: Done) -> Result<Event, Failure> {
        Ok(match done {
            Done::StoreDied => return Err(store_thread_died()),
            Done::Claimed { claim, lease_until, items } => match items {
                Ok(rows) => {
                    let items = rows.iter().map(claimed_facts).collect();
                    self.claimed.extend(rows.into_iter().map(|row| (row.id, row)));
                    Event::Claimed { claim, items, lease_until }
                }
                Err(error) => {
                    self.store_error(error.to_string());
                    Event::ClaimFailed
                }
            },
            Done::Recorded { record, result } => self.recorded(&record, result),
            Done::Wrote(result) => {
                if let Err(error) = result {
                    self.store_error(error.to_string());
                }
                Event::Turn
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
                        intake::log(&report);
                    }
                    Err(error) => self.store_error(error.to_string()),
                }
                Event::Turn
            }
        })
    }

    /// A record's write came back: the attempt is logged and counted the first time, and the
    /// dispatcher hears how it went.
    fn recorded(&mut self, record: &Record, result: Result<i64, StoreError>) -> Event {
        let order = crate::core::text::terminal_safe(&record.order).into_owned();
        let written = match &result {
            Ok(number) => {
                if record.again {
                    tracing::info!(item = record.item, order = %order, "pedido {order}: a tentativa foi gravada na nova tentativa");
                }
                Written::Yes(*number)
            }
            Err(error @ StoreError::NotLeased(_)) => {
                tracing::warn!(item = record.item, order = %order, "{error}");
                Written::NotLeased
            }
            Err(error) => {
                if !record.again {
                    tracing::error!(
                        item = record.item,
                        order = %order,
                        "pedido {order}: a tentativa não foi gravada ({error}); tento gravá-la de novo"
                    );
                }
                self.store_error(error.to_string());
                Written::Failed
            }
        };
        if !record.again {
            delivery::attempt_done(record, result.as_ref().ok().copied(), &self.metrics);
        }
        Event::Recorded { item: record.item, written }
    }

    /// The tick: start the chores, the spool import and the due sources, unless still running.
    fn tick(&mut self) {
        if let Some(mut spool) = self.spool.take() {
            let mut queue = intake::writer_queue(&self.config, self.writer.clone(), self.stopping.clone());
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
        let gate = self.dispatcher.status().gate;
        let retention = self.config.history.retention.get();
        let purge = self.purge.due(std::time::Instant::now());
        let chores = self.writer.alone(move |store| chores::Chores::run(store, &gate, purge, retention));
        self.work.spawn(async move {
            match chores.await {
                Some(chores) => Done::Chores(Box::new(chores)),
                None => Done::StoreDied,
            }
        });
    }

    /// Starts each source whose time has come and that is not running yet.
    fn start_sources(&mut self) {
        let now = std::time::Instant::now();
        for slot in &mut self.sources {
            if !slot.start(now) {
                continue;
            }
            let queue = intake::writer_queue(&self.config, self.writer.clone(), self.stopping.clone());
            let run = sources::run(slot.source.clone(), queue, self.writer.clone());
            self.source_runs.spawn(run);
        }
    }

    /// A source's run ended: counted, and logged when its state changed or it brought items.
    fn source_ran(&mut self, ran: sources::Ran) {
        self.metrics.source_run(&ran.name, ran.failure, ran.run.at);
        if let Some(error) = &ran.unrecorded {
            self.store_error(error.to_string());
        }
        let Some(slot) = self.sources.iter_mut().find(|slot| slot.source.config.name == ran.name) else {
            return;
        };
        let (news, changed) = slot.ended(&ran);
        let interval = slot.source.config.interval;
        let name = crate::core::text::terminal_safe(&ran.name).into_owned();
        let (rows, new) = (ran.run.rows, ran.run.new_items);
        let error = ran.run.error.as_deref().unwrap_or("");
        let lines_read = |rows: u64| crate::core::text::count(rows, "linha lida", "linhas lidas");
        let new_orders = |new: u64| crate::core::text::count(new, "cancelamento novo", "cancelamentos novos");
        match news {
            sources::News::Failed => tracing::error!(
                message_id = %Message::SourceFailed.id(),
                source = %name,
                "fonte {name}: {error}; nada desta execução entrou na fila (tento de novo a cada {interval})"
            ),
            sources::News::StillFailing => {
                tracing::debug!(source = %name, "fonte {name} continua falhando: {error}")
            }
            sources::News::Recovered => tracing::info!(
                source = %name,
                rows,
                new_items = new,
                "fonte {name} voltou a funcionar: {}, {} na fila", lines_read(rows), new_orders(new)
            ),
            sources::News::First => tracing::info!(
                source = %name,
                rows,
                new_items = new,
                "fonte {name}: primeira execução, {}, {} na fila", lines_read(rows), new_orders(new)
            ),
            sources::News::NewItems => tracing::info!(
                source = %name,
                rows,
                new_items = new,
                "fonte {name}: {} na fila ({})", new_orders(new), lines_read(rows)
            ),
            sources::News::Nothing => {}
        }
        if let Some(orders) = changed {
            tracing::warn!(
                source = %name,
                orders,
                "fonte {name}: {} com outro conteúdo na origem; fica valendo o que foi enfileirado primeiro",
                crate::core::text::count(orders as u64, "pedido já enfileirado aparece", "pedidos já enfileirados aparecem")
            );
        }
    }

    /// What the chores found: logged, and the status line refreshed.
    fn chores_done(&mut self, chores: chores::Chores) {
        match chores.recovered {
            Ok(0) => {}
            Ok(count) => tracing::warn!(
                items = count,
                "{} para a fila",
                crate::core::text::count(
                    count as u64,
                    "item com reserva vencida voltou",
                    "itens com reserva vencida voltaram"
                )
            ),
            Err(error) => self.store_error(error.to_string()),
        }
        if let Err(error) = chores.hours {
            self.store_error(error.to_string());
        }
        match chores.purged {
            Ok(count) => {
                self.purge.purged(count);
                if count > 0 {
                    tracing::info!(
                        attempts = count,
                        "histórico de itens concluídos apagado (history.retention)"
                    );
                }
            }
            Err(error) => {
                self.purge.purged(0);
                self.store_error(error.to_string());
            }
        }
        // The heartbeat is a write on every tick: whether it works says whether the database
        // takes writes (a full disk, a lock held too long).
        match chores.heartbeat {
            Ok(()) => {
                if self.problems.cleared() {
                    tracing::info!("o banco de dados voltou a aceitar gravações");
                }
            }
            Err(error) => self.store_error(error.to_string()),
        }
        match chores.counts {
            Ok(counts) => self.counts = Some(counts),
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
                        crate::core::text::rounded(stalled)
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
        let mut line = status_line(&self.dispatcher.status(), self.counts, jiff::Timestamp::now());
        if let Some(why) = &self.reload_refused {
            line = format!(
                "RECARGA RECUSADA (vale a configuração anterior): {} · {line}",
                crate::core::text::truncate(why, 200)
            );
        }
        match self.problems.current() {
            Some(problem) => format!("ERRO NO BANCO DE DADOS: {problem} · {line}"),
            None => line,
        }
    }

    /// Records a database failure: counted, logged when `Problems` says so, and shown in the
    /// status line until writes work.
    fn store_error(&mut self, problem: String) {
        self.metrics.database_error();
        if self.problems.report(problem.clone(), std::time::Instant::now()) {
            tracing::error!(message_id = %Message::DatabaseError.id(), "{problem}");
        }
    }

    /// Re-reads the config; an invalid one is refused and the running one kept.
    fn reload(&mut self) -> Option<Event> {
        let (loaded, client, sources) = match prepare(&self.config_path) {
            Ok(prepared) => prepared,
            Err(error) => {
                self.metrics.reload(false);
                tracing::error!(
                    message_id = %Message::ReloadRefused.id(),
                    "recarga recusada, a configuração anterior continua valendo: {error}"
                );
                self.reload_refused = Some(error.to_string());
                return None;
            }
        };
        self.reload_refused = None;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        let mut config = loaded.config;
        let ignored = crate::config::keep_restart_only(&mut config, &self.config);
        if !ignored.is_empty() {
            tracing::warn!(
                "{} só muda(m) ao reiniciar o serviço (systemctl restart extrator); até lá vale o valor anterior",
                ignored.join(", ")
            );
        }
        self.metrics.reload(true);
        self.client = Arc::new(client);
        self.certificate_in_use();
        // The rows of sources removed go (a failure here is only a stale line in `status`).
        let names: Vec<String> = sources.iter().map(|source| source.config.name.clone()).collect();
        let kept = self.writer.alone(move |store| store.keep_sources(&names).map(drop));
        self.spawn_write(kept);
        self.adopt_sources(sources);
        let latest = add(jiff::Timestamp::now(), config.retry.max_delay.get());
        let capped = self.writer.alone(move |store| store.cap_due(latest).map(drop));
        self.spawn_write(capped);
        let limits = Limits::from_config(&config);
        self.config = config;
        tracing::info!(config = %self.config_path.display(), "configuração recarregada");
        Some(Event::Reloaded(limits))
    }

    /// Stops: the sources' runs end at once; requests on the wire finish within a bound and
    /// their records land (the dispatcher still decides them); then what is left goes back to
    /// the queue and the stop is recorded.
    async fn drain(mut self) -> Result<(), Failure> {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        self.source_runs.shutdown().await;
        let grace =
            (self.config.api.request_timeout.get() + Duration::from_secs(2)).min(Duration::from_secs(30));
        let deadline = tokio::time::Instant::now() + grace;
        while !self.dispatcher.idle() {
            let wait = self.wait();
            let event = tokio::select! {
                Some(joined) = self.sends.join_next_with_id(), if !self.sends.is_empty() => self.sent(joined),
                Some(done) = self.work.join_next(), if !self.work.is_empty() => match done {
                    Ok(done) => self.done(done)?,
                    Err(_) => return Err(store_thread_died()),
                },
                () = tokio::time::sleep_until(deadline) => break,
                () = tokio::time::sleep(wait) => Event::Turn,
            };
            self.handle(event);
        }
        if !self.sends.is_empty() {
            tracing::warn!(
                items = self.sends.len(),
                "envios ainda sem resposta abandonados; voltam para a fila"
            );
            self.sends.shutdown().await;
        }
        // Claims, releases and records under way land before the release of the rest.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while self.work.join_next().await.is_some() {}
        })
        .await;
        self.work.shutdown().await;
        let done = self
            .writer
            .call(move |store| {
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

/// What the dispatcher needs of a claimed row.
fn claimed_facts(row: &Item) -> Claimed {
    Claimed {
        id: row.id,
        order: row.order.clone(),
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        last_code: row.last_code,
        processing_since: row.processing_since,
        poll_url: row.poll_url.clone(),
    }
}

/// `now + delay`, saturating.
fn add(now: jiff::Timestamp, delay: Duration) -> jiff::Timestamp {
    now.saturating_add(jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(now)
}

/// The fatal error of a store thread that panicked.
fn store_thread_died() -> Failure {
    Failure::failed("a thread do banco de dados parou inesperadamente")
}

/// Everything the daemon builds from the config file before it uses it: the config, the HTTP
/// client (secrets, certificates) and the sources (their environment files). What a reload
/// does first, and what `extrator check --config-only` (the unit's `ExecReload=`) runs, so a
/// config the daemon would refuse makes `systemctl reload` fail.
pub fn prepare(
    path: &std::path::Path,
) -> Result<(crate::config::Loaded, Client, Vec<crate::io::source::Source>), Unprepared> {
    let loaded = crate::config::load(path).map_err(Unprepared::Config)?;
    let client = Client::new(&loaded.config).map_err(Unprepared::Client)?;
    let sources = crate::io::source::Source::all(&loaded.config.sources).map_err(Unprepared::Sources)?;
    Ok((loaded, client, sources))
}

/// Why `prepare` refused a config: the file itself (its message names the file), or what the
/// client or the sources could not build from it (a certificate, a secret, an environment file).
#[derive(Debug)]
pub enum Unprepared {
    Config(crate::config::ConfigError),
    Client(String),
    Sources(String),
}

impl std::fmt::Display for Unprepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unprepared::Config(error) => write!(f, "{error}"),
            Unprepared::Client(why) | Unprepared::Sources(why) => f.write_str(why),
        }
    }
}
