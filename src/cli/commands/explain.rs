//! `extrator explain [CODE]`: meaning, what the daemon does, likely causes and steps for a code,
//! from the one catalog in `codes.rs`; without a code, the table of all codes.

use clap::Args;

use crate::core::codes::{self, CATALOG};
use crate::core::failure::{Failure, Outcome};

/// The `explain` flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Opções")]
pub struct ExplainArgs {
    /// O código (01 a 08, ou 99); sem código, lista todos
    #[arg(value_name = "CÓDIGO", help_heading = "Argumentos")]
    pub code: Option<String>,
    /// Gera o guia de suporte em Markdown (docs/codigos-de-erro.md)
    #[arg(long, conflicts_with = "code")]
    pub markdown: bool,
}

/// Runs `explain`.
pub fn run(args: &ExplainArgs) -> Outcome {
    if args.markdown {
        print!("{}", codes::support_guide());
        return Ok(());
    }
    match &args.code {
        Some(text) => {
            let code = codes::find(text).ok_or_else(|| {
                let known: Vec<&str> = CATALOG.iter().map(|code| code.code.as_str()).collect();
                Failure::usage(format!("código desconhecido \"{text}\"; os códigos são {}", known.join(", ")))
            })?;
            print!("{}", codes::explain(code));
        }
        None => {
            let mut table = crate::core::text::Table::new(&["CÓDIGO", "NOME", "QUANDO"]);
            for code in &CATALOG {
                table.row(vec![code.code.to_string(), code.name.to_owned(), code.meaning.to_owned()]);
            }
            print!("{}", table.render());
            println!("\nDetalhes de um código: extrator explain CÓDIGO");
        }
    }
    Ok(())
}
