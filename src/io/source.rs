//! Polled sources (`[[source]]`): a command run every `interval` whose standard output is
//! cancellations in the intake format, imported through the same validation, all or nothing per
//! run, idempotent on `order` — so a query that prints the last N days every time is safe and
//! needs no watermark.
//!
//! A run: the program (no shell) as the service user, in a process group of its own, stdin
//! closed, an environment of `PATH`, `LANG` and the `environment_file`'s variables only; stdout
//! read up to `MAX_OUTPUT`, stderr's first bytes kept, masked, then cut to `STDERR_EXCERPT`. Past
//! `timeout`, or past the output bound, the run is killed and nothing is imported. When the run
//! ends, every process it started dies with it — the group, and those that left it, found by the
//! `RUN_MARK` variable each inherits; a command that exited while a child it left behind still
//! holds its output open is taken as finished after `PIPE_GRACE`, not reported as a timeout. The output is parsed by
//! `intake` after `Source::adapt` maps the command's field names onto ours; an order already
//! queued is left as it was (its first version wins: the ERP may edit a cancelled order's text
//! after we took it, and that must not stop the source). The `environment_file`'s values are
//! secrets: `Source::mask` hides them in every text the command printed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::SourceConfig;
use crate::core::intake::Location;
use crate::core::item::NewItem;

/// The most a run may print; more is refused (and the command killed). A quarter of the spool's
/// bound: a run's rows are all held as items until they are queued, and "the last N days" of
/// cancellations is tens of thousands of rows at most.
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;
/// How much of stderr is shown to say why a run failed (after masking: a secret cut in half
/// by the bound would no longer be recognised).
pub const STDERR_EXCERPT: usize = 2 * 1024;
/// The longest explanation of a failed run kept in `sources.error`, shown and logged.
pub const MAX_MESSAGE: usize = 4 * 1024;
/// How much of stderr is read and masked before it is cut to `STDERR_EXCERPT`.
const STDERR_READ: usize = 16 * 1024;
/// How long the pipes may stay open after the command exited (a child it left behind still
/// holding them) before what is left of the run is killed.
const PIPE_GRACE: Duration = Duration::from_secs(1);
/// The variable that marks every process of a run, daemonized ones included (`setsid`, `ssh
/// -f`), so that the run's end finds them all: `<daemon pid>-<run number>`.
pub const RUN_MARK: &str = "EXTRATOR_FONTE_EXECUCAO";
/// The `PATH` the command sees.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A configured source, with its environment file read.
#[derive(Clone)]
pub struct Source {
    pub config: SourceConfig,
    /// The `environment_file`'s variables: only in the command's environment.
    environment: Vec<(String, String)>,
    /// Masks their values in what the command prints, as `io::secrets::Redactor` masks the API's secrets.
    redactor: crate::io::secrets::Redactor,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("name", &self.config.name).finish_non_exhaustive()
    }
}

/// What went wrong in a run. `Display` is the pt-BR explanation, secrets masked by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The program could not be started.
    Start(String),
    /// It exited with a failure (the status, stderr's excerpt).
    Exit { status: String, stderr: String },
    /// It ran past `timeout` and was killed.
    Timeout(Duration),
    /// It printed more than `MAX_OUTPUT` and was killed.
    TooLarge,
    /// Its output is not cancellations in the intake format.
    Output(String),
    /// One order printed twice with different content (a JOIN that repeats rows): which order,
    /// where, and the fields that differ.
    Duplicate { order: String, first: Location, second: Location, fields: Vec<&'static str> },
    /// It exited, but a process it left behind — one that escaped the kill — still holds its
    /// output open.
    Held,
}

impl RunError {
    /// One word per kind, for "logged once per change of state" and the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::Start(_) => "start",
            RunError::Exit { .. } => "exit",
            RunError::Timeout(_) => "timeout",
            RunError::TooLarge => "too_large",
            RunError::Output(_) => "output",
            RunError::Duplicate { .. } => "duplicate",
            RunError::Held => "held",
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stderr = |text: &str| {
            if text.trim().is_empty() { String::new() } else { format!("; saída de erro: {}", text.trim()) }
        };
        match self {
            RunError::Start(why) => write!(f, "o comando não pôde ser iniciado: {why}"),
            RunError::Exit { status, stderr: text } => {
                write!(f, "o comando terminou com {status}{}", stderr(text))
            }
            RunError::Timeout(after) => {
                write!(
                    f,
                    "o comando passou de {} (timeout) e foi encerrado",
                    crate::core::duration::format(*after)
                )
            }
            RunError::TooLarge => write!(
                f,
                "o comando imprimiu mais de {} MiB e foi encerrado: limite a consulta (os últimos N dias)",
                MAX_OUTPUT / (1024 * 1024)
            ),
            RunError::Output(why) => write!(f, "a saída do comando não é uma lista de cancelamentos: {why}"),
            RunError::Held => write!(
                f,
                "o comando terminou, mas um processo que ele deixou em segundo plano mantém a saída aberta \
                 e não pôde ser encerrado; nada foi enfileirado"
            ),
            RunError::Duplicate { order, first, second, fields } => write!(
                f,
                "o pedido {} aparece duas vezes com conteúdos diferentes ({first} e {second}; difere em {}): \
                 nada desta execução foi enfileirado; corrija o comando para imprimir cada pedido uma vez \
                 (um JOIN que repete linhas?)",
                crate::core::text::terminal_safe(&crate::core::text::quoted(order)),
                fields.join(", ")
            ),
        }
    }
}

/// What a successful run printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Rows read (0 for an empty output: nothing cancelled in the period).
    pub rows: usize,
    pub items: Vec<NewItem>,
}

impl Source {
    /// The source of a config entry, reading its environment file (a pt-BR error naming it).
    pub fn new(config: &SourceConfig) -> Result<Source, String> {
        let environment = match &config.environment_file {
            Some(path) => {
                read_environment(path).map_err(|why| format!("fonte \"{}\": {why}", config.name))?
            }
            None => Vec::new(),
        };
        let redactor =
            crate::io::secrets::Redactor::of_secrets(environment.iter().map(|(_, value)| value.as_str()));
        Ok(Source { config: config.clone(), environment, redactor })
    }

    /// Every source of a config.
    pub fn all(configs: &[SourceConfig]) -> Result<Vec<Source>, String> {
        configs.iter().map(Source::new).collect()
    }

    /// `text` with every value of the environment file masked (`core::secret::MASK`).
    pub fn mask(&self, text: &str) -> String {
        self.redactor.redact(text, None)
    }

    /// Runs the command once and parses what it printed.
    pub async fn run(&self) -> Result<Output, RunError> {
        let printed = self.execute().await?;
        self.parse(&printed)
    }

    /// Parses a run's standard output: empty is zero rows; anything else must be cancellations.
    pub fn parse(&self, printed: &[u8]) -> Result<Output, RunError> {
        if printed.iter().all(u8::is_ascii_whitespace) {
            return Ok(Output { rows: 0, items: Vec::new() });
        }
        let mut records = Vec::new();
        let rows = crate::core::intake::check_document_with(
            printed,
            |value| self.adapt(value),
            |record| records.push(record),
        )
        .map_err(|error| {
            RunError::Output(crate::core::text::terminal_safe(&self.mask(&error.to_string())).into_owned())
        })?;
        let items = distinct(records).map_err(|mut error| {
            if let RunError::Duplicate { order, .. } = &mut error {
                *order = self.mask(order);
            }
            error
        })?;
        Ok(Output { rows, items })
    }

    /// A row as the intake takes it: the command's field names mapped onto ours, SQL's nulls
    /// dropped, the constant `reason` where the row has none.
    pub fn adapt(&self, value: &mut Value) {
        let Value::Object(row) = value else { return };
        let mut adapted = serde_json::Map::new();
        for (name, field) in std::mem::take(row) {
            if field.is_null() {
                continue;
            }
            let name = self.config.fields.get(&name).cloned().unwrap_or(name);
            adapted.insert(name, field);
        }
        if let Some(reason) = &self.config.reason {
            adapted.entry("reason").or_insert_with(|| Value::String(reason.clone()));
        }
        *row = adapted;
    }

    /// Runs the program: its standard output, or why the run failed.
    async fn execute(&self) -> Result<Vec<u8>, RunError> {
        let Some((program, arguments)) = self.config.command.split_first() else {
            return Err(RunError::Start("nenhum programa em source.command".to_owned()));
        };
        let mark = Run::next_mark();
        let mut command = tokio::process::Command::new(program);
        command
            .args(arguments)
            .env_clear()
            .env("PATH", PATH)
            .env("LANG", "C.UTF-8")
            .envs(self.environment.iter().map(|(name, value)| (name, value)))
            .env(RUN_MARK, &mark)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|error| {
            RunError::Start(format!("{}: {}", program, crate::core::text::io_error(&error)))
        })?;
        // Everything the run started is killed however this ends: done, timed out, too much
        // output, or this task dropped (the daemon stopping).
        let run = Run { group: child.id(), mark };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(RunError::Start("sem saída padrão".to_owned()));
        };
        let timeout = self.config.timeout.get();
        let reading = async {
            tokio::join!(
                async {
                    let printed = read_bounded(stdout, MAX_OUTPUT).await;
                    if printed.is_none() {
                        // Too much: stop it now rather than read what is left.
                        run.kill();
                    }
                    printed
                },
                read_excerpt(stderr, STDERR_READ)
            )
        };
        let mut reading = std::pin::pin!(reading);
        // `timeout` bounds the command; once it has exited, its leftovers get `PIPE_GRACE`.
        let finished = tokio::time::timeout(timeout, async {
            tokio::select! {
                status = child.wait() => (status, None),
                both = &mut reading => (child.wait().await, Some(both)),
            }
        })
        .await;
        let Ok((status, read)) = finished else { return Err(RunError::Timeout(timeout)) };
        let (printed, complaint) = match read {
            Some(both) => both,
            // The command exited with a pipe still open: a child it left behind holds it. What
            // the command printed is all there; the leftovers are killed, not waited for.
            None => match tokio::time::timeout(PIPE_GRACE, &mut reading).await {
                Ok(both) => both,
                Err(_) => {
                    run.kill();
                    tokio::time::timeout(PIPE_GRACE, &mut reading).await.map_err(|_| RunError::Held)?
                }
            },
        };
        // One line: what the command said, its lines joined, masked, then cut, then escaped.
        let complaint = String::from_utf8_lossy(&complaint)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" | ");
        let complaint = crate::core::text::cut(&self.mask(&complaint), STDERR_EXCERPT);
        let complaint = crate::core::text::terminal_safe(&complaint).into_owned();
        let Some(printed) = printed else { return Err(RunError::TooLarge) };
        match status {
            Ok(status) if status.success() => Ok(printed),
            Ok(status) => Err(RunError::Exit { status: describe(status), stderr: complaint }),
            Err(error) => Err(RunError::Start(crate::core::text::io_error(&error))),
        }
    }
}

/// A run's records with repeated rows folded into one: the same order twice with the same
/// content is one item (a query may repeat a row harmlessly); with different content the run is
/// refused whole, naming the order and both places — which version is right is the ERP's to say.
fn distinct(records: Vec<crate::core::intake::Record>) -> Result<Vec<NewItem>, RunError> {
    let mut seen: std::collections::HashMap<String, (Location, usize)> = std::collections::HashMap::new();
    let mut items: Vec<NewItem> = Vec::with_capacity(records.len());
    for record in records {
        if let Some((first, index)) = seen.get(&record.item.order) {
            let fields = crate::core::item::differing_fields(&items[*index], &record.item);
            if fields.is_empty() {
                continue;
            }
            return Err(RunError::Duplicate {
                order: record.item.order,
                first: *first,
                second: record.location,
                fields,
            });
        }
        seen.insert(record.item.order.clone(), (record.location, items.len()));
        items.push(record.item);
    }
    Ok(items)
}

/// "código de saída 1", "sinal 9".
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("código de saída {code}"),
        (None, Some(signal)) => format!("o sinal {signal}"),
        _ => status.to_string(),
    }
}

/// A run's processes: its process group, and every process carrying its `RUN_MARK` (those
/// that left the group: `setsid`, a daemon's double fork). All are killed when this is dropped.
/// A process that both leaves the group and clears its environment escapes this; under the
/// unit, systemd still kills it with the service (`KillMode=control-group`).
struct Run {
    group: Option<u32>,
    mark: String,
}

impl Run {
    /// A mark no other run of any daemon on this machine shares: the pid and a counter.
    fn next_mark() -> String {
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{run}", std::process::id())
    }

    /// Kills the group and every marked process, if still there.
    fn kill(&self) {
        use rustix::process::{Pid, Signal};
        let pid = self.group.and_then(|pid| i32::try_from(pid).ok()).and_then(Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
        // A marked process may fork while it is being looked for: look again until none is left
        // (a few rounds at most; each kill is final).
        for _ in 0..5 {
            let marked = marked_processes(&self.mark);
            if marked.is_empty() {
                break;
            }
            for pid in marked {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The processes whose environment holds `RUN_MARK=mark` (those this account may read: its own).
fn marked_processes(mark: &str) -> Vec<rustix::process::Pid> {
    let wanted = format!("{RUN_MARK}={mark}");
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let own = std::process::id();
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| environ.split(|&byte| byte == 0).any(|entry| entry == wanted.as_bytes()))
        })
        .filter_map(|pid| rustix::process::Pid::from_raw(i32::try_from(pid).ok()?))
        .collect()
}

/// Everything `reader` gives, or `None` once it passes `limit`.
async fn read_bounded(mut reader: impl AsyncRead + Unpin, limit: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut chunk = vec![0_u8; 64 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return Some(bytes),
            Ok(read) => {
                if bytes.len() + read > limit {
                    return None;
                }
                bytes.extend_from_slice(&chunk[..read]);
            }
        }
    }
}

/// The first `limit` bytes `reader` gives; the rest is read and dropped (so the writer never
/// blocks on a full pipe).
async fn read_excerpt(mut reader: impl AsyncRead + Unpin, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(read) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..read.min(room)]);
            }
        }
    }
}

/// `NAME=value` lines (systemd's `EnvironmentFile=` shape): blank lines and `#` comments are
/// skipped, `export ` is allowed, a value may be quoted. Read as a secret file (bounded, never a
/// FIFO: `read_small_text`). An error names the file and the line, never a value.
pub fn read_environment(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = crate::io::secrets::read_small_text(path, "source.environment_file")?;
    let mut variables = BTreeMap::new();
    let at = |number: usize, what: &str| {
        format!("source.environment_file {}, linha {}: {what}", path.display(), number + 1)
    };
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(at(number, "esperava NOME=valor"));
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(at(number, "nome de variável inválido"));
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|quote| value.strip_prefix(*quote).and_then(|rest| rest.strip_suffix(*quote)))
            .unwrap_or(value);
        variables.insert(name.to_owned(), value.to_owned());
    }
    Ok(variables.into_iter().collect())
}

/// How long since `start`, in whole milliseconds.
pub fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(fields: &[(&str, &str)], reason: Option<&str>) -> Source {
        let config = SourceConfig {
            name: "winthor".to_owned(),
            command: vec!["true".to_owned()],
            reason: reason.map(str::to_owned),
            fields: fields.iter().map(|(from, to)| ((*from).to_owned(), (*to).to_owned())).collect(),
            ..SourceConfig::default()
        };
        let environment = vec![("ORACLE_CONN".to_owned(), "usuario/S3nh4@db".to_owned())];
        let redactor =
            crate::io::secrets::Redactor::of_secrets(environment.iter().map(|(_, value)| value.as_str()));
        Source { config, environment, redactor }
    }

    #[test]
    fn rows_are_mapped_onto_our_fields_with_nulls_dropped_and_a_constant_reason() {
        let source = source(&[("NUMPED", "order"), ("CODFILIAL", "branch")], Some("cancelado no Winthor"));
        let output = source
            .parse(br#"[{"NUMPED": 100301, "CODFILIAL": "2", "customer": null}, {"NUMPED": 100302, "CODFILIAL": 2, "reason": "preco"}]"#)
            .unwrap();
        assert_eq!(output.rows, 2);
        assert_eq!(output.items[0].order, "100301");
        assert_eq!(output.items[0].reason, "cancelado no Winthor");
        assert_eq!(output.items[1].reason, "preco");
        assert_eq!(output.items[0].customer, None);
    }

    #[test]
    fn empty_output_is_no_rows_and_bad_output_is_an_error_without_the_secret() {
        let source = source(&[], None);
        assert_eq!(source.parse(b"\n").unwrap().rows, 0);
        let error = source.parse(b"{\"order\": \"usuario/S3nh4@db\", \"branch\": 1}\n{quebrado").unwrap_err();
        assert_eq!(error.kind(), "output");
        assert!(!error.to_string().contains("S3nh4"), "{error}");
    }

    #[test]
    fn the_environment_file_is_read_as_systemd_reads_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oracle.env");
        std::fs::write(
            &path,
            "# conexão\nexport ORACLE_CONN=\"u/p@db\"\n\nNLS_LANG=AMERICAN_AMERICA.AL32UTF8\n",
        )
        .unwrap();
        assert_eq!(
            read_environment(&path).unwrap(),
            [
                ("NLS_LANG".to_owned(), "AMERICAN_AMERICA.AL32UTF8".to_owned()),
                ("ORACLE_CONN".to_owned(), "u/p@db".to_owned())
            ]
        );
        std::fs::write(&path, "ORACLE_CONN u/segredo@db\n").unwrap();
        let error = read_environment(&path).unwrap_err();
        assert!(error.contains("linha 1") && !error.contains("segredo"), "{error}");
    }
}
