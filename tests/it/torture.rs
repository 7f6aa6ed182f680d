//! Trying hard to lose a cancellation: `kill -9` of the daemon at random moments while it
//! delivers, `kill -9` of `enqueue` mid-batch, a full disk, and a write lock held by another
//! process. Faults are real: real signals, a real tmpfs that fills up, a real SQLite lock.

use std::process::{Command, Stdio};
use std::time::Duration;

use extrator::simulator::{Background, Scenario};

use crate::util::{Env, expect_exit, json_lines, signal, wait_until};

/// A small deterministic random source (xorshift), so a failure can be replayed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

const DONE: &str = "SELECT COUNT(*) FROM items WHERE state = 'done'";

#[test]
fn fifty_kill_9s_while_delivering_5000_items_lose_nothing() {
    const ITEMS: usize = 5_000;
    const KILLS: usize = 50;
    let api = Background::start(Scenario::default()).unwrap();
    let env = Env::build(&api.url(), "concurrency = 4\n", "");
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, ITEMS).as_bytes()), 0);
    let seed = 0x5eed_u64 ^ u64::from(std::process::id());
    let mut random = Random(seed | 1);
    let mut kills = 0;
    while kills < KILLS {
        let before = env.number(DONE);
        let mut daemon = env.spawn_daemon();
        let pid = i64::from(daemon.id());
        wait_until("the daemon to start", Duration::from_secs(30), || {
            env.number("SELECT COALESCE(MAX(pid), 0) FROM daemon") == pid
        });
        // A random moment: after 0 to 59 more deliveries.
        let more = i64::try_from(random.below(60)).unwrap();
        wait_until("some deliveries", Duration::from_secs(30), || env.number(DONE) >= before + more);
        signal(&daemon, "KILL");
        daemon.wait().unwrap();
        kills += 1;
    }
    assert!(env.number(DONE) < ITEMS as i64, "the kills must land while work remains (seed {seed})");

    let mut daemon = env.spawn_daemon();
    wait_until("every item delivered", Duration::from_secs(120), || env.number(DONE) == ITEMS as i64);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());

    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state <> 'done'"), 0, "none stuck (seed {seed})");
    let check: String = env.db().query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
    let received = api.shared.received();
    let distinct: std::collections::HashSet<_> =
        received.iter().filter_map(|request| request.order.clone()).collect();
    assert_eq!(distinct.len(), ITEMS, "the API saw every order at least once");
    let duplicates = received.len() - ITEMS;
    // A kill can orphan at most the `concurrency` requests on the wire (sent, not yet recorded):
    // each is sent again under its idempotency key.
    assert!(
        duplicates <= KILLS * 4,
        "{duplicates} duplicates for {KILLS} kills at concurrency 4 (seed {seed})"
    );
    eprintln!("torture: {KILLS} kills, {ITEMS} items delivered, {duplicates} duplicate requests, 0 lost");
}

#[test]
fn enqueue_killed_mid_batch_leaves_the_whole_batch_or_none() {
    const BATCH: usize = 2_000;
    let env = Env::new();
    expect_exit(&env.run(&["enqueue", "--order", "0", "--branch", "1", "--reason", "cria o banco"]), 0);
    let mut random = Random(0x0bad_cafe);
    let (mut whole, mut none, mut mid_write) = (0, 0, 0);
    // A probe connection that never waits: `BEGIN IMMEDIATE` fails while enqueue holds the write
    // transaction, which tells the test that a kill now lands in the middle of the write.
    let probe = rusqlite::Connection::open(env.database()).unwrap();
    probe.busy_timeout(Duration::ZERO).unwrap();
    let writing = || match probe.execute_batch("BEGIN IMMEDIATE") {
        Ok(()) => {
            probe.execute_batch("ROLLBACK").unwrap();
            false
        }
        Err(_) => true,
    };
    for batch in 0..12_usize {
        let first = 1_000_000 + batch * BATCH;
        let mut child = env
            .command(&["enqueue", "--json", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, json_lines(first, BATCH).as_bytes()).unwrap();
        drop(stdin);
        let caught = if batch % 2 == 0 {
            // Half the kills at a random moment (parsing, writing, or after the commit)…
            std::thread::sleep(Duration::from_millis(random.below(2_500)));
            false
        } else {
            // …half the moment the write transaction is seen open.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !writing() && child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {}
            child.try_wait().unwrap().is_none()
        };
        let _ = child.kill();
        let _ = child.wait();
        let kept = env.number(&format!(
            "SELECT COUNT(*) FROM items WHERE CAST(order_number AS INTEGER) BETWEEN {first} AND {}",
            first + BATCH - 1
        ));
        match kept {
            0 => {
                none += 1;
                mid_write += usize::from(caught);
            }
            kept if kept == BATCH as i64 => whole += 1,
            partial => panic!("batch {batch}: {partial} of {BATCH} items kept"),
        }
    }
    eprintln!(
        "enqueue kills: {whole} batches whole, {none} absent ({mid_write} killed mid-write), 0 partial"
    );
    assert!(mid_write >= 3, "the kills must land during the write ({mid_write} of 6 did)");
    let check: String = env.db().query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
}

/// A tmpfs of `size` mounted at `path`, unmounted on drop.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(path: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system at `dir` with a file until no space is left.
pub fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    let filler = dir.join("enchimento");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0_u8; 64 * 1024];
    while std::io::Write::write_all(&mut file, &block).is_ok() {}
    let _ = file.sync_all();
    filler
}

#[test]
#[ignore = "precisa de root e mount (um tmpfs cheio): roda com scripts/test como root"]
fn a_full_disk_refuses_enqueue_cleanly_and_the_daemon_resumes_when_space_returns() {
    crate::util::privileged("the full-disk test", "mount", crate::util::has_command("mount"));
    let api = Background::start(Scenario::default()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&scratch.path().join("disco"), "4m");
    let env = Env::build_with_queue(&api.url(), "", "", Some(&disk.0));
    let spool = env.spool();
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "antes"]), 0);
    let mut daemon = env.spawn_daemon();
    let count = |sql: &str| env.number(sql);
    wait_until("the first delivery", Duration::from_secs(30), || count(DONE) == 1);
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(spool.join("depois.json.tmp"), json_lines(100, 50)).unwrap();
    let filler = fill(&disk.0);

    // enqueue: a clear message, nothing partial.
    let (_, stderr) =
        expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1_000, 2_000).as_bytes()), 1);
    assert!(stderr.contains("o disco está cheio"), "{stderr}");
    assert_eq!(count("SELECT COUNT(*) FROM items"), 1, "nothing of the refused batch");

    // The daemon: says so, stays up, keeps the spool file.
    std::fs::rename(spool.join("depois.json.tmp"), spool.join("depois.json")).unwrap();
    wait_until("the daemon to log the full disk", Duration::from_secs(30), || {
        env.daemon_log().contains("o disco está cheio")
    });
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon must not exit on a full disk");
    assert!(spool.join("depois.json").exists(), "the spool file stays until it can be imported");
    let logged = env.daemon_log().matches("o disco está cheio").count();

    // Space returns: it resumes by itself.
    std::fs::remove_file(filler).unwrap();
    wait_until("the spool imported and delivered", Duration::from_secs(60), || count(DONE) == 51);
    assert!(env.daemon_log().contains("o banco de dados voltou a aceitar gravações"), "{}", env.daemon_log());
    assert!(logged < 20, "a full disk must not flood the log: {logged} lines");
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
}

#[test]
fn a_write_lock_held_30_s_is_waited_out_and_a_shorter_bound_fails_clearly() {
    let api = Background::start(Scenario::default()).unwrap();
    // The daemon waits 1 s for another process's lock; the commands below say how long they do.
    let env = Env::build(&api.url(), "", "busy_timeout = \"1s\"\n");
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("the first delivery", Duration::from_secs(30), || env.number(DONE) == 1);

    // Another process (this test) holds the write lock for 30 s.
    let holder = env.db();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (locked, release) = std::sync::mpsc::channel::<()>();
    // Commands that write the database themselves (no socket to hand the batch to).
    let direct = |args: &[&str]| {
        let mut command = env.command(args);
        command.env("EXTRATOR_QUEUE__SOCKET", env.dir.path().join("nenhum.sock"));
        command
    };
    let waiter = {
        let mut command = direct(&["enqueue", "--order", "2", "--branch", "1", "--reason", "espera"]);
        command.env("EXTRATOR_QUEUE__BUSY_TIMEOUT", "60s");
        std::thread::spawn(move || {
            let output = command.output().unwrap();
            let _ = locked.send(());
            output
        })
    };
    let impatient = direct(&["enqueue", "--order", "3", "--branch", "1", "--reason", "desiste"])
        .env("EXTRATOR_QUEUE__BUSY_TIMEOUT", "2s")
        .output()
        .unwrap();
    let (_, stderr) = expect_exit(&impatient, 1);
    assert!(
        stderr.contains("está travado por outro processo há mais de 2s (queue.busy_timeout)"),
        "{stderr}"
    );
    // Handed to the daemon, whose writer gives up after its 1 s: the batch goes to the spool.
    let handed = env.run(&["enqueue", "--order", "4", "--branch", "1", "--reason", "pelo socket"]);
    let (stdout, _) = expect_exit(&handed, 0);
    assert!(stdout.contains("1 cancelamento gravado no spool"), "{stdout}");
    assert!(stdout.contains("o serviço não conseguiu gravar agora"), "{stdout}");
    // The lock is an injected fault that lasts 30 s; waiting it out is what is being tested.
    std::thread::sleep(Duration::from_secs(30));
    if release.try_recv().is_ok() {
        panic!("enqueue must still be waiting while the lock is held: {:?}", waiter.join().unwrap());
    }
    holder.execute_batch("COMMIT").unwrap();
    let output = waiter.join().unwrap();
    expect_exit(&output, 0);
    wait_until("the daemon to deliver after the lock", Duration::from_secs(60), || env.number(DONE) == 3);
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon waited too");
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    assert_eq!(env.number("SELECT COUNT(*) FROM items"), 3, "orders 1, 2 and (from the spool) 4");
}
