//! `extrator enqueue`: add cancellations from flags (one) or from `--json FILE|-` (an object, an
//! array, or JSON lines). The batch is validated whole, then committed whole with
//! `synchronous=FULL`; only then is "enfileirado" printed.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Map, Value};

use super::{load_config, open_store};
use crate::failure::{Failure, Outcome};
use crate::intake::{self, MAX_DOCUMENT_BYTES};
use crate::item::{self, NewItem};
use crate::store::{Access, Durability, EnqueueOutcome, Origin};

/// The `enqueue` flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Opções")]
pub struct EnqueueArgs {
    /// Lê os cancelamentos de um arquivo JSON (objeto, lista ou JSON lines); "-" lê da entrada padrão
    #[arg(long, value_name = "ARQUIVO", conflicts_with_all = ["order", "branch", "reason", "cancelled_at", "customer", "extra"])]
    pub json: Option<PathBuf>,
    /// Número do pedido no Winthor
    #[arg(long, value_name = "PEDIDO", required_unless_present = "json")]
    pub order: Option<String>,
    /// Filial do pedido
    #[arg(long, value_name = "FILIAL")]
    pub branch: Option<String>,
    /// Motivo do cancelamento
    #[arg(long, value_name = "TEXTO")]
    pub reason: Option<String>,
    /// Quando foi cancelado, RFC 3339 com fuso (padrão: agora)
    #[arg(long, value_name = "DATA_HORA")]
    pub cancelled_at: Option<String>,
    /// Código do cliente (opcional)
    #[arg(long, value_name = "CLIENTE")]
    pub customer: Option<String>,
    /// Objeto JSON repassado à API sem alteração (opcional)
    #[arg(long, value_name = "JSON")]
    pub extra: Option<String>,
}

/// Runs `enqueue`.
pub fn run(config_path: &Path, args: &EnqueueArgs) -> Outcome {
    // Validate the input before touching the config or the database: a bad record is the
    // caller's mistake whatever the state of the server.
    let (items, origin_text) = match &args.json {
        Some(path) => (read_document(path)?, describe_source(path)),
        None => (vec![from_flags(args)?], "linha de comando".to_owned()),
    };
    let loaded = load_config(config_path)?;
    let mut store = open_store(&loaded, Access::ReadWrite(Durability::Full))?;
    let outcomes = store
        .enqueue(&items, &Origin::Command, jiff::Timestamp::now())
        .map_err(|error| Failure::failed(format!("{origin_text}: {error}")))?;
    crate::wake::notify(&loaded.config.queue.database);
    report(&outcomes);
    Ok(())
}

/// Prints one line per record and a summary.
fn report(outcomes: &[EnqueueOutcome]) {
    let mut new = 0;
    for outcome in outcomes {
        if outcome.already_queued {
            println!("pedido {}: já na fila (item {}, {})", outcome.order, outcome.id, outcome.state.label());
        } else {
            new += 1;
            println!("pedido {}: enfileirado (item {})", outcome.order, outcome.id);
        }
    }
    println!("{new} enfileirado(s), {} já na fila", outcomes.len() - new);
}

/// "entrada padrão" or the file's path, for messages.
fn describe_source(path: &Path) -> String {
    if path == Path::new("-") { "entrada padrão".to_owned() } else { path.display().to_string() }
}

/// Reads and validates a whole document from a file or stdin.
fn read_document(path: &Path) -> Result<Vec<NewItem>, Failure> {
    let source = describe_source(path);
    let read_error = |error: std::io::Error| {
        Failure::failed(format!("não foi possível ler {source}: {}", crate::text::io_error(&error)))
    };
    let limit = u64::try_from(MAX_DOCUMENT_BYTES + 1).unwrap_or(u64::MAX);
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes).map_err(read_error)?;
    } else {
        std::fs::File::open(path)
            .and_then(|file| file.take(limit).read_to_end(&mut bytes))
            .map_err(read_error)?;
    }
    let records =
        intake::parse_document(&bytes).map_err(|error| Failure::failed(format!("{source}: {error}")))?;
    Ok(records.into_iter().map(|record| record.item).collect())
}

/// Builds the one record given by flags, through the same validation as JSON input.
fn from_flags(args: &EnqueueArgs) -> Result<NewItem, Failure> {
    let mut record = Map::new();
    let text_fields = [
        ("order", &args.order),
        ("branch", &args.branch),
        ("reason", &args.reason),
        ("cancelled_at", &args.cancelled_at),
        ("customer", &args.customer),
    ];
    for (field, value) in text_fields {
        if let Some(value) = value {
            record.insert(field.to_owned(), Value::String(value.clone()));
        }
    }
    if let Some(extra) = &args.extra {
        let value: Value = serde_json::from_str(extra)
            .map_err(|_| Failure::usage(format!("opção --extra: \"{extra}\" não é JSON válido")))?;
        record.insert("extra".to_owned(), value);
    }
    item::from_json(&Value::Object(record)).map_err(|error| {
        let flag =
            error.field.as_deref().map_or_else(String::new, |field| format!("--{}", field.replace('_', "-")));
        Failure::usage(format!("opção {flag}: {}", error.message))
    })
}
