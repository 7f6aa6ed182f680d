//! `extrator show ID` / `--order N`: one item, every field, and every attempt.

use std::path::Path;

use clap::Args;

use super::{load_queue_config, open_store, print_json};
use crate::core::failure::{Failure, Outcome};
use crate::core::item::{Attempt, Item};
use crate::core::text::{Table, terminal_safe, truncate};
use crate::io::store::Access;
use crate::view::local_time;

/// The `show` flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Opções")]
pub struct ShowArgs {
    /// O id do item (veja extrator list)
    #[arg(
        value_name = "ID",
        required_unless_present = "order",
        conflicts_with = "order",
        help_heading = "Argumentos"
    )]
    pub id: Option<i64>,
    /// Procura pelo número do pedido em vez do id
    #[arg(long, value_name = "PEDIDO")]
    pub order: Option<String>,
    /// Saída em JSON com nomes de campos estáveis
    #[arg(long)]
    pub json: bool,
}

/// Runs `show`.
pub fn run(config_path: &Path, args: &ShowArgs) -> Outcome {
    let loaded = load_queue_config(config_path, true)?;
    let store = open_store(&loaded, Access::ReadOnly)?;
    let (item, wanted) = match (&args.order, args.id) {
        (Some(order), _) => (store.get_by_order(order)?, format!("pedido {order}")),
        (None, Some(id)) => (store.get(id)?, format!("item {id}")),
        (None, None) => return Err(Failure::usage("informe o ID do item ou --order PEDIDO")),
    };
    let item = item.ok_or_else(|| Failure::failed(format!("{wanted} não encontrado na fila")))?;
    let attempts = store.attempts(item.id)?;
    if args.json {
        return print_json(&crate::cli::json::ShowJson::new(&item, &attempts));
    }
    print!("{}", render(&item, &attempts));
    Ok(())
}

/// The human view: fields, then the attempts table.
fn render(item: &Item, attempts: &[Attempt]) -> String {
    let safe = |value: &str| terminal_safe(value).into_owned();
    let optional = |value: Option<&str>| value.map_or_else(|| "—".to_owned(), safe);
    let mut fields_table = Table::new(&["Item:", &item.id.to_string()]);
    let rows = crate::view::fields(item);
    for (label, value) in rows {
        fields_table.row(vec![label.to_owned(), value]);
    }
    let mut out = fields_table.render();
    out.push('\n');
    if attempts.is_empty() {
        out.push_str("Nenhuma tentativa de envio ainda.\n");
        return out;
    }
    let receipts = attempts.iter().any(|attempt| attempt.receipt.is_some());
    let mut headers = vec!["#", "INÍCIO", "DURAÇÃO", "RESULTADO", "CÓDIGO", "TIPO", "HTTP"];
    if receipts {
        headers.push("PROTOCOLO");
    }
    headers.push("MENSAGEM");
    let mut table = Table::new(&headers);
    for attempt in attempts {
        let outcome = crate::view::outcome_label(attempt);
        let mut row = vec![
            attempt.number.to_string(),
            local_time(attempt.started_at),
            format!("{}ms", attempt.duration_ms),
            outcome.to_owned(),
            attempt.code.map_or_else(|| "—".to_owned(), |code| code.as_str().to_owned()),
            attempt.kind.clone(),
            attempt.http_status.map_or_else(|| "—".to_owned(), |status| status.to_string()),
        ];
        if receipts {
            row.push(optional(attempt.receipt.as_deref()));
        }
        row.push(safe(&truncate(attempt.message.as_deref().unwrap_or(""), 80)));
        table.row(row);
    }
    out.push_str(&table.render());
    out
}
