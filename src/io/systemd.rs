//! What the daemon tells systemd (`Type=notify`): `READY=1`, a pt-BR `STATUS=` line, `WATCHDOG=1`
//! from the working loop, `RELOADING=1` with `MONOTONIC_USEC` and `STOPPING=1`. Every call is a
//! no-op when `NOTIFY_SOCKET` is not set (a terminal, a test).

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The daemon's side of the notify protocol.
pub struct Notifier {
    /// Half the watchdog interval, when systemd asked for pings.
    watchdog_every: Option<Duration>,
    last_ping: Instant,
    last_status: String,
}

impl Notifier {
    /// Reads `WATCHDOG_USEC` once.
    pub fn new() -> Notifier {
        Notifier {
            watchdog_every: sd_notify::watchdog_enabled().map(|interval| interval / 2),
            last_ping: Instant::now(),
            last_status: String::new(),
        }
    }

    /// How often the working loop must wake to ping, if at all.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog_every
    }

    /// Config, database and dispatcher are up.
    pub fn ready(&mut self, status: &str) {
        self.last_status = status.to_owned();
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Replaces the status line when it changed.
    pub fn status(&mut self, status: &str) {
        if status != self.last_status {
            self.last_status = status.to_owned();
            send(&[NotifyState::Status(status)]);
        }
    }

    /// Pings the watchdog if half its interval has passed. Called only from the working loop, so
    /// a hung loop stops the pings and systemd kills and restarts the daemon.
    pub fn watchdog(&mut self) {
        if let Some(every) = self.watchdog_every
            && self.last_ping.elapsed() >= every
        {
            self.last_ping = Instant::now();
            send(&[NotifyState::Watchdog]);
        }
    }

    /// A reload begins (`READY=1` follows when it is over, applied or refused).
    pub fn reloading(&mut self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    /// The daemon is stopping.
    pub fn stopping(&mut self) {
        send(&[NotifyState::Stopping, NotifyState::Status("parando: terminando os envios em andamento")]);
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier::new()
    }
}

/// Sends, logging (never failing) when the socket refuses.
fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::debug!("sd_notify falhou: {error}");
    }
}
