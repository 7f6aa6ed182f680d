//! Code 05 for real: the daemon runs inside a network namespace this test creates, whose
//! `/etc/netns/NAME/resolv.conf` points at 127.0.0.1 there. With no DNS server listening, the
//! lookup fails temporarily (`EAI_AGAIN`, "no DNS server"); with dnsmasq answering NXDOMAIN for
//! `*.teste`, the name does not exist (`EAI_NONAME`). Needs root; CI is root and never skips.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{Env, bin, expect_exit, signal, wait_until};

/// A network namespace with loopback up and its own resolv.conf; removed on drop.
struct Namespace {
    name: String,
    etc: PathBuf,
    dnsmasq: Option<Child>,
}

impl Namespace {
    fn create(tag: &str) -> Namespace {
        let name = format!("extrator-{tag}-{}", std::process::id());
        let etc = PathBuf::from("/etc/netns").join(&name);
        run(&["ip", "netns", "add", &name]);
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
            .unwrap();
        Namespace { name, etc, dnsmasq: None }
    }

    /// Starts dnsmasq inside: NXDOMAIN for `*.teste`, except `api.ok.teste` (the control).
    fn start_dnsmasq(&mut self) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
            ])
            .args(["--listen-address=127.0.0.1", "--bind-interfaces", "--user=root", "--pid-file="])
            .args(["--address=/teste/", "--address=/api.ok.teste/127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq");
        self.dnsmasq = Some(child);
        wait_until("dnsmasq to answer inside the namespace", Duration::from_secs(20), || {
            Command::new("ip")
                .args(["netns", "exec", &self.name, "getent", "hosts", "api.ok.teste"])
                .output()
                .is_ok_and(|output| output.status.success())
        });
    }

    /// `extrator run` inside the namespace.
    fn spawn_daemon(&self, env: &Env) -> Child {
        let log = std::fs::File::create(env.dir.path().join("daemon.log")).unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(bin())
            .arg("run")
            .env("EXTRATOR_CONFIG", &env.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn run in namespace")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// Runs a setup command, failing loudly.
fn run(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().expect(args[0]);
    assert!(status.success(), "{args:?} failed");
}

/// Fails the (ignored-unless-asked) test unless this machine has root, ip, dnsmasq and getent.
fn can_run() {
    let tools = ["ip", "dnsmasq", "getent"].iter().all(|tool| crate::util::has_command(tool));
    crate::util::privileged("the DNS tests", "the ip, dnsmasq and getent commands", tools)
}

/// Enqueues one item for `host`, runs the daemon in `namespace` until the first attempt is
/// recorded, and returns its (code, kind, message).
fn first_attempt(namespace: &Namespace, host: &str) -> (String, String, String) {
    let env = Env::build(
        &format!("http://{host}/cancelamentos"),
        "connect_timeout = \"3s\"\nrequest_timeout = \"5s\"\n",
        "",
    );
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
    let mut daemon = namespace.spawn_daemon(&env);
    wait_until("the first attempt", Duration::from_secs(30), || {
        env.database().exists() && env.number("SELECT COUNT(*) FROM attempts") > 0
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    env.db()
        .query_row("SELECT code, kind, message FROM attempts ORDER BY id LIMIT 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap()
}

#[test]
#[ignore = "precisa de root, ip, dnsmasq e getent (namespace de rede): roda com scripts/test como root"]
fn no_dns_server_reachable_is_05_dns_unavailable() {
    can_run();
    let namespace = Namespace::create("semdns");
    let (code, kind, message) = first_attempt(&namespace, "api.naoexiste.teste");
    assert_eq!((code.as_str(), kind.as_str()), ("05", "dns_unavailable"), "{message}");
    assert!(message.contains("nenhum servidor DNS"), "{message}");
}

#[test]
#[ignore = "precisa de root, ip, dnsmasq e getent (namespace de rede): roda com scripts/test como root"]
fn a_name_that_does_not_exist_is_05_dns_nxdomain() {
    can_run();
    let mut namespace = Namespace::create("nxdomain");
    namespace.start_dnsmasq();
    let (code, kind, message) = first_attempt(&namespace, "api.naoexiste.teste");
    assert_eq!((code.as_str(), kind.as_str()), ("05", "dns_nxdomain"), "{message}");
    // The control: a name the same server resolves gets past DNS (to a refused connection).
    let (code, kind, _) = first_attempt(&namespace, "api.ok.teste:9");
    assert_eq!((code.as_str(), kind.as_str()), ("01", "connect_refused"));
}

#[test]
#[ignore = "precisa de root, ip, dnsmasq e getent (namespace de rede): roda com scripts/test como root"]
fn check_names_the_dns_step_and_code_05() {
    can_run();
    let mut namespace = Namespace::create("check");
    namespace.start_dnsmasq();
    let env = Env::build("http://api.naoexiste.teste/cancelamentos", "", "");
    let output = Command::new("ip")
        .args(["netns", "exec", &namespace.name])
        .arg(bin())
        .arg("check")
        .env("EXTRATOR_CONFIG", &env.config)
        .output()
        .unwrap();
    let (stdout, _) = expect_exit(&output, 1);
    assert!(
        stdout.contains("✗ DNS: erro 05 Host não conhecido: o nome api.naoexiste.teste não existe no DNS"),
        "{stdout}"
    );
    assert!(stdout.contains("getent hosts"), "what to do comes from the catalog: {stdout}");
}
