//! The daemon's metrics, in the Prometheus text format (`prometheus-client`), for the monitoring
//! people already run: Prometheus, Grafana Alloy, Zabbix (HTTP agent + Prometheus preprocessing).
//!
//! Counters live in the process (they start at 0 with it, as Prometheus expects; `rate()` and
//! `increase()` handle the restart): attempts by outcome and code, give-ups by code, spool files
//! by result, database errors, reloads. Gauges the daemon knows (the circuit, the last success)
//! are set when they change; the queue's gauges (items by state, the oldest pending item's age)
//! are read from the database at each scrape (`web.rs`), so they are what the database holds.
//!
//! No label ever carries an order number, a message or a secret: label values are closed sets
//! (outcomes, codes, states, spool results) and the version.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::core::classify::{Outcome, Verdict};
use crate::core::codes::{CATALOG, Code};
use crate::core::policy::Gate;
use crate::io::store::QueueFigures;

/// A metric's labels: fixed names, values from closed sets.
type Labels = Vec<(&'static str, &'static str)>;

/// The upper bounds of the attempt-duration histogram, in seconds: a fast API answers in
/// milliseconds, a timeout is up to `api.request_timeout` (30 s by default).
const DURATION_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// The circuit's states as the `state` label says them.
const GATE_STATES: [&str; 4] = ["closed", "open", "paused", "rate_limited"];

/// The spool import's results as the `result` label says them.
const SPOOL_RESULTS: [&str; 4] = ["imported", "rejected", "refused", "unreadable"];

/// Every metric of the daemon.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    attempts: Family<Labels, Counter>,
    attempt_duration: Histogram,
    gave_up: Family<Labels, Counter>,
    items: Family<Labels, Gauge>,
    oldest_pending: Family<Labels, Gauge<f64, AtomicU64>>,
    circuit_state: Family<Labels, Gauge>,
    circuit_code: Family<Labels, Gauge>,
    last_success: Gauge<f64, AtomicU64>,
    certificate_expiry: Gauge<f64, AtomicU64>,
    spool_files: Family<Labels, Counter>,
    database_errors: Counter,
    reloads: Family<Labels, Counter>,
    source_runs: Family<Vec<(&'static str, String)>, Counter>,
    source_success: Family<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered, every known label set at zero (so a first failure is an
    /// increase, not a new series), the circuit closed.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("extrator");
        let attempts = Family::<Labels, Counter>::default();
        registry.register(
            "attempts",
            "Tentativas de envio à API, por resultado (success, processing, failure) e código de erro",
            attempts.clone(),
        );
        let attempt_duration = Histogram::new(DURATION_BUCKETS);
        registry.register_with_unit(
            "attempt_duration",
            "Duração de cada tentativa de envio, do início da conexão ao fim da resposta",
            Unit::Seconds,
            attempt_duration.clone(),
        );
        let gave_up = Family::<Labels, Counter>::default();
        registry.register(
            "items_gave_up",
            "Itens que foram para failed (a API recusou, 07, ou acabaram as tentativas), por código",
            gave_up.clone(),
        );
        let items = Family::<Labels, Gauge>::default();
        registry.register("items", "Itens na fila por estado, lidos do banco de dados", items.clone());
        let oldest_pending = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "oldest_pending_age",
            "Há quanto tempo o item pendente mais antigo entrou na fila (0 sem pendentes)",
            Unit::Seconds,
            oldest_pending.clone(),
        );
        let circuit_state = Family::<Labels, Gauge>::default();
        registry.register(
            "circuit_state",
            "Estado do envio: 1 no estado atual (closed, open, paused, rate_limited), 0 nos outros",
            circuit_state.clone(),
        );
        let circuit_code = Family::<Labels, Gauge>::default();
        registry.register(
            "circuit_code",
            "1 no código de erro que suspendeu o envio (circuito aberto, pausa, espera), 0 nos outros",
            circuit_code.clone(),
        );
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "last_success_timestamp",
            "Quando começou o último envio com sucesso, em segundos Unix (0 se nenhum ainda)",
            Unit::Seconds,
            last_success.clone(),
        );
        let certificate_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "client_certificate_expiry_timestamp",
            "Quando vence o certificado de cliente (api.client_certificate), em segundos Unix (0 sem certificado)",
            Unit::Seconds,
            certificate_expiry.clone(),
        );
        let spool_files = Family::<Labels, Counter>::default();
        registry.register(
            "spool_files",
            "Arquivos do spool por resultado (imported, rejected, refused, unreadable)",
            spool_files.clone(),
        );
        let database_errors = Counter::default();
        registry.register(
            "database_errors",
            "Falhas de leitura ou gravação no banco de dados da fila",
            database_errors.clone(),
        );
        let reloads = Family::<Labels, Counter>::default();
        registry.register(
            "config_reloads",
            "Recargas da configuração (systemctl reload), por resultado (applied, refused)",
            reloads.clone(),
        );
        let source_runs = Family::<Vec<(&'static str, String)>, Counter>::default();
        registry.register(
            "source_runs",
            "Execuções de cada fonte ([[source]]), por resultado (ok ou o motivo da falha)",
            source_runs.clone(),
        );
        let source_success = Family::<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "source_last_success_timestamp",
            "Quando terminou a última execução boa de cada fonte, em segundos Unix",
            Unit::Seconds,
            source_success.clone(),
        );
        let build_info = Family::<Labels, Gauge>::default();
        build_info.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION"))]).set(1);
        registry.register("build_info", "A versão do extrator em execução (valor sempre 1)", build_info);

        for outcome in ["success", "processing"] {
            let _ = attempts.get_or_create(&vec![("outcome", outcome), ("code", "")]);
        }
        for info in &CATALOG {
            let code = info.code.as_str();
            let _ = attempts.get_or_create(&vec![("outcome", "failure"), ("code", code)]);
            let _ = gave_up.get_or_create(&vec![("code", code)]);
        }
        for result in SPOOL_RESULTS {
            let _ = spool_files.get_or_create(&vec![("result", result)]);
        }
        for result in ["applied", "refused"] {
            let _ = reloads.get_or_create(&vec![("result", result)]);
        }
        let metrics = Metrics {
            registry,
            attempts,
            attempt_duration,
            gave_up,
            items,
            oldest_pending,
            circuit_state,
            circuit_code,
            last_success,
            certificate_expiry,
            spool_files,
            database_errors,
            reloads,
            source_runs,
            source_success,
        };
        metrics.gate(&Gate::Closed);
        metrics
    }

    /// An attempt ended with this verdict, after `duration`; `gave_up` when its item went to
    /// `failed`.
    pub fn attempt(&self, verdict: &Verdict, started_at: jiff::Timestamp, duration: Duration, gave_up: bool) {
        let (outcome, code) = match verdict.outcome {
            Outcome::Success => ("success", ""),
            Outcome::Processing => ("processing", ""),
            Outcome::Failure(code) => ("failure", code.as_str()),
        };
        self.attempts.get_or_create(&vec![("outcome", outcome), ("code", code)]).inc();
        self.attempt_duration.observe(duration.as_secs_f64());
        if gave_up && let Some(code) = verdict.code() {
            self.gave_up.get_or_create(&vec![("code", code.as_str())]).inc();
        }
        if verdict.outcome == Outcome::Success {
            self.set_last_success(Some(started_at));
        }
    }

    /// The circuit is now `gate`.
    pub fn gate(&self, gate: &Gate) {
        let (state, code) = match *gate {
            Gate::Closed => ("closed", None),
            Gate::Open { code, .. } => ("open", Some(code)),
            Gate::Paused { code, .. } => ("paused", Some(code)),
            Gate::RateLimited { .. } => ("rate_limited", Some(Code::RateLimited)),
        };
        for known in GATE_STATES {
            self.circuit_state.get_or_create(&vec![("state", known)]).set(i64::from(known == state));
        }
        for info in &CATALOG {
            let value = i64::from(code == Some(info.code));
            self.circuit_code.get_or_create(&vec![("code", info.code.as_str())]).set(value);
        }
    }

    /// When the last successful attempt started (the database's word at each tick).
    pub fn set_last_success(&self, at: Option<jiff::Timestamp>) {
        let seconds = at.map_or(0.0, |at| at.as_millisecond() as f64 / 1_000.0);
        if seconds >= self.last_success.get() {
            self.last_success.set(seconds);
        }
    }

    /// The client certificate in use (at start and after a reload), if any.
    pub fn set_certificate(&self, expires_at: Option<jiff::Timestamp>) {
        self.certificate_expiry.set(expires_at.map_or(0.0, |at| at.as_second() as f64));
    }

    /// A pass over the spool ended.
    pub fn spool(&self, report: &crate::io::spool::Report) {
        for (result, files) in [
            ("imported", report.imported.len()),
            ("rejected", report.rejected.len()),
            ("refused", report.refused.len()),
            ("unreadable", report.unreadable.len()),
        ] {
            self.spool_files.get_or_create(&vec![("result", result)]).inc_by(files as u64);
        }
    }

    /// A read or write of the database failed.
    pub fn database_error(&self) {
        self.database_errors.inc();
    }

    /// A reload was applied or refused.
    pub fn reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.reloads.get_or_create(&vec![("result", result)]).inc();
    }

    /// A source's run ended: `failure` is its kind (`RunError::kind`), `None` when it worked.
    pub fn source_run(&self, source: &str, failure: Option<&'static str>, at: jiff::Timestamp) {
        let result = failure.unwrap_or("ok");
        self.source_runs
            .get_or_create(&vec![("source", source.to_owned()), ("result", result.to_owned())])
            .inc();
        if failure.is_none() {
            let seconds = at.as_millisecond() as f64 / 1_000.0;
            self.source_success.get_or_create(&vec![("source", source.to_owned())]).set(seconds);
        }
    }

    /// What the queue holds now; `None` when the database could not be read (the queue's
    /// gauges are then left out of the page rather than shown stale).
    pub fn queue(&self, figures: Option<&QueueFigures>, now: jiff::Timestamp) {
        let Some(figures) = figures else {
            self.items.clear();
            self.oldest_pending.clear();
            return;
        };
        for (state, count) in &figures.counts {
            self.items
                .get_or_create(&vec![("state", state.as_str())])
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        let age = figures.oldest_pending.map_or(0.0, |at| {
            (now.as_millisecond().saturating_sub(at.as_millisecond())).max(0) as f64 / 1_000.0
        });
        self.oldest_pending.get_or_create(&Vec::new()).set(age);
    }

    /// The page, in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut page = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut page, &self.registry);
        page
    }
}

/// The `Content-Type` of the page.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::classify::Kind;
    use crate::core::item::State;

    fn verdict(outcome: Outcome) -> Verdict {
        Verdict {
            outcome,
            kind: Kind::Http(200),
            http_status: Some(200),
            message: Some("pedido 4711 já faturado".to_owned()),
            retry_after: None,
            receipt: None,
            poll_url: None,
        }
    }

    /// The value of the line that starts with `series ` on the page.
    fn value(page: &str, series: &str) -> Option<f64> {
        page.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn attempts_count_by_outcome_and_code_and_give_ups_by_code() {
        let metrics = Metrics::new();
        let now = jiff::Timestamp::from_second(1_800_000_000).expect("time");
        metrics.attempt(&verdict(Outcome::Success), now, Duration::from_millis(20), false);
        metrics.attempt(&verdict(Outcome::Failure(Code::Timeout)), now, Duration::from_secs(1), false);
        metrics.attempt(&verdict(Outcome::Failure(Code::Timeout)), now, Duration::from_secs(1), true);
        let page = metrics.encode();
        assert_eq!(
            value(&page, r#"extrator_attempts_total{outcome="failure",code="04"}"#),
            Some(2.0),
            "{page}"
        );
        assert_eq!(value(&page, r#"extrator_attempts_total{outcome="success",code=""}"#), Some(1.0));
        assert_eq!(value(&page, r#"extrator_attempts_total{outcome="failure",code="99"}"#), Some(0.0));
        assert_eq!(value(&page, r#"extrator_items_gave_up_total{code="04"}"#), Some(1.0));
        assert_eq!(value(&page, "extrator_attempt_duration_seconds_count"), Some(3.0));
        assert_eq!(value(&page, r#"extrator_attempt_duration_seconds_bucket{le="0.025"}"#), Some(1.0));
        assert_eq!(value(&page, "extrator_last_success_timestamp_seconds"), Some(1_800_000_000.0));
        // The API's message and the order number never reach the page.
        assert!(!page.contains("4711") && !page.contains("faturado"));
        assert!(page.contains(r#"extrator_build_info{version=""#));
    }

    #[test]
    fn the_circuit_is_one_state_and_one_code_at_a_time() {
        let metrics = Metrics::new();
        let page = metrics.encode();
        assert_eq!(value(&page, r#"extrator_circuit_state{state="closed"}"#), Some(1.0));
        let at = jiff::Timestamp::UNIX_EPOCH;
        metrics.gate(&Gate::Paused { code: Code::InvalidPassword, next_probe_at: at });
        let page = metrics.encode();
        assert_eq!(value(&page, r#"extrator_circuit_state{state="closed"}"#), Some(0.0));
        assert_eq!(value(&page, r#"extrator_circuit_state{state="paused"}"#), Some(1.0));
        assert_eq!(value(&page, r#"extrator_circuit_code{code="02"}"#), Some(1.0));
        metrics.gate(&Gate::RateLimited { until: at });
        let page = metrics.encode();
        assert_eq!(value(&page, r#"extrator_circuit_code{code="02"}"#), Some(0.0));
        assert_eq!(value(&page, r#"extrator_circuit_code{code="08"}"#), Some(1.0));
    }

    #[test]
    fn queue_gauges_are_left_out_when_the_database_cannot_be_read() {
        let metrics = Metrics::new();
        let queued = jiff::Timestamp::from_second(1_000).expect("time");
        let figures = QueueFigures {
            counts: State::ALL.iter().map(|state| (*state, 3)).collect(),
            oldest_pending: Some(queued),
        };
        metrics.queue(Some(&figures), queued.checked_add(jiff::SignedDuration::from_secs(90)).expect("time"));
        let page = metrics.encode();
        assert_eq!(value(&page, r#"extrator_items{state="failed"}"#), Some(3.0), "{page}");
        assert_eq!(value(&page, "extrator_oldest_pending_age_seconds"), Some(90.0));
        metrics.queue(None, queued);
        let page = metrics.encode();
        assert!(!page.contains("extrator_items{") && !page.contains("extrator_oldest_pending_age_seconds "));
    }
}
