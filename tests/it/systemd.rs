//! The shipped unit under a real systemd and journald (the project's `scripts/sandbox`): the
//! unit verifies and is hardened, the service becomes active with a pt-BR status line, journal
//! fields filter by code, reload applies a good config and refuses a bad one, a hung loop is
//! killed by the watchdog and restarted without losing items, and a stop during a request ends
//! cleanly with nothing left `in_flight`. Needs root; CI is root and never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use extrator::simulator::{Background, Behavior, Scenario};

use crate::util::{bin, wait_until};

/// The project's sandbox script (a Debian booted by systemd-nspawn).
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/sandbox")
}

/// A running sandbox, torn down on drop (with its journal printed if the test failed).
struct Sandbox {
    name: String,
}

impl Sandbox {
    /// A sandbox named after this process and `tag` (tests run side by side).
    fn up(tag: &str) -> Sandbox {
        let sandbox = Sandbox { name: format!("extrator-it-{tag}-{}", std::process::id()) };
        let output = sandbox.tool("up", &[]);
        assert!(output.status.success(), "sandbox up failed:\n{}", text(&output));
        sandbox
    }

    /// Runs one of the sandbox's commands (up, exec, install, down).
    fn tool(&self, command: &str, args: &[&str]) -> Output {
        Command::new(script())
            .arg(command)
            .args(args)
            .env("SANDBOX_NAME", &self.name)
            .output()
            .unwrap_or_else(|error| panic!("scripts/sandbox {command}: {error}"))
    }

    /// Runs a command inside; returns (exit code, stdout + stderr).
    fn exec(&self, args: &[&str]) -> (i32, String) {
        let output = self.tool("exec", args);
        (output.status.code().unwrap_or(-1), text(&output))
    }

    /// Runs a command inside that must succeed; returns its output.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let (code, output) = self.exec(args);
        assert_eq!(code, 0, "{args:?} failed:\n{output}");
        output
    }

    /// Copies files in (`SRC:DEST` pairs for `--file`, plus other install options).
    #[track_caller]
    fn install(&self, args: &[&str]) {
        let output = self.tool("install", args);
        assert!(output.status.success(), "install {args:?} failed:\n{}", text(&output));
    }

    /// One property of the unit.
    fn property(&self, name: &str) -> String {
        self.ok(&["systemctl", "show", "-P", name, "extrator"]).trim().to_owned()
    }

    /// `extrator status --json` inside.
    fn status(&self) -> serde_json::Value {
        // stdout only: warnings about the config go to stderr.
        let output = self.tool("exec", &["extrator", "status", "--json"]);
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// The unit's journal, as plain messages.
    fn journal(&self, filters: &[&str]) -> String {
        let mut args = vec!["journalctl", "-q", "--no-pager", "-u", "extrator", "-o", "cat"];
        args.extend_from_slice(filters);
        self.exec(&args).1
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- journal of the sandbox\n{}",
                self.exec(&["journalctl", "-b", "--no-pager", "-n", "200"]).1
            );
        }
        let _ = self.tool("down", &[]);
    }
}

/// stdout and stderr together.
fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Fails the (ignored-unless-asked) test unless this machine has root and systemd-nspawn (which
/// `scripts/test-setup` installs).
fn can_run() {
    crate::util::privileged(
        "the systemd sandbox test",
        "systemd-nspawn (apt-get install systemd-container)",
        Path::new("/usr/bin/systemd-nspawn").exists(),
    )
}

/// A config file for the sandbox calling `url`.
fn config(dir: &Path, name: &str, url: &str, extra: &str) -> String {
    let path = dir.join(name);
    let text = format!(
        "[api]\nurl = \"{url}\"\nconnect_timeout = \"2s\"\nrequest_timeout = \"5s\"\n{extra}\n\
         [queue]\npoll_interval = \"200ms\"\n\n[retry]\nfirst_delay = \"300ms\"\nmax_delay = \"1s\"\n"
    );
    std::fs::write(&path, text).unwrap();
    format!("{}:/etc/extrator/extrator.toml", path.display())
}

/// The count of items in `state`, from `status --json`.
fn count(status: &serde_json::Value, state: &str) -> i64 {
    status["counts"][state].as_i64().unwrap_or(-1)
}

/// Installs the binary, the unit with a test drop-in, sysusers, tmpfiles and `config` (a
/// `SRC:DEST` pair), and creates the user and directories.
fn install_service(sandbox: &Sandbox, dir: &Path, dropin: &str, config: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary = format!("{}:/usr/bin/extrator", bin().display());
    let unit =
        format!("{}:/etc/systemd/system/extrator.service", root.join("systemd/extrator.service").display());
    let sysusers =
        format!("{}:/usr/lib/sysusers.d/extrator.conf", root.join("systemd/extrator.sysusers").display());
    let tmpfiles =
        format!("{}:/usr/lib/tmpfiles.d/extrator.conf", root.join("systemd/extrator.tmpfiles").display());
    let dropin_path = dir.join("teste.conf");
    std::fs::write(&dropin_path, dropin).unwrap();
    let dropin = format!("{}:/etc/systemd/system/extrator.service.d/teste.conf", dropin_path.display());
    sandbox.install(&[
        "--file", &binary, "--file", &unit, "--file", &sysusers, "--file", &tmpfiles, "--file", &dropin,
        "--file", config,
    ]);
    sandbox.ok(&["systemd-sysusers"]);
    sandbox.ok(&["systemd-tmpfiles", "--create", "/usr/lib/tmpfiles.d/extrator.conf"]);
}

#[test]
#[ignore = "precisa de root e do systemd-nspawn (scripts/sandbox): roda com scripts/test como root"]
fn a_63_mib_spool_file_imported_while_delivering_never_misses_the_watchdog() {
    can_run();
    let dir = tempfile::tempdir().unwrap();
    let api = Background::start(Scenario::default()).unwrap();
    let sandbox = Sandbox::up("spool");
    // A 3 s watchdog: a loop blocked for 3 s gets the service killed.
    let config = config(dir.path(), "rapida.toml", &api.url(), "max_rate = 100\nconcurrency = 4\n");
    install_service(&sandbox, dir.path(), "[Service]\nWatchdogSec=3s\nRestartSec=500ms\n", &config);
    // 1,000 items to deliver (10 s at max_rate = 100), and a spool file just under the limit.
    let thousand = dir.path().join("mil.json");
    std::fs::write(&thousand, crate::util::json_lines(1, 1_000)).unwrap();
    let big = dir.path().join("grande.json");
    let (document, records) = crate::util::big_spool_document();
    std::fs::write(&big, document).unwrap();
    sandbox.install(&[
        "--file",
        &format!("{}:/root/mil.json", thousand.display()),
        "--file",
        &format!("{}:/var/spool/extrator/grande.json.tmp", big.display()),
    ]);
    sandbox.ok(&["extrator", "enqueue", "--json", "/root/mil.json"]);
    sandbox.ok(&["systemctl", "start", "extrator"]);
    wait_until("deliveries under way", Duration::from_secs(30), || count(&sandbox.status(), "done") > 50);
    let done_before = count(&sandbox.status(), "done");
    sandbox.ok(&["mv", "/var/spool/extrator/grande.json.tmp", "/var/spool/extrator/grande.json"]);
    wait_until("the 63 MiB file imported", Duration::from_secs(300), || {
        sandbox.exec(&["test", "-e", "/var/spool/extrator/processados/grande.json"]).0 == 0
    });
    let done_after = count(&sandbox.status(), "done");
    assert!(done_after > done_before, "delivery went on during the import: {done_before} → {done_after}");
    wait_until("the thousand delivered", Duration::from_secs(120), || {
        count(&sandbox.status(), "done") >= 1_000
    });
    assert_eq!(sandbox.property("NRestarts"), "0", "the watchdog was missed:\n{}", sandbox.journal(&[]));
    let status = sandbox.status();
    let queued: i64 = ["pending", "in_flight", "processing", "done", "failed"]
        .iter()
        .map(|state| count(&status, state))
        .sum();
    assert_eq!(queued, (1_000 + records) as i64, "every record of the file queued once: {status}");
    let watchdog =
        sandbox.exec(&["journalctl", "-q", "-u", "extrator", "UNIT_RESULT=watchdog", "-o", "cat"]).1;
    assert!(watchdog.trim().is_empty(), "{watchdog}");
    sandbox.ok(&["systemctl", "stop", "extrator"]);
    assert_eq!(sandbox.property("Result"), "success");
}

#[test]
#[ignore = "precisa de root e do systemd-nspawn (scripts/sandbox): roda com scripts/test como root"]
fn the_service_under_real_systemd() {
    can_run();
    let dir = tempfile::tempdir().unwrap();
    let api = Background::start(Scenario::default().order("90", vec![Behavior::Stall])).unwrap();
    let closed_port = crate::util::free_port();
    let sandbox = Sandbox::up("unit");

    // Test-only drop-in: a short watchdog, so the hung-loop check takes seconds, not a minute.
    let closed = config(dir.path(), "fechada.toml", &format!("http://127.0.0.1:{closed_port}/c"), "");
    install_service(&sandbox, dir.path(), "[Service]\nWatchdogSec=3s\nRestartSec=500ms\n", &closed);

    // The unit as shipped: `verify` silent, exposure ≤ 1.5.
    let (_, verify) =
        sandbox.exec(&["systemd-analyze", "verify", "--man=no", "/etc/systemd/system/extrator.service"]);
    assert_eq!(verify.trim(), "", "systemd-analyze verify must be silent");
    let (code, security) = sandbox.exec(&[
        "systemd-analyze",
        "security",
        "--offline=true",
        "--threshold=15",
        "/etc/systemd/system/extrator.service",
    ]);
    assert_eq!(code, 0, "exposure above 1.5:\n{security}");

    // Start against a closed port: active, pt-BR status, code 01 in the journal fields.
    for order in ["1", "2", "3"] {
        sandbox.ok(&["extrator", "enqueue", "--order", order, "--branch", "1", "--reason", "teste"]);
    }
    sandbox.ok(&["systemctl", "start", "extrator"]);
    assert_eq!(sandbox.property("ActiveState"), "active");
    // The unit's malloc tuning reaches the process (docs/PERFORMANCE.md).
    let pid = sandbox.property("MainPID");
    let environ = sandbox.ok(&["sh", "-c", &format!("tr '\\0' '\\n' < /proc/{pid}/environ")]);
    assert!(
        environ.lines().any(|line| line.starts_with("GLIBC_TUNABLES=glibc.malloc.trim_threshold=")),
        "{environ}"
    );
    wait_until("the status line to show the open circuit", Duration::from_secs(30), || {
        sandbox
            .property("StatusText")
            .starts_with("CIRCUITO ABERTO: a API falhou com o erro 01 Conexão recusada")
    });
    assert!(sandbox.property("StatusText").contains("3 pendentes"), "{}", sandbox.property("StatusText"));
    // The outage is one journal entry, with its code; the probes are debug lines, not news.
    let refused = sandbox.journal(&["EXTRATOR_CODE=01"]);
    assert!(refused.contains("envio suspenso: CIRCUITO ABERTO: a API falhou com o erro 01"), "{refused}");
    assert_eq!(refused.matches("envio suspenso").count(), 1, "{refused}");

    // A broken config on reload is refused: `systemctl reload` fails and says why, the service
    // stays up on the old one and its status line says the reload was refused.
    let broken = format!("{}:/etc/extrator/extrator.toml", dir.path().join("quebrada.toml").display());
    std::fs::write(dir.path().join("quebrada.toml"), "[api]\nurl = \"http://x\"\nurll = 1\n").unwrap();
    sandbox.install(&["--file", &broken]);
    let (code, said) = sandbox.exec(&["systemctl", "reload", "extrator"]);
    assert_ne!(code, 0, "a refused config must fail the reload: {said}");
    assert_eq!(sandbox.property("ActiveState"), "active");
    assert!(sandbox.journal(&[]).contains("recarga recusada"), "{}", sandbox.journal(&[]));
    // journald writes the reason a moment after the reload returns: waited for, in full lines.
    wait_until("systemctl status to show why", Duration::from_secs(30), || {
        sandbox
            .exec(&["systemctl", "status", "--no-pager", "--full", "--lines=30", "extrator"])
            .1
            .contains("urll")
    });
    wait_until("the status line to say the reload was refused", Duration::from_secs(30), || {
        sandbox.property("StatusText").starts_with("RECARGA RECUSADA (vale a configuração anterior)")
    });

    // A good config on reload applies: everything is delivered.
    // With a password in the file itself: warned about, never logged.
    let working = config(
        dir.path(),
        "boa.toml",
        &api.url(),
        "[api.auth]\nmode = \"basic\"\nuser = \"integrador\"\npassword = \"S3nh4-Do-Journal-0042\"\n",
    );
    sandbox.install(&["--file", &working]);
    sandbox.ok(&["systemctl", "reload", "extrator"]);
    wait_until("the refusal gone from the status line", Duration::from_secs(30), || {
        !sandbox.property("StatusText").contains("RECARGA RECUSADA")
    });
    wait_until("the three items delivered", Duration::from_secs(60), || {
        count(&sandbox.status(), "done") == 3
    });
    wait_until("the status line to say it is sending", Duration::from_secs(30), || {
        sandbox.property("StatusText").contains("enviando normalmente")
    });
    // The support bundle under the real unit: its journal and its state, and no password.
    sandbox.ok(&["extrator", "relatorio", "--output", "/root/relatorio.txt"]);
    let report = sandbox.ok(&["cat", "/root/relatorio.txt"]);
    assert!(report.contains("ActiveState=active") && report.contains("StatusText="), "{report}");
    assert!(report.contains("recarga recusada") && report.contains("configuração recarregada"), "{report}");
    assert!(report.contains("password = \"***\"") && !report.contains("S3nh4-Do-Journal-0042"), "{report}");
    // Each attempt's entry carries the fields support filters on.
    let fields = sandbox
        .exec(&[
            "journalctl",
            "-q",
            "-u",
            "extrator",
            "EXTRATOR_ORDER=1",
            "EXTRATOR_KIND=http_200",
            "-o",
            "verbose",
            "-n",
            "1",
        ])
        .1;
    for field in ["EXTRATOR_ORDER=", "EXTRATOR_ITEM=", "EXTRATOR_ATTEMPT=", "SYSLOG_IDENTIFIER=extrator"] {
        assert!(fields.contains(field), "missing {field} in:\n{fields}");
    }

    // A hung loop (SIGSTOP) is killed by the watchdog and restarted; no item is lost.
    sandbox.ok(&["systemctl", "kill", "--signal=SIGSTOP", "extrator"]);
    for order in ["4", "5"] {
        sandbox.ok(&["extrator", "enqueue", "--order", order, "--branch", "1", "--reason", "teste"]);
    }
    wait_until("a watchdog restart", Duration::from_secs(60), || sandbox.property("NRestarts") == "1");
    let watchdog =
        sandbox.exec(&["journalctl", "-q", "-u", "extrator", "UNIT_RESULT=watchdog", "-o", "cat"]).1;
    assert!(watchdog.contains("watchdog"), "{watchdog}");
    wait_until("the items enqueued while hung delivered", Duration::from_secs(60), || {
        count(&sandbox.status(), "done") == 5
    });

    // A stop while a request is on the wire: a clean exit, nothing left in flight or lost.
    sandbox.ok(&[
        "extrator",
        "enqueue",
        "--order",
        "90",
        "--branch",
        "1",
        "--reason",
        "resposta que não vem",
    ]);
    wait_until("the stalled request to be in flight", Duration::from_secs(30), || {
        count(&sandbox.status(), "in_flight") == 1
    });
    sandbox.ok(&["systemctl", "stop", "extrator"]);
    assert_eq!(sandbox.property("Result"), "success", "the stop must not hit TimeoutStopSec");
    assert_eq!(sandbox.property("ExecMainStatus"), "0");
    let status = sandbox.status();
    assert_eq!((count(&status, "in_flight"), count(&status, "done")), (0, 5), "{status}");
    assert_eq!(count(&status, "pending") + count(&status, "failed"), 1, "order 90 is kept: {status}");
    assert!(sandbox.journal(&[]).contains("extrator parado"), "{}", sandbox.journal(&[]));
    let journal = sandbox.exec(&["journalctl", "-b", "--no-pager", "-o", "verbose"]).1;
    assert!(!journal.contains("S3nh4-Do-Journal-0042"), "the password reached the journal");
    assert!(
        journal.contains("a senha está em `api.auth.password`"),
        "the inline password must be warned about"
    );
}

#[test]
#[ignore = "precisa de root e do systemd-nspawn (scripts/sandbox): roda com scripts/test como root"]
fn the_erps_account_can_queue_and_nothing_more_and_every_attack_fails() {
    can_run();
    let dir = tempfile::tempdir().unwrap();
    let api = Background::start(Scenario::default()).unwrap();
    let sandbox = Sandbox::up("privilegios");
    let auth =
        "[api.auth]\nmode = \"basic\"\nuser = \"integracao\"\npassword_file = \"/etc/extrator/senha\"\n";
    let config = config(dir.path(), "privilegios.toml", &api.url(), auth);
    install_service(&sandbox, dir.path(), "[Service]\n", &config);
    let password = dir.path().join("senha");
    std::fs::write(&password, "S3nh4-Priv\n").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/privilege-check");
    sandbox.install(&[
        "--file",
        &format!("{}:/etc/extrator/senha", password.display()),
        "--file",
        &format!("{}:/usr/local/bin/privilege-check", script.display()),
    ]);
    // As the package leaves them (postinst): the secrets readable by the service's group only.
    sandbox.ok(&["chown", "root:extrator", "/etc/extrator/senha", "/etc/extrator/extrator.toml"]);
    sandbox.ok(&["chmod", "0640", "/etc/extrator/senha", "/etc/extrator/extrator.toml"]);
    sandbox.ok(&["chmod", "0755", "/usr/local/bin/privilege-check"]);
    sandbox.ok(&["systemctl", "start", "extrator"]);
    let (code, output) = sandbox.exec(&["privilege-check"]);
    eprintln!("{output}");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("privilege-check: tudo certo"), "{output}");
    assert!(!sandbox.journal(&[]).contains("S3nh4-Priv"), "the password reached the journal");
}
