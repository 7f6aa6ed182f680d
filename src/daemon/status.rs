//! The daemon's state in one pt-BR line: systemd's `STATUS=`, and the circuit's state written
//! with the heartbeat for `status` and the page. Recomputed from `now` each time it is shown, so
//! a moment that has passed is never shown as the future.

use crate::core::dispatch::Status;
use crate::view::describe_gate;

/// The status line of the dispatcher's status and the (pending, processing, failed) counts —
/// `None` until the first count after the start (READY comes before it: counting a million items
/// is not part of being up), when the line says so rather than show zeros and "no success yet".
pub fn status_line(status: &Status, counts: Option<(u64, u64, u64)>, now: jiff::Timestamp) -> String {
    let gate = describe_gate(&status.gate, now);
    let sending_normally = crate::view::sending_normally(&status.gate, now);
    let mut parts = Vec::new();
    if !sending_normally {
        parts.push(gate.clone());
    }
    let Some((pending, processing, failed)) = counts else {
        parts.push("iniciado; contando a fila".to_owned());
        if sending_normally {
            parts.push(gate);
        }
        return parts.join(" · ");
    };
    parts.push(format!(
        "{}, {processing} processando, {failed} com falha definitiva",
        crate::core::text::count(pending, "pendente", "pendentes")
    ));
    if status.unrecorded > 0 {
        parts.push(crate::core::text::count(
            status.unrecorded as u64,
            "tentativa ainda não gravada",
            "tentativas ainda não gravadas",
        ));
    }
    parts.push(match status.last_success {
        Some(at) => format!("último envio com sucesso {}", crate::view::local_time(at)),
        None => "nenhum envio com sucesso ainda".to_owned(),
    });
    if sending_normally {
        parts.push(gate);
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codes::Code;
    use crate::core::policy::Gate;

    fn t(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn before_the_first_count_the_line_says_it_is_counting_not_zero() {
        let status = Status { gate: Gate::Closed, sending: 0, unrecorded: 0, last_success: None };
        let line = status_line(&status, None, t(0));
        assert_eq!(line, "iniciado; contando a fila · enviando normalmente");
        assert!(!line.contains("nenhum envio com sucesso"), "{line}");
    }

    #[test]
    fn the_status_line_leads_with_what_stops_sending() {
        let status = Status { gate: Gate::Closed, sending: 0, unrecorded: 0, last_success: None };
        assert_eq!(
            status_line(&status, Some((12, 1, 3)), t(0)),
            "12 pendentes, 1 processando, 3 com falha definitiva · nenhum envio com sucesso ainda · enviando normalmente"
        );
        let paused = Status {
            gate: Gate::Paused { code: Code::InvalidPassword, next_probe_at: t(0) },
            unrecorded: 2,
            last_success: Some(t(0)),
            ..status
        };
        let line = status_line(&paused, Some((12, 0, 0)), t(0));
        assert!(
            line.starts_with("PAUSADO: erro 02 Senha inválida; corrija as credenciais e recarregue"),
            "{line}"
        );
        assert!(
            line.contains("2 tentativas ainda não gravadas") && line.contains("último envio com sucesso"),
            "{line}"
        );
    }

    #[test]
    fn a_probe_time_that_has_passed_is_never_shown_as_the_future() {
        let open = Gate::Open { code: Code::Timeout, next_probe_at: t(60) };
        let before = describe_gate(&open, t(0));
        assert!(before.contains("próximo teste às"), "{before}");
        let after = describe_gate(&open, t(61));
        assert!(!after.contains("próximo teste às"), "{after}");
        assert!(after.contains("o próximo item a enviar servirá de teste"), "{after}");
        let limited = Gate::RateLimited { until: t(60) };
        assert!(describe_gate(&limited, t(0)).starts_with("AGUARDANDO a API"));
        let over = Status { gate: limited, sending: 0, unrecorded: 0, last_success: None };
        assert!(
            status_line(&over, Some((0, 0, 0)), t(61)).ends_with("enviando normalmente"),
            "the wait is over"
        );
    }
}
