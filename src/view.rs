//! The read model (`core::item::Item`, `Attempt`) in pt-BR, as both `extrator show` and the
//! status page show it: one list of labelled fields, one word per attempt result. Not in `core`
//! because it reads the server's time zone (`text::local_time`); not in `cli` or `web` because
//! both use it.

use crate::core::codes::Code;
use crate::core::item::{Attempt, AttemptOutcome, Item};
use crate::core::policy::Gate;
use crate::core::text::terminal_safe;

/// A timestamp in the server's local time zone, as Brazilians write it: `22/11/2026 14:03:05`.
pub fn local_time(at: jiff::Timestamp) -> String {
    at.to_zoned(jiff::tz::TimeZone::system()).strftime("%d/%m/%Y %H:%M:%S").to_string()
}

/// The item's fields as `show` and the status page show them: (label, value), text from the ERP
/// or the API escaped for a terminal (it may hold escapes).
pub fn fields(item: &Item) -> Vec<(&'static str, String)> {
    let safe = |value: &str| terminal_safe(value).into_owned();
    let optional = |value: Option<&str>| value.map_or_else(|| "—".to_owned(), safe);
    let mut rows: Vec<(&'static str, String)> = vec![
        ("Pedido:", safe(&item.order)),
        ("Filial:", safe(&item.branch)),
        ("Motivo:", safe(&item.reason)),
        // As every other date here: local time, dd/mm/aaaa (the text kept when it is not RFC 3339).
        (
            "Cancelado em:",
            crate::core::item::parse_rfc3339(&item.cancelled_at)
                .map_or_else(|_| safe(&item.cancelled_at), local_time),
        ),
        ("Cliente:", optional(item.customer.as_deref())),
        (
            "Extra:",
            item.extra.as_ref().map_or_else(
                || "—".to_owned(),
                |extra| safe(&serde_json::Value::Object(extra.clone()).to_string()),
            ),
        ),
        ("Estado:", format!("{} ({})", item.state.label(), item.state)),
        ("Envios:", item.sent.to_string()),
        ("Falhas que contam:", format!("{} (para retry.max_attempts; zeradas pelo retry)", item.attempts)),
        ("Último código:", item.last_code.map_or_else(|| "—".to_owned(), |code| code.label())),
        ("Última mensagem:", optional(item.last_message.as_deref())),
        ("Próxima tentativa:", item.next_attempt_at.map_or_else(|| "—".to_owned(), local_time)),
        ("Criado em:", local_time(item.created_at)),
        ("Atualizado em:", local_time(item.updated_at)),
        ("Protocolo da API:", optional(item.receipt.as_deref())),
        ("Origem:", safe(&item.source.as_text())),
        ("Idempotency-Key:", safe(&item.idempotency_key)),
    ];
    if let Some(url) = &item.poll_url {
        rows.push(("Consulta assíncrona:", format!("GET {}", safe(url))));
    }
    rows
}

/// An attempt's result in pt-BR.
pub fn outcome_label(attempt: &Attempt) -> &'static str {
    match attempt.outcome {
        AttemptOutcome::Success => "sucesso",
        AttemptOutcome::Processing => "processando",
        AttemptOutcome::Failure if attempt.probe => "falha (sonda)",
        AttemptOutcome::Failure => "falha",
    }
}

/// A one-line pt-BR description of the gate at `now`, for `status` and the systemd status line.
pub fn describe_gate(gate: &Gate, now: jiff::Timestamp) -> String {
    match *gate {
        Gate::Closed => "enviando normalmente".to_owned(),
        Gate::Open { code, next_probe_at } => {
            let next = if next_probe_at > now {
                format!("próximo teste às {}", local_time(next_probe_at))
            } else {
                "o próximo item a enviar servirá de teste".to_owned()
            };
            format!(
                "CIRCUITO ABERTO: a API falhou com o erro {} e só recebe envios de teste; {next}",
                code.label()
            )
        }
        Gate::Paused { code, .. } => format!(
            "PAUSADO: erro {}; corrija as credenciais e recarregue (systemctl reload extrator)",
            code.label()
        ),
        Gate::RateLimited { until } if until > now => {
            format!("AGUARDANDO a API: erro {} até {}", Code::RateLimited.label(), local_time(until))
        }
        Gate::RateLimited { .. } => "enviando normalmente".to_owned(),
    }
}

/// Whether the gate lets everything through at `now` (a rate limit that has ended does).
pub fn sending_normally(gate: &Gate, now: jiff::Timestamp) -> bool {
    match *gate {
        Gate::Closed => true,
        Gate::RateLimited { until } => until <= now,
        Gate::Open { .. } | Gate::Paused { .. } => false,
    }
}
