//! The daemon's one database connection, owned by one thread and fed by a channel. Async code
//! sends it short closures (claim, record, import, heartbeat) and awaits the answer, so the
//! runtime never blocks on SQLite and no transaction is ever held across an HTTP request.
//!
//! **Group commit.** The dispatcher's claims and attempt records are *grouped* jobs: when several
//! are waiting, the thread runs them in one transaction (each in its own savepoint) and pays one
//! fsync for all; their answers are sent only after that commit, so nobody hears "recorded" for
//! something not on disk. Everything else (spool imports above all) runs alone, in its own
//! transaction.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::io::store::{Store, StoreError};

/// How many grouped jobs share one commit at most.
const MAX_GROUP: usize = 64;

/// Sends a grouped job's answer once the group's commit is known.
type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A grouped job's work: it runs, then waits for the group's commit to answer.
type GroupedWork = Box<dyn FnOnce(&mut Store) -> Finish + Send>;

/// A unit of work for the store thread.
enum Job {
    /// Runs in its own transaction(s).
    Alone(Box<dyn FnOnce(&mut Store) + Send>),
    /// May share a commit with neighbours; answers after it.
    Grouped(GroupedWork),
}

/// A handle to the store thread. Cloning it is cheap; the thread ends when every handle is gone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    health: Arc<Health>,
}

/// Whether the store thread is getting through its work: the daemon's loop stops pinging the
/// systemd watchdog when it is not, so a store stuck on a lock or a dead disk gets the service
/// restarted even though the loop itself never waits for the store.
struct Health {
    /// When the handle was made; times below are milliseconds since then.
    epoch: Instant,
    /// Jobs sent and not yet finished.
    outstanding: AtomicUsize,
    /// When the thread last finished a job (or was idle and got one).
    last_progress: AtomicU64,
}

impl Health {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A job finished.
    fn progressed(&self, jobs: usize) {
        self.last_progress.store(self.now(), Ordering::Relaxed);
        self.outstanding.fetch_sub(jobs, Ordering::Relaxed);
    }
}

/// The error of work the store thread never got to, because it is gone.
pub fn gone() -> StoreError {
    StoreError::Interrupted("a thread do banco de dados parou")
}

impl Writer {
    /// Moves `store` onto its own thread.
    pub fn spawn(mut store: Store) -> Writer {
        let (jobs, queue) = mpsc::channel::<Job>();
        let health = Arc::new(Health {
            epoch: Instant::now(),
            outstanding: AtomicUsize::new(0),
            last_progress: AtomicU64::new(0),
        });
        let progress = health.clone();
        std::thread::Builder::new()
            .name("extrator-store".to_owned())
            .spawn(move || {
                let mut pending = None;
                loop {
                    let Some(job) = pending.take().or_else(|| queue.recv().ok()) else { return };
                    match job {
                        Job::Alone(work) => {
                            work(&mut store);
                            progress.progressed(1);
                        }
                        Job::Grouped(work) => {
                            let mut group = vec![work];
                            while group.len() < MAX_GROUP {
                                match queue.try_recv() {
                                    Ok(Job::Grouped(next)) => group.push(next),
                                    Ok(other) => {
                                        pending = Some(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            let jobs = group.len();
                            run_group(&mut store, group);
                            progress.progressed(jobs);
                        }
                    }
                }
            })
            .map(drop)
            .unwrap_or_else(|error| panic!("não foi possível criar a thread do banco de dados: {error}"));
        Writer { jobs, health }
    }

    /// How long the store thread has gone without finishing a job while jobs wait; `None` when
    /// it has nothing to do or keeps up.
    pub fn stalled_for(&self) -> Option<Duration> {
        if self.health.outstanding.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let since = self.health.now().saturating_sub(self.health.last_progress.load(Ordering::Relaxed));
        Some(Duration::from_millis(since))
    }

    /// Hands a job to the thread, counting it as outstanding.
    fn send(&self, job: Job) -> Option<()> {
        if self.health.outstanding.fetch_add(1, Ordering::Relaxed) == 0 {
            // The thread was idle: the wait starts now, not at its last job.
            self.health.last_progress.store(self.health.now(), Ordering::Relaxed);
        }
        self.jobs.send(job).ok().or_else(|| {
            self.health.outstanding.fetch_sub(1, Ordering::Relaxed);
            None
        })
    }

    /// `call` for a caller that is not async (the spool import's thread): blocks until done.
    pub fn call_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Option<T> {
        self.call_alone(work)?.blocking_recv().ok()
    }

    /// Runs `work` on the store thread, alone, and returns its result. `None` only if the thread
    /// is gone (it panicked), which the caller treats as fatal.
    pub async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Option<T> {
        self.alone(work).await
    }

    /// Hands `work` to the thread as a job of its own *now*, and returns the wait for its
    /// result: jobs handed one after the other reach the thread in that order, whenever their
    /// waits are polled (the daemon carries out the dispatcher's actions in the order decided).
    pub fn alone<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> impl Future<Output = Option<T>> + Send + 'static {
        let answer = self.call_alone(work);
        async move { answer?.await.ok() }
    }

    /// Hands `work` to the thread as a job of its own; its result comes back on the receiver.
    fn call_alone<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Option<oneshot::Receiver<T>> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Alone(Box::new(move |store| {
            let _ = reply.send(work(store));
        }));
        self.send(job)?;
        Some(answer)
    }

    /// Runs `work` on the store thread, possibly in a group commit with other grouped jobs; the
    /// result arrives once it is committed (or the commit's error, if the group failed).
    pub async fn call_grouped<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Option<Result<T, StoreError>> {
        self.grouped(work).await
    }

    /// `grouped`, but the work's own output comes back whatever the commit did, beside the
    /// commit's result: a record whose group failed is still in hand to be written again.
    pub fn grouped_keeping<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> impl Future<Output = Option<(T, Result<(), StoreError>)>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let job = Job::Grouped(Box::new(move |store| {
            let output = work(store);
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = reply.send((output, commit));
            }) as Finish
        }));
        let sent = self.send(job);
        async move {
            sent?;
            answer.await.ok()
        }
    }

    /// `call_grouped`, with the job handed to the thread *now* (see `alone`).
    pub fn grouped<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> impl Future<Output = Option<Result<T, StoreError>>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let job = Job::Grouped(Box::new(move |store| {
            let result = work(store);
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = reply.send(commit.and(result));
            }) as Finish
        }));
        let sent = self.send(job);
        async move {
            sent?;
            answer.await.ok()
        }
    }
}

/// Runs grouped jobs: alone if there is one, else inside one transaction.
fn run_group(store: &mut Store, group: Vec<GroupedWork>) {
    if group.len() == 1 {
        for work in group {
            work(store)(Ok(()));
        }
        return;
    }
    if let Err(error) = store.begin_group() {
        // Could not open the group: run each on its own instead.
        tracing::debug!("{error}");
        for work in group {
            work(store)(Ok(()));
        }
        return;
    }
    let finishers: Vec<Finish> = group.into_iter().map(|work| work(store)).collect();
    match store.end_group() {
        Ok(()) => finishers.into_iter().for_each(|finish| finish(Ok(()))),
        Err(error) => {
            // Each job's own answer would be a lie: none of the group is on disk.
            let text = error.to_string();
            for finish in finishers {
                finish(Err(StoreError::Group(text.clone())));
            }
        }
    }
}
