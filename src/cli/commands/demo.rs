//! `extrator demo`: the product on a temporary directory, with no setup. It starts the simulated
//! cancellation API on loopback, queues sample cancellations through the same commands an
//! operator uses (showing idempotency and a refused conflict), imports a spool directory with one
//! good and one broken file, runs the real daemon loop until every item is final — success, the
//! async 202 → 208 → 200 flow, and codes 04, 07, 08 and 99 — and prints `status` and `list`.
//! The directory is removed at the end unless `--keep`.

use std::path::{Path, PathBuf};

use clap::Args;

use super::enqueue::EnqueueArgs;
use super::list::ListArgs;
use super::status::StatusArgs;
use super::{FilterArgs, load_config, open_store};
use crate::core::failure::{Failure, Outcome};
use crate::io::spool;
use crate::io::store::{Access, Durability, Filter, Store};
use crate::simulator::{Background, Behavior, Scenario};

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
            crate::core::text::io_error(&error)
        ))
    })?;
    Ok(dir)
}

/// What the simulated API answers to each sample order.
pub fn scenario() -> Scenario {
    Scenario::default()
        .order("100201", vec![Behavior::json(200, r#"{"status":"cancelado"}"#)])
        .order(
            "100202",
            vec![
                Behavior::json(202, r#"{"status":"recebido"}"#),
                Behavior::json(208, r#"{"errors":[{"key":"orderKey","message":"em processamento"}]}"#),
                Behavior::json(200, r#"{"status":"cancelado"}"#),
            ],
        )
        .order(
            "100203",
            vec![Behavior::json(400, r#"{"errors":[{"key":"orderKey","message":"pedido já faturado"}]}"#)],
        )
        .order("100204", vec![Behavior::Stall])
        .order(
            "100205",
            vec![
                Behavior::json(429, r#"{"message":"muitas requisições"}"#).header("Retry-After", "1"),
                Behavior::json(200, "{}"),
            ],
        )
        .order(
            "100302",
            vec![Behavior::with_type(
                500,
                "text/html",
                "<html><head><title>Erro interno do servidor</title></head></html>",
            )],
        )
}

/// The demo proper.
fn steps(dir: &Path) -> Outcome {
    let api = Background::start(scenario())
        .map_err(|error| Failure::failed(format!("não foi possível iniciar a API simulada: {error}")))?;
    let config = dir.join("extrator.toml");
    let spool_dir = dir.join("spool");
    let text = format!(
        "# Configuração da demo: API simulada em {url}\n[api]\nurl = \"{url}\"\nconnect_timeout = \"1s\"\nrequest_timeout = \"1s\"\nasync_poll_interval = \"300ms\"\n\n[queue]\ndatabase = \"{}\"\nspool_dir = \"{}\"\nsocket = \"{}\"\npoll_interval = \"100ms\"\n\n[retry]\nmax_attempts = 2\nfirst_delay = \"300ms\"\nmax_delay = \"600ms\"\n",
        dir.join("fila.db").display(),
        spool_dir.display(),
        dir.join("entrada.sock").display(),
        url = api.url()
    );
    std::fs::write(&config, text).map_err(|error| Failure::failed(crate::core::text::io_error(&error)))?;
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
    let samples = [
        ("100201", "cliente desistiu"),
        ("100202", "pedido em duplicidade"),
        ("100203", "preço errado"),
        ("100204", "endereço incompleto"),
        ("100205", "troca de produto"),
    ];
    for (order, reason) in samples {
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
            .map_err(|error| Failure::failed(crate::core::text::io_error(&error)))?;
    }
    let loaded = load_config(&config)?;
    let mut store = open_store(&loaded, Access::ReadWrite(Durability::Full))?;
    // The files were written whole a moment ago: no quiet period to wait out.
    let report = spool::Spool::new(&spool_dir)
        .import(&mut store, std::time::Duration::ZERO, jiff::Timestamp::now())
        .map_err(|error| Failure::failed(error.to_string()))?;
    drop(store);
    for imported in &report.imported {
        let (file, new, already) = (&imported.file, imported.new, imported.already);
        println!(
            "{file}: importado ({}, {already} já na fila) → processados/{file}",
            crate::core::text::count(new as u64, "novo", "novos")
        );
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

    heading(&format!("4. O serviço envia tudo à API de cancelamento (simulada em {})", api.url()));
    println!(
        "(o mesmo laço do `extrator run`; nesta demo ele para quando todos os itens chegam ao estado final)"
    );
    deliver(&loaded)?;
    println!("a API recebeu {} requisições", api.shared.received().len());

    heading("5. Saúde em um relance (extrator status)");
    super::status::run(&config, &StatusArgs { json: false })?;

    heading("6. Os itens (extrator list)");
    let everything = FilterArgs { state: Vec::new(), code: None, order: None, since: None, until: None };
    super::list::run(&config, &ListArgs { filter: everything, limit: 0, json: false })?;
    println!(
        "\nCada tentativa fica registrada: veja, por exemplo, o fluxo assíncrono com \
         `extrator show --order 100202`."
    );
    Ok(())
}

/// Runs the daemon loop until every item is final (or a minute passes).
fn deliver(loaded: &crate::config::Loaded) -> Outcome {
    let config = loaded.config.clone();
    let client = crate::io::api::Client::new(&config).map_err(Failure::failed)?;
    let mut store = Store::open(
        &config.queue.database,
        Access::ReadWrite(Durability::Normal), // as `extrator run`
        config.queue.busy_timeout.get(),
    )?;
    store.daemon_started(std::process::id(), jiff::Timestamp::now())?;
    let watcher = Store::open(&config.queue.database, Access::ReadOnly, config.queue.busy_timeout.get())?;
    let daemon = crate::daemon::Daemon::new(
        loaded.path.clone(),
        config,
        crate::io::writer::Writer::spawn(store),
        client,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::failed(format!("não foi possível iniciar o runtime: {error}")))?;
    let unfinished = Filter {
        states: vec![
            crate::core::item::State::Pending,
            crate::core::item::State::InFlight,
            crate::core::item::State::Processing,
        ],
        ..Filter::default()
    };
    let all_final = async move {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while watcher.count(&unfinished).map_or(true, |count| count > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    runtime.block_on(daemon.run_until(all_final))
}

/// A step title.
fn heading(title: &str) {
    println!("\n== {title}");
}
