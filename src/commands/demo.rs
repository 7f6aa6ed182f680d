//! `extrator demo`: the product on a temporary directory, with no setup. It queues sample
//! cancellations through the same commands an operator uses, shows idempotency and a refused
//! conflict, imports a spool directory with one good and one broken file, and prints `status`
//! and `list`. The directory is removed at the end unless `--keep`.
//!
//! Delivery to the cancellation API (and with it the error codes 01–99) comes with the dispatcher;
//! until then the demo says so instead of pretending.

use std::path::{Path, PathBuf};

use clap::Args;

use super::enqueue::EnqueueArgs;
use super::list::ListArgs;
use super::status::StatusArgs;
use super::{FilterArgs, load_config, open_store};
use crate::failure::{Failure, Outcome};
use crate::spool;
use crate::store::{Access, Durability};

/// The `demo` flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Opções")]
pub struct DemoArgs {
    /// Mantém o diretório da demo no fim, para experimentar outros comandos nele
    #[arg(long)]
    pub keep: bool,
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> Outcome {
    let dir = demo_dir()?;
    let outcome = steps(&dir);
    if args.keep {
        println!("\nO diretório da demo foi mantido: {}", dir.display());
        println!("Experimente, por exemplo:");
        let config = dir.join("extrator.toml");
        for command in
            ["status", "list --state pending", "show --order 100203", "retry --state pending --dry-run"]
        {
            println!("  extrator --config {} {command}", config.display());
        }
    } else {
        let _ = std::fs::remove_dir_all(&dir);
        println!("\nPara experimentar os comandos numa fila de verdade, rode: extrator demo --keep");
    }
    outcome
}

/// A fresh directory under the system's temporary directory.
fn demo_dir() -> Result<PathBuf, Failure> {
    let name = format!("extrator-demo-{}-{}", std::process::id(), jiff::Timestamp::now().as_millisecond());
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).map_err(|error| {
        Failure::failed(format!(
            "não foi possível criar {}: {}",
            dir.display(),
            crate::text::io_error(&error)
        ))
    })?;
    Ok(dir)
}

/// The demo proper.
fn steps(dir: &Path) -> Outcome {
    let config = dir.join("extrator.toml");
    let spool_dir = dir.join("spool");
    let text = format!(
        "# Configuração da demo\n[api]\nurl = \"http://127.0.0.1:9/demo\"\n\n[queue]\ndatabase = \"{}\"\nspool_dir = \"{}\"\n",
        dir.join("fila.db").display(),
        spool_dir.display()
    );
    std::fs::write(&config, text).map_err(|error| Failure::failed(crate::text::io_error(&error)))?;
    println!("extrator demo — fila temporária em {}\n", dir.display());

    heading("1. O ERP coloca cancelamentos na fila (extrator enqueue)");
    let sample = |order: &str, reason: &str| EnqueueArgs {
        json: None,
        order: Some(order.to_owned()),
        branch: Some("1".to_owned()),
        reason: Some(reason.to_owned()),
        cancelled_at: None,
        customer: None,
        extra: None,
    };
    for (order, reason) in
        [("100201", "cliente desistiu"), ("100202", "pedido em duplicidade"), ("100203", "preço errado")]
    {
        super::enqueue::run(&config, &sample(order, reason))?;
    }

    heading("2. O mesmo pedido de novo não duplica; com outro conteúdo é recusado");
    super::enqueue::run(&config, &sample("100201", "cliente desistiu"))?;
    if let Err(refused) = super::enqueue::run(&config, &sample("100201", "outro motivo")) {
        println!("recusado (código de saída {}): {refused}", refused.exit_code);
    }

    heading("3. O ERP também pode deixar arquivos .json no diretório de spool");
    spool::prepare(&spool_dir).map_err(|error| Failure::failed(error.to_string()))?;
    let files: [(&str, &str); 2] = [
        (
            "lote-0001.json",
            "[{\"order\": 100301, \"branch\": 2, \"reason\": \"estoque indisponível\", \"customer\": \"C-88\"},\n \
             {\"order\": 100302, \"branch\": 2, \"reason\": \"endereço inválido\"}]\n",
        ),
        ("lote-0002.json", "{\"order\": 100401, \"branch\": 2}\n"),
    ];
    for (name, contents) in files {
        std::fs::write(spool_dir.join(name), contents)
            .map_err(|error| Failure::failed(crate::text::io_error(&error)))?;
    }
    let loaded = load_config(&config)?;
    let mut store = open_store(&loaded, Access::ReadWrite(Durability::Full))?;
    let report = spool::import(&mut store, &spool_dir, jiff::Timestamp::now())
        .map_err(|error| Failure::failed(error.to_string()))?;
    drop(store);
    for (file, new, already) in &report.imported {
        println!("{file}: importado ({new} novo(s), {already} já na fila) → processados/{file}");
    }
    for (file, _) in &report.rejected {
        let why = std::fs::read_to_string(
            spool_dir.join(spool::REJECTED_DIR).join(format!("{file}{}", spool::ERROR_SUFFIX)),
        )
        .unwrap_or_default();
        println!("{file}: rejeitado → rejeitados/{file}, com rejeitados/{file}.erro:");
        for line in why.lines().take(5) {
            println!("    {line}");
        }
    }

    heading("4. Saúde em um relance (extrator status)");
    super::status::run(&config, &StatusArgs { json: false })?;

    heading("5. Os itens (extrator list)");
    let everything = FilterArgs { state: Vec::new(), code: None, order: None, since: None, until: None };
    super::list::run(&config, &ListArgs { filter: everything, limit: 0, json: false })?;

    println!(
        "\nO envio à API de cancelamento, com os códigos de erro 01–99 do suporte, chega com o \
         despachante; nesta versão os itens ficam pendentes na fila durável."
    );
    Ok(())
}

/// A step title.
fn heading(title: &str) {
    println!("\n== {title}");
}
