//! Polled sources (`[[source]]`) with real processes: a source backed by a real database CLI
//! (`sqlite3`, a table shaped like Winthor's `PCPEDC`) delivers exactly the cancelled orders, once
//! each, across restarts; a command that fails, hangs, floods or prints garbage imports nothing,
//! is said once per change, and never stops delivery; the environment file's secret is nowhere.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use extrator::simulator::{Background, Scenario};

use crate::util::{
    Env, database_bytes, expect_exit, needs_program, peak_rss_kib, record, signal, wait_until,
};

/// A database shaped like Winthor's order headers: `POSICAO = 'C'` is a cancelled order.
fn erp_database(path: &Path, orders: std::ops::RangeInclusive<u32>) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE PCPEDC (NUMPED INTEGER PRIMARY KEY, CODFILIAL TEXT NOT NULL, POSICAO TEXT NOT NULL, \
         DTCANCEL TEXT, MOTIVOPOSICAO TEXT)",
    )
    .unwrap();
    for order in orders {
        db.execute("INSERT INTO PCPEDC VALUES (?1, '3', 'L', NULL, NULL)", [order]).unwrap();
    }
}

/// The ERP cancels orders, as Winthor's screen does: position `C`, the date and the reason.
fn cancel(path: &Path, orders: &[u32]) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    for order in orders {
        db.execute(
            "UPDATE PCPEDC SET POSICAO = 'C', DTCANCEL = '2026-12-01T10:00:00-03:00', \
             MOTIVOPOSICAO = 'cliente desistiu' WHERE NUMPED = ?1",
            [order],
        )
        .unwrap();
    }
}

/// Items delivered; 0 until the daemon has created the database (the test never creates it).
fn done(env: &Env) -> i64 {
    if !env.database().exists() {
        return 0;
    }
    env.db().query_row("SELECT COUNT(*) FROM items WHERE state = 'done'", [], |row| row.get(0)).unwrap_or(0)
}

/// The `[[source]]` of the sqlite3-backed test.
fn sqlite_source(erp: &Path) -> String {
    format!(
        "[[source]]\nname = \"winthor\"\ninterval = \"200ms\"\ntimeout = \"10s\"\nreason = \"cancelado no Winthor\"\n\
         command = [\"sqlite3\", \"-json\", \"{}\", \"SELECT NUMPED, CODFILIAL, DTCANCEL, MOTIVOPOSICAO FROM PCPEDC WHERE POSICAO = 'C'\"]\n\
         [source.fields]\nNUMPED = \"order\"\nCODFILIAL = \"branch\"\nDTCANCEL = \"cancelled_at\"\nMOTIVOPOSICAO = \"reason\"\n",
        erp.display()
    )
}

/// How many runs a source has had, read from its row's time (it changes every run).
fn runs_after(env: &Env, name: &str, count: usize) {
    let mut seen = Vec::new();
    wait_until(&format!("{count} runs of {name}"), Duration::from_secs(60), || {
        let at = env
            .db()
            .query_row("SELECT last_run_at FROM sources WHERE name = ?1", [name], |row| row.get::<_, i64>(0))
            .unwrap_or(0);
        if at != 0 && seen.last() != Some(&at) {
            seen.push(at);
        }
        seen.len() > count
    });
}

/// Cancellations the API received, per order (`check`'s harmless GET is not one).
fn received_per_order(api: &Background) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in api.shared.received().into_iter().filter(|request| request.method == "POST") {
        *counts.entry(request.order.unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

#[test]
#[ignore = "precisa do programa sqlite3: roda com scripts/test como root"]
fn a_sqlite_backed_source_delivers_exactly_the_cancelled_orders_once_across_restarts() {
    needs_program("the sqlite3-backed source test", "sqlite3");
    let api = Background::start(Scenario::default()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let erp = scratch.path().join("winthor.db");
    erp_database(&erp, 5001..=5010);
    cancel(&erp, &[5001, 5002]);
    let env = Env::build(&api.url(), "", &sqlite_source(&erp));

    // `check` runs the source once and queues nothing.
    let (stdout, _) = expect_exit(&env.run(&["check"]), 0);
    assert!(stdout.contains("fonte winthor: 2 linhas lidas") && stdout.contains("2 novas"), "{stdout}");
    assert!(stdout.contains("pedido 5001") && stdout.contains("pedido 5002"), "{stdout}");
    assert_eq!(env.item_count(), 0);

    let mut daemon = env.spawn_daemon();
    wait_until("5001 and 5002 delivered", Duration::from_secs(30), || done(&env) == 2);
    // Cancelled while the daemon runs.
    cancel(&erp, &[5003]);
    wait_until("5003 delivered", Duration::from_secs(30), || done(&env) == 3);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());

    // Cancelled while it is stopped, then more after the restart; the query returns every
    // cancelled order on every run.
    cancel(&erp, &[5004]);
    let mut daemon = env.spawn_daemon();
    cancel(&erp, &[5005, 5006]);
    wait_until("six delivered", Duration::from_secs(30), || done(&env) == 6);
    runs_after(&env, "winthor", 5);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());

    let expected: BTreeMap<String, usize> = (5001..=5006).map(|order| (order.to_string(), 1)).collect();
    assert_eq!(received_per_order(&api), expected, "each cancelled order once, nothing else");
    assert_eq!(env.item_count(), 6);
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE source = 'source:winthor'"), 6);
    let reason: String = env
        .db()
        .query_row(
            "SELECT reason || ' ' || cancelled_at || ' ' || branch FROM items WHERE order_number = '5004'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(reason, "cliente desistiu 2026-12-01T10:00:00-03:00 3");
    let (stdout, _) = expect_exit(&env.run(&["status"]), 0);
    assert!(stdout.contains("winthor: ok"), "{stdout}");
}

/// A source whose command is the script at `script`, with a 1 s timeout.
fn script_source(script: &Path, environment_file: Option<&Path>) -> String {
    let environment = environment_file
        .map_or_else(String::new, |path| format!("environment_file = \"{}\"\n", path.display()));
    format!(
        "[[source]]\nname = \"teste\"\ninterval = \"100ms\"\ntimeout = \"1s\"\n{environment}command = [\"sh\", \"{}\"]\n",
        script.display()
    )
}

/// The source's last error and its failures in a row.
fn last_error(env: &Env) -> (String, i64) {
    env.db()
        .query_row("SELECT COALESCE(error, ''), failures FROM sources WHERE name = 'teste'", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap_or_default()
}

#[test]
fn a_failing_command_imports_nothing_is_said_once_per_change_and_never_stops_delivery() {
    let api = Background::start(Scenario::default()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let script = scratch.path().join("fonte.sh");
    let env = Env::build(&api.url(), "", &script_source(&script, None));
    let modes = [
        ("echo 'ORA-12541: TNS:no listener' >&2; exit 1", "código de saída 1; saída de erro: ORA-12541"),
        ("sleep 30", "passou de 1s (timeout)"),
        ("head -c 100000000 /dev/zero", "imprimiu mais de 16 MiB"),
        ("echo '{\"order\": \"901\", quebrado'", "a saída do comando não é uma lista de cancelamentos"),
    ];
    std::fs::write(&script, modes[0].0).unwrap();
    let mut daemon = env.spawn_daemon();
    for (index, (body, said)) in modes.iter().enumerate() {
        std::fs::write(&script, body).unwrap();
        // The state is held for several runs, and a cancellation handed in meanwhile is
        // delivered: the source never stops the delivery.
        wait_until(&format!("runs failing with: {said}"), Duration::from_secs(60), || {
            let (error, failures) = last_error(&env);
            error.contains(said) && failures >= (index as i64 + 1) * 3
        });
        let order = format!("{}", 800 + index);
        expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], record(&order, "direto").as_bytes()), 0);
        wait_until("the direct item delivered", Duration::from_secs(30), || {
            received_per_order(&api).contains_key(&order)
        });
        assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE source LIKE 'source:%'"), 0);
    }
    std::fs::write(
        &script,
        "printf '%s\\n' '{\"order\":\"901\",\"branch\":\"1\",\"reason\":\"ok\"}' '{\"order\":\"902\",\"branch\":\"1\",\"reason\":\"ok\"}'",
    )
    .unwrap();
    wait_until("the good run's items delivered", Duration::from_secs(60), || {
        let received = received_per_order(&api);
        received.contains_key("901") && received.contains_key("902")
    });
    let peak_kib = peak_rss_kib(daemon.id());
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());

    let log = env.daemon_log();
    for (_, said) in modes {
        let lines = log.lines().filter(|line| line.contains("fonte teste:") && line.contains(said)).count();
        assert_eq!(lines, 1, "one line when it started failing so ({said}):\n{log}");
    }
    assert_eq!(log.matches("fonte teste voltou a funcionar").count(), 1, "{log}");
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE source = 'source:teste'"), 2);
    // 100 MB printed, at most the 16 MiB bound held.
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
}

#[test]
fn the_environment_files_secret_appears_in_no_log_record_or_check_output() {
    const SECRET: &str = "S3nh4-Oracle-Winthor";
    let api = Background::start(Scenario::default()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (script, environment) = (scratch.path().join("fonte.sh"), scratch.path().join("oracle.env"));
    std::fs::write(
        &environment,
        format!("# conexão do Oracle\nORACLE_CONN=\"extrator_ro/{SECRET}@erp:1521/WINT\"\n"),
    )
    .unwrap();
    // The program sees the variable (and nothing of extrator's own environment), and complains
    // with it, as sqlplus may echo a connection string.
    std::fs::write(
        &script,
        format!(
            "[ -z \"$EXTRATOR_CONFIG\" ] || exit 3\n\
             case \"$ORACLE_CONN\" in *{SECRET}*) ;; *) exit 2 ;; esac\n\
             echo \"ORA-01017: invalid username/password; logon denied ($ORACLE_CONN)\" >&2\nexit 1\n"
        ),
    )
    .unwrap();
    let env = Env::build(&api.url(), "", &script_source(&script, Some(&environment)));

    let (stdout, stderr) = expect_exit(&env.run(&["check"]), 1);
    assert!(stdout.contains("ORA-01017") && stdout.contains("logon denied (***)"), "{stdout}");
    let mut daemon = env.spawn_daemon();
    wait_until("failed runs recorded", Duration::from_secs(30), || last_error(&env).1 >= 3);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    let (status, _) = expect_exit(&env.run(&["status"]), 0);
    let (status_json, _) = expect_exit(&env.run(&["status", "--json"]), 0);
    assert!(status.contains("ORA-01017") && status_json.contains("ORA-01017"), "{status}");

    for (what, text) in [
        ("check", stdout + &stderr),
        ("the daemon's log", env.daemon_log()),
        ("status", status),
        ("status --json", status_json),
        ("the database", database_bytes(&env)),
    ] {
        assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
    }
    assert!(env.daemon_log().contains("ORA-01017"), "{}", env.daemon_log());
}

#[test]
fn a_source_that_cannot_be_set_up_is_a_configuration_error() {
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("nao-existe.env");
    for (section, key) in [
        ("[[source]]\nname = \"a b\"\ncommand = [\"true\"]\n", "source[0].name"),
        ("[[source]]\nname = \"a\"\ncommand = []\n", "source[0].command"),
        ("[[source]]\nname = \"a\"\ncommand = [\"true\"]\ninterval = \"0s\"\n", "source[0].interval"),
        (
            "[[source]]\nname = \"a\"\ncommand = [\"true\"]\n[source.fields]\nNUMPED = \"pedido\"\n",
            "source[0].fields.NUMPED",
        ),
        (
            "[[source]]\nname = \"a\"\ncommand = [\"true\"]\n[[source]]\nname = \"a\"\ncommand = [\"true\"]\n",
            "source[1].name",
        ),
    ] {
        let env = Env::build("http://127.0.0.1:1/x", "", section);
        let (_, stderr) = expect_exit(&env.run(&["run"]), 78);
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
    let env = Env::build(
        "http://127.0.0.1:1/x",
        "",
        &format!(
            "[[source]]\nname = \"a\"\ncommand = [\"true\"]\nenvironment_file = \"{}\"\n",
            missing.display()
        ),
    );
    let (_, stderr) = expect_exit(&env.run(&["run"]), 78);
    assert!(stderr.contains("source.environment_file") && stderr.contains("nao-existe.env"), "{stderr}");
    assert_eq!(env.item_count(), 0);
}

#[test]
fn a_run_under_way_when_the_daemon_stops_is_killed_with_everything_it_started() {
    let scratch = tempfile::tempdir().unwrap();
    let script = scratch.path().join("fonte.sh");
    // A command that started a helper of its own, both far from their timeout.
    std::fs::write(&script, "sleep 3018 &\nsleep 3017\n").unwrap();
    let env = Env::build(
        "http://127.0.0.1:1/x",
        "",
        &format!(
            "[[source]]\nname = \"lenta\"\ninterval = \"1s\"\ntimeout = \"1h\"\ncommand = [\"sh\", \"{}\"]\n",
            script.display()
        ),
    );
    let running = |marker: &str| {
        Command::new("pgrep").args(["-f", marker]).output().is_ok_and(|output| output.status.success())
    };
    let mut daemon = env.spawn_daemon();
    wait_until("the source's command and its helper", Duration::from_secs(30), || {
        running("sleep 3017") && running("sleep 3018")
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    wait_until("both gone", Duration::from_secs(10), || !running("sleep 3017") && !running("sleep 3018"));
}

/// A source of `script` run once an hour: the first run at start is the only one a test sees.
fn hourly_source(script: &Path, environment_file: Option<&Path>) -> String {
    script_source(script, environment_file).replace("interval = \"100ms\"", "interval = \"1h\"")
}

/// Waits for the source's first run and returns its error (empty when it succeeded).
fn first_run(env: &Env) -> String {
    wait_until("the source's first run", Duration::from_secs(30), || {
        env.database().exists()
            && env
                .db()
                .query_row("SELECT COUNT(*) FROM sources WHERE name = 'teste'", [], |row| {
                    row.get::<_, i64>(0)
                })
                .unwrap_or(0)
                == 1
    });
    last_error(env).0
}

fn running(marker: &str) -> bool {
    Command::new("pgrep").args(["-f", marker]).output().is_ok_and(|output| output.status.success())
}

#[test]
fn one_order_printed_twice_with_different_content_is_named_with_both_rows_and_check_says_so() {
    let scratch = tempfile::tempdir().unwrap();
    let script = scratch.path().join("fonte.sh");
    // A JOIN that repeats order 5002 with two reasons, and 5001 once.
    std::fs::write(
        &script,
        "printf '%s\\n' '{\"order\":\"5001\",\"branch\":\"1\",\"reason\":\"a\"}' \
         '{\"order\":\"5002\",\"branch\":\"1\",\"reason\":\"itens\"}' \
         '{\"order\":\"5002\",\"branch\":\"1\",\"reason\":\"frete\"}'\n",
    )
    .unwrap();
    let env = Env::build("http://127.0.0.1:1/x", "", &hourly_source(&script, None));
    let (stdout, _) = expect_exit(&env.run(&["check"]), 1);
    let said = "o pedido \"5002\" aparece duas vezes com conteúdos diferentes (registro 2 (linha 2) e registro 3 \
                (linha 3); difere em reason)";
    assert!(stdout.contains(said), "{stdout}");
    let mut daemon = env.spawn_daemon();
    let error = first_run(&env);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    assert!(error.contains(said) && error.contains("nada desta execução foi enfileirado"), "{error}");
    assert!(!error.contains("item "), "names no item: {error}");
    assert_eq!(env.item_count(), 0, "all or nothing: 5001 waits for the query to be fixed");

    // The same row twice (a harmless repetition) is one order.
    std::fs::write(
        &script,
        "printf '%s\\n' '{\"order\":\"5001\",\"branch\":\"1\",\"reason\":\"a\"}' \
         '{\"order\":\"5002\",\"branch\":\"1\",\"reason\":\"itens\"}' \
         '{\"order\":\"5002\",\"branch\":\"1\",\"reason\":\"itens\"}'\n",
    )
    .unwrap();
    // (`check` exits 1 all the same: nothing listens at the API's port.)
    let (stdout, _) = expect_exit(&env.run(&["check"]), 1);
    assert!(stdout.contains("3 linhas lidas") && stdout.contains("2 novas"), "{stdout}");
    let mut daemon = env.spawn_daemon();
    wait_until("both orders queued", Duration::from_secs(30), || env.item_count() == 2);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
}

#[test]
fn a_daemonized_grandchild_dies_with_the_run_and_a_command_that_exited_0_is_not_a_timeout() {
    let scratch = tempfile::tempdir().unwrap();
    let script = scratch.path().join("fonte.sh");
    // As `ssh -f` does: a helper in a session of its own (out of the run's process group), and
    // a background child that keeps the run's stdout open; the command itself prints and exits 0.
    std::fs::write(
        &script,
        "setsid sleep 3019 </dev/null >/dev/null 2>&1 &\nsleep 3020 &\n\
         echo '{\"order\":\"7001\",\"branch\":\"1\",\"reason\":\"ok\"}'\nexit 0\n",
    )
    .unwrap();
    let env = Env::build("http://127.0.0.1:1/x", "", &hourly_source(&script, None));
    let mut daemon = env.spawn_daemon();
    let error = first_run(&env);
    assert_eq!(error, "", "the command exited 0: {error}");
    assert_eq!(env.item_count(), 1);
    wait_until("the run's processes gone", Duration::from_secs(10), || {
        !running("sleep 3019") && !running("sleep 3020")
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    assert!(!running("sleep 3019"), "no orphan outlives the daemon");

    // `check` runs it the same way, and leaves nothing behind either.
    let (stdout, _) = expect_exit(&env.run(&["check"]), 1);
    assert!(stdout.contains("1 linha lida") && !stdout.contains("timeout"), "{stdout}");
    assert!(!running("sleep 3019") && !running("sleep 3020"), "check left a process behind");
}

#[test]
fn stderr_is_masked_before_it_is_cut_and_a_huge_value_is_quoted_short() {
    const SECRET: &str = "Segredo-Do-Oracle-2026";
    let scratch = tempfile::tempdir().unwrap();
    let (script, environment) = (scratch.path().join("fonte.sh"), scratch.path().join("oracle.env"));
    std::fs::write(&environment, format!("ORACLE_SENHA={SECRET}\n")).unwrap();
    // The secret straddles stderr's 2 KiB excerpt: cut first, its first half would show.
    std::fs::write(&script, "head -c 2040 /dev/zero | tr '\\0' x >&2\necho \"$ORACLE_SENHA\" >&2\nexit 1\n")
        .unwrap();
    let env = Env::build("http://127.0.0.1:1/x", "", &hourly_source(&script, Some(&environment)));
    let mut daemon = env.spawn_daemon();
    let error = first_run(&env);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    assert!(error.contains("código de saída 1"), "{error}");
    for text in [&error, &env.daemon_log()] {
        assert!(!text.contains(&SECRET[..8]), "a piece of the secret shows:\n{text}");
    }

    // A 15 MB `cancelled_at` in a row: quoted short everywhere, not echoed whole.
    std::fs::write(
        &script,
        "printf '{\"order\":\"1\",\"branch\":\"1\",\"reason\":\"r\",\"cancelled_at\":\"'\n\
         head -c 15000000 /dev/zero | tr '\\0' 9\nprintf '\"}\\n'\n",
    )
    .unwrap();
    let env = Env::build("http://127.0.0.1:1/x", "", &hourly_source(&script, None));
    let mut daemon = env.spawn_daemon();
    let error = first_run(&env);
    let peak_kib = peak_rss_kib(daemon.id());
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    assert!(error.contains("cancelled_at") && error.contains("(15000000 caracteres)"), "{}", &error[..500]);
    assert!(error.len() < 4096, "{} bytes", error.len());
    let (status, _) = expect_exit(&env.run(&["status"]), 0);
    assert!(status.len() < 8192, "status: {} bytes", status.len());
    assert!(env.daemon_log().lines().all(|line| line.len() < 8192), "a log line is unbounded");
    assert_eq!(env.item_count(), 0);
    // 15 MB read and parsed once, never copied into messages.
    assert!(peak_kib < 120 * 1024, "peak RSS {peak_kib} KiB");
}
