//! `extrator check`: validates the config with the daemon's own loader, shows the request the
//! mapping builds for a sample item, then diagnoses step by step — database → DNS → TCP → TLS →
//! credentials → a harmless request — printing ✓ or ✗ for each, and on failure the support code
//! and what to do. Each polled `[[source]]` is run once, dry: what it read and what would be new,
//! nothing queued. Exit 0 when every step passed, 1 when one failed, 78 when the config itself is
//! invalid. With `--config-only`, only what the service would build from the config (the
//! config, its secret files and certificates, the sources' environment files), without network:
//! what the unit's `ExecReload=` runs before it signals the service, so a refused config makes
//! `systemctl reload` fail with the reason.

use std::path::Path;

use crate::config::{AuthMode, Config};
use crate::core::classify::{Code, Kind, Outcome, Verdict};
use crate::core::failure::{EXIT_CONFIG, Failure, Outcome as CommandOutcome};
use crate::io::api::Client;
use crate::io::store::{Access, Store, StoreError};

/// `extrator check`'s options.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Opções")]
pub struct CheckArgs {
    /// Só valida a configuração como o serviço a carregaria (arquivos de senha, certificados,
    /// fontes), sem testar a rede: o que o `systemctl reload` roda antes de avisar o serviço
    #[arg(long)]
    pub config_only: bool,
}

/// Runs `check`.
pub fn run(config_path: &Path, args: &CheckArgs) -> CommandOutcome {
    if args.config_only {
        return match crate::daemon::prepare(config_path) {
            Ok((loaded, _, _)) => {
                for warning in &loaded.warnings {
                    eprintln!("  ⚠ {warning}");
                }
                println!("✓ configuração: válida ({})", config_path.display());
                Ok(())
            }
            Err(error) => Err(Failure {
                exit_code: EXIT_CONFIG,
                // The loader's errors name the file already; the client's and sources' do not.
                message: match error {
                    crate::daemon::Unprepared::Config(error) => error.to_string(),
                    other => format!("configuração recusada ({}): {other}", config_path.display()),
                },
            }),
        };
    }
    println!("Diagnóstico do extrator ({})", config_path.display());
    let loaded = match crate::config::load(config_path) {
        Ok(loaded) => loaded,
        Err(_) if crate::config::unreadable(config_path) => {
            // Not an invalid config: an account `check` is not for (it tests the credentials).
            fail_line(
                "configuração",
                &format!(
                    "sem permissão para ler {}: o check testa as credenciais e precisa de root ou da \
                     conta do serviço (sudo extrator check); para consultar a fila use extrator status",
                    config_path.display()
                ),
            );
            return Err(Failure::failed("a configuração não pôde ser lida"));
        }
        Err(error) => {
            fail_line("configuração", &error.to_string());
            return Err(Failure {
                exit_code: EXIT_CONFIG, message: "a configuração é inválida".to_owned()
            });
        }
    };
    pass("configuração", "válida");
    for warning in &loaded.warnings {
        println!("  ⚠ {warning}");
    }
    let config = loaded.config;
    if !request_step(&config) {
        return Err(Failure::failed("a requisição não pode ser montada (veja acima)"));
    }
    database_step(&config);
    let client = match Client::new(&config) {
        Ok(client) => client,
        Err(message) => {
            fail_line("credenciais e certificados", &message);
            return Err(Failure {
                exit_code: EXIT_CONFIG,
                message: "a configuração não pode ser usada".to_owned(),
            });
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::failed(format!("não foi possível iniciar o runtime: {error}")))?;
    if let Some(address) = config.metrics.address() {
        let access = if config.metrics.password_file.is_some() { ", com usuário e senha" } else { "" };
        // Said as it is: `metrics.listen` changes only with a restart, so the config may ask for
        // a listener the running service does not have yet.
        let listening =
            std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_millis(500)).is_ok();
        if listening {
            pass(
                "painel e métricas",
                &format!("http://{address}/ e http://{address}/metrics atendem (metrics.listen{access})"),
            );
        } else {
            println!(
                "  ⚠ painel e métricas: a configuração pede http://{address}/ (metrics.listen{access}), mas \
                 ninguém atende nesse endereço agora; o serviço o abre ao iniciar \
                 (metrics.listen só muda com systemctl restart extrator)"
            );
        }
    }
    let sources_ok = runtime.block_on(sources_step(&config));
    match runtime.block_on(network_steps(&config, &client)) {
        Some(true) if sources_ok => {
            println!("Tudo certo: o extrator consegue falar com a API, e ela aceita as credenciais.");
            Ok(())
        }
        Some(false) if sources_ok => {
            println!(
                "A conexão com a API funciona, mas as credenciais não foram verificadas (veja acima): \
                 nenhum passo falhou."
            );
            Ok(())
        }
        _ => Err(Failure::failed("o diagnóstico encontrou um problema (veja acima)")),
    }
}

/// The request the mapping builds for a sample item, as `extrator preview` shows it.
fn request_step(config: &Config) -> bool {
    let plan = match config.api.request_zone() {
        // Secrets are shown as ***, as `preview` shows them.
        Ok(zone) => config.api.request_plan(zone).masked(),
        Err(message) => {
            fail_line("requisição", &message);
            return false;
        }
    };
    match plan.render(&plan.sample()) {
        Ok(request) => {
            pass(
                "requisição",
                "montada para um pedido de exemplo (nada é enviado; veja também extrator preview):",
            );
            for line in super::preview::describe(config, &plan, &request) {
                println!("    {line}");
            }
            true
        }
        Err(error) => {
            fail_line("requisição", &format!("um pedido de exemplo não pôde ser montado: {error}"));
            false
        }
    }
}

/// The database: present and readable, or not created yet (which is fine).
fn database_step(config: &Config) {
    let path = &config.queue.database;
    match Store::open(path, Access::ReadOnly, config.queue.busy_timeout.get()) {
        Ok(store) => match store.waiting_counts() {
            Ok((pending, processing, failed)) => pass(
                "banco de dados",
                &format!(
                    "{} ({}, {processing} processando, {failed} com falha definitiva)",
                    path.display(),
                    crate::core::text::count(pending, "pendente", "pendentes")
                ),
            ),
            Err(error) => fail_line("banco de dados", &error.to_string()),
        },
        Err(StoreError::Missing(_)) => {
            pass(
                "banco de dados",
                &format!("{} ainda não existe; o serviço o cria ao iniciar", path.display()),
            );
        }
        Err(error) => fail_line("banco de dados", &error.to_string()),
    }
}

/// Each source run once: how many rows, which orders would be new. Nothing is queued.
async fn sources_step(config: &Config) -> bool {
    let mut ok = true;
    for source_config in &config.sources {
        let step = format!("fonte {}", source_config.name);
        let source = match crate::io::source::Source::new(source_config) {
            Ok(source) => source,
            Err(message) => {
                fail_line(&step, &message);
                ok = false;
                continue;
            }
        };
        let started = std::time::Instant::now();
        let output = match source.run().await {
            Ok(output) => output,
            Err(error) => {
                fail_line(&step, &format!("{error} (nada foi enfileirado)"));
                ok = false;
                continue;
            }
        };
        let queued =
            match Store::open(&config.queue.database, Access::ReadOnly, config.queue.busy_timeout.get()) {
                Ok(store) => store.queued(&output.items),
                Err(StoreError::Missing(_)) => Ok(vec![false; output.items.len()]),
                Err(error) => Err(error),
            };
        let queued = match queued {
            Ok(queued) => queued,
            Err(error) => {
                fail_line(&step, &error.to_string());
                ok = false;
                continue;
            }
        };
        let mut new = crate::core::text::Listed::default();
        for (item, queued) in output.items.iter().zip(queued) {
            if !queued {
                new.push(crate::core::text::terminal_safe(&item.order).into_owned());
            }
        }
        pass(
            &step,
            &format!(
                "{} em {} ms, {} para a fila (execução de teste: nada foi enfileirado)",
                crate::core::text::count(output.rows as u64, "linha lida", "linhas lidas"),
                crate::io::source::elapsed_ms(started),
                crate::core::text::count(new.total as u64, "nova", "novas")
            ),
        );
        if new.total > 0 {
            let mut lines = String::new();
            let _ = new.write_lines(&mut lines, |order| format!("pedido {order}"));
            for line in lines.lines().filter(|line| !line.trim().is_empty()) {
                println!("    {}", line.trim());
            }
        }
    }
    ok
}

/// DNS → TCP → TLS → credentials → harmless request; stops at the first failure. `None` when a
/// step failed, else whether the credentials were seen accepted.
async fn network_steps(config: &Config, client: &Client) -> Option<bool> {
    let target = client.sample_url();
    let Ok(url) = reqwest::Url::parse(&target) else {
        fail_line("URL", &format!("a URL \"{target}\" não pôde ser interpretada"));
        return None;
    };
    // Through a proxy, the server resolves and reaches the proxy; the proxy reaches the API.
    let proxy = config.api.proxy.as_deref().and_then(|proxy| reqwest::Url::parse(proxy).ok());
    let first_hop = proxy.as_ref().unwrap_or(&url);
    let host = first_hop.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
    let port = first_hop.port_or_known_default().unwrap_or(443);
    let timeout = config.api.connect_timeout.get();
    if proxy.is_some() {
        pass("proxy", &format!("as requisições passam pelo proxy {host}:{port} (api.proxy)"));
    }

    let addresses = dns_step(&host, timeout).await?;
    tcp_step(&addresses, port, timeout).await?;

    let bare = client.probe_get(false).await;
    if url.scheme() == "https" {
        if let Some(code) = transport_code(&bare) {
            return fail(fail_code("TLS", code, bare.message.as_deref().unwrap_or("")));
        }
        pass("TLS", "certificado verificado");
    }

    if let Some((not_after, subject)) = client.certificate() {
        let (expiry, close) = crate::io::api::tls::describe_expiry(not_after, jiff::Timestamp::now());
        let line = format!("{} — {expiry}", crate::core::text::terminal_safe(subject));
        if close {
            println!("⚠ certificado de cliente: {line}");
        } else {
            pass("certificado de cliente", &line);
        }
    }

    let (answered, verified) = match credentials_step(config, client, bare).await {
        Ok(answered) => answered,
        Err(()) => return None,
    };
    let status = answered.http_status.map_or_else(|| "—".to_owned(), |status| status.to_string());
    let harmful = match answered.outcome {
        // A GET may be refused (405, 400: 07) or rate-limited (08) where the POST works. Anything
        // else — no response, a server error, the proxy, credentials, a wrong path, a moved URL —
        // a POST would meet too.
        Outcome::Failure(code) if !matches!(code, Code::Rejected | Code::RateLimited) => Some(code),
        Outcome::Failure(code) if matches!(answered.kind, Kind::WrongPath | Kind::Redirect) => Some(code),
        _ => None,
    };
    if let Some(code) = harmful {
        return fail(fail_code("requisição de teste", code, answered.message.as_deref().unwrap_or("")));
    }
    pass("requisição de teste", &format!("GET {target} respondeu {status} (um GET não cancela nada)"));
    if !verified {
        println!(
            "⚠ credenciais não verificadas: a API respondeu ao teste sem avaliar as credenciais. Para \
             verificá-las, informe em api.check_url um endereço da API que exija autenticação (GET)."
        );
    }
    Some(verified)
}

/// The DNS step: `host` resolved within `timeout` (✓ with its addresses), or ✗ 05 and `None`.
async fn dns_step(host: &str, timeout: std::time::Duration) -> Option<Vec<std::net::SocketAddr>> {
    let lookup_host = host.to_owned();
    let resolved = tokio::time::timeout(
        timeout,
        tokio::task::spawn_blocking(move || crate::io::api::lookup(&lookup_host)),
    )
    .await;
    let addresses = match resolved {
        Ok(Ok(Ok(addresses))) => addresses,
        Ok(Ok(Err(crate::io::api::DnsFailure::NoName))) => {
            return fail(fail_code("DNS", Code::UnknownHost, &format!("o nome {host} não existe no DNS")));
        }
        Ok(Ok(Err(crate::io::api::DnsFailure::Unavailable))) => {
            return fail(fail_code(
                "DNS",
                Code::UnknownHost,
                &format!("nenhum servidor DNS respondeu ao resolver {host}"),
            ));
        }
        Ok(Ok(Err(other))) => return fail(fail_code("DNS", Code::UnknownHost, &format!("{host}: {other}"))),
        Ok(Err(_)) | Err(_) => {
            return fail(fail_code(
                "DNS",
                Code::UnknownHost,
                &format!("{host}: o DNS não respondeu a tempo"),
            ));
        }
    };
    let shown: Vec<String> = addresses.iter().map(|address| address.ip().to_string()).collect();
    pass("DNS", &format!("{host} → {}", shown.join(", ")));
    Some(addresses)
}

/// The TCP step: a connection to one of `addresses` on `port` within `timeout` (✓), or ✗ 01/04
/// and `None`.
async fn tcp_step(addresses: &[std::net::SocketAddr], port: u16, timeout: std::time::Duration) -> Option<()> {
    let mut last_error = None;
    let mut connected = None;
    for address in addresses {
        let target = std::net::SocketAddr::new(address.ip(), port);
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
            Ok(Ok(_)) => {
                connected = Some(target);
                break;
            }
            Ok(Err(error)) => last_error = Some((target, Some(error))),
            Err(_) => last_error = Some((target, None)),
        }
    }
    match (connected, last_error) {
        (Some(target), _) => pass("TCP", &format!("conectou em {target}")),
        (None, Some((target, Some(error)))) => {
            return fail(fail_code(
                "TCP",
                Code::ConnectionRefused,
                &format!("{target}: {}", crate::core::text::io_error(&error)),
            ));
        }
        (None, _) => {
            return fail(fail_code(
                "TCP",
                Code::Timeout,
                &format!("porta {port}: sem resposta em {}", crate::core::text::rounded(timeout)),
            ));
        }
    }
    Some(())
}

/// A failed step's result (its lines are printed already).
fn fail<T>(_: bool) -> Option<T> {
    None
}

/// The credentials, for real: a token obtained (login, OAuth2), then a GET with them — of
/// `api.check_url` when set, else of the request's URL. `Ok` with the answer to the GET and
/// whether the credentials were seen accepted (a 2xx with them, or a token); `Err` after printing
/// the failure.
async fn credentials_step(config: &Config, client: &Client, bare: Verdict) -> Result<(Verdict, bool), ()> {
    if config.api.auth.mode == AuthMode::None {
        pass("credenciais", "sem autenticação (api.auth.mode = \"none\")");
        return Ok((bare, true));
    }
    let mode = config.api.auth.mode.as_str();
    let mut verified = false;
    if let Some(endpoint) = client.token_endpoint() {
        match client.obtain_token().await {
            Ok(life) => {
                let life = life.map_or_else(String::new, |life| {
                    format!(", renovado daqui a {}", crate::core::text::rounded(life))
                });
                pass(
                    "credenciais",
                    &format!(
                        "token obtido em {} (api.auth.mode = \"{mode}\"{life})",
                        crate::core::text::terminal_safe(endpoint)
                    ),
                );
                verified = true;
            }
            Err(verdict) => {
                let code = verdict.code().unwrap_or(Code::InvalidPassword);
                fail_code("credenciais", code, verdict.message.as_deref().unwrap_or(""));
                return Err(());
            }
        }
    }
    let (answered, probed) = match client.check_url() {
        Some(url) => {
            (client.get_with_credentials(url).await, crate::core::text::terminal_safe(url).into_owned())
        }
        None => (client.probe_get(true).await, client.sample_url()),
    };
    if let Some(code @ (Code::InvalidPassword | Code::UserNotFound)) = answered.code() {
        fail_code("credenciais", code, answered.message.as_deref().unwrap_or(""));
        return Err(());
    }
    if answered.http_status.is_some_and(|status| (200..300).contains(&status)) {
        pass(
            "credenciais",
            &format!(
                "aceitas pela API: GET {probed} com elas respondeu {}",
                answered.http_status.unwrap_or(200)
            ),
        );
        verified = true;
    } else if client.check_url().is_some() {
        let status =
            answered.http_status.map_or_else(|| "sem resposta".to_owned(), |status| format!("HTTP {status}"));
        fail_line(
            "credenciais",
            &format!(
                "api.check_url ({probed}) respondeu {status} com as credenciais: não foi possível verificá-las"
            ),
        );
        return Err(());
    }
    Ok((answered, verified))
}

/// The code of a failure that happened before any HTTP response, if that is what it was.
fn transport_code(verdict: &Verdict) -> Option<Code> {
    if verdict.http_status.is_some() {
        return None;
    }
    verdict.code()
}

/// A passed step.
fn pass(step: &str, detail: &str) {
    println!("✓ {step}: {detail}");
}

/// A failed step without a support code.
fn fail_line(step: &str, detail: &str) {
    println!("✗ {step}: {detail}");
}

/// A failed step with its support code and what to do; always `false`.
fn fail_code(step: &str, code: Code, detail: &str) -> bool {
    println!("✗ {step}: erro {}: {detail}", code.label());
    println!("  O que fazer:");
    // The catalog's steps, but "rode `extrator check`": this is it.
    let steps = code.info().steps.iter().filter(|step| !step.contains("rode `extrator check`"));
    for (number, what) in steps.enumerate() {
        println!("    {}. {what}", number + 1);
    }
    false
}
