//! `extrator enqueue`: add cancellations from flags (one) or from `--json FILE|-` (an object, an
//! array, or JSON lines). The batch is validated whole, then committed whole with
//! `synchronous=FULL`; only then is "enfileirado" printed.
//!
//! Where it goes: to the running daemon through its socket (`handoff`), which is how the ERP's
//! account queues without write access to the database; with no daemon, straight into the
//! database for an account that may write it (root, the service's), or else durably into the
//! spool, taken when the daemon starts. A daemon that stops mid-answer gets the batch in the
//! spool too: intake is idempotent, so nothing is lost or doubled.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Map, Value};

use super::{load_queue_config, open_store};
use crate::core::failure::{Failure, Outcome};
use crate::core::intake::{self, MAX_DOCUMENT_BYTES};
use crate::core::item::Origin;
use crate::core::item::{self, NewItem};
use crate::io::handoff::{self, Handed};
use crate::io::store::{Access, Durability, EnqueueOutcome};

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
    let loaded = load_queue_config(config_path, false)?;
    let queue = &loaded.config.queue;
    let refused = |message: &dyn std::fmt::Display| Failure::failed(format!("{origin_text}: {message}"));
    let lines = handoff::json_lines(&items);
    let handed = if lines.len() > handoff::MAX_BATCH_BYTES {
        // Too large for the daemon to hold: if it runs, its spool import takes the batch a
        // record at a time; if not, whoever may write the queue writes it below.
        match handoff::connect(&queue.socket) {
            Ok(_) => {
                let why = format!(
                    "um lote grande ({}) vai pelo spool; o resultado fica em processados/ ou, \
                     se recusado, em rejeitados/ com o motivo",
                    crate::core::text::count(items.len() as u64, "cancelamento", "cancelamentos")
                );
                return to_spool(&queue.spool_dir, &lines, items.len(), &why);
            }
            Err(why) => why,
        }
    } else {
        handoff::hand(&queue.socket, &lines)
    };
    match handed {
        Handed::Queued(outcomes) => {
            report(&outcomes);
            return Ok(());
        }
        Handed::Refused(message) => return Err(refused(&message)),
        Handed::Denied => {
            return Err(Failure::failed(format!(
                "sem permissão para entregar ao serviço pelo socket {}: a conta precisa estar no grupo \
                 extrator-entrada (usermod -aG extrator-entrada USUÁRIO, depois entre de novo)",
                queue.socket.display()
            )));
        }
        Handed::Unavailable(detail) => {
            let why =
                format!("o serviço não conseguiu gravar agora ({detail}) e os enfileira na próxima passada");
            return to_spool(&queue.spool_dir, &lines, items.len(), &why);
        }
        Handed::Busy(detail) => {
            let why = format!("o serviço está ocupado ({detail}) e os enfileira na próxima passada");
            return to_spool(&queue.spool_dir, &lines, items.len(), &why);
        }
        Handed::Broken(detail) => {
            let why = format!(
                "o serviço não respondeu ({detail}); um pedido que já tenha entrado aparece como \"já na fila\""
            );
            return to_spool(&queue.spool_dir, &lines, items.len(), &why);
        }
        Handed::NoDaemon => {}
    }
    // No daemon: whoever may write the queue (root, the service's account) writes it; anyone
    // else leaves the batch in the spool, durably, for the daemon to take when it starts.
    if !may_write(&queue.database) {
        let why =
            "o serviço não está rodando e os enfileira quando voltar (veja com `systemctl status extrator`)";
        return to_spool(&queue.spool_dir, &lines, items.len(), why);
    }
    // With no daemon, the store itself is the way in (io::queue).
    let mut store = open_store(&loaded, Access::ReadWrite(Durability::Full))?;
    let outcomes =
        crate::io::queue::Queue::enqueue(&mut store, items, Origin::Command, jiff::Timestamp::now())
            .map_err(|error| refused(&error))?;
    report(&outcomes);
    Ok(())
}

/// Whether this process may write the database (or create it in its directory).
fn may_write(database: &Path) -> bool {
    use rustix::fs::Access as Can;
    let target = if database.exists() { database } else { crate::io::store::directory_of(database) };
    rustix::fs::access(target, Can::WRITE_OK).is_ok()
}

/// Writes the batch into the spool as one file (a temporary name, synced, renamed, the
/// directory synced): on disk before "gravado" is said, taken by the daemon at its next pass.
/// `why` says why it went there, after the file's name.
fn to_spool(spool: &Path, lines: &[u8], count: usize, why: &str) -> Outcome {
    let now = jiff::Timestamp::now();
    let name = format!("enqueue-{}-{}.json", now.strftime("%Y%m%dT%H%M%S%.3f"), std::process::id());
    let written = crate::io::safe_fs::Dir::open(spool).and_then(|dir| dir.write_new(&name, lines, 0o640));
    if let Err(error) = written {
        return Err(Failure::failed(format!(
            "não foi possível gravar o lote no spool {}: {}; nada foi gravado ({why})",
            spool.display(),
            crate::core::text::io_error(&error)
        )));
    }
    println!(
        "{} no spool em {}: {why}",
        crate::core::text::count(count as u64, "cancelamento gravado", "cancelamentos gravados"),
        spool.join(&name).display()
    );
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
    println!(
        "{}, {} já na fila",
        crate::core::text::count(new as u64, "enfileirado", "enfileirados"),
        outcomes.len() - new
    );
}

/// "entrada padrão" or the file's path, for messages.
fn describe_source(path: &Path) -> String {
    if path == Path::new("-") { "entrada padrão".to_owned() } else { path.display().to_string() }
}

/// Reads and validates a whole document from a file or stdin.
fn read_document(path: &Path) -> Result<Vec<NewItem>, Failure> {
    let source = describe_source(path);
    let read_error = |error: std::io::Error| {
        Failure::failed(format!("não foi possível ler {source}: {}", crate::core::text::io_error(&error)))
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
