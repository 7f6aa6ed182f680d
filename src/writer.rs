//! The daemon's one database connection, owned by one thread and fed by a channel. Async code
//! sends it short closures (claim, record, import, heartbeat) and awaits the answer, so the
//! runtime never blocks on SQLite and no transaction is ever held across an HTTP request.

use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::store::Store;

/// A unit of work for the store thread.
type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// A handle to the store thread. Cloning it is cheap; the thread ends when every handle is gone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Moves `store` onto its own thread.
    pub fn spawn(mut store: Store) -> Writer {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("extrator-store".to_owned())
            .spawn(move || {
                for job in queue {
                    job(&mut store);
                }
            })
            .map(drop)
            .unwrap_or_else(|error| panic!("não foi possível criar a thread do banco de dados: {error}"));
        Writer { jobs }
    }

    /// Runs `work` on the store thread and returns its result. `None` only if the thread is gone
    /// (it panicked), which the caller treats as fatal.
    pub async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            let _ = reply.send(work(store));
        });
        self.jobs.send(job).ok()?;
        answer.await.ok()
    }
}
