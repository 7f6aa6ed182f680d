//! How close extrator runs to this machine's limit, measured in one run (`cargo bench`; figures in
//! docs/PERFORMANCE.md). Each figure comes with the ceiling it is compared with, measured in the
//! same run on the same machine: the raw SQLite commit rate with the daemon's settings and the
//! raw HTTP request rate against the same simulated API. `BENCH_QUICK=1` shrinks every size for
//! a quick look. Nothing here is a test: it prints figures and ratios, it asserts nothing.

#![allow(clippy::unwrap_used, reason = "a benchmark: a failed setup step should stop it loudly")]

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use extrator::io::store::{Access, Durability, Store};
use extrator::simulator::{Background, Scenario};

fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some()
}

/// `full` normally, `small` with BENCH_QUICK.
fn size(full: usize, small: usize) -> usize {
    if quick() { small } else { full }
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_extrator"))
}

/// A scratch installation for the real binary (or another build of it, `BENCH_BASELINE`).
struct Install {
    dir: tempfile::TempDir,
    config: PathBuf,
    bin: PathBuf,
}

impl Install {
    fn new(url: &str, concurrency: usize, poll: &str) -> Install {
        Install::with_sections(url, concurrency, poll, "")
    }

    /// `new`, with `sections` (say an `[api.request]`) at the end of the config.
    fn with_sections(url: &str, concurrency: usize, poll: &str, sections: &str) -> Install {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("extrator.toml");
        let text = format!(
            "[api]\nurl = \"{url}\"\nconcurrency = {concurrency}\n[queue]\ndatabase = \"{}\"\nspool_dir = \"{}\"\nsocket = \"{}\"\npoll_interval = \"{poll}\"\nspool_quiet = \"0s\"\n{sections}",
            dir.path().join("fila.db").display(),
            dir.path().join("spool").display(),
            dir.path().join("entrada.sock").display()
        );
        std::fs::write(&config, text).unwrap();
        Install { dir, config, bin: binary() }
    }

    /// The same installation run by another build.
    fn with_binary(self, bin: &Path) -> Install {
        Install { bin: bin.to_path_buf(), ..self }
    }

    fn database(&self) -> PathBuf {
        self.dir.path().join("fila.db")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.args(args).env("EXTRATOR_CONFIG", &self.config).stdout(Stdio::null()).stderr(Stdio::null());
        command
    }

    fn enqueue_batch(&self, first: usize, count: usize) {
        let mut child = self.command(&["enqueue", "--json", "-"]).stdin(Stdio::piped()).spawn().unwrap();
        let mut input = String::with_capacity(count * 60);
        for order in first..first + count {
            input.push_str(&format!("{{\"order\":\"{order}\",\"branch\":\"1\",\"reason\":\"bench\"}}\n"));
        }
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// `extrator run` with the environment the systemd unit gives it (its log in the file
    /// `BENCH_LOG` names, if any).
    fn daemon(&self) -> Child {
        let mut command = self.command(&["run"]);
        if let Some(path) = std::env::var_os("BENCH_LOG") {
            command.stderr(std::fs::File::create(path).unwrap());
        }
        command.envs(unit_environment()).spawn().unwrap()
    }

    fn done(&self) -> i64 {
        let conn = rusqlite::Connection::open_with_flags(
            self.database(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.query_row("SELECT COUNT(*) FROM items WHERE state = 'done'", [], |row| row.get(0)).unwrap_or(0)
    }
}

/// The `Environment=` lines of the shipped unit (systemd/extrator.service), so the benchmark
/// measures the daemon as the service runs it.
fn unit_environment() -> Vec<(String, String)> {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/extrator.service")).unwrap();
    unit.lines()
        .filter_map(|line| line.strip_prefix("Environment="))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// Polls until `condition`, at most `limit`.
fn until(limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// SQLite commits per second in WAL with `synchronous` = `mode`, one row each: `FULL` is the
/// intake's setting, `NORMAL` the daemon's (claims and attempt records).
fn ceiling_sqlite(mode: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("teto.db");
    drop(Store::open(&path, Access::ReadWrite(Durability::Full), Duration::from_secs(5)).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    // WAL, as the daemon runs it (a store turns it off when it closes last: see store::Store).
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0)).unwrap();
    conn.pragma_update(None, "synchronous", mode).unwrap();
    conn.execute_batch("CREATE TABLE teto (x INTEGER)").unwrap();
    let commits = if mode == "FULL" { size(3_000, 300) } else { size(20_000, 2_000) };
    let start = Instant::now();
    for index in 0..commits {
        conn.execute("INSERT INTO teto VALUES (?1)", [index as i64]).unwrap();
    }
    commits as f64 / start.elapsed().as_secs_f64()
}

/// HTTP requests per second against the simulator at `concurrency` (keep-alive, current-thread
/// runtime like the daemon's).
fn ceiling_http(url: &str, concurrency: usize) -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let requests = size(20_000, 2_000);
    runtime.block_on(async {
        let client = Arc::new(reqwest::Client::new());
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..concurrency {
            let client = client.clone();
            let url = url.to_owned();
            let share = requests / concurrency;
            tasks.spawn(async move {
                for index in 0..share {
                    let body = format!("{{\"order\":\"teto-{worker}-{index}\"}}");
                    let response = client.post(&url).body(body).send().await.unwrap();
                    let _ = response.bytes().await.unwrap();
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        requests as f64 / start.elapsed().as_secs_f64()
    })
}

/// Items per second from the start of `enqueue` of `count` items to all `done`, with the daemon
/// already running and idle.
/// Returns items/s, the daemon's peak RSS (KiB) and its CPU time (user + system) per item (µs).
fn end_to_end(api: &Background, count: usize, concurrency: usize) -> (f64, u64, f64) {
    end_to_end_with(api, count, concurrency, "")
}

/// A request mapping like the integration hub example's (docs/exemplos/integration-hub.toml):
/// constants, a typed field, a date format, a nested object, a receipt path.
const MAPPING: &str = "[api.request]\nurl = \"URL/{order}\"\n[api.request.body]\n\
    integrationHubServiceId = \"8f14e45f-ea0b-4a7c-9d2e-3b1c5a6f7d90\"\norderKeyType = \"ORDER_ID\"\n\
    orderKey = \"{order}\"\nbranchId = \"{branch:number}\"\n[api.request.body.cancel]\nreason = \"{reason}\"\n\
    cancelledAt = \"{cancelled_at:utc}\"\n[api.response]\nreceipt_path = \"status\"\n";

/// `end_to_end` with `sections` added to the config.
fn end_to_end_with(api: &Background, count: usize, concurrency: usize, sections: &str) -> (f64, u64, f64) {
    end_to_end_by(&binary(), api, count, concurrency, sections)
}

/// `end_to_end_with`, run by the build `bin`.
fn end_to_end_by(
    bin: &Path,
    api: &Background,
    count: usize,
    concurrency: usize,
    sections: &str,
) -> (f64, u64, f64) {
    let install = Install::with_sections(&api.url(), concurrency, "5s", &sections.replace("URL", &api.url()))
        .with_binary(bin);
    install.enqueue_batch(0, 1);
    let daemon = install.daemon();
    until(Duration::from_secs(30), || install.done() == 1);
    let target = api.shared.count() + count;
    let start = Instant::now();
    install.enqueue_batch(1, count);
    // Watch the simulator (free) rather than the database: a reader polling the queue would
    // slow down the writer it measures. Then confirm in the database.
    until(Duration::from_secs(1_800), || api.shared.count() >= target);
    until(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(20));
        install.done() == count as i64 + 1
    });
    let rate = count as f64 / start.elapsed().as_secs_f64();
    let peak = peak_rss_kib(daemon.id());
    let cpu_us = cpu_ticks(daemon.id()) as f64 * 10_000.0 / count as f64; // 100 ticks/s
    stop(daemon);
    (rate, peak, cpu_us)
}

/// VmHWM of a process, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// Enqueue throughput: one process per item, and one batch.
fn enqueue_rates(url: &str) -> (f64, f64) {
    let install = Install::new(url, 4, "5s");
    let processes = size(300, 50);
    let start = Instant::now();
    for order in 0..processes {
        let status = install
            .command(&["enqueue", "--order", &order.to_string(), "--branch", "1", "--reason", "bench"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let per_process = processes as f64 / start.elapsed().as_secs_f64();
    let batch = size(100_000, 10_000);
    let start = Instant::now();
    install.enqueue_batch(1_000_000, batch);
    (per_process, batch as f64 / start.elapsed().as_secs_f64())
}

/// With the service stopped: 1,000 `enqueue` processes writing the database directly, timed per
/// 200, with the -wal's size after each 200 (it must stay bounded, and the time flat).
fn direct_enqueues(url: &str, bin: &Path) {
    let install = Install::new(url, 4, "5s").with_binary(bin);
    let wal = install.dir.path().join("fila.db-wal");
    println!("1,000 direct enqueues (service stopped) by {}, per 200:", bin.display());
    for round in 0..5 {
        let start = Instant::now();
        for order in 0..200 {
            let order = (round * 200 + order).to_string();
            let status = install
                .command(&["enqueue", "--order", &order, "--branch", "1", "--reason", "bench"])
                .status();
            assert!(status.unwrap().success());
        }
        let took = start.elapsed().as_secs_f64();
        let size = std::fs::metadata(&wal).map(|meta| meta.len()).unwrap_or(0);
        println!(
            "  round {}: {:.2} ms per enqueue, -wal {:.1} MB",
            round + 1,
            1000.0 * took / 200.0,
            size as f64 / 1e6
        );
    }
}

/// Fills a database with `count` pending items quickly (one SQL statement).
fn pending_database(dir: &Path, count: usize) -> PathBuf {
    let path = dir.join(format!("pendentes-{count}.db"));
    if path.exists() {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("db-wal"));
        let _ = std::fs::remove_file(path.with_extension("db-shm"));
    }
    drop(Store::open(&path, Access::ReadWrite(Durability::Normal), Duration::from_secs(5)).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1) \
         INSERT INTO items (order_number, branch, reason, cancelled_at, idempotency_key, source, state, next_at, created_at, updated_at) \
         SELECT 'p' || x, '1', 'bench', '2026-11-22T10:00:00Z', 'k' || x, 'bench', 'pending', x, x, x FROM n",
        [count as i64],
    )
    .unwrap();
    path
}

/// Mean claim latency, µs, over 1,000 claims.
fn claim_latency(dir: &Path, pending: usize) -> f64 {
    let path = pending_database(dir, pending);
    let mut store =
        Store::open(&path, Access::ReadWrite(Durability::Normal), Duration::from_secs(5)).unwrap();
    let claims = 1_000.min(pending);
    let now = jiff::Timestamp::now();
    let start = Instant::now();
    for token in 0..claims {
        store.claim(now, Duration::from_secs(60), 1, token as i64).unwrap().pop().unwrap();
    }
    start.elapsed().as_secs_f64() * 1e6 / claims as f64
}

/// Enqueue → first request latencies (ms), sorted, with an idle daemon polling every 5 s.
fn wake_latencies(api: &Background) -> Vec<f64> {
    let install = Install::new(&api.url(), 4, "5s");
    install.enqueue_batch(0, 1);
    let daemon = install.daemon();
    until(Duration::from_secs(30), || install.done() == 1);
    let mut latencies = Vec::new();
    for order in 0..size(50, 10) {
        let before = api.shared.count();
        let start = Instant::now();
        let status = install
            .command(&["enqueue", "--order", &format!("w{order}"), "--branch", "1", "--reason", "bench"])
            .status()
            .unwrap();
        assert!(status.success());
        until(Duration::from_secs(10), || api.shared.count() > before);
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
    }
    stop(daemon);
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// Enqueue → first request latencies (ms) while idle, then while a spool file of about `mib`
/// MiB is being imported: (idle, during the import, items in the file, import seconds).
fn import_latencies(api: &Background, mib: usize) -> (Vec<f64>, Vec<f64>, usize, f64) {
    let install = Install::new(&api.url(), 4, "200ms");
    install.enqueue_batch(0, 1);
    let daemon = install.daemon();
    until(Duration::from_secs(30), || install.done() == 1);
    let sample = |tag: &str, index: usize| {
        let before = api.shared.count();
        let start = Instant::now();
        let status = install
            .command(&["enqueue", "--order", &format!("{tag}{index}"), "--branch", "1", "--reason", "bench"])
            .status()
            .unwrap();
        assert!(status.success());
        until(Duration::from_secs(30), || api.shared.count() > before);
        start.elapsed().as_secs_f64() * 1e3
    };
    let mut idle: Vec<f64> = (0..20).map(|index| sample("ocioso", index)).collect();
    let spool = install.dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let reason = "motivo longo de importação em massa ".repeat(10);
    let mut text = String::with_capacity(mib << 20);
    let mut records = 0;
    while text.len() < mib << 20 {
        text.push_str(&format!(
            "{{\"order\": \"g{records}\", \"branch\": \"1\", \"reason\": \"{reason}\"}}\n"
        ));
        records += 1;
    }
    std::fs::write(spool.join("grande.json.tmp"), &text).unwrap();
    drop(text);
    let start = Instant::now();
    std::fs::rename(spool.join("grande.json.tmp"), spool.join("grande.json")).unwrap();
    let processed = spool.join("processados").join("grande.json");
    let mut during = Vec::new();
    // Samples until the file is in processados/; the first ones may fall before the import begins.
    while !processed.exists() && start.elapsed() < Duration::from_secs(600) {
        during.push(sample("durante", during.len()));
    }
    let seconds = start.elapsed().as_secs_f64();
    stop(daemon);
    idle.sort_by(f64::total_cmp);
    during.sort_by(f64::total_cmp);
    (idle, during, records, seconds)
}

/// Prints `import_latencies`.
fn import_figures(api: &Background) {
    let mib = size(63, 16);
    let (idle, during, records, seconds) = import_latencies(api, mib);
    let percentile = |values: &[f64], p: f64| values[((values.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "\nspool import of {mib} MiB ({records} items) in {seconds:.1} s; enqueue → first request: idle p50 {:.1} ms, \
         during the import p50 {:.1} ms p99 {:.1} ms (n={}); p50 ratio {:.2}",
        percentile(&idle, 0.5),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        during.len(),
        percentile(&during, 0.5) / percentile(&idle, 0.5)
    );
}

/// Idle CPU (%) over `seconds`, and peak RSS (KiB) while idle.
fn idle(api: &Background, seconds: u64) -> (f64, u64) {
    let install = Install::new(&api.url(), 4, "5s");
    install.enqueue_batch(0, 1);
    let daemon = install.daemon();
    until(Duration::from_secs(30), || install.done() == 1);
    let before = cpu_ticks(daemon.id());
    std::thread::sleep(Duration::from_secs(seconds));
    let ticks = cpu_ticks(daemon.id()) - before;
    let peak = peak_rss_kib(daemon.id());
    stop(daemon);
    (ticks as f64 / (100.0 * seconds as f64) * 100.0, peak)
}

/// Time from spawning the daemon to `READY=1`, with `pending` items queued (ms).
fn time_to_ready(dir: &Path, url: &str, pending: usize) -> f64 {
    let database = pending_database(dir, pending);
    let install = Install::new(url, 4, "5s");
    std::fs::copy(&database, install.database()).unwrap();
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let start = Instant::now();
    let daemon = install
        .command(&["run"])
        .envs(unit_environment())
        .env("NOTIFY_SOCKET", &socket_path)
        .spawn()
        .unwrap();
    let mut buffer = [0_u8; 4096];
    let mut ready = f64::NAN;
    while let Ok(length) = socket.recv(&mut buffer) {
        if String::from_utf8_lossy(&buffer[..length]).lines().any(|line| line == "READY=1") {
            ready = start.elapsed().as_secs_f64() * 1e3;
            break;
        }
    }
    stop(daemon);
    ready
}

/// End to end at concurrency 4 with the default request and with a mapping, alternated three
/// times each (the machine's noise is larger than the difference), and the median ratio.
fn mapping_cost(api: &Background) {
    let count = size(10_000, 2_000);
    println!(
        "\nrequest mapping: end to end N={count} concurrency 4, default request vs an integration-hub mapping"
    );
    let (mut default, mut mapped) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (rate, _, cpu) = end_to_end_with(api, count, 4, "");
        println!("  default: {rate:>7.0} items/s, daemon CPU {cpu:.0} µs/item");
        default.push((rate, cpu));
        let (rate, _, cpu) = end_to_end_with(api, count, 4, MAPPING);
        println!("  mapping: {rate:>7.0} items/s, daemon CPU {cpu:.0} µs/item");
        mapped.push((rate, cpu));
    }
    let median = |runs: &mut Vec<(f64, f64)>, pick: fn(&(f64, f64)) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (rate_default, rate_mapped) = (median(&mut default, |run| run.0), median(&mut mapped, |run| run.0));
    let (cpu_default, cpu_mapped) = (median(&mut default, |run| run.1), median(&mut mapped, |run| run.1));
    println!(
        "  medians: {rate_default:.0} vs {rate_mapped:.0} items/s (mapping = {:.1} % of default); CPU {cpu_default:.0} vs {cpu_mapped:.0} µs/item",
        100.0 * rate_mapped / rate_default
    );
}

/// End to end at concurrency 4, this build against another (`BENCH_BASELINE`, say the commit
/// before), alternated five times in one run: items/s and the daemon's CPU per item, and the
/// median ratios.
fn baseline_cost(api: &Background, baseline: &Path) {
    let count = size(10_000, 2_000);
    let (mut rates, mut cpus) = (Vec::new(), Vec::new());
    println!("\nthis build against {} (N={count}, concurrency 4, alternated):", baseline.display());
    for round in 1..=5 {
        let (before, _, before_cpu) = end_to_end_by(baseline, api, count, 4, "");
        let (after, _, after_cpu) = end_to_end_by(&binary(), api, count, 4, "");
        println!(
            "  round {round}: baseline {before:.0} items/s, {before_cpu:.0} µs/item; this build {after:.0} items/s, {after_cpu:.0} µs/item"
        );
        rates.push(after / before);
        cpus.push(after_cpu / before_cpu);
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "  median: this build's rate {:.1} % of the baseline's, its CPU per item {:.1} % of the baseline's",
        100.0 * median(&mut rates),
        100.0 * median(&mut cpus)
    );
}

/// Where an order falls in 0..100, spread like chance (SplitMix64 of its number), so the orders
/// the mix makes fail are scattered as real ones are, not five in a row.
fn percentile(order: usize) -> u64 {
    let mut z = (order as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % 100
}

/// End to end at concurrency 4 with HTTP Basic and with OAuth2 client credentials (a token from
/// a second simulator acting as the token endpoint, cached for the whole run), alternated five
/// times: OAuth2's rate as a share of Basic's (the token is requested once, so the two should be
/// within noise).
fn auth_cost(api: &Background) {
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("senha");
    std::fs::write(&password, "S3nh4-Bench\n").unwrap();
    let token_server = Background::start(Scenario {
        default: extrator::simulator::Behavior::json(
            200,
            r#"{"access_token": "tok-bench-0001", "token_type": "Bearer", "expires_in": 3600}"#,
        ),
        ..Scenario::default()
    })
    .unwrap();
    let basic = format!(
        "[api.auth]\nmode = \"basic\"\nuser = \"bench\"\npassword_file = \"{}\"\n",
        password.display()
    );
    let oauth2 = format!(
        "[api.auth]\nmode = \"oauth2\"\ntoken_url = \"{}\"\nclient_id = \"bench\"\nclient_secret_file = \"{}\"\n",
        token_server.url(),
        password.display()
    );
    let count = size(10_000, 2_000);
    let (mut ratios, mut tokens) = (Vec::new(), 0);
    println!("\nend to end N={count} concurrency 4, HTTP Basic against OAuth2 (alternated):");
    for round in 1..=5 {
        let (basic_rate, _, basic_cpu) = end_to_end_with(api, count, 4, &basic);
        let before = token_server.shared.count();
        let (oauth2_rate, _, oauth2_cpu) = end_to_end_with(api, count, 4, &oauth2);
        tokens += token_server.shared.count() - before;
        println!(
            "  round {round}: basic {basic_rate:.0} items/s ({basic_cpu:.0} µs/item); oauth2 {oauth2_rate:.0} items/s ({oauth2_cpu:.0} µs/item)"
        );
        ratios.push(oauth2_rate / basic_rate);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "  median: oauth2 at {:.1} % of basic; {tokens} token request(s) in 5 runs of {} items",
        100.0 * ratios[2],
        count + 1
    );
}

/// What the mix's API does with an order: 5 % fail twice with 500, 2 % are refused (400), 1 %
/// answer after 1.5 s, the rest go through at once.
fn mixed(order: usize) -> Option<Vec<extrator::simulator::Behavior>> {
    use extrator::simulator::Behavior;
    let ok = || Behavior::json(200, r#"{"status":"cancelado"}"#);
    match percentile(order) {
        0..5 => {
            Some(vec![Behavior::json(500, r#"{"message":"erro interno"}"#), Behavior::json(500, "{}"), ok()])
        }
        5..7 => Some(vec![Behavior::json(400, r#"{"message":"pedido já faturado"}"#)]),
        7 => Some(vec![ok().after(1_500)]),
        _ => None,
    }
}

/// The ordinary mix of issue 22 with the default config (concurrency 4, 30 s first retry): 75
/// orders/s for `seconds`, through the intake socket in batches every 100 ms, the API down for
/// 30 s at the middle; offered and delivered (first success) per minute, and how long after the
/// load every order was final.
fn mix(seconds: usize) {
    const RATE: usize = 75;
    let total = RATE * seconds;
    let mut scenario = Scenario::default();
    for order in 1..=total {
        if let Some(behaviors) = mixed(order) {
            scenario = scenario.order(&order.to_string(), behaviors);
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut api = Some(Background::start_on(listener, scenario).unwrap());
    let shared = api.as_ref().unwrap().shared.clone();
    let install = Install::new(&format!("http://{address}/cancelamentos"), 4, "100ms");
    let daemon = install.daemon();
    until(Duration::from_secs(10), || install.dir.path().join("entrada.sock").exists());
    let (down, up) = (seconds as f64 / 2.0, seconds as f64 / 2.0 + 30.0);
    let start = Instant::now();
    let mut offered = vec![0_usize; seconds.div_ceil(60)];
    let mut next = 1;
    while next <= total {
        let second = start.elapsed().as_secs_f64();
        let due = ((second * RATE as f64) as usize).min(total);
        if due >= next {
            install.enqueue_batch(next, due + 1 - next);
            let minute = (second as usize / 60).min(offered.len() - 1);
            offered[minute] += due + 1 - next;
            next = due + 1;
        }
        if (down..up).contains(&second) && api.is_some() {
            api = None;
        } else if second >= up && api.is_none() {
            let listener = loop {
                match std::net::TcpListener::bind(address) {
                    Ok(listener) => break listener,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            };
            api = Some(Background::resume_on(listener, shared.clone()).unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let load_ended = Instant::now();
    let final_count = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("SELECT COUNT(*) FROM items WHERE state IN ('done', 'failed')", [], |row| row.get(0))
            .unwrap_or(0)
    };
    let conn =
        rusqlite::Connection::open_with_flags(install.database(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    until(Duration::from_secs(600), || {
        std::thread::sleep(Duration::from_millis(200));
        final_count(&conn) == total as i64
    });
    let drained = load_ended.elapsed();
    let finished = final_count(&conn);
    if finished < total as i64 {
        let now = jiff::Timestamp::now().as_millisecond();
        let mut statement = conn
            .prepare(
                "SELECT state, last_code, attempts, sent, COUNT(*), MIN(next_at), MAX(next_at) FROM items \
                      WHERE state NOT IN ('done', 'failed') GROUP BY 1, 2, 3, 4",
            )
            .unwrap();
        let rows = statement
            .query_map([], |row| {
                Ok(format!(
                    "{}/{:?}/attempts {}/sent {}: {} items, due in {}..{} s",
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    (row.get::<_, i64>(5)? - now) / 1000,
                    (row.get::<_, i64>(6)? - now) / 1000
                ))
            })
            .unwrap();
        for row in rows {
            println!("  unfinished: {}", row.unwrap());
        }
    }
    let successes: Vec<i64> = conn
        .prepare("SELECT MIN(started_at) FROM attempts WHERE outcome = 'success' GROUP BY item_id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let first = successes.iter().min().copied().unwrap_or(0);
    let mut delivered = vec![0_usize; offered.len() + 4];
    for at in &successes {
        let minute = (((at - first) / 60_000) as usize).min(delivered.len() - 1);
        delivered[minute] += 1;
    }
    stop(daemon);
    println!(
        "\nordinary mix, {RATE} orders/s for {seconds} s (API down 30 s at {down:.0} s), default retry settings:"
    );
    println!("  offered per minute:   {offered:?}");
    println!("  delivered per minute: {delivered:?}");
    println!("  {finished} of {total} orders final {:.0} s after the load ended", drained.as_secs_f64());
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `GET /metrics` over HTTP/1.0: the page's length, and how long it took (ms).
fn scrape(address: &str) -> Option<(usize, f64)> {
    use std::io::Read;
    let start = Instant::now();
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut page = Vec::new();
    stream.read_to_end(&mut page).ok()?;
    Some((page.len(), start.elapsed().as_secs_f64() * 1e3))
}

/// End to end at concurrency 4 without a metrics listener and with one scraped every second
/// (Prometheus' usual interval is 15–60 s), alternated five times each (the run-to-run noise
/// here is about the size of the difference), and the median ratio.
fn metrics_cost(api: &Background) {
    let count = size(10_000, 2_000);
    println!(
        "
metrics: end to end N={count} concurrency 4, no listener vs /metrics scraped every second"
    );
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (rate, _, cpu) = end_to_end_with(api, count, 4, "");
        println!("  off: {rate:>7.0} items/s, daemon CPU {cpu:.0} µs/item");
        off.push(rate);
        let address = format!("127.0.0.1:{}", free_port());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let scraper = {
            let (address, stop) = (address.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut scrapes = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if scrape(&address).is_some() {
                        scrapes += 1;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                scrapes
            })
        };
        let sections = format!("[metrics]\nlisten = \"{address}\"\n");
        let (rate, _, cpu) = end_to_end_with(api, count, 4, &sections);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let scrapes = scraper.join().unwrap();
        println!("  on:  {rate:>7.0} items/s, daemon CPU {cpu:.0} µs/item ({scrapes} scrapes)");
        on.push(rate);
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (off, on) = (median(&mut off), median(&mut on));
    println!("  medians: off {off:.0}, on {on:.0} items/s (on = {:.1} % of off)", 100.0 * on / off);
}

/// How long a scrape takes with `pending` items queued (the queue's gauges are counted from
/// the database at each scrape): median and worst of 20.
fn scrape_time(dir: &Path, url: &str, pending: usize) {
    let database = pending_database(dir, pending);
    let address = format!("127.0.0.1:{}", free_port());
    let install = Install::with_sections(url, 4, "5s", &format!("[metrics]\nlisten = \"{address}\"\n"));
    std::fs::copy(&database, install.database()).unwrap();
    // Nothing is sent: the API is a closed port, so the circuit opens and the queue stays.
    let daemon = install.daemon();
    until(Duration::from_secs(60), || scrape(&address).is_some());
    let mut times: Vec<f64> = (0..20).filter_map(|_| scrape(&address).map(|(_, ms)| ms)).collect();
    times.sort_by(f64::total_cmp);
    let bytes = scrape(&address).map_or(0, |(bytes, _)| bytes);
    stop(daemon);
    println!(
        "GET /metrics with {pending} items queued: median {:.1} ms, worst {:.1} ms ({bytes} bytes, n={})",
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
    // The reference, same database: the queue's figures as read now, and as the first version
    // read them (GROUP BY state, and the oldest pending item by reading every pending row).
    let store = Store::open(&install.database(), Access::ReadOnly, Duration::from_secs(5)).unwrap();
    let conn =
        rusqlite::Connection::open_with_flags(install.database(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let median = |mut read: Box<dyn FnMut()>| {
        let mut times: Vec<f64> = (0..20)
            .map(|_| {
                let start = Instant::now();
                read();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let now = median(Box::new(|| drop(store.queue_figures().unwrap())));
    let before = median(Box::new(|| {
        let mut statement = conn.prepare_cached("SELECT state, COUNT(*) FROM items GROUP BY state").unwrap();
        let _ = statement.query_map([], |row| row.get::<_, i64>(1)).unwrap().count();
        let _: Option<i64> = conn
            .query_row(
                "SELECT MIN(created_at) FROM items INDEXED BY items_due WHERE state = 'pending'",
                [],
                |row| row.get(0),
            )
            .unwrap();
    }));
    println!(
        "  the queue's figures on that database: {now:.1} ms; as first written (GROUP BY, every pending row read): {before:.1} ms (median of 20 each)"
    );
}

/// A database with `items` items (1 in 200 pending, 1 in 200 failed, the rest done) and
/// `attempts` attempts spread over the last 30 days, one failure in ten, filled by SQL (the
/// schema's triggers keep their figures as they would in service).
fn history_database(dir: &Path, items: usize, attempts: usize) -> PathBuf {
    let path = dir.join(format!("historico-{items}-{attempts}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    drop(Store::open(&path, Access::ReadWrite(Durability::Normal), Duration::from_secs(5)).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    let span = 30 * 86_400_000_i64;
    conn.execute_batch("PRAGMA synchronous = OFF").unwrap();
    conn.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1) \
         INSERT INTO items (order_number, branch, reason, cancelled_at, idempotency_key, source, state, \
         last_code, last_message, next_at, created_at, updated_at) \
         SELECT 'h' || x, '1', 'bench', '2026-11-22T10:00:00Z', 'k' || x, 'bench', \
         CASE x % 200 WHEN 0 THEN 'pending' WHEN 1 THEN 'failed' ELSE 'done' END, \
         CASE x % 200 WHEN 1 THEN '07' END, CASE x % 200 WHEN 1 THEN 'pedido já faturado' END, \
         ?2 - ?3 + x * (?3 / ?1), ?2 - ?3 + x * (?3 / ?1), ?2 - ?3 + x * (?3 / ?1) FROM n",
        rusqlite::params![items as i64, now, span],
    )
    .unwrap();
    conn.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1) \
         INSERT INTO attempts (item_id, number, started_at, duration_ms, outcome, code, kind) \
         SELECT x % ?4 + 1, x / ?4 + 1, ?2 - ?3 + x * (?3 / ?1), 20, \
         CASE WHEN x % 10 = 0 THEN 'failure' ELSE 'success' END, CASE WHEN x % 10 = 0 THEN '04' END, 'http' FROM n",
        rusqlite::params![attempts as i64, now, span, items as i64],
    )
    .unwrap();
    drop(conn);
    // What migration 5 does on an upgrade, and the chores afterwards: count them by hour.
    let counting = Instant::now();
    let mut store =
        Store::open(&path, Access::ReadWrite(Durability::Normal), Duration::from_secs(5)).unwrap();
    store.count_attempt_hours().unwrap();
    println!(
        "  counting {attempts} attempts by hour (once, as migration 5 does on upgrade): {:.1} s",
        counting.elapsed().as_secs_f64()
    );
    path
}

/// How long the status page and its search take with `items` items and `attempts` attempts:
/// median and worst of 20 of each, the daemon running on that database.
fn page_time(dir: &Path, url: &str, items: usize, attempts: usize) {
    let started = Instant::now();
    let database = history_database(dir, items, attempts);
    let filled = started.elapsed().as_secs_f64();
    let address = format!("127.0.0.1:{}", free_port());
    let install = Install::with_sections(url, 4, "5s", &format!("[metrics]\nlisten = \"{address}\"\n"));
    std::fs::rename(&database, install.database()).unwrap();
    let daemon = install.daemon();
    until(Duration::from_secs(60), || scrape(&address).is_some());
    let time = |path: &str| {
        let mut times: Vec<f64> = (0..20).filter_map(|_| get(&address, path)).collect();
        times.sort_by(f64::total_cmp);
        (times[times.len() / 2], times[times.len() - 1])
    };
    let (page, page_worst) = time("/");
    let (search, search_worst) = time("/pedido?numero=h401");
    let (metrics, metrics_worst) = time("/metrics");
    stop(daemon);
    println!(
        "\nstatus page with {items} items and {attempts} attempts (filled in {filled:.0} s): \
         GET / median {page:.1} ms (worst {page_worst:.1}); search {search:.1} ms ({search_worst:.1}); \
         /metrics {metrics:.1} ms ({metrics_worst:.1}); n=20 each"
    );
}

/// One `GET path` over HTTP/1.0: how long until the whole answer was read (ms), if it was a 200.
fn get(address: &str, path: &str) -> Option<f64> {
    use std::io::Read;
    let start = Instant::now();
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let ok = answer.get(8..13) == Some(&b" 200 "[..]);
    if !ok {
        eprintln!("GET {path}: {}", String::from_utf8_lossy(&answer[..answer.len().min(300)]));
    }
    ok.then(|| start.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let api = Background::start(Scenario::default()).unwrap();
    let url = api.url();
    let scratch = tempfile::tempdir().unwrap();
    if std::env::var("BENCH_ONLY").as_deref() == Ok("ready") {
        let pending = size(1_000_000, 100_000);
        println!(
            "start → READY=1 with {pending} items queued: {:.1} ms",
            time_to_ready(scratch.path(), &url, pending)
        );
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("import") {
        import_figures(&api);
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("page") {
        page_time(
            scratch.path(),
            "http://127.0.0.1:1/cancelamentos",
            size(1_000_000, 100_000),
            size(10_000_000, 1_000_000),
        );
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("metrics") {
        metrics_cost(&api);
        scrape_time(scratch.path(), "http://127.0.0.1:1/cancelamentos", size(1_000_000, 100_000));
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("baseline") {
        let Some(baseline) = std::env::var_os("BENCH_BASELINE") else {
            println!("BENCH_ONLY=baseline needs BENCH_BASELINE=/path/to/another/build/of/extrator");
            return;
        };
        baseline_cost(&api, Path::new(&baseline));
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("direct") {
        // With BENCH_BASELINE, that build first: the same 1,000 against the previous commit.
        if let Some(baseline) = std::env::var_os("BENCH_BASELINE") {
            direct_enqueues(&url, Path::new(&baseline));
        }
        direct_enqueues(&url, &binary());
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("auth") {
        auth_cost(&api);
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("mix") {
        mix(size(240, 60));
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("mapping") {
        mapping_cost(&api);
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("e2e") {
        let (full, normal) = (ceiling_sqlite("FULL"), ceiling_sqlite("NORMAL"));
        let count = size(10_000, 2_000);
        let (rate, _, cpu_us) = end_to_end(&api, count, 4);
        println!(
            "ceiling SQLite FULL {full:.0}, NORMAL {normal:.0} commits/s; end to end N={count} concurrency 4: {rate:.0} items/s = {:.1} % of NORMAL, {:.1} % of FULL; daemon CPU {cpu_us:.0} µs/item",
            100.0 * rate / normal,
            100.0 * rate / full
        );
        return;
    }
    println!(
        "extrator benchmark — {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if quick() { "BENCH_QUICK" } else { "full sizes" }
    );

    let sqlite = ceiling_sqlite("FULL");
    let sqlite_normal = ceiling_sqlite("NORMAL");
    println!("\nceiling: SQLite commits/s (WAL, synchronous=FULL, the intake's): {sqlite:.0}");
    println!("ceiling: SQLite commits/s (WAL, synchronous=NORMAL, the daemon's records): {sqlite_normal:.0}");
    let mut http = Vec::new();
    for concurrency in [1, 4, 16] {
        let rate = ceiling_http(&url, concurrency);
        println!("ceiling: HTTP requests/s at concurrency {concurrency:>2}: {rate:.0}");
        http.push((concurrency, rate));
    }

    println!("\nend to end: enqueue of N items → all done (daemon running, idle before)");
    let mut peak_load = 0;
    for count in [size(10_000, 1_000), size(100_000, 5_000)] {
        for &(concurrency, http_rate) in &http {
            let (rate, peak, cpu_us) = end_to_end(&api, count, concurrency);
            peak_load = peak_load.max(peak);
            let ceiling = sqlite_normal.min(http_rate);
            println!(
                "  N={count:>6} concurrency {concurrency:>2}: {rate:>7.0} items/s = {:>5.1} % of min(SQLite NORMAL, HTTP) = {ceiling:.0}/s; {:>5.1} % of the FULL ceiling; daemon CPU {cpu_us:.0} µs/item",
                100.0 * rate / ceiling,
                100.0 * rate / sqlite
            );
        }
    }

    mapping_cost(&api);

    let (per_process, batch) = enqueue_rates(&url);
    println!("\nenqueue: {per_process:.0} items/s one process per item; {batch:.0} items/s in one batch");

    println!("\nclaim latency (mean of 1,000 claims):");
    for pending in [1_000, 100_000, size(1_000_000, 200_000)] {
        println!("  {pending:>8} pending: {:.1} µs", claim_latency(scratch.path(), pending));
    }

    let latencies = wake_latencies(&api);
    let percentile = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "\nenqueue → first request, idle daemon polling every 5 s: p50 {:.1} ms, p99 {:.1} ms (n={})",
        percentile(0.5),
        percentile(0.99),
        latencies.len()
    );

    import_figures(&api);

    let idle_seconds = if quick() { 10 } else { 60 };
    let (cpu, peak_idle) = idle(&api, idle_seconds);
    println!(
        "\nidle: CPU {cpu:.3} % over {idle_seconds} s; peak RSS idle {:.1} MB; peak RSS under load {:.1} MB",
        peak_idle as f64 / 1024.0,
        peak_load as f64 / 1024.0
    );

    let pending = size(1_000_000, 100_000);
    println!(
        "start → READY=1 with {pending} items queued: {:.1} ms",
        time_to_ready(scratch.path(), &url, pending)
    );

    metrics_cost(&api);
    scrape_time(scratch.path(), "http://127.0.0.1:1/cancelamentos", pending);
    page_time(scratch.path(), "http://127.0.0.1:1/cancelamentos", pending, size(10_000_000, 1_000_000));
}
