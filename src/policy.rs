//! Delivery decisions, as plain functions of their inputs: how each code is retried, the retry
//! schedule, what an attempt does to its item, and the circuit breaker that keeps a down API from
//! being hammered or from burning every item's attempts (SPEC 4.2–4.4). No I/O, no clock: `now`
//! is always passed in.

use std::time::Duration;

use crate::classify::{Code, Kind, Outcome, Verdict};
use crate::item::State;

/// How long 02/03 pause sending before one probe checks whether the credentials work again.
pub const AUTH_PROBE_INTERVAL: Duration = Duration::from_secs(300);
/// Consecutive 04/99 answers, across items, that open the circuit.
pub const SOFT_FAILURES_TO_OPEN: u32 = 3;

/// How a code is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The endpoint is unreachable (01, 05, 06): not the item's fault; opens the circuit.
    Endpoint,
    /// The credentials are wrong (02, 03): pauses all sending until reload or a good probe.
    Credentials,
    /// The item is wrong (07): no retry.
    Never,
    /// The API asked to slow down (08): pauses all sending until `Retry-After`.
    RateLimit,
    /// Maybe transient (04, 99): retried on the item's schedule; three in a row open the circuit.
    Item,
}

/// The retry class of a catalog code.
pub fn retry_of(code: Code) -> Retry {
    match code {
        Code::ConnectionRefused | Code::UnknownHost | Code::Tls => Retry::Endpoint,
        Code::InvalidPassword | Code::UserNotFound => Retry::Credentials,
        Code::Rejected => Retry::Never,
        Code::RateLimited => Retry::RateLimit,
        Code::Timeout | Code::Generic => Retry::Item,
    }
}

/// The knobs the decisions read, from `[retry]` and `[api]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub async_poll_interval: Duration,
    pub async_max_wait: Duration,
}

impl Settings {
    /// The settings of a config.
    pub fn from_config(config: &crate::config::Config) -> Settings {
        Settings {
            max_attempts: config.retry.max_attempts,
            first_delay: config.retry.first_delay.get(),
            max_delay: config.retry.max_delay.get(),
            async_poll_interval: config.api.async_poll_interval.get(),
            async_max_wait: config.api.async_max_wait.get(),
        }
    }
}

/// The delay after the `failures`-th counted failure: `first_delay · 2^(failures-1)`, ±20 %
/// jitter from `seed` (so the same item and attempt always get the same delay), kept within
/// `first_delay ..= max_delay`.
pub fn retry_delay(failures: u32, seed: u64, settings: &Settings) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let base = settings.first_delay.saturating_mul(1 << exponent).min(settings.max_delay);
    // SplitMix64 of the seed: a pure, well-spread value in 0..1000.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let permille = 800 + (z % 401); // 0.8 ..= 1.2
    let jittered =
        Duration::try_from_secs_f64(base.as_secs_f64() * (permille as f64 / 1000.0)).unwrap_or(base);
    jittered.clamp(settings.first_delay, settings.max_delay.max(settings.first_delay))
}

/// The item's situation before the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemBefore<'a> {
    pub id: i64,
    /// Counted failures so far.
    pub attempts: u32,
    /// When the API first accepted it asynchronously, if it did.
    pub processing_since: Option<jiff::Timestamp>,
    /// The URL an asynchronous API said to poll, while it is being polled that way.
    pub poll_url: Option<&'a str>,
}

/// What an attempt does to its item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemAfter {
    pub state: State,
    /// Whether this attempt counts toward `max_attempts`.
    pub counted: bool,
    /// Counted failures after this attempt.
    pub attempts: u32,
    pub last_code: Option<Code>,
    pub next_at: jiff::Timestamp,
    pub processing_since: Option<jiff::Timestamp>,
    /// The URL to poll next, while the API processes it asynchronously (`async_poll = "location"`).
    pub poll_url: Option<String>,
    /// The verdict actually recorded (an async wait past `async_max_wait` becomes a 04).
    pub verdict: Verdict,
}

/// Decides what happens to an item after an attempt. A probe never counts toward the item's
/// attempts.
pub fn after_attempt(
    item: ItemBefore<'_>,
    verdict: &Verdict,
    probe: bool,
    now: jiff::Timestamp,
    settings: &Settings,
) -> ItemAfter {
    let mut verdict = verdict.clone();
    match verdict.outcome {
        Outcome::Success => {
            return ItemAfter {
                state: State::Done,
                counted: false,
                attempts: item.attempts,
                last_code: None,
                next_at: now,
                processing_since: None,
                poll_url: None,
                verdict,
            };
        }
        Outcome::Processing => {
            let since = item.processing_since.unwrap_or(now);
            let waited = Duration::from_millis(
                u64::try_from(now.as_millisecond() - since.as_millisecond()).unwrap_or(0),
            );
            if waited < settings.async_max_wait {
                return ItemAfter {
                    state: State::Processing,
                    counted: false,
                    attempts: item.attempts,
                    last_code: None,
                    next_at: add(now, settings.async_poll_interval),
                    processing_since: Some(since),
                    poll_url: verdict.poll_url.clone().or_else(|| item.poll_url.map(str::to_owned)),
                    verdict,
                };
            }
            verdict = Verdict {
                outcome: Outcome::Failure(Code::Timeout),
                kind: Kind::AsyncTimeout,
                message: Some(format!(
                    "a API aceitou o cancelamento mas não deu resposta final em {} (api.async_max_wait)",
                    crate::duration::format(settings.async_max_wait)
                )),
                ..verdict
            };
        }
        Outcome::Failure(_) => {}
    }
    let code = verdict.code().unwrap_or(Code::Generic);
    let async_timed_out = verdict.kind == Kind::AsyncTimeout;
    let keep_processing = if async_timed_out { None } else { item.processing_since };
    let waiting_state = if keep_processing.is_some() { State::Processing } else { State::Pending };
    // Polling a Location goes on from the same URL after a failed poll; a new start re-sends.
    let keep_poll = keep_processing.and(item.poll_url.map(str::to_owned));
    let not_counted = |next_at| ItemAfter {
        state: waiting_state,
        counted: false,
        attempts: item.attempts,
        last_code: Some(code),
        next_at,
        processing_since: keep_processing,
        poll_url: keep_poll.clone(),
        verdict: verdict.clone(),
    };
    match retry_of(code) {
        Retry::Endpoint | Retry::Credentials => not_counted(now),
        Retry::RateLimit => {
            not_counted(add(now, verdict.retry_after.unwrap_or(crate::classify::DEFAULT_RETRY_AFTER)))
        }
        Retry::Never => ItemAfter {
            state: State::Failed,
            counted: !probe,
            attempts: item.attempts + u32::from(!probe),
            last_code: Some(code),
            next_at: now,
            processing_since: None,
            poll_url: None,
            verdict,
        },
        Retry::Item if probe => not_counted(now),
        Retry::Item => {
            let attempts = item.attempts + 1;
            let exhausted = attempts >= settings.max_attempts;
            let seed = (item.id as u64).wrapping_mul(31).wrapping_add(u64::from(attempts));
            ItemAfter {
                state: if exhausted { State::Failed } else { waiting_state },
                counted: true,
                attempts,
                last_code: Some(code),
                next_at: if exhausted { now } else { add(now, retry_delay(attempts, seed, settings)) },
                processing_since: if exhausted { None } else { keep_processing },
                poll_url: if exhausted { None } else { keep_poll },
                verdict,
            }
        }
    }
}

/// Whether the dispatcher may send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Normal sending, up to the configured concurrency.
    Send,
    /// Exactly one probe request, now.
    Probe,
    /// Nothing until this moment (or a reload, for credentials).
    WaitUntil(jiff::Timestamp),
}

/// The circuit's state, as `status` and the systemd status line show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Sending normally.
    Closed,
    /// The endpoint is down (code); one probe at `next_probe_at`.
    Open { code: Code, next_probe_at: jiff::Timestamp },
    /// Credentials refused (02/03); a probe at `next_probe_at`, or a reload, resumes.
    Paused { code: Code, next_probe_at: jiff::Timestamp },
    /// The API asked to wait (08) until this moment.
    RateLimited { until: jiff::Timestamp },
}

/// The circuit breaker of SPEC 4.4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    pub gate: Gate,
    /// 04/99 answers in a row, across items.
    soft_failures: u32,
    /// Failed probes since the circuit opened, for the growing delay.
    failed_probes: u32,
    /// A probe is on the wire.
    probing: bool,
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit { gate: Gate::Closed, soft_failures: 0, failed_probes: 0, probing: false }
    }
}

impl Circuit {
    /// What the dispatcher may do at `now`.
    pub fn permit(&self, now: jiff::Timestamp) -> Permit {
        match self.gate {
            Gate::Closed => Permit::Send,
            Gate::RateLimited { until } if now >= until => Permit::Send,
            Gate::RateLimited { until } => Permit::WaitUntil(until),
            Gate::Open { next_probe_at, .. } | Gate::Paused { next_probe_at, .. } => {
                if self.probing {
                    // The probe's answer decides; until then nothing else goes out.
                    Permit::WaitUntil(jiff::Timestamp::MAX)
                } else if now >= next_probe_at {
                    Permit::Probe
                } else {
                    Permit::WaitUntil(next_probe_at)
                }
            }
        }
    }

    /// Records that the probe was sent.
    pub fn probe_sent(&mut self) {
        self.probing = true;
    }

    /// The probe ended without an answer (its task was lost): the next one may go.
    pub fn probe_lost(&mut self) {
        self.probing = false;
    }

    /// Applies one answer. `probe` says whether it was the probe.
    pub fn on_result(&mut self, verdict: &Verdict, probe: bool, now: jiff::Timestamp, settings: &Settings) {
        if probe {
            self.probing = false;
        }
        if verdict.kind == Kind::RequestMapping {
            // Nothing reached the API: its state is as unknown as before; the gate stands (an
            // open circuit probes again with the next item).
            return;
        }
        let code = match verdict.outcome {
            Outcome::Success | Outcome::Processing => None,
            Outcome::Failure(code) => Some(code),
        };
        let retry = code.map(retry_of);
        match (code, retry) {
            // The endpoint answered sensibly: it is up and we are authenticated.
            (None, _) | (Some(_), Some(Retry::Never)) => *self = Circuit::default(),
            (Some(code), Some(Retry::Endpoint)) => {
                let slow = code == Code::Tls;
                self.open(code, now, settings, probe, slow);
            }
            (Some(code), Some(Retry::Credentials)) => {
                self.gate = Gate::Paused { code, next_probe_at: add(now, AUTH_PROBE_INTERVAL) };
            }
            (Some(_), Some(Retry::RateLimit)) => {
                let until = add(now, verdict.retry_after.unwrap_or(crate::classify::DEFAULT_RETRY_AFTER));
                self.gate = Gate::RateLimited { until };
            }
            (Some(code), _) => {
                self.soft_failures += 1;
                let already_open = matches!(self.gate, Gate::Open { .. });
                if probe || (!already_open && self.soft_failures >= SOFT_FAILURES_TO_OPEN) {
                    self.open(code, now, settings, probe, false);
                }
            }
        }
    }

    /// A reload (new config) resumes a credentials pause at once; other states stand.
    pub fn on_reload(&mut self) {
        if matches!(self.gate, Gate::Paused { .. }) {
            *self = Circuit::default();
        }
    }

    /// Opens (or keeps open) the circuit, with a probe delay that grows with each failed probe.
    fn open(&mut self, code: Code, now: jiff::Timestamp, settings: &Settings, probe: bool, slow: bool) {
        if probe {
            self.failed_probes += 1;
        } else if matches!(self.gate, Gate::Open { .. }) {
            // Answers of requests sent before it opened: the schedule stands.
            return;
        }
        let exponent = self.failed_probes.min(30) + if slow { 2 } else { 0 };
        let delay = settings.first_delay.saturating_mul(1 << exponent.min(30)).min(settings.max_delay);
        self.gate = Gate::Open { code, next_probe_at: add(now, delay) };
    }
}

/// Spaces requests to at most `api.max_rate` per second: each takes the next slot, one interval
/// after the previous one, so no second ever sees more than the rate (plus the one at its edge).
/// Without a rate it never waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pacer {
    interval: Option<Duration>,
    /// The earliest moment the next request may go.
    next: Option<jiff::Timestamp>,
}

impl Pacer {
    /// A pacer for `rate` requests per second (already bounded by the config's check).
    pub fn new(rate: Option<f64>) -> Pacer {
        let interval = rate
            .filter(|rate| rate.is_finite() && *rate > 0.0)
            .map(|rate| Duration::from_secs_f64(1.0 / rate));
        Pacer { interval, next: None }
    }

    /// The same slot schedule under a new rate (a reload).
    pub fn with_rate(self, rate: Option<f64>) -> Pacer {
        Pacer { next: self.next, ..Pacer::new(rate) }
    }

    /// When the next request may go, if that is later than `now`.
    pub fn wait(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        self.interval?;
        self.next.filter(|next| *next > now)
    }

    /// How many requests may go at `now` (at most `wanted`).
    pub fn room(&self, now: jiff::Timestamp, wanted: usize) -> usize {
        match (self.interval, self.wait(now)) {
            (None, _) => wanted,
            (Some(_), Some(_)) => 0,
            (Some(_), None) => wanted.min(1),
        }
    }

    /// Records that a request went at `now`.
    pub fn sent(&mut self, now: jiff::Timestamp) {
        if let Some(interval) = self.interval {
            let from = self.next.filter(|next| *next > now).unwrap_or(now);
            self.next = Some(add(from, interval));
        }
    }
}

/// `now + delay`, saturating.
fn add(now: jiff::Timestamp, delay: Duration) -> jiff::Timestamp {
    now.saturating_add(jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests;
