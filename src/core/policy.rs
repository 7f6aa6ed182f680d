//! Delivery decisions, as plain functions of their inputs: how each code is retried, the retry
//! schedule, what an attempt does to its item, and the circuit breaker that keeps a down API from
//! being hammered or from burning every item's attempts (SPEC 4.2–4.4). No I/O, no clock: `now`
//! is always passed in.

use std::time::Duration;

use crate::core::classify::{Code, Kind, Outcome, Verdict};
use crate::core::item::State;

/// How long 02/03 pause sending before one probe checks whether the credentials work again.
pub const AUTH_PROBE_INTERVAL: Duration = Duration::from_secs(300);

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
    /// Maybe transient (04, 99): retried on the item's schedule; open the circuit only when the
    /// API fails this way for most of the recent distinct items (`Circuit::judge`).
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
    /// The delay the server asked for (`Retry-After`), when it was longer than `retry.max_delay`
    /// and was cut to it.
    pub capped_delay: Option<Duration>,
}

/// The delay a server asked for (08's `Retry-After`, or the default), capped at `retry.max_delay`:
/// one answer must never stop sending for longer than the schedule's own longest wait. The
/// second value is what was asked, when it was cut.
pub fn server_delay(verdict: &Verdict, settings: &Settings) -> (Duration, Option<Duration>) {
    let asked = verdict.retry_after.unwrap_or(crate::core::classify::DEFAULT_RETRY_AFTER);
    let cap = settings.max_delay.max(settings.first_delay);
    if asked > cap { (cap, Some(asked)) } else { (asked, None) }
}

/// Decides what happens to an item after an attempt. `counts` is the circuit's judgement on a
/// 04/99 (`Circuit::judge`): whether it is the item's failure, counted toward `max_attempts`, or
/// the API's (a probe, an outage), not counted. An asynchronous item past `async_max_wait` ends
/// its wait with a counted 04 whatever its check answered, unless the answer was final.
pub fn after_attempt(
    item: ItemBefore<'_>,
    verdict: &Verdict,
    counts: bool,
    now: jiff::Timestamp,
    settings: &Settings,
) -> ItemAfter {
    let mut verdict = verdict.clone();
    let waited = item.processing_since.map(|since| {
        Duration::from_millis(u64::try_from(now.as_millisecond() - since.as_millisecond()).unwrap_or(0))
    });
    let undecided = match verdict.outcome {
        Outcome::Success => false,
        Outcome::Processing => true,
        Outcome::Failure(code) => retry_of(code) == Retry::Item,
    };
    let mut counts = counts;
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
                capped_delay: None,
            };
        }
        _ if undecided && waited.is_some_and(|waited| waited >= settings.async_max_wait) => {
            verdict = async_timeout(verdict, settings);
            counts = true;
        }
        Outcome::Processing => {
            let since = item.processing_since.unwrap_or(now);
            return ItemAfter {
                state: State::Processing,
                counted: false,
                attempts: item.attempts,
                last_code: None,
                next_at: add(now, settings.async_poll_interval),
                processing_since: Some(since),
                poll_url: verdict.poll_url.clone().or_else(|| item.poll_url.map(str::to_owned)),
                verdict,
                capped_delay: None,
            };
        }
        Outcome::Failure(_) => {}
    }
    after_failure(item, verdict, counts, now, settings)
}

/// An accepted item that got no final answer within `api.async_max_wait`: a 04 `async_timeout`,
/// saying what its last check got.
fn async_timeout(verdict: Verdict, settings: &Settings) -> Verdict {
    let checked = match verdict.outcome {
        Outcome::Failure(code) => format!(" (a última consulta falhou com o erro {})", code.as_str()),
        _ => String::new(),
    };
    Verdict {
        outcome: Outcome::Failure(Code::Timeout),
        kind: Kind::AsyncTimeout,
        message: Some(format!(
            "a API aceitou o cancelamento mas não deu resposta final em {} (api.async_max_wait){checked}",
            crate::core::duration::format(settings.async_max_wait)
        )),
        ..verdict
    }
}

/// A failed attempt: by the code's retry class, waiting uncounted (endpoint, credentials, rate
/// limit), failed at once (07), or counted toward `retry.max_attempts` with the next delay.
fn after_failure(
    item: ItemBefore<'_>,
    verdict: Verdict,
    counts: bool,
    now: jiff::Timestamp,
    settings: &Settings,
) -> ItemAfter {
    let code = verdict.code().unwrap_or(Code::Generic);
    let async_timed_out = verdict.kind == Kind::AsyncTimeout;
    let keep_processing = if async_timed_out { None } else { item.processing_since };
    let waiting_state = if keep_processing.is_some() { State::Processing } else { State::Pending };
    // Polling a Location goes on from the same URL after a failed poll; a new start re-sends.
    let keep_poll = keep_processing.and(item.poll_url.map(str::to_owned));
    let not_counted = |next_at, capped_delay| ItemAfter {
        state: waiting_state,
        counted: false,
        attempts: item.attempts,
        last_code: Some(code),
        next_at,
        processing_since: keep_processing,
        poll_url: keep_poll.clone(),
        verdict: verdict.clone(),
        capped_delay,
    };
    match retry_of(code) {
        Retry::Endpoint | Retry::Credentials => not_counted(now, None),
        Retry::RateLimit => {
            let (delay, capped) = server_delay(&verdict, settings);
            not_counted(add(now, delay), capped)
        }
        Retry::Never => ItemAfter {
            state: State::Failed,
            counted: true,
            attempts: item.attempts + 1,
            last_code: Some(code),
            next_at: now,
            processing_since: None,
            poll_url: None,
            verdict,
            capped_delay: None,
        },
        Retry::Item if !counts => not_counted(now, None),
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
                capped_delay: None,
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
    /// The endpoint is down (code); one probe at `next_probe_at` (or, once that has passed, with
    /// the next item due).
    Open { code: Code, next_probe_at: jiff::Timestamp },
    /// Credentials refused (02/03); a probe at `next_probe_at`, or a reload, resumes.
    Paused { code: Code, next_probe_at: jiff::Timestamp },
    /// The API asked to wait (08) until this moment.
    RateLimited { until: jiff::Timestamp },
}

impl Gate {
    /// The code that put the gate where it is.
    pub fn code(&self) -> Option<Code> {
        match *self {
            Gate::Closed => None,
            Gate::Open { code, .. } | Gate::Paused { code, .. } => Some(code),
            Gate::RateLimited { .. } => Some(Code::RateLimited),
        }
    }

    /// Whether two gates are the same situation for a human: the same state and code. A probe
    /// that fails again only moves `next_probe_at`, which is not news for the journal.
    pub fn same_situation(&self, other: &Gate) -> bool {
        match (self, other) {
            (Gate::Closed, Gate::Closed) | (Gate::RateLimited { .. }, Gate::RateLimited { .. }) => true,
            (Gate::Open { code: a, .. }, Gate::Open { code: b, .. })
            | (Gate::Paused { code: a, .. }, Gate::Paused { code: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// How many distinct items' latest answers the circuit judges soft failures (04/99) on.
pub const WINDOW: usize = 20;
/// Soft failures of distinct items in the window that can open the circuit: at least this many…
pub const SOFT_FAILURES_TO_OPEN: usize = 3;
/// …and at least this share of the window's items, in percent (so a few flaky orders retried
/// among many that succeed never open it, while an API failing for everyone does).
pub const SOFT_SHARE_TO_OPEN: usize = 75;
/// Items remembered as probed since the circuit opened (the next probe goes to another).
pub const PROBED_REMEMBERED: usize = 64;

/// The latest answer of one item, as the circuit's window keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answered {
    item: i64,
    /// A 04/99, counted toward the item's attempts when it came.
    soft: bool,
    /// When its request started (names the attempt record, to forgive it).
    started_at: jiff::Timestamp,
}

/// One answer, as the circuit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    pub item: i64,
    /// When its request started (names the attempt record, to forgive it).
    pub started_at: jiff::Timestamp,
    /// It was the probe.
    pub probe: bool,
    /// The item's previous attempt failed with 04/99: it is known to fail, so another 04/99 from
    /// it says nothing about the API (a retry of a flaky order is expected to fail more often).
    pub known_to_fail: bool,
}

/// The circuit's judgement on one answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Judged {
    /// Whether a 04/99 in this answer is the item's own failure, counted toward `max_attempts`.
    pub counts: bool,
    /// Attempts (item, start) whose 04/99 was counted before the circuit saw it was the API's:
    /// this answer opened the circuit, so they are not counted after all.
    pub forgive: Vec<(i64, jiff::Timestamp)>,
}

/// The circuit breaker of SPEC 4.4. It sees items: 04/99 open it only when the API fails for
/// several distinct items and most of the recent ones (`WINDOW`), never for one order retried
/// nor for a run of retries of orders already known to fail;
/// a probe goes to an item not probed since it opened; a probe that fails again with the same
/// soft code on the same item as the probe before it (nothing else was due) counts, so an order
/// the API never answers reaches `max_attempts` instead of holding the circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    pub gate: Gate,
    /// The latest answer of each of the last `WINDOW` distinct items, oldest first.
    recent: std::collections::VecDeque<Answered>,
    /// Failed probes since the circuit opened, for the growing delay.
    failed_probes: u32,
    /// The item whose probe is on the wire.
    probing: Option<i64>,
    /// Items probed since the circuit opened, oldest first (at most `PROBED_REMEMBERED`).
    probed: Vec<i64>,
    /// The last probe's item and the soft code it failed with.
    last_probe: Option<(i64, Code)>,
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit {
            gate: Gate::Closed,
            recent: std::collections::VecDeque::with_capacity(WINDOW + 1),
            failed_probes: 0,
            probing: None,
            probed: Vec::new(),
            last_probe: None,
        }
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
                if self.probing.is_some() {
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

    /// The items a probe should not go to: those probed since the circuit opened.
    pub fn probed(&self) -> &[i64] {
        &self.probed
    }

    /// Records that `item` was sent as the probe.
    pub fn probe_sent(&mut self, item: i64) {
        self.probing = Some(item);
        self.probed.retain(|probed| *probed != item);
        self.probed.push(item);
        if self.probed.len() > PROBED_REMEMBERED {
            self.probed.remove(0);
        }
    }

    /// The probe ended without an answer (its task was lost): the next one may go.
    pub fn probe_lost(&mut self) {
        self.probing = None;
    }

    /// Judges one answer: the gate changes as SPEC 4.4 says, and the answer says whether a 04/99
    /// in it counts toward the item's attempts.
    pub fn judge(
        &mut self,
        heard: Heard,
        verdict: &Verdict,
        now: jiff::Timestamp,
        settings: &Settings,
    ) -> Judged {
        let Heard { item, started_at, probe, known_to_fail } = heard;
        if probe {
            self.probing = None;
        }
        if verdict.kind == Kind::RequestMapping {
            // Nothing reached the API: its state is as unknown as before; the gate stands (an
            // open circuit probes again with the next item).
            return Judged { counts: true, forgive: Vec::new() };
        }
        let Some(code) = verdict.code() else {
            self.answered_sensibly(item, started_at);
            return Judged { counts: true, forgive: Vec::new() };
        };
        match retry_of(code) {
            Retry::Never => {
                self.answered_sensibly(item, started_at);
                Judged { counts: true, forgive: Vec::new() }
            }
            Retry::Endpoint => {
                self.open(code, now, settings, probe, code == Code::Tls);
                Judged { counts: false, forgive: Vec::new() }
            }
            Retry::Credentials => {
                self.gate = Gate::Paused { code, next_probe_at: add(now, AUTH_PROBE_INTERVAL) };
                Judged { counts: false, forgive: Vec::new() }
            }
            Retry::RateLimit => {
                let until = add(now, server_delay(verdict, settings).0);
                self.gate = Gate::RateLimited { until };
                Judged { counts: false, forgive: Vec::new() }
            }
            // The token endpoint failing (5xx, no answer) is not the item's: it is an endpoint
            // down, as a refused connection is.
            Retry::Item if verdict.kind.is_token() => {
                self.open(code, now, settings, probe, false);
                Judged { counts: false, forgive: Vec::new() }
            }
            Retry::Item if probe => {
                let again = self.last_probe == Some((item, code));
                self.last_probe = Some((item, code));
                self.open(code, now, settings, true, false);
                Judged { counts: again, forgive: Vec::new() }
            }
            // An answer to a request sent before the circuit opened: part of the outage.
            Retry::Item if matches!(self.gate, Gate::Open { .. }) => {
                Judged { counts: false, forgive: Vec::new() }
            }
            // An order that failed this way before failing again: its own business.
            Retry::Item if known_to_fail => Judged { counts: true, forgive: Vec::new() },
            Retry::Item => {
                self.remember(Answered { item, soft: true, started_at });
                let soft = self.recent.iter().filter(|answered| answered.soft).count();
                let failing =
                    soft >= SOFT_FAILURES_TO_OPEN && soft * 100 >= SOFT_SHARE_TO_OPEN * self.recent.len();
                if !failing || self.gate != Gate::Closed {
                    return Judged { counts: true, forgive: Vec::new() };
                }
                // The API fails for most items: the soft failures that led here were its, too.
                let forgive = self
                    .recent
                    .iter()
                    .filter(|answered| answered.soft && answered.item != item)
                    .map(|answered| (answered.item, answered.started_at))
                    .collect();
                self.open(code, now, settings, false, false);
                Judged { counts: false, forgive }
            }
        }
    }

    /// The API answered (success, processing, or a refusal of the item): it is up and we are
    /// authenticated. Closes an open or paused circuit; a rate limit stands until its time.
    fn answered_sensibly(&mut self, item: i64, started_at: jiff::Timestamp) {
        match self.gate {
            Gate::Closed | Gate::RateLimited { .. } => {}
            Gate::Open { .. } | Gate::Paused { .. } => {
                let probing = self.probing;
                *self = Circuit { probing, ..Circuit::default() };
            }
        }
        self.remember(Answered { item, soft: false, started_at });
    }

    /// Puts an item's latest answer in the window, replacing its earlier one.
    fn remember(&mut self, answered: Answered) {
        self.recent.retain(|earlier| earlier.item != answered.item);
        self.recent.push_back(answered);
        if self.recent.len() > WINDOW {
            self.recent.pop_front();
        }
    }

    /// A reload (new config) resumes a credentials pause at once; other states stand.
    pub fn on_reload(&mut self) {
        if matches!(self.gate, Gate::Paused { .. }) {
            let probing = self.probing;
            *self = Circuit { probing, ..Circuit::default() };
        }
    }

    /// Opens (or keeps open) the circuit, with a probe delay that grows with each failed probe:
    /// `first_delay · 2^failed probes` (four times that for TLS), at most `retry.max_delay`.
    fn open(&mut self, code: Code, now: jiff::Timestamp, settings: &Settings, probe: bool, slow: bool) {
        let open = matches!(self.gate, Gate::Open { .. });
        if probe {
            self.failed_probes = self.failed_probes.saturating_add(1);
        } else if open {
            // Answers of requests sent before it opened: the schedule stands.
            return;
        } else {
            // A new outage: every item may be probed again.
            self.failed_probes = 0;
            self.probed.clear();
            self.last_probe = None;
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
