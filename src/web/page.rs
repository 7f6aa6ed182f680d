//! The status page support opens in the browser: pt-BR HTML rendered on the server with `maud`
//! (every value escaped by construction: a `reason` or an API message is hostile text), no
//! JavaScript, no external assets. Read-only: it shows, it never changes anything.
//!
//! `overview` is the health at a glance, two charts of attempts stacked by code (per hour over
//! the last 24 h, per day over 30 days; SVG drawn here), the items that failed last with the
//! API's message and the code's "what to do" from the one catalog, and the search form;
//! `item_page` is one order and its attempts, the same content as `extrator show`. The data is
//! read by `web.rs`; this file only renders.

use std::collections::BTreeMap;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::core::codes::{CATALOG, Code};
use crate::core::item::{Attempt, Item};
use crate::core::text::ago;
use crate::io::store::{DaemonRow, QueueFigures};
use crate::view::local_time;

/// How many failed items the overview lists.
pub const FAILED_SHOWN: u32 = 50;
/// How many attempts of one item the search shows (the newest).
pub const ATTEMPTS_SHOWN: u32 = 200;

/// What the overview shows.
#[derive(Debug, Clone)]
pub struct Overview {
    pub now: jiff::Timestamp,
    pub daemon: Option<DaemonRow>,
    pub figures: QueueFigures,
    pub last_success: Option<jiff::Timestamp>,
    /// Attempts per Unix hour and result (a code, `success`, `processing`), last 30 days.
    pub hours: Vec<(i64, String, u64)>,
    /// The items that failed last, newest first.
    pub failed: Vec<Item>,
}

/// The overview page.
pub fn overview(data: &Overview) -> String {
    let gate = data.daemon.as_ref().and_then(|daemon| daemon.gate);
    let total_failed = data
        .figures
        .counts
        .iter()
        .find(|(state, _)| *state == crate::core::item::State::Failed)
        .map_or(0, |(_, n)| *n);
    let moment = |at: Option<jiff::Timestamp>| {
        at.map_or_else(|| "—".to_owned(), |at| format!("{} ({})", local_time(at), ago(at, data.now)))
    };
    let body = html! {
        h1 { "extrator — painel" }
        p.quando {
            "Atualizado em " (local_time(data.now)) ". Recarregue a página para ver o estado atual; "
            "os gráficos contam as tentativas até o último ciclo do serviço (queue.poll_interval)."
        }
        (search_form(""))
        section #saude {
            h2 { "Saúde" }
            table.campos {
                tr { th { "Serviço" } td #servico { (service_line(data.daemon.as_ref(), data.now)) } }
                tr {
                    th { "Envio" }
                    td #envio .(if gate.is_some_and(|gate| !crate::view::sending_normally(&gate, data.now)) { "alerta" } else { "" }) {
                        (gate.map_or_else(|| "—".to_owned(), |gate| crate::view::describe_gate(&gate, data.now)))
                    }
                }
                tr { th { "Pendente mais antigo" } td #pendente-mais-antigo { (moment(data.figures.oldest_pending)) } }
                tr { th { "Último sucesso" } td #ultimo-sucesso { (moment(data.last_success)) } }
            }
            table.estados {
                tr { @for (state, _) in &data.figures.counts { th { (state.label()) } } }
                tr { @for (state, count) in &data.figures.counts { td id=(format!("itens-{}", state.as_str())) { (count) } } }
            }
        }
        section #grafico-24h {
            h2 { "Tentativas por hora — últimas 24 horas" }
            (chart(&hourly(&data.hours, data.now)))
        }
        section #grafico-30d {
            h2 { "Tentativas por dia — últimos 30 dias" }
            (chart(&daily(&data.hours, data.now)))
        }
        section #falhas {
            h2 { "Itens que falharam (" (total_failed) ")" }
            @if data.failed.is_empty() {
                p { "Nenhum item em falha." }
            } @else {
                p {
                    "Os " (data.failed.len()) " mais recentes, por código. Depois de corrigir a causa, reenvie com "
                    code { "extrator retry" } " (no servidor)."
                }
                @for (code, items) in by_code(&data.failed) {
                    (failed_group(code, &items))
                }
            }
        }
    };
    page("extrator — painel", body)
}

/// The search's answer: one order with its newest attempts (at most `ATTEMPTS_SHOWN`) and how many
/// it has in all, or why not.
pub fn item_page(order: &str, found: Option<(&Item, &[Attempt], u64)>) -> String {
    let order_shown = crate::core::text::terminal_safe(order);
    let body = html! {
        p { a href="/" { "← painel" } }
        (search_form(order))
        @match found {
            None => {
                h1 { "Pedido " (order_shown) }
                p #nao-encontrado { "O pedido " (order_shown) " não está na fila." }
            }
            Some((item, attempts, total)) => {
                h1 { "Pedido " (order_shown) " — item " (item.id) }
                table.campos #item {
                    @for (label, value) in crate::view::fields(item) {
                        tr { th { (label.trim_end_matches(':')) } td { (value) } }
                    }
                }
                @if let Some(code) = item.last_code {
                    @if item.state == crate::core::item::State::Failed { (what_to_do(code.info())) }
                }
                h2 { "Tentativas (" (total) ")" }
                @if attempts.is_empty() {
                    p { "Nenhuma tentativa de envio ainda." }
                } @else {
                    @if total > attempts.len() as u64 { p { "Mostrando as " (attempts.len()) " mais recentes; todas com " code { "extrator show" } " no servidor." } }
                    table.lista #tentativas {
                        tr { th { "#" } th { "Início" } th { "Duração" } th { "Resultado" } th { "Código" } th { "Tipo" } th { "HTTP" } th { "Protocolo" } th { "Mensagem" } }
                        @for attempt in attempts.iter().rev() {
                            tr {
                                td { (attempt.number) }
                                td { (local_time(attempt.started_at)) }
                                td { (duration_text(attempt.duration_ms)) }
                                td { (crate::view::outcome_label(attempt)) }
                                td { (attempt.code.map_or_else(|| "—".to_owned(), Code::label)) }
                                td { (attempt.kind) }
                                td { (attempt.http_status.map_or_else(|| "—".to_owned(), |status| status.to_string())) }
                                td { (crate::core::text::terminal_safe(attempt.receipt.as_deref().unwrap_or("—"))) }
                                td.mensagem { (crate::core::text::terminal_safe(attempt.message.as_deref().unwrap_or(""))) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&format!("extrator — pedido {order_shown}"), body)
}

/// A page with a message (not found, wrong method…).
pub fn message_page(title: &str, text: &str) -> String {
    page(title, html! { h1 { (title) } p { (text) } p { a href="/" { "← painel" } } })
}

/// The document around a body: pt-BR, a small inline stylesheet, nothing fetched.
fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="pt-BR" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:70rem;color:#222}\
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5rem 0}th,td{padding:.25rem .6rem;text-align:left;vertical-align:top}\
table.lista td,table.lista th,table.estados td,table.estados th{border:1px solid #ddd}\
.alerta{color:#a00;font-weight:bold}.quando{color:#666}.mensagem{max-width:30rem;overflow-wrap:anywhere}\
form{margin:1rem 0}input{padding:.3rem;font-size:1rem}button{padding:.3rem .8rem;font-size:1rem}\
.legenda span{display:inline-block;margin-right:1rem}.legenda i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem}\
ol{margin:.3rem 0}";

/// The search form.
fn search_form(value: &str) -> Markup {
    html! {
        form #busca method="get" action="/pedido" {
            label for="numero" { "Buscar pedido: " }
            input #numero name="numero" type="search" value=(value) required maxlength="64";
            " "
            button type="submit" { "Buscar" }
        }
    }
}

/// "ativo desde …" for the daemon serving the page.
fn service_line(daemon: Option<&DaemonRow>, now: jiff::Timestamp) -> String {
    match daemon {
        Some(daemon) => format!(
            "ativo desde {} (pid {}, versão {}, sinal de vida {})",
            local_time(daemon.started_at),
            daemon.pid,
            daemon.version,
            ago(daemon.heartbeat_at, now)
        ),
        None => "—".to_owned(),
    }
}

/// Failed items grouped by code, codes in order.
fn by_code(items: &[Item]) -> BTreeMap<Code, Vec<&Item>> {
    let mut groups: BTreeMap<Code, Vec<&Item>> = BTreeMap::new();
    for item in items {
        groups.entry(item.last_code.unwrap_or(Code::Generic)).or_default().push(item);
    }
    groups
}

/// One code's failed items, with what to do.
fn failed_group(code: Code, items: &[&Item]) -> Markup {
    html! {
        div.grupo id=(format!("falhas-{}", code.as_str())) {
            h3 { "Erro " (code.label()) " — " (crate::core::text::count(items.len() as u64, "item", "itens")) }
            (what_to_do(code.info()))
            table.lista {
                tr { th { "Item" } th { "Pedido" } th { "Filial" } th { "Falhou em" } th { "Mensagem" } }
                @for item in items {
                    tr.falha {
                        td { (item.id) }
                        td { a href=(format!("/pedido?numero={}", percent_encoding::utf8_percent_encode(&item.order, percent_encoding::NON_ALPHANUMERIC))) { (crate::core::text::terminal_safe(&item.order)) } }
                        td { (crate::core::text::terminal_safe(&item.branch)) }
                        td { (local_time(item.updated_at)) }
                        td.mensagem { (crate::core::text::terminal_safe(item.last_message.as_deref().unwrap_or(""))) }
                    }
                }
            }
        }
    }
}

/// A catalog text whose `commands` (markdown's backticks, for the terminal and the docs) are
/// shown as code, not as backticks.
fn with_code(text: &str) -> Markup {
    html! {
        @for (index, piece) in text.split('`').enumerate() {
            @if index % 2 == 1 { code { (piece) } } @else { (piece) }
        }
    }
}

/// A duration as a person reads it: milliseconds under a second, else seconds with one decimal.
fn duration_text(ms: i64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{},{} s", ms / 1000, (ms % 1000) / 100) }
}

/// A code's meaning and steps from the catalog.
fn what_to_do(info: &crate::core::codes::Info) -> Markup {
    html! {
        div.oquefazer {
            p { (with_code(&crate::core::codes::capitalised(info.meaning))) ". " (with_code(&crate::core::codes::capitalised(info.behaviour))) "." }
            p { "O que fazer:" }
            ol { @for step in info.steps { li { (with_code(step)) } } }
        }
    }
}

/// One bar of a chart: its label and count per result.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub counts: BTreeMap<String, u64>,
}

/// The last 24 hours, one bar per hour (local time labels).
pub fn hourly(hours: &[(i64, String, u64)], now: jiff::Timestamp) -> Vec<Bar> {
    let this_hour = now.as_millisecond().div_euclid(3_600_000);
    (this_hour - 23..=this_hour)
        .map(|hour| Bar {
            label: hour_start(hour).to_zoned(jiff::tz::TimeZone::system()).strftime("%Hh").to_string(),
            counts: sum(hours.iter().filter(|(at, ..)| *at == hour)),
        })
        .collect()
}

/// The last 30 days, one bar per local day.
pub fn daily(hours: &[(i64, String, u64)], now: jiff::Timestamp) -> Vec<Bar> {
    let zone = jiff::tz::TimeZone::system();
    let today = now.to_zoned(zone.clone()).date();
    (0..30)
        .rev()
        .map(|back| {
            let day = today.checked_sub(jiff::Span::new().days(back)).unwrap_or(today);
            Bar {
                label: day.strftime("%d/%m").to_string(),
                counts: sum(hours
                    .iter()
                    .filter(|(at, ..)| hour_start(*at).to_zoned(zone.clone()).date() == day)),
            }
        })
        .collect()
}

fn hour_start(hour: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(hour.saturating_mul(3_600_000)).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn sum<'a>(rows: impl Iterator<Item = &'a (i64, String, u64)>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (_, result, count) in rows {
        *counts.entry(result.clone()).or_insert(0) += count;
    }
    counts
}

/// The results in stacking order: delivered, accepted, then the codes in order.
fn results() -> Vec<(String, String, &'static str)> {
    let mut results = vec![
        ("success".to_owned(), "sucesso".to_owned(), "#2e7d32"),
        ("processing".to_owned(), "processando".to_owned(), "#81c784"),
    ];
    const COLOURS: [&str; 9] =
        ["#c62828", "#6a1b9a", "#4527a0", "#ef6c00", "#283593", "#00838f", "#ad1457", "#f9a825", "#5d4037"];
    for (info, colour) in CATALOG.iter().zip(COLOURS) {
        results.push((info.code.as_str().to_owned(), info.code.label(), colour));
    }
    results
}

/// A stacked bar chart as inline SVG, with a title on every segment (a tooltip, no script) and
/// a legend of the results that occur, with their totals.
fn chart(bars: &[Bar]) -> Markup {
    const WIDTH: f64 = 960.0;
    const HEIGHT: f64 = 180.0;
    const TOP: f64 = 16.0;
    let results = results();
    let highest = bars.iter().map(|bar| bar.counts.values().sum::<u64>()).max().unwrap_or(0).max(1);
    let slot = WIDTH / bars.len().max(1) as f64;
    let totals: Vec<(String, &str, u64)> = results
        .iter()
        .map(|(key, label, colour)| {
            (label.clone(), *colour, bars.iter().map(|bar| bar.counts.get(key).copied().unwrap_or(0)).sum())
        })
        .filter(|(_, _, total)| *total > 0)
        .collect();
    html! {
        svg.grafico width=(WIDTH) height=(HEIGHT + TOP + 20.0) viewBox=(format!("0 0 {WIDTH} {}", HEIGHT + TOP + 20.0)) role="img" {
            text x="0" y="11" font-size="11" fill="#666" { "máximo: " (highest) }
            line x1="0" y1=(TOP + HEIGHT) x2=(WIDTH) y2=(TOP + HEIGHT) stroke="#999" {}
            @for (index, bar) in bars.iter().enumerate() {
                @let x = index as f64 * slot + 1.0;
                @let mut base = TOP + HEIGHT;
                g.barra data-total=(bar.counts.values().sum::<u64>()) {
                    @for (key, label, colour) in &results {
                        @if let Some(count) = bar.counts.get(key).filter(|count| **count > 0) {
                            @let height = (*count as f64 / highest as f64 * HEIGHT).max(1.0);
                            @let y = { base -= height; base };
                            rect x=(format!("{x:.1}")) y=(format!("{y:.1}")) width=(format!("{:.1}", (slot - 2.0).max(1.0))) height=(format!("{height:.1}")) fill=(colour) {
                                title { (bar.label) ": " (count) " " (label) }
                            }
                        }
                    }
                    text x=(format!("{:.1}", x + slot / 2.0 - 1.0)) y=(TOP + HEIGHT + 14.0) font-size="10" text-anchor="middle" fill="#444" { (bar.label) }
                }
            }
        }
        p.legenda {
            @if totals.is_empty() { "Nenhuma tentativa no período." }
            @for (label, colour, total) in &totals {
                span { i style=(format!("background:{colour}")) {} (label) ": " (total) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_code_and_durations_are_read_as_people_read_them() {
        let markup = with_code("reenvie com `extrator retry --id ID` depois").into_string();
        assert_eq!(markup, "reenvie com <code>extrator retry --id ID</code> depois");
        assert_eq!(duration_text(87), "87 ms");
        assert_eq!(duration_text(30_001), "30,0 s");
        assert_eq!(duration_text(1_550), "1,5 s");
    }

    #[test]
    fn hostile_text_is_shown_as_text() {
        let now = jiff::Timestamp::now();
        let item = Item {
            id: 7,
            order: "<b>9</b>".to_owned(),
            branch: "1".to_owned(),
            reason: "<script>alert(1)</script>".to_owned(),
            cancelled_at: "2026-12-01T10:00:00Z".to_owned(),
            customer: None,
            extra: None,
            state: crate::core::item::State::Failed,
            attempts: 1,
            sent: 1,
            last_code: Some(Code::Rejected),
            last_message: Some("<img src=x onerror=alert(2)>".to_owned()),
            next_attempt_at: None,
            created_at: now,
            updated_at: now,
            receipt: None,
            poll_url: None,
            source: crate::core::item::Origin::Command,
            idempotency_key: "k".to_owned(),
            processing_since: None,
        };
        let overview = overview(&Overview {
            now,
            daemon: None,
            figures: QueueFigures {
                counts: vec![(crate::core::item::State::Failed, 1)],
                oldest_pending: None,
            },
            last_success: None,
            hours: vec![(now.as_millisecond() / 3_600_000, "07".to_owned(), 3)],
            failed: vec![item.clone()],
        });
        let page = item_page("<b>9</b>", Some((&item, &[], 0)));
        for html in [&overview, &page] {
            assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<b>9"), "{html}");
        }
        assert!(overview.contains("&lt;img src=x onerror=alert(2)&gt;"), "{overview}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
        assert!(overview.contains("/pedido?numero=%3Cb%3E9%3C%2Fb%3E"), "{overview}");
    }

    #[test]
    fn the_charts_stack_by_code_in_local_hours_and_days() {
        let now = jiff::Timestamp::from_second(1_800_000_000).expect("time");
        let hour = now.as_millisecond() / 3_600_000;
        let hours = vec![
            (hour, "success".to_owned(), 5),
            (hour, "04".to_owned(), 2),
            (hour - 1, "success".to_owned(), 1),
            (hour - 24 * 40, "success".to_owned(), 100),
        ];
        let bars = hourly(&hours, now);
        assert_eq!(bars.len(), 24);
        assert_eq!(bars[23].counts.get("04"), Some(&2));
        assert_eq!(bars[22].counts.get("success"), Some(&1));
        let days = daily(&hours, now);
        assert_eq!(days.len(), 30);
        assert_eq!(
            days.iter().map(|day| day.counts.values().sum::<u64>()).sum::<u64>(),
            8,
            "40 days ago is out"
        );
    }
}
