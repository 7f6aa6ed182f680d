//! Shared helpers: a temporary installation (config, database, spool) and ways to run the real
//! `extrator` binary against it and read its real SQLite file.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_extrator"))
}

/// A temporary installation: its own config, database and spool directory.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    database: PathBuf,
    spool: PathBuf,
}

impl Env {
    /// A new installation with a fast poll interval, whose API is a closed port on loopback
    /// (tests never reach the network; a daemon started here sees code 01).
    pub fn new() -> Env {
        Env::build("http://127.0.0.1:1/cancelamentos", "", "")
    }

    /// A new installation calling `url`, with `api` lines added to `[api]` and `extra` sections
    /// at the end.
    pub fn build(url: &str, api: &str, extra: &str) -> Env {
        Env::build_with_queue(url, api, extra, None)
    }

    /// `build`, with the database and spool directory in `queue_dir` (a small file system, say).
    pub fn build_with_queue(url: &str, api: &str, extra: &str, queue_dir: Option<&std::path::Path>) -> Env {
        Env::with_sections(&format!("[api]\nurl = \"{url}\"\n{api}\n"), extra, queue_dir)
    }

    /// An installation whose config is `text` (with no `[queue]` section) plus this
    /// installation's `[queue]`: how the shipped examples are tried.
    pub fn with_config(text: &str) -> Env {
        Env::with_sections(text, "", None)
    }

    /// The config `before`, the `[queue]` section, then `after`.
    fn with_sections(before: &str, after: &str, queue_dir: Option<&std::path::Path>) -> Env {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("extrator.toml");
        let queue_dir = queue_dir.map_or_else(|| dir.path().to_path_buf(), std::path::Path::to_path_buf);
        let (database, spool) = (queue_dir.join("fila.db"), queue_dir.join("spool"));
        let text = format!(
            "{before}\n[queue]\ndatabase = \"{}\"\nspool_dir = \"{}\"\nsocket = \"{}\"\npoll_interval = \"100ms\"\n{after}",
            database.display(),
            spool.display(),
            queue_dir.join("entrada.sock").display()
        );
        std::fs::write(&config, text).expect("write config");
        Env { dir, config, database, spool }
    }

    /// The daemon's intake socket (`queue.socket`).
    pub fn intake_socket(&self) -> PathBuf {
        self.database.with_file_name("entrada.sock")
    }

    /// One integer from a query on the real database.
    pub fn number(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |row| row.get(0)).expect(sql)
    }

    pub fn database(&self) -> PathBuf {
        self.database.clone()
    }

    pub fn spool(&self) -> PathBuf {
        self.spool.clone()
    }

    /// A command for the binary with this installation's config and a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin());
        command.args(args).env("EXTRATOR_CONFIG", &self.config).env_remove("RUST_LOG").env("TZ", "UTC");
        for (name, _) in std::env::vars() {
            if name.starts_with("EXTRATOR_") && name != "EXTRATOR_CONFIG" {
                command.env_remove(name);
            }
        }
        command
    }

    /// Runs the binary to completion with no input.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().expect("run extrator")
    }

    /// Runs the binary with `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn extrator");
        let mut stdin = child.stdin.take().expect("stdin");
        // The binary may refuse before reading everything; a broken pipe is then expected.
        let _ = stdin.write_all(input);
        drop(stdin);
        child.wait_with_output().expect("wait extrator")
    }

    /// Starts `extrator run` in the background, stderr captured to a file.
    pub fn spawn_daemon(&self) -> Child {
        let log = std::fs::File::create(self.dir.path().join("daemon.log")).expect("log file");
        self.command(&["run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn run")
    }

    /// What the daemon has logged so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// A direct connection to the real database file.
    pub fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.database()).expect("open database");
        conn.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
        conn
    }

    /// How many items are queued.
    pub fn item_count(&self) -> i64 {
        if !self.database().exists() {
            return 0;
        }
        self.db().query_row("SELECT COUNT(*) FROM items", [], |row| row.get(0)).expect("count")
    }

    /// Every item row as text, to compare the queue before and after a refused operation.
    pub fn dump(&self) -> Vec<String> {
        if !self.database().exists() {
            return Vec::new();
        }
        let conn = self.db();
        let mut statement = conn
            .prepare(
                "SELECT id, order_number, branch, reason, cancelled_at, customer, extra, state, attempts, \
                 next_at, updated_at FROM items ORDER BY id",
            )
            .expect("prepare dump");
        statement
            .query_map([], |row| {
                let mut cells = Vec::new();
                for index in 0..11 {
                    let value: rusqlite::types::Value = row.get(index)?;
                    cells.push(format!("{value:?}"));
                }
                Ok(cells.join("|"))
            })
            .expect("dump")
            .collect::<Result<_, _>>()
            .expect("dump rows")
    }

    /// Writes a file into the spool the way the ERP should: a `.tmp` file renamed into place.
    pub fn drop_spool_file(&self, name: &str, contents: &[u8]) {
        std::fs::create_dir_all(self.spool()).expect("spool dir");
        let temporary = self.spool().join(format!("{name}.tmp"));
        std::fs::write(&temporary, contents).expect("write spool file");
        std::fs::rename(&temporary, self.spool().join(name)).expect("rename spool file");
    }

    /// File names in a spool subdirectory (or the spool itself with `""`).
    pub fn spool_files(&self, subdir: &str) -> Vec<String> {
        let dir = if subdir.is_empty() { self.spool() } else { self.spool().join(subdir) };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
                    .filter_map(|entry| entry.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Asserts the exit code, printing the command's output when it differs.
#[track_caller]
pub fn expect_exit(output: &Output, code: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "exit code\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    (stdout, stderr)
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends a signal to a child process with `kill(1)`.
pub fn signal(child: &Child, name: &str) {
    let status =
        Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().expect("kill");
    assert!(status.success(), "kill -{name} failed");
}

/// A spool document of about 63 MiB (just under the 64 MiB limit) of valid JSON lines with long
/// reasons, and how many records it holds.
pub fn big_spool_document() -> (String, usize) {
    let reason = "motivo longo de importação em massa ".repeat(10);
    let mut lines = String::with_capacity(64 * 1024 * 1024);
    let mut records = 0;
    while lines.len() < 63 * 1024 * 1024 {
        let order = 10_000_000 + records;
        lines.push_str(&format!("{{\"order\": \"{order}\", \"branch\": \"1\", \"reason\": \"{reason}\"}}\n"));
        records += 1;
    }
    (lines, records)
}

/// One JSON record.
pub fn record(order: &str, reason: &str) -> String {
    format!(r#"{{"order": "{order}", "branch": "1", "reason": "{reason}"}}"#)
}

/// A JSON-lines document of orders `first..first + count`.
pub fn json_lines(first: usize, count: usize) -> String {
    (first..first + count).map(|order| record(&order.to_string(), "cliente desistiu") + "\n").collect()
}

/// Checks, for a test that needs root (and `needs`, described for the message), that it can run.
/// Such a test is `#[ignore]`d with its reason, so `cargo test` lists it as ignored rather than
/// pass it unrun; it runs when asked (`scripts/test` as root, or `cargo test -- --include-ignored`),
/// and then a missing piece fails it, naming what is missing.
#[track_caller]
pub fn privileged(what: &str, needs: &str, available: bool) {
    let root = Command::new("id").arg("-u").output().is_ok_and(|output| output.stdout == b"0\n");
    assert!(
        root && available,
        "{what} needs root and {needs} (root: {root}, {needs}: {available}); scripts/test as root sets it up"
    );
}

/// Checks, for a test that needs the program `name` (no root), that it is installed; as
/// `privileged`, the test is `#[ignore]`d with its reason and fails, naming the program, when it
/// is run without it.
#[track_caller]
pub fn needs_program(what: &str, name: &str) {
    assert!(has_command(name), "{what} needs the program {name}; scripts/test as root installs it");
}

/// Whether a command is on the PATH.
pub fn has_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// A free port on loopback, released for the process that will bind it (or a closed port, for a
/// test that wants one). Taken below Linux's ephemeral range (32768–60999), in turn from a start
/// that differs per test process: the OS's own choice of port 0 — another test's listener, or the
/// source port of any of the thousands of connections the load tests open — never lands on a port
/// handed out here between its release and the bind of the server it is for.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = u16::try_from(FIRST + offset).expect("below 32768");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on loopback between {FIRST} and {}", FIRST + SPAN)
}

/// `GET path` over HTTP/1.0 with an optional `Authorization`, read whole: the status, the head
/// (status line and headers) and the body; `None` when nothing answers.
pub fn http_get(address: &str, path: &str, authorization: Option<&str>) -> Option<(u16, String, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let header = authorization.map_or_else(String::new, |value| format!("Authorization: {value}\r\n"));
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n{header}\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head.to_owned(), body.to_owned()))
}

/// The npm tools and OpenAPI documents `scripts/test-tools` installs (`target/test-tools`), for
/// a test that needs them (`what`, for the message); `#[ignore]`d like `privileged`'s, and failed
/// when run without them.
#[track_caller]
pub fn test_tools(what: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-tools");
    let installed = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|entry| entry.file_name().to_string_lossy().starts_with(".installed-"))
        })
        .unwrap_or(false);
    assert!(
        installed && has_command("node"),
        "{what} needs node and scripts/test-tools (scripts/test as root runs it)"
    );
    dir
}

/// A process the test started, stopped when dropped: SIGTERM (so a server such as nginx stops
/// its workers too), then SIGKILL if it is still there after 5 s.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `wait_until`, saying `context()` (the daemon's log, say) when it times out.
#[track_caller]
pub fn wait_until_or(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}\n{}", context());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every byte of the database and its WAL, as text (to look for what must not be stored).
pub fn database_bytes(env: &Env) -> String {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let mut path = env.database().into_os_string();
        path.push(suffix);
        bytes.extend(std::fs::read(path).unwrap_or_default());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
