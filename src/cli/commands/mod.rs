//! One file per subcommand; this module holds what they share: loading the config, opening the
//! queue, the `list`/`retry` filter flags, and JSON output.

pub mod check;
pub mod demo;
pub mod enqueue;
pub mod explain;
pub mod list;
pub mod preview;
pub mod relatorio;
pub mod retry;
pub mod run;
pub mod show;
pub mod simulate;
pub mod status;

use std::path::Path;

use clap::Args;
use serde::Serialize;

use crate::config::{self, Loaded};
use crate::core::failure::Failure;
use crate::core::item::State;
use crate::io::store::{Access, Filter, Store};

/// Loads the config with the daemon's own loader; warnings go to stderr.
pub fn load_config(path: &Path) -> Result<Loaded, Failure> {
    let loaded = config::load(path).map_err(|error| {
        if config::unreadable(path) {
            // Not a broken config: an account this command is not for.
            return Failure::failed(format!(
                "sem permissão para ler {}: este comando precisa de root ou da conta do serviço (extrator), \
                 porque a configuração guarda as credenciais da API. Para entregar cancelamentos use \
                 `extrator enqueue` (grupo extrator-entrada); para consultar a fila, `extrator status`, \
                 `list` e `show` (grupo extrator-leitura)",
                path.display()
            ));
        }
        Failure::from(error)
    })?;
    for warning in &loaded.warnings {
        eprintln!("extrator: aviso: {warning}");
    }
    Ok(loaded)
}

/// Loads the config for a command that needs only where the queue is (`enqueue`, `status`,
/// `list`, `show`): an account that may not read it — the ERP's, support's; the config may hold
/// secrets — gets the packaged paths, with any `EXTRATOR_QUEUE__*` overrides. The config's
/// warnings (about credentials) are not these commands' business: `check` and the service say
/// them. That the packaged paths were used is said (by the reading commands, `note`) only when
/// no queue is there — the normal case for support is silent.
pub fn load_queue_config(path: &Path, note: bool) -> Result<Loaded, Failure> {
    let (loaded, fallback) = config::load_queue_paths(path, std::env::vars())?;
    if fallback && note && !loaded.config.queue.database.exists() {
        eprintln!(
            "extrator: aviso: sem permissão para ler a configuração {} (ela pode guardar senhas): usando os caminhos \
             padrão, banco de dados {}",
            path.display(),
            loaded.config.queue.database.display()
        );
    }
    Ok(loaded)
}

/// Opens the queue named by the config.
pub fn open_store(loaded: &Loaded, access: Access) -> Result<Store, Failure> {
    let queue = &loaded.config.queue;
    Ok(Store::open(&queue.database, access, queue.busy_timeout.get())?)
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| Failure::failed(format!("não foi possível gerar o JSON: {error}")))?;
    println!("{text}");
    Ok(())
}

/// The selection flags shared by `list` and `retry`.
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Só itens neste estado (pode repetir)
    #[arg(long, value_enum, value_name = "ESTADO")]
    pub state: Vec<State>,
    /// Só itens cujo último erro tem este código (ex.: 04)
    #[arg(long, value_name = "CÓDIGO", value_parser = parse_code)]
    pub code: Option<String>,
    /// Só o item deste pedido
    #[arg(long, value_name = "PEDIDO")]
    pub order: Option<String>,
    /// Atualizados a partir de: data/hora RFC 3339, AAAA-MM-DD, ou uma duração atrás (ex.: 2h)
    #[arg(long, value_name = "QUANDO", value_parser = parse_moment)]
    pub since: Option<jiff::Timestamp>,
    /// Atualizados antes de: data/hora RFC 3339, AAAA-MM-DD, ou uma duração atrás (ex.: 30m)
    #[arg(long, value_name = "QUANDO", value_parser = parse_moment)]
    pub until: Option<jiff::Timestamp>,
}

impl FilterArgs {
    /// The store filter, with `limit` and the states to use when none were given.
    pub fn to_filter(&self, limit: Option<u32>, default_states: &[State]) -> Filter {
        Filter {
            ids: Vec::new(),
            states: if self.state.is_empty() { default_states.to_vec() } else { self.state.clone() },
            code: self.code.clone(),
            order: self.order.clone(),
            since: self.since,
            until: self.until,
            limit,
        }
    }
}

/// A code from the catalog, accepting "4" for "04".
fn parse_code(text: &str) -> Result<String, String> {
    crate::core::codes::find(text).map(|code| code.code.to_string()).ok_or_else(|| {
        let known: Vec<&str> = crate::core::codes::CATALOG.iter().map(|code| code.code.as_str()).collect();
        format!("código desconhecido; os códigos são {}", known.join(", "))
    })
}

/// A moment for `--since`/`--until`: RFC 3339, a local date or date and time, or a duration
/// before now.
pub fn parse_moment(text: &str) -> Result<jiff::Timestamp, String> {
    moment_at(text, jiff::Timestamp::now())
}

/// `parse_moment` relative to `now`.
fn moment_at(text: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    let text = text.trim();
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at);
    }
    let zone = jiff::tz::TimeZone::system();
    if let Ok(datetime) = text.replace(' ', "T").parse::<jiff::civil::DateTime>()
        && let Ok(zoned) = datetime.to_zoned(zone.clone())
    {
        return Ok(zoned.timestamp());
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>()
        && let Ok(zoned) = date.to_zoned(zone)
    {
        return Ok(zoned.timestamp());
    }
    if let Ok(back) = crate::core::duration::parse(text) {
        let span = jiff::SignedDuration::try_from(back).map_err(|_| "duração grande demais".to_owned())?;
        return now.checked_sub(span).map_err(|_| "duração grande demais".to_owned());
    }
    Err(format!(
        "\"{text}\" não é um momento: use 2026-11-22T10:00:00-03:00, 2026-11-22, \"2026-11-22 10:00\" ou uma duração atrás como 2h"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_accept_the_forms_support_types() {
        let now: jiff::Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        assert_eq!(moment_at("2026-11-22T10:00:00-03:00", now).unwrap().to_string(), "2026-11-22T13:00:00Z");
        assert_eq!(moment_at("2h", now).unwrap().to_string(), "2026-11-22T10:00:00Z");
        assert!(moment_at("2026-11-22", now).is_ok());
        assert!(moment_at("2026-11-22 10:00", now).is_ok());
        assert!(moment_at("ontem", now).unwrap_err().contains("não é um momento"));
    }

    #[test]
    fn codes_are_checked_against_the_catalog() {
        assert_eq!(parse_code("4").unwrap(), "04");
        assert!(parse_code("42").unwrap_err().contains("01, 02"));
    }
}
