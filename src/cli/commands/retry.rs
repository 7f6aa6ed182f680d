//! `extrator retry`: re-send items — `failed` ones unless `--state` says otherwise — selected by
//! id, order, code, state and period. Shows the selection, asks for confirmation unless `--yes`,
//! and with `--dry-run` changes nothing.

use std::io::BufRead;
use std::path::Path;

use clap::Args;

use super::{FilterArgs, load_config, open_store};
use crate::core::failure::{Failure, Outcome};
use crate::core::item::State;
use crate::io::store::{Access, Durability};

/// How many selected items are listed before the rest are counted.
const SHOWN: usize = 20;

/// The `retry` flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Opções")]
pub struct RetryArgs {
    /// Só estes ids (pode repetir)
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<i64>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Mostra o que seria reenviado, sem alterar nada
    #[arg(long)]
    pub dry_run: bool,
    /// Não pede confirmação
    #[arg(long)]
    pub yes: bool,
}

/// Runs `retry`.
pub fn run(config_path: &Path, args: &RetryArgs) -> Outcome {
    if args.filter.state.contains(&State::InFlight) {
        return Err(Failure::usage(
            "itens no estado in_flight estão sendo enviados agora e não podem ser reenviados; \
             se o serviço parou, eles voltam sozinhos para a fila quando ele reinicia",
        ));
    }
    let loaded = load_config(config_path)?;
    let access = if args.dry_run { Access::ReadOnly } else { Access::ReadWrite(Durability::Full) };
    let mut store = open_store(&loaded, access)?;
    let mut filter = args.filter.to_filter(None, &[State::Failed]);
    filter.ids = args.ids.clone();
    let selected = store.list(&filter)?;
    if selected.is_empty() {
        println!("nenhum item corresponde aos filtros (estados: {})", state_names(&filter.states));
        return Ok(());
    }
    print!("{}", super::list::table(&selected[..selected.len().min(SHOWN)]));
    if selected.len() > SHOWN {
        println!("… e mais {}", selected.len() - SHOWN);
    }
    if args.dry_run {
        println!(
            "simulação: {} reenviados; nada foi alterado",
            crate::core::text::count(selected.len() as u64, "item seria", "itens seriam")
        );
        return Ok(());
    }
    if !args.yes
        && !confirm(&format!(
            "Reenviar {}? [s/N] ",
            crate::core::text::count(selected.len() as u64, "item", "itens")
        ))
    {
        return Err(Failure::failed("cancelado; nada foi alterado"));
    }
    let moved = store.requeue(&selected, jiff::Timestamp::now())?;
    if moved == 1 {
        println!("1 item voltou para a fila como pendente, com novas tentativas");
    } else {
        println!("{moved} itens voltaram para a fila como pendentes, com novas tentativas");
    }
    if moved < selected.len() {
        match selected.len() - moved {
            1 => println!("1 item mudou de estado desde a seleção e não foi alterado"),
            changed => println!("{changed} itens mudaram de estado desde a seleção e não foram alterados"),
        }
    }
    Ok(())
}

/// "failed, done".
fn state_names(states: &[State]) -> String {
    states.iter().map(|state| state.as_str()).collect::<Vec<_>>().join(", ")
}

/// Asks on stderr and reads one answer from stdin; only "s"/"sim" (or "y"/"yes") confirm.
fn confirm(question: &str) -> bool {
    eprint!("{question}");
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_lowercase().as_str(), "s" | "sim" | "y" | "yes")
}
