//! Mutual TLS against a real nginx that requires a client certificate (`ssl_verify_client on`),
//! in front of the simulated API, with every certificate made here by the openssl command: a
//! PKCS#12 file (as Brazilian payment and fiscal APIs hand them out, modern and legacy
//! encryption) and a PEM certificate with its key are both delivered; no certificate, a wrong
//! password and an expired certificate each end as documented.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use extrator::simulator::{Background, Scenario};

use crate::util::{
    Env, Killed, expect_exit, free_port, json_lines, needs_program, signal, wait_until, wait_until_or,
};

/// Items not yet in a final state.
const UNFINISHED: &str = "SELECT COUNT(*) FROM items WHERE state NOT IN ('done', 'failed')";

/// The PKCS#12 file's password.
const PFX_PASSWORD: &str = "S3nh4-do-PFX/2026";

/// Runs openssl in `dir`, failing the test with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA, the server's certificate for 127.0.0.1, a client certificate valid for a year, one that
/// expired in 2020, and the client's PKCS#12 files (modern and legacy encryption).
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=CA de teste do extrator",
        ],
    );
    std::fs::write(dir.join("servidor.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "servidor.key",
            "-out",
            "servidor.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "servidor.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "servidor.pem",
            "-days",
            "30",
            "-extfile",
            "servidor.ext",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "cliente.key",
            "-out",
            "cliente.csr",
            "-subj",
            "/CN=extrator-cliente/O=Distribuidora Exemplo",
        ],
    );
    // X.509 v3 with the client-authentication purpose, as issuers make them (without an extension
    // openssl writes a v1 certificate, which TLS stacks refuse).
    std::fs::write(dir.join("cliente.ext"), "extendedKeyUsage = clientAuth\nkeyUsage = digitalSignature\n")
        .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "cliente.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cliente.pem",
            "-days",
            "365",
            "-extfile",
            "cliente.ext",
        ],
    );
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "cliente.key",
            "-in",
            "cliente.pem",
            "-out",
            "cliente.p12",
            "-passout",
            &format!("pass:{PFX_PASSWORD}"),
        ],
    );
    // The 3DES/RC2 encryption of older .pfx files (Windows exports, many e-CNPJ A1 files).
    let legacy = Command::new("openssl")
        .args([
            "pkcs12",
            "-export",
            "-legacy",
            "-inkey",
            "cliente.key",
            "-in",
            "cliente.pem",
            "-out",
            "cliente-legado.pfx",
            "-passout",
            &format!("pass:{PFX_PASSWORD}"),
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(legacy.status.success(), "openssl pkcs12 -legacy: {}", String::from_utf8_lossy(&legacy.stderr));
    // An expired client certificate: `openssl ca` is the command that takes explicit dates.
    std::fs::create_dir_all(dir.join("ca")).unwrap();
    std::fs::write(dir.join("ca/index.txt"), "").unwrap();
    std::fs::write(dir.join("ca/serial"), "1000\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = teste\n[teste]\ndir = ./ca\ndatabase = $dir/index.txt\nserial = $dir/serial\n\
         new_certs_dir = $dir\ncertificate = ca.pem\nprivate_key = ca.key\ndefault_md = sha256\n\
         policy = livre\nx509_extensions = cliente\n[livre]\ncommonName = supplied\n\
         [cliente]\nextendedKeyUsage = clientAuth\nkeyUsage = digitalSignature\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "vencido.key",
            "-out",
            "vencido.csr",
            "-subj",
            "/CN=extrator-vencido",
        ],
    );
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-in",
            "vencido.csr",
            "-out",
            "vencido.pem",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200201000000Z",
            "-notext",
        ],
    );
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "vencido.key",
            "-in",
            "vencido.pem",
            "-out",
            "vencido.p12",
            "-passout",
            &format!("pass:{PFX_PASSWORD}"),
        ],
    );
}

/// nginx on a free port, requiring a client certificate the CA signed, passing requests on to
/// `api`.
fn nginx(dir: &Path, api: &Background) -> (Killed, u16) {
    let port = free_port();
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "worker_processes 1;\nerror_log {d}/nginx-erro.log;\npid {d}/nginx.pid;\nevents {{}}\nhttp {{\n\
             access_log off;\nclient_body_temp_path {d}/corpo;\nproxy_temp_path {d}/proxy;\n\
             server {{\nlisten 127.0.0.1:{port} ssl;\nssl_certificate {d}/servidor.pem;\n\
             ssl_certificate_key {d}/servidor.key;\nssl_client_certificate {d}/ca.pem;\nssl_verify_client on;\n\
             location / {{ proxy_pass http://{}; }}\n}}\n}}\n",
            api.addr
        ),
    )
    .unwrap();
    let child = Command::new("nginx")
        .args([
            "-p",
            &dir.display().to_string(),
            "-c",
            &dir.join("nginx.conf").display().to_string(),
            "-g",
            "daemon off;",
        ])
        .spawn()
        .unwrap();
    wait_until("nginx to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (Killed(child), port)
}

/// An installation sending to nginx over TLS, trusting the test CA, with `certificate` lines
/// added to `[api]`.
fn env_with(dir: &Path, port: u16, certificate: &str) -> Env {
    let password = dir.join("senha-pfx");
    std::fs::write(&password, format!("{PFX_PASSWORD}\n")).unwrap();
    let api = format!(
        "ca_file = \"{}\"\nconnect_timeout = \"2s\"\nrequest_timeout = \"5s\"\n{}",
        dir.join("ca.pem").display(),
        certificate.replace("DIR", &dir.display().to_string())
    );
    Env::build(
        &format!("https://127.0.0.1:{port}/cancelamentos"),
        &api,
        "[retry]\nfirst_delay = \"1s\"\nmax_delay = \"2s\"\nmax_attempts = 2\n",
    )
}

/// The last attempt's code, kind and message.
fn last_attempt(env: &Env) -> (String, String, String) {
    env.db()
        .query_row("SELECT code, kind, message FROM attempts ORDER BY id DESC LIMIT 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap()
}

/// Delivers three orders through `env`'s daemon and returns how many are done.
fn deliver(env: &Env) -> i64 {
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 3).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until_or(
        "every item final",
        Duration::from_secs(30),
        || env.number(UNFINISHED) == 0,
        || env.daemon_log(),
    );
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    env.number("SELECT COUNT(*) FROM items WHERE state = 'done'")
}

#[test]
#[ignore = "precisa de nginx e openssl: roda com scripts/test como root"]
fn client_certificates_against_nginx_that_requires_them() {
    needs_program("the mutual TLS test", "nginx");
    needs_program("the mutual TLS test", "openssl");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates(dir);
    let api = Background::start(Scenario::default()).unwrap();
    let (_nginx, port) = nginx(dir, &api);

    // PKCS#12, modern and legacy, and PEM with its key: delivered.
    for (name, lines) in [
        (
            "PKCS#12",
            "client_certificate = \"DIR/cliente.p12\"\nclient_certificate_password_file = \"DIR/senha-pfx\"\n",
        ),
        (
            "PKCS#12 legado",
            "client_certificate = \"DIR/cliente-legado.pfx\"\nclient_certificate_password_file = \"DIR/senha-pfx\"\n",
        ),
        ("PEM", "client_certificate = \"DIR/cliente.pem\"\nclient_key = \"DIR/cliente.key\"\n"),
    ] {
        let env = env_with(dir, port, lines);
        assert_eq!(deliver(&env), 3, "{name}: {}", env.daemon_log());
        let (check, _) = expect_exit(&env.run(&["check"]), 0);
        assert!(check.contains("✓ certificado de cliente: CN=extrator-cliente"), "{name}: {check}");
        assert!(check.contains("vence em"), "{check}");
        let (status, _) = expect_exit(&env.run(&["status"]), 0);
        assert!(
            status.contains("Certificado:") && status.contains("o certificado de cliente vence em"),
            "{status}"
        );
        assert!(!check.contains(PFX_PASSWORD), "the password leaked");
    }

    // No certificate: nginx answers 400 "No required SSL certificate was sent" — code 06, not
    // the item's 07; nothing failed.
    let env = env_with(dir, port, "");
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 1).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("a first attempt", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM attempts") > 0
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    let (code, kind, message) = last_attempt(&env);
    assert_eq!((code.as_str(), kind.as_str()), ("06", "client_certificate"), "{message}");
    assert!(
        message.contains("api.client_certificate") && message.contains("No required SSL certificate"),
        "{message}"
    );
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'failed'"), 0);
    let (explain, _) = expect_exit(&env.run(&["explain", "06"]), 0);
    assert!(explain.contains("certificado de cliente"), "{explain}");

    // An expired certificate: nginx refuses it the same way; check says it expired.
    let env = env_with(
        dir,
        port,
        "client_certificate = \"DIR/vencido.p12\"\nclient_certificate_password_file = \"DIR/senha-pfx\"\n",
    );
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 1).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    wait_until("a first attempt", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM attempts") > 0
    });
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    let (code, kind, message) = last_attempt(&env);
    assert_eq!((code.as_str(), kind.as_str()), ("06", "client_certificate"), "{message}");
    assert!(env.daemon_log().contains("VENCIDO desde"), "{}", env.daemon_log());
    let (check, _) = expect_exit(&env.run(&["check"]), 1);
    assert!(check.contains("⚠ certificado de cliente: CN=extrator-vencido — VENCIDO desde"), "{check}");

    // A wrong password: the service does not start (exit 78), naming the key; check says so too.
    let env = env_with(
        dir,
        port,
        "client_certificate = \"DIR/cliente.p12\"\nclient_certificate_password_file = \"DIR/senha-errada\"\n",
    );
    std::fs::write(dir.join("senha-errada"), "outra-senha\n").unwrap();
    let output = env.command(&["run"]).output().unwrap();
    let (_, stderr) = expect_exit(&output, 78);
    assert!(stderr.contains("api.client_certificate_password_file: a senha não abre"), "{stderr}");
    let (check, _) = expect_exit(&env.run(&["check"]), 78);
    assert!(check.contains("api.client_certificate_password_file: a senha não abre"), "{check}");
    assert!(!stderr.contains("outra-senha") && !check.contains("outra-senha"));
    let _ = PathBuf::new();
}
