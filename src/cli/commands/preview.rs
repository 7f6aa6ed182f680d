//! `extrator preview`: the exact request the daemon would send for an item — method, URL, headers
//! with every credential masked, body — built by the daemon's own request mapping. It sends
//! nothing and needs no password, so support can check a mapping before any item goes out.

use std::path::Path;

use clap::Args;

use super::load_config;
use crate::config::{AuthMode, Config};
use crate::core::failure::{EXIT_CONFIG, Failure, Outcome};
use crate::core::item::Item;
use crate::core::mapping::{RenderedRequest, RequestPlan};
use crate::core::text::terminal_safe;
use crate::io::store::{Access, Store, StoreError};

/// The `preview` flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Opções")]
pub struct PreviewArgs {
    /// O pedido a mostrar (sem esta opção: o próximo da fila, ou um exemplo se a fila estiver vazia)
    #[arg(long, value_name = "PEDIDO")]
    pub order: Option<String>,
}

/// Runs `preview`.
pub fn run(config_path: &Path, args: &PreviewArgs) -> Outcome {
    let loaded = load_config(config_path)?;
    let config = &loaded.config;
    let zone = config.api.request_zone().map_err(|message| Failure { exit_code: EXIT_CONFIG, message })?;
    // Secrets are never read here: each `{secret:NAME}` shows as ***.
    let plan = config.api.request_plan(zone).masked();
    let (item, which) = pick(config, &plan, args.order.as_deref())?;
    let request = plan.render(&item).map_err(|error| {
        Failure::failed(format!(
            "{which} não pode ser enviado com esta configuração: {}",
            terminal_safe(&error.to_string())
        ))
    })?;
    println!("Requisição para {which} — nada foi enviado:\n");
    for line in describe(config, &plan, &request) {
        println!("{line}");
    }
    Ok(())
}

/// The item to show and how to name it: the given order, else the next one due, else a sample.
fn pick(config: &Config, plan: &RequestPlan, order: Option<&str>) -> Result<(Item, String), Failure> {
    let queue = &config.queue;
    let store = match Store::open(&queue.database, Access::ReadOnly, queue.busy_timeout.get()) {
        Ok(store) => Some(store),
        Err(StoreError::Missing(_) | StoreError::Empty(_)) if order.is_none() => None,
        Err(error) => return Err(error.into()),
    };
    if let Some(order) = order {
        let found = store.as_ref().map(|store| store.get_by_order(order)).transpose()?.flatten();
        let item = found
            .ok_or_else(|| Failure::failed(format!("o pedido {} não está na fila", terminal_safe(order))))?;
        let which = format!("o pedido {} (item {})", terminal_safe(&item.order), item.id);
        return Ok((item, which));
    }
    if let Some(item) = store.as_ref().map(Store::next_pending).transpose()?.flatten() {
        let which = format!("o próximo da fila, pedido {} (item {})", terminal_safe(&item.order), item.id);
        return Ok((item, which));
    }
    Ok((plan.sample(), "um pedido de exemplo (a fila não tem pendentes)".to_owned()))
}

/// The request as lines: `METHOD URL`, the headers, a blank line and the body as sent. Credentials
/// are masked whatever their encoding (the Basic header's base64 included: it is never built).
pub fn describe(config: &Config, plan: &RequestPlan, request: &RenderedRequest) -> Vec<String> {
    let mut lines = vec![format!("{} {}", request.method.as_str(), terminal_safe(&request.url))];
    let header = |name: &str, value: &str| format!("{name}: {}", terminal_safe(value));
    for (name, value) in &request.headers {
        // A fixed credential written in [api.request.headers] (a "Bearer …") is masked too.
        let shown = if crate::io::secrets::looks_secret(name, plan.idempotency_header())
            && value != crate::core::secret::MASK
        {
            crate::io::secrets::masked_credential(value)
        } else {
            value.clone()
        };
        lines.push(header(name, &shown));
    }
    if let Some(body) = &request.body {
        lines.push(header("Content-Type", body.content_type));
    }
    let auth = &config.api.auth;
    match auth.mode {
        AuthMode::None => {}
        AuthMode::Basic => lines.push(format!(
            "Authorization: Basic *** (usuário {}, senha mascarada)",
            terminal_safe(auth.user.as_deref().unwrap_or(""))
        )),
        AuthMode::Login => lines.push(format!(
            "Authorization: Bearer *** (token obtido em {}, mascarado)",
            terminal_safe(auth.login_url.as_deref().unwrap_or(""))
        )),
        AuthMode::OAuth2 => lines.push(format!(
            "Authorization: Bearer *** (token OAuth2 obtido em {} pelo cliente {}, mascarado)",
            terminal_safe(auth.token_url.as_deref().unwrap_or("")),
            terminal_safe(auth.client_id.as_deref().unwrap_or(""))
        )),
    }
    for (name, value) in &config.api.headers {
        let masks: std::collections::BTreeMap<String, crate::core::secret::Secret> =
            crate::io::secrets::placeholders(value)
                .map(|name| {
                    (name.to_owned(), crate::core::secret::Secret::new(crate::core::secret::MASK.to_owned()))
                })
                .collect();
        let shown = if crate::io::secrets::looks_secret(name, plan.idempotency_header()) {
            crate::core::secret::MASK.to_owned()
        } else {
            crate::io::secrets::fill(value, &masks).unwrap_or_else(|_| crate::core::secret::MASK.to_owned())
        };
        lines.push(header(name, &shown));
    }
    lines.push(header("User-Agent", crate::io::api::USER_AGENT));
    if let Some(body) = &request.body {
        lines.push(String::new());
        lines.push(terminal_safe(&String::from_utf8_lossy(&body.bytes)).into_owned());
    }
    lines
}
