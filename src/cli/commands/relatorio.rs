//! `extrator relatorio`: the support bundle (the sosreport habit) — one text file the customer
//! sends: version and machine, the config with every secret masked, `check`'s result, `status`,
//! the last 50 failures with their messages, the unit's last journal lines and its `systemctl
//! show` essentials. **One text file, not a `.tar.gz`:** the customer can open it and see that
//! nothing secret goes out before sending it, paste it into a ticket or an e-mail, and support
//! reads it without tools; everything in it is text already.
//!
//! Each section is this binary (or `journalctl`/`systemctl`) run as a child with its output
//! captured, bounded and time-limited, then masked by the same `Redactor` the client uses (every
//! secret the config names, in every encoding) plus the sources' environment values, then made
//! terminal-safe. Root or the service account get everything; an account that cannot read the
//! config (support, group `extrator-leitura`) gets a reduced report — no config, no `check` —
//! and the report says so.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use crate::core::failure::{Failure, Outcome};

/// The `relatorio` flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Opções")]
pub struct RelatorioArgs {
    /// Onde gravar o relatório (padrão: extrator-relatorio-AAAAMMDD-HHMMSS.txt no diretório atual; - para a saída padrão)
    #[arg(long, value_name = "ARQUIVO")]
    pub output: Option<PathBuf>,
}

/// The most one section keeps of what its command printed.
const SECTION_BYTES: usize = 256 * 1024;
/// How long one section's command may take (`check` tests the network: its own timeouts are
/// shorter than this).
const SECTION_TIME: Duration = Duration::from_secs(90);
/// The unit's journal lines included.
const JOURNAL_LINES: &str = "300";
/// The `systemctl show` properties that say how the service is doing.
const UNIT_PROPERTIES: &str = "ActiveState,SubState,Result,MainPID,ExecMainStartTimestamp,NRestarts,StatusText,\
                               User,Group,WatchdogUSec,MemoryCurrent,TasksCurrent,FragmentPath,DropInPaths";

/// What masks a section: the client's redactor and the sources' environment values.
struct Masks {
    client: Option<crate::io::secrets::Redactor>,
    sources: Vec<crate::io::source::Source>,
}

impl Masks {
    fn mask(&self, text: &str) -> String {
        let mut text = match &self.client {
            Some(redactor) => redactor.redact(text, None),
            None => text.to_owned(),
        };
        for source in &self.sources {
            text = source.mask(&text);
        }
        crate::core::text::terminal_safe_lines(&text)
    }
}

/// Runs `relatorio`.
pub fn run(config_path: &Path, args: &RelatorioArgs) -> Outcome {
    let now = jiff::Timestamp::now();
    let config = crate::config::load(config_path);
    let full = config.is_ok();
    let masks = match &config {
        Ok(loaded) => Masks {
            client: Some(match crate::io::api::Client::new(&loaded.config) {
                Ok(client) => client.redactor().clone(),
                // A config the client refuses (a certificate, a header) still has secrets in it.
                Err(_) => fallback_redactor(&loaded.config),
            }),
            sources: crate::io::source::Source::all(&loaded.config.sources).unwrap_or_default(),
        },
        Err(_) => Masks { client: None, sources: Vec::new() },
    };
    let exe = std::env::current_exe()
        .map_err(|error| Failure::failed(format!("não foi possível achar o próprio executável: {error}")))?;
    let config_arg = config_path.display().to_string();
    let ours = |args: &[&str]| {
        let mut all = vec!["--config", config_arg.as_str()];
        all.extend_from_slice(args);
        capture(&exe, &all)
    };

    let mut report = String::new();
    let mut section = |title: &str, body: String| {
        report.push_str(&format!("\n===== {title} =====\n"));
        report.push_str(masks.mask(&body).trim_end());
        report.push('\n');
    };
    section(
        "relatório",
        format!(
            "extrator {}\nmáquina: {}\ngerado em: {} ({})\nconta: uid {}\nconfiguração: {}\n{}",
            env!("CARGO_PKG_VERSION"),
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
            crate::view::local_time(now),
            now,
            rustix::process::getuid().as_raw(),
            config_path.display(),
            if full {
                "completo (os segredos aparecem como ***)".to_owned()
            } else {
                "REDUZIDO: esta conta não pode ler a configuração (ela guarda as credenciais); sem a \
                 configuração e sem o check. Para o completo: sudo extrator relatorio"
                    .to_owned()
            }
        ),
    );
    match &config {
        Ok(_) => section("configuração (segredos mascarados)", masked_config(config_path)),
        Err(error) if crate::config::unreadable(config_path) => {
            section("configuração", format!("não incluída: {error}"));
        }
        Err(error) => {
            section("configuração (inválida)", format!("{error}\n\n{}", masked_config(config_path)))
        }
    }
    if full {
        section("extrator check", ours(&["check"]));
    }
    section("extrator status", ours(&["status"]));
    section(
        "últimas 50 falhas (extrator list --state failed --limit 50 --json)",
        ours(&["list", "--state", "failed", "--limit", "50", "--json"]),
    );
    section(
        "journal do serviço (journalctl -u extrator)",
        capture(
            Path::new("journalctl"),
            &["-u", "extrator", "-n", JOURNAL_LINES, "--no-pager", "-o", "short-iso"],
        ),
    );
    section(
        "unidade systemd (systemctl show extrator)",
        capture(Path::new("systemctl"), &["show", "extrator", "-p", UNIT_PROPERTIES]),
    );
    report.insert_str(0, "Relatório do extrator para o suporte. Nenhum segredo vai aqui: senhas, tokens e chaves aparecem como ***.\n");

    write_report(args.output.as_deref(), now, &report)
}

/// What masks the secrets a config names when no client could be built from it: the password
/// written in it or in its files, the client secret, and the fixed credential headers.
fn fallback_redactor(config: &crate::config::Config) -> crate::io::secrets::Redactor {
    let api = &config.api;
    let mut redactor = crate::io::secrets::Redactor::default();
    if let Some(password) = &api.auth.password {
        redactor.add_secret(password.expose());
    }
    for path in [&api.auth.password_file, &api.auth.client_secret_file, &api.proxy_password_file]
        .into_iter()
        .flatten()
    {
        if let Ok(secret) = crate::io::secrets::read_secret(path, "um segredo") {
            redactor.add_secret(secret.expose());
        }
    }
    for (name, value) in &api.headers {
        redactor.add_fixed_header(name, value, None);
    }
    redactor
}

/// The config file's text with the value of every key that holds a secret replaced by `***`
/// (`password`, `*secret*`, `*token*`, a header whose name says credential…); the redactor masks
/// what is left of any secret in it (a value written elsewhere).
fn masked_config(path: &Path) -> String {
    let Ok(text) = crate::io::secrets::read_small_text(path, "a configuração") else {
        return "não foi possível ler o arquivo".to_owned();
    };
    text.lines().map(masked_line).collect::<Vec<_>>().join("\n")
}

/// One config line, its value masked when its key holds a secret.
fn masked_line(line: &str) -> String {
    let Some((key, _)) = line.split_once('=') else { return line.to_owned() };
    let name = key.trim().trim_matches('"');
    let secret =
        crate::io::secrets::looks_secret(name, None) || name.contains("password") || name.contains("senha");
    // Where a secret *file* is named, the path is not the secret: kept.
    // Keys that name where a secret is, or how it is used, are not secrets: kept.
    let about_a_secret = ["_file", "_path", "_paths", "_url", "_field"].iter().any(|end| name.ends_with(end))
        || matches!(name, "client_certificate" | "client_key" | "client_auth" | "mode");
    if secret && !about_a_secret && !line.trim_start().starts_with('#') {
        format!("{key}= \"{}\"", crate::core::secret::MASK)
    } else {
        line.to_owned()
    }
}

/// Runs `program` with `args`: what it printed (stdout, then stderr), at most `SECTION_BYTES`,
/// within `SECTION_TIME`; or why it could not run.
fn capture(program: &Path, args: &[&str]) -> String {
    let child = Command::new(program)
        .args(args)
        .env("LANG", "C.UTF-8")
        .env("SYSTEMD_PAGER", "")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            return format!(
                "não foi possível rodar {}: {}",
                program.display(),
                crate::core::text::io_error(&error)
            );
        }
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return "sem saída".to_owned();
    };
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let _ = (&mut pipe).take(SECTION_BYTES as u64).read_to_end(&mut kept);
            // The rest is drained, so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            kept
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + SECTION_TIME;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut text = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let complaint = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if !complaint.trim().is_empty() {
        text.push_str("\n[saída de erro]\n");
        text.push_str(&complaint);
    }
    match status {
        Some(status) if status.success() => {}
        Some(status) => text.push_str(&format!("\n[terminou com {status}]")),
        None => text.push_str(&format!("\n[interrompido depois de {} s]", SECTION_TIME.as_secs())),
    }
    text
}

/// Writes the report where asked (`-`: stdout), saying where on stderr.
fn write_report(output: Option<&Path>, now: jiff::Timestamp, report: &str) -> Outcome {
    if output == Some(Path::new("-")) {
        print!("{report}");
        return Ok(());
    }
    let path = output.map_or_else(
        || {
            let local = now.to_zoned(jiff::tz::TimeZone::system());
            PathBuf::from(format!("extrator-relatorio-{}.txt", local.strftime("%Y%m%d-%H%M%S")))
        },
        Path::to_path_buf,
    );
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Never through a link someone planted, never over another file; readable by its owner only
    // (it holds orders and API messages).
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .and_then(|mut file| file.write_all(report.as_bytes()).and_then(|()| file.sync_all()));
    match written {
        Ok(()) => {
            eprintln!(
                "relatório gravado em {} ({} KiB): confira e envie ao suporte",
                path.display(),
                report.len() / 1024 + 1
            );
            Ok(())
        }
        Err(error) => Err(Failure::failed(format!(
            "não foi possível gravar o relatório em {}: {}",
            path.display(),
            crate::core::text::io_error(&error)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_client_the_configs_own_secrets_are_still_masked() {
        let config = crate::config::parse_str(
            "[api]\nurl = \"https://api.x/c\"\nheaders = { X-Api-Key = \"chave-em-linha-123\" }\n\
             [api.auth]\nmode = \"basic\"\nuser = \"u\"\npassword = \"Senha/Escrita-1\"\n",
            "t.toml",
        )
        .unwrap();
        let redactor = fallback_redactor(&config);
        let masked = redactor.redact("eco: chave-em-linha-123 Senha\\/Escrita-1", None);
        assert_eq!(masked, "eco: *** ***");
    }

    #[test]
    fn secret_values_are_masked_and_file_paths_kept() {
        assert_eq!(masked_line("password = \"S3nh4\""), "password = \"***\"");
        assert_eq!(masked_line("X-Api-Key = \"chave-123\""), "X-Api-Key = \"***\"");
        assert_eq!(
            masked_line("password_file = \"/etc/extrator/senha\""),
            "password_file = \"/etc/extrator/senha\""
        );
        assert_eq!(masked_line("url = \"https://api.x/c\""), "url = \"https://api.x/c\"");
        assert_eq!(masked_line("#password = \"\""), "#password = \"\"");
    }
}
