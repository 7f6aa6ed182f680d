//! `extrator status`: health at a glance — is the daemon alive, how many items in each state,
//! failures by code in the last 24 h, the oldest pending item and the last success.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::{load_queue_config, open_store, print_json};
use crate::core::failure::Outcome;
use crate::core::text::ago;
use crate::io::store::{Access, DaemonRow, Snapshot, SourceRow};
use crate::view::local_time;

/// The `status` flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Opções")]
pub struct StatusArgs {
    /// Saída em JSON com nomes de campos estáveis
    #[arg(long)]
    pub json: bool,
}

/// The daemon's liveness as `status` judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Heartbeat recent.
    Alive,
    /// Stopped cleanly.
    Stopped,
    /// No heartbeat for longer than it should take: hung or killed.
    Silent,
    /// Never ran against this database.
    NeverStarted,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct StatusJson<'a> {
    daemon: Liveness,
    daemon_detail: Option<&'a DaemonRow>,
    counts: BTreeMap<&'static str, u64>,
    failures_24h: BTreeMap<&'a str, u64>,
    oldest_pending: Option<jiff::Timestamp>,
    last_success: Option<jiff::Timestamp>,
    /// The last run of each polled `[[source]]`.
    sources: &'a [SourceRow],
}

/// Runs `status`.
pub fn run(config_path: &Path, args: &StatusArgs) -> Outcome {
    let loaded = load_queue_config(config_path, true)?;
    let store = open_store(&loaded, Access::ReadOnly)?;
    let now = jiff::Timestamp::now();
    let day_ago = now.checked_sub(jiff::SignedDuration::from_hours(24)).unwrap_or(now);
    let snapshot = store.snapshot(day_ago)?;
    let liveness = liveness(snapshot.daemon.as_ref(), now, loaded.config.queue.poll_interval.get());
    let sources = store.source_rows()?;
    if args.json {
        return print_json(&StatusJson {
            daemon: liveness,
            daemon_detail: snapshot.daemon.as_ref(),
            counts: snapshot.counts.iter().map(|(state, count)| (state.as_str(), *count)).collect(),
            failures_24h: snapshot
                .failures_by_code
                .iter()
                .map(|(code, count)| (code.as_str(), *count))
                .collect(),
            oldest_pending: snapshot.oldest_pending,
            last_success: snapshot.last_success,
            sources: &sources,
        });
    }
    print!("{}", render(&snapshot, &sources, liveness, now));
    Ok(())
}

/// Judges liveness from the heartbeat: the daemon beats every poll interval, so three missed
/// beats (at least 30 s) mean it is not working.
pub fn liveness(daemon: Option<&DaemonRow>, now: jiff::Timestamp, poll_interval: Duration) -> Liveness {
    let Some(daemon) = daemon else { return Liveness::NeverStarted };
    if daemon.stopped_at.is_some() {
        return Liveness::Stopped;
    }
    let allowed = poll_interval.saturating_mul(3).max(Duration::from_secs(30));
    let silent_ms = now.as_millisecond().saturating_sub(daemon.heartbeat_at.as_millisecond());
    if u128::try_from(silent_ms).unwrap_or(0) > allowed.as_millis() {
        Liveness::Silent
    } else {
        Liveness::Alive
    }
}

/// The human view.
fn render(snapshot: &Snapshot, sources: &[SourceRow], liveness: Liveness, now: jiff::Timestamp) -> String {
    let daemon = match (liveness, &snapshot.daemon) {
        (Liveness::Alive, Some(daemon)) => format!(
            "ativo desde {} (pid {}, versão {}, sinal de vida {})",
            local_time(daemon.started_at),
            daemon.pid,
            daemon.version,
            ago(daemon.heartbeat_at, now)
        ),
        (Liveness::Stopped, Some(daemon)) => {
            format!("parado desde {}", local_time(daemon.stopped_at.unwrap_or(daemon.heartbeat_at)))
        }
        (Liveness::Silent, Some(daemon)) => format!(
            "SEM SINAL DE VIDA {} (pid {}): o serviço travou ou foi encerrado; veja systemctl status extrator",
            ago(daemon.heartbeat_at, now),
            daemon.pid
        ),
        _ => "nunca iniciado com este banco de dados".to_owned(),
    };
    let counts: Vec<String> =
        snapshot.counts.iter().map(|(state, count)| format!("{} {count}", state.label())).collect();
    let failures = if snapshot.failures_by_code.is_empty() {
        "nenhuma".to_owned()
    } else {
        snapshot
            .failures_by_code
            .iter()
            .map(|(code, count)| format!("{}: {count}", crate::core::codes::label(code)))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let moment = |at: Option<jiff::Timestamp>| {
        at.map_or_else(|| "—".to_owned(), |at| format!("{} ({})", local_time(at), ago(at, now)))
    };
    let mut table = crate::core::text::Table::new(&["Serviço:", &daemon]);
    if let (Liveness::Alive, Some(gate)) = (liveness, snapshot.daemon.as_ref().and_then(|daemon| daemon.gate))
    {
        table.row(vec!["Envio:".into(), crate::view::describe_gate(&gate, now)]);
    }
    if let Some(expires_at) = snapshot.daemon.as_ref().and_then(|daemon| daemon.certificate_expires_at) {
        let (expiry, _) = crate::io::api::tls::describe_expiry(expires_at, now);
        table.row(vec!["Certificado:".into(), format!("o certificado de cliente {expiry}")]);
    }
    table.row(vec!["Itens:".into(), counts.join(" · ")]);
    table.row(vec!["Falhas em 24h:".into(), failures]);
    table.row(vec!["Pendente mais antigo:".into(), moment(snapshot.oldest_pending)]);
    table.row(vec!["Último sucesso:".into(), moment(snapshot.last_success)]);
    for (index, source) in sources.iter().enumerate() {
        let heading = if index == 0 { "Fontes:" } else { "" };
        table.row(vec![heading.into(), describe_source(source, now)]);
    }
    table.render()
}

/// One source's last run, as `status` says it.
fn describe_source(source: &SourceRow, now: jiff::Timestamp) -> String {
    let last = &source.last;
    let name = crate::core::text::terminal_safe(&last.name);
    match &last.error {
        None => format!(
            "{name}: ok {} ({}, {}, {} ms)",
            ago(last.at, now),
            crate::core::text::count(last.rows, "linha", "linhas"),
            crate::core::text::count(last.new_items, "nova", "novas"),
            last.duration_ms
        ),
        Some(error) => format!(
            "{name}: FALHANDO ({}; última boa: {}): {}",
            crate::core::text::count(source.failures, "execução falhou", "execuções seguidas falharam"),
            source.last_ok_at.map_or_else(|| "nenhuma".to_owned(), local_time),
            crate::core::text::terminal_safe(error)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(heartbeat_secs_ago: i64, stopped: bool, now: jiff::Timestamp) -> DaemonRow {
        let beat = now.checked_sub(jiff::SignedDuration::from_secs(heartbeat_secs_ago)).unwrap();
        DaemonRow {
            pid: 7,
            version: "0".into(),
            started_at: beat,
            heartbeat_at: beat,
            stopped_at: stopped.then_some(beat),
            gate: None,
            certificate_expires_at: None,
        }
    }

    #[test]
    fn liveness_follows_the_heartbeat() {
        let now = jiff::Timestamp::now();
        let poll = Duration::from_secs(5);
        assert_eq!(liveness(None, now, poll), Liveness::NeverStarted);
        assert_eq!(liveness(Some(&daemon(10, false, now)), now, poll), Liveness::Alive);
        assert_eq!(liveness(Some(&daemon(31, false, now)), now, poll), Liveness::Silent);
        assert_eq!(liveness(Some(&daemon(31, true, now)), now, poll), Liveness::Stopped);
        assert_eq!(liveness(Some(&daemon(100, false, now)), now, Duration::from_secs(60)), Liveness::Alive);
    }
}
