//! `extrator list`: items, filtered, most recently updated first, as an aligned table or JSON.

use std::path::Path;

use clap::Args;

use super::{FilterArgs, load_queue_config, open_store, print_json};
use crate::core::failure::Outcome;
use crate::core::item::Item;
use crate::core::text::{Table, terminal_safe, truncate};
use crate::io::store::Access;
use crate::view::local_time;

/// The `list` flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Opções")]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Mostra no máximo N itens (0 = todos)
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u32,
    /// Saída em JSON com nomes de campos estáveis
    #[arg(long)]
    pub json: bool,
}

/// Runs `list`.
pub fn run(config_path: &Path, args: &ListArgs) -> Outcome {
    let loaded = load_queue_config(config_path, true)?;
    let store = open_store(&loaded, Access::ReadOnly)?;
    let filter = args.filter.to_filter((args.limit > 0).then_some(args.limit), &[]);
    let items = store.list(&filter)?;
    if args.json {
        return print_json(&crate::cli::json::items(&items));
    }
    if items.is_empty() {
        println!("nenhum item encontrado");
        return Ok(());
    }
    print!("{}", table(&items));
    let total = store.count(&filter)?;
    if total > items.len() as u64 {
        println!("mostrando {} de {total} itens; use --limit 0 para ver todos", items.len());
    }
    Ok(())
}

/// The aligned table `list` and `retry` print.
pub fn table(items: &[Item]) -> String {
    let mut table = Table::new(&[
        "ID",
        "PEDIDO",
        "FILIAL",
        "ESTADO",
        "ENVIOS",
        "CÓDIGO",
        "PRÓXIMA TENTATIVA",
        "ATUALIZADO",
        "MENSAGEM",
    ]);
    for item in items {
        table.row(vec![
            item.id.to_string(),
            terminal_safe(&item.order).into_owned(),
            terminal_safe(&item.branch).into_owned(),
            item.state.label().to_owned(),
            item.sent.to_string(),
            item.last_code.map_or_else(|| "—".to_owned(), |code| code.as_str().to_owned()),
            item.next_attempt_at.map_or_else(|| "—".to_owned(), local_time),
            local_time(item.updated_at),
            terminal_safe(&truncate(item.last_message.as_deref().unwrap_or(""), 60)).into_owned(),
        ]);
    }
    table.render()
}
