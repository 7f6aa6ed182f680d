//! The configuration file (`/etc/extrator/extrator.toml`): every key, its default, and the loader
//! that every command (the daemon, `check`, `enqueue`, …) shares.
//!
//! Loading is two stages, as support needs it: (1) TOML → typed structs with
//! `deny_unknown_fields`, where an error names the file, line, column and key; (2) `Config::check`,
//! for rules that span keys. Environment overrides `EXTRATOR_<SECTION>__<KEY>` are applied on top
//! of the file and named in their own errors. All operator text is pt-BR.

mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::duration::HumanDuration;
use crate::core::mapping::{RequestConfig, ResponseConfig};
use crate::core::secret::Secret;

/// Where the config is read from when neither `--config` nor `EXTRATOR_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/extrator/extrator.toml";

/// The prefix of environment overrides; `EXTRATOR_API__URL` overrides `[api] url`.
const ENV_PREFIX: &str = "EXTRATOR_";

/// The most requests on the wire at once (`api.concurrency`).
pub const MAX_CONCURRENCY: u32 = 64;
/// The most attempts that count before an item is `failed` (`retry.max_attempts`).
pub const MAX_ATTEMPTS: u32 = 1_000;

/// The bounds of `api.max_rate`, in requests per second: one every 100 s at the slowest.
pub const MIN_RATE: f64 = 0.01;
pub const MAX_RATE: f64 = 10_000.0;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub api: ApiConfig,
    pub queue: QueueConfig,
    pub retry: RetryConfig,
    pub history: HistoryConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    /// `[[source]]`: commands polled for cancellations (`source.rs`).
    #[serde(rename = "source", skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceConfig>,
    /// `[secrets]`: where each `{secret:NAME}` comes from — a file readable only by the service.
    /// A name not listed is the systemd credential of that name (`LoadCredential=NAME:…`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, PathBuf>,
}

/// The most `[[source]]` entries.
pub const MAX_SOURCES: usize = 16;

/// `[[source]]`: a command run every `interval` whose standard output is cancellations in the
/// intake format (JSON lines or an array), imported all or nothing per run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// How logs, `status` and the metrics name it: letters, digits, `-` and `_`.
    pub name: String,
    /// The program and its arguments (no shell): `["/usr/local/bin/cancelados.sh", "7"]`.
    pub command: Vec<String>,
    pub interval: HumanDuration,
    /// A run that takes longer is killed (with everything it started) and imports nothing.
    pub timeout: HumanDuration,
    /// `NAME=value` lines added to the command's environment (the connection string): its values
    /// are secrets, masked wherever the command's output is shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_file: Option<PathBuf>,
    /// The `reason` of a row that has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The command's field names → ours (`NUMPED = "order"`).
    pub fields: BTreeMap<String, String>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            name: String::new(),
            command: Vec::new(),
            interval: HumanDuration::secs(60),
            timeout: HumanDuration::secs(30),
            environment_file: None,
            reason: None,
            fields: BTreeMap::new(),
        }
    }
}

/// `[api]`: the third-party cancellation API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// The endpoint the cancellations are POSTed to. Required unless `[api.request] url` says
    /// where they go: there is no sensible default.
    pub url: String,
    pub connect_timeout: HumanDuration,
    pub request_timeout: HumanDuration,
    pub concurrency: u32,
    pub async_poll_interval: HumanDuration,
    pub async_max_wait: HumanDuration,
    /// A PEM bundle of extra CA certificates, for APIs behind a private CA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The client certificate an API that requires mutual TLS checks: a PKCS#12 file
    /// (`.p12`/`.pfx`, with its password in `client_certificate_password_file`) or a PEM
    /// certificate (with its key in `client_key`, or in the same file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<PathBuf>,
    /// The password of a PKCS#12 `client_certificate`, in a file only the service reads (or the
    /// systemd credential `api-certificate-password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate_password_file: Option<PathBuf>,
    /// The PEM private key of a PEM `client_certificate`, when it is in a file of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// A URL `extrator check` asks with the credentials (GET) to learn whether they are
    /// accepted; without it, `check` tests the credentials only where they are obtained (a token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_url: Option<String>,
    /// Extra headers sent with every request.
    pub headers: BTreeMap<String, String>,
    /// An HTTP proxy for every request (`http://proxy.empresa:3128`); none when absent. The
    /// environment's `http_proxy`/`https_proxy` are ignored: the service does what this file says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// For a proxy that asks for credentials (HTTP Basic): the user, and a file with the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_password_file: Option<PathBuf>,
    /// At most this many requests per second (probes and polls included); unlimited when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<f64>,
    pub auth: AuthConfig,
    /// The request the API expects; each key left out keeps the original request.
    pub request: RequestConfig,
    /// How the API's answer is read beyond the built-in envelopes.
    pub response: ResponseConfig,
}

impl ApiConfig {
    /// The key and text of the URL the requests really go to: the mapping's when it has one.
    pub fn url_in_use(&self) -> (&'static str, &str) {
        match &self.request.url {
            Some(template) => ("api.request.url", template.0.source()),
            None => ("api.url", self.url.as_str()),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            url: String::new(),
            connect_timeout: HumanDuration::secs(10),
            request_timeout: HumanDuration::secs(30),
            concurrency: 4,
            async_poll_interval: HumanDuration::secs(30),
            async_max_wait: HumanDuration::secs(3_600),
            ca_file: None,
            client_certificate: None,
            client_certificate_password_file: None,
            client_key: None,
            check_url: None,
            headers: BTreeMap::new(),
            proxy: None,
            proxy_user: None,
            proxy_password_file: None,
            max_rate: None,
            auth: AuthConfig::default(),
            request: RequestConfig::default(),
            response: ResponseConfig::default(),
        }
    }
}

/// How requests authenticate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No credentials.
    #[default]
    None,
    /// HTTP Basic with `user` and the password.
    Basic,
    /// POST the user and the password (as `user_field`/`password_field`) to `login_url`, then
    /// send the returned token (`token_field`) as Bearer.
    Login,
    /// OAuth2 client credentials (RFC 6749 §4.4): POST `grant_type=client_credentials` to
    /// `token_url` with the client authenticated, then send the `access_token` as Bearer until
    /// `expires_in` (less a margin) or a 401.
    #[serde(rename = "oauth2")]
    OAuth2,
}

impl AuthMode {
    /// The mode as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Basic => "basic",
            AuthMode::Login => "login",
            AuthMode::OAuth2 => "oauth2",
        }
    }
}

/// How the login request carries the credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginFormat {
    /// A JSON object.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// How an OAuth2 client proves who it is to the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`, the RFC's default).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Body,
}

/// `[api.auth]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The preferred way to give the password: a file readable only by the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Allowed, but warned about when the config file is readable by others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
    /// The JSON fields of the login request that carry the user and the password.
    pub user_field: String,
    pub password_field: String,
    /// The field of the login response that holds the token; dots go into objects
    /// (`"data.access_token"`).
    pub token_field: String,
    /// How the login request is encoded: `json` (default) or `form`.
    pub format: LoginFormat,
    /// OAuth2: the token endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// OAuth2: the client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// OAuth2: a file with the client secret, readable only by the service (or the systemd
    /// credential `api-client-secret`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// OAuth2: the scope asked for, if the server wants one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// OAuth2: the `audience` some servers want (Auth0, for one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// OAuth2: `basic` (default) or `body`.
    pub client_auth: ClientAuth,
    /// OAuth2: more fields of the token request's form (`resource = "…"`).
    pub token_form: BTreeMap<String, String>,
    /// Fragments of a 401/403/404 body that mean "the user does not exist" (code 03), compared
    /// without regard to case or accents.
    pub user_not_found_patterns: Vec<String>,
    /// Fragments of a 401/403/404 body that mean "wrong credentials" (code 02), compared the
    /// same way (a 401 is 02 anyway; these make a 403 or 404 one too).
    pub invalid_credentials_patterns: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::None,
            user: None,
            password_file: None,
            password: None,
            login_url: None,
            user_field: "user".to_owned(),
            password_field: "password".to_owned(),
            token_field: "token".to_owned(),
            format: LoginFormat::Json,
            token_url: None,
            client_id: None,
            client_secret_file: None,
            scope: None,
            audience: None,
            client_auth: ClientAuth::Basic,
            token_form: BTreeMap::new(),
            // The vendor's error guide writes 03 as "Usuário informado não foi encontrado".
            user_not_found_patterns: [
                "usuário informado não foi encontrado",
                "usuário não encontrado",
                "usuário inexistente",
                "user not found",
                "user does not exist",
                "unknown user",
            ]
            .map(str::to_owned)
            .to_vec(),
            // …and 02 as "Credenciais inválidas".
            invalid_credentials_patterns: ["credenciais inválidas", "senha inválida", "invalid credentials"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

/// `[queue]`: the local durable queue and the spool directory.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    pub database: PathBuf,
    pub spool_dir: PathBuf,
    /// The Unix socket `enqueue` hands cancellations to the daemon through.
    pub socket: PathBuf,
    pub poll_interval: HumanDuration,
    /// How long a command waits for another process's write lock before giving up.
    pub busy_timeout: HumanDuration,
    /// How long a spool file must go unchanged before it is taken (a file written in place is
    /// not read half-written).
    pub spool_quiet: HumanDuration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            database: PathBuf::from("/var/lib/extrator/extrator.db"),
            spool_dir: PathBuf::from("/var/spool/extrator"),
            socket: PathBuf::from("/run/extrator/entrada.sock"),
            poll_interval: HumanDuration::secs(5),
            busy_timeout: HumanDuration::secs(60),
            spool_quiet: HumanDuration::secs(2),
        }
    }
}

/// `[retry]`: the per-item retry schedule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub first_delay: HumanDuration,
    pub max_delay: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 10,
            first_delay: HumanDuration::secs(30),
            max_delay: HumanDuration::secs(3_600),
        }
    }
}

/// `[history]`: how long attempt records of delivered items are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    pub retention: HumanDuration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig { retention: HumanDuration::secs(90 * 86_400) }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: LogLevel,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: LogLevel::Info }
    }
}

/// `[metrics]`: the daemon's HTTP listener: `/metrics` (Prometheus text format) and the status
/// page (`/`). Off unless `listen` is set; loopback unless `allow_remote` says otherwise, and then
/// only with a password (HTTP Basic).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `IP:PORT` to serve on, such as `127.0.0.1:9845`. Absent: no listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// A `listen` address other than loopback must be allowed here (with `password_file`).
    pub allow_remote: bool,
    /// The HTTP Basic user, when `password_file` is set.
    pub user: String,
    /// A file holding the HTTP Basic password: required off loopback, optional on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: None, allow_remote: false, user: "extrator".to_owned(), password_file: None }
    }
}

/// Puts back into `new` the keys a reload cannot change — where the queue is, and the
/// listener, which were opened at start — and names those that differed (a restart applies
/// them).
pub fn keep_restart_only(new: &mut Config, running: &Config) -> Vec<&'static str> {
    let mut ignored = Vec::new();
    let (queue, old_queue) = (&mut new.queue, &running.queue);
    for (key, value, old) in [
        ("queue.database", &mut queue.database, &old_queue.database),
        ("queue.spool_dir", &mut queue.spool_dir, &old_queue.spool_dir),
        ("queue.socket", &mut queue.socket, &old_queue.socket),
    ] {
        if value != old {
            ignored.push(key);
            value.clone_from(old);
        }
    }
    let (metrics, old) = (&new.metrics, &running.metrics);
    for (key, differs) in [
        ("metrics.listen", metrics.address() != old.address()),
        ("metrics.allow_remote", metrics.allow_remote != old.allow_remote),
        ("metrics.user", metrics.user != old.user),
        ("metrics.password_file", metrics.password_file != old.password_file),
    ] {
        if differs {
            ignored.push(key);
        }
    }
    new.metrics = running.metrics.clone();
    ignored
}

impl MetricsConfig {
    /// The address to serve on, checked (`Config::check` refuses what this cannot parse).
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        self.listen.as_deref().and_then(|listen| listen.trim().parse().ok())
    }
}

/// The log levels support may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The name `tracing` filters understand.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// A config that loaded, with what the operator should be warned about.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub path: PathBuf,
    /// pt-BR warnings (e.g. a password in a file others can read); the config is usable.
    pub warnings: Vec<String>,
}

/// Why a config could not be used. `Display` is the whole pt-BR message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or the environment variable, the error is in.
    pub source: String,
    /// Line and column (1-based) in the file, when known.
    pub position: Option<(usize, usize)>,
    /// The key, as `section.key`, when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuração inválida em {}", self.source)?;
        if let Some((line, column)) = self.position {
            write!(f, ", linha {line}, coluna {column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", chave `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for crate::core::failure::Failure {
    fn from(error: ConfigError) -> Self {
        Self { exit_code: crate::core::failure::EXIT_CONFIG, message: error.to_string() }
    }
}

/// Loads, overrides from the process environment, and checks the config at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// `load`, with the environment given explicitly so tests need not mutate the process's.
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let whole_file = |message: String| ConfigError {
        source: path.display().to_string(),
        position: None,
        key: None,
        message,
    };
    let text = std::fs::read(path).map_err(|error| {
        whole_file(match error.kind() {
            std::io::ErrorKind::NotFound => {
                "o arquivo não existe (informe outro com --config ou EXTRATOR_CONFIG)".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => "sem permissão para ler o arquivo".to_owned(),
            _ => format!("não foi possível ler o arquivo: {error}"),
        })
    })?;
    let text = String::from_utf8(text).map_err(|_| whole_file("o arquivo não está em UTF-8".to_owned()))?;
    let from_file = parse_str(&text, &path.display().to_string())?;
    let overrides = env_overrides(env);
    let config = if overrides.is_empty() { from_file } else { apply_env(&text, &overrides)? };
    config.check().map_err(|(key, message)| ConfigError {
        source: path.display().to_string(),
        position: key_position(&text, &key),
        key: Some(key),
        message,
    })?;
    let mut warnings = secret_warnings(&config);
    // The shipped config's placeholder host (RFC 2606's `.invalid` never resolves): valid TOML,
    // but nothing can be sent until it is replaced — said, not left for code 05 to reveal.
    let (url_key, url) = config.api.url_in_use();
    if url.split(['/', ':']).nth(3).is_some_and(|host| host.ends_with(".invalid")) {
        warnings.push(format!(
            "{url_key} ainda é o endereço de exemplo ({url}): troque pelo endereço informado pelo \
             fornecedor da API; até lá nenhum cancelamento é enviado (erro 05)"
        ));
    }
    if config.api.auth.password.is_some() && readable_by_others(path) {
        warnings.push(format!(
            "a senha está em `api.auth.password` e {} pode ser lido por outros usuários: \
             prefira `api.auth.password_file` ou a credencial systemd `api-password`",
            path.display()
        ));
    }
    Ok(Loaded { config, path: path.to_path_buf(), warnings })
}

/// Where the queue is, for an account that may not read the config (the ERP's handing
/// cancellations in, support's reading the queue): the config when it can be read, else the
/// packaged defaults with the `EXTRATOR_QUEUE__*` overrides of `env`. The second value says
/// whether the defaults were used. Nothing but `[queue]` of a fallback config is meaningful.
pub fn load_queue_paths(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Loaded, bool), ConfigError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    match load_with_env(path, env.clone()) {
        Ok(loaded) => Ok((loaded, false)),
        Err(_) if unreadable(path) => {
            let overrides: Vec<_> = env_overrides(env)
                .into_iter()
                .filter(|(_, key, _)| key.first().is_some_and(|section| section == "queue"))
                .collect();
            let config = if overrides.is_empty() { Config::default() } else { apply_env("", &overrides)? };
            Ok((Loaded { config, path: path.to_path_buf(), warnings: Vec::new() }, true))
        }
        Err(error) => Err(error),
    }
}

/// Whether this account may not read the config at `path` (as the ERP's and support's may not:
/// it can hold secrets), as opposed to the file being missing or broken.
pub fn unreadable(path: &Path) -> bool {
    std::fs::File::open(path).is_err_and(|error| error.kind() == std::io::ErrorKind::PermissionDenied)
}

/// Parses config text; `source` names it in errors.
pub fn parse_str(text: &str, source: &str) -> Result<Config, ConfigError> {
    let deserializer = toml::de::Deserializer::parse(text).map_err(|error| ConfigError {
        source: source.to_owned(),
        position: error.span().map(|span| line_column(text, span.start)),
        key: None,
        message: translate_syntax(error.message()),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = key_of(error.path());
        let inner = error.into_inner();
        let message = translate_for(key.as_deref(), inner.message());
        ConfigError {
            source: source.to_owned(),
            position: inner.span().map(|span| line_column(text, span.start)),
            key,
            message,
        }
    })
}

/// The `EXTRATOR_<SECTION>__<KEY>` variables present, as (variable, key path) pairs.
fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Vec<(String, Vec<String>, String)> {
    let mut found: Vec<_> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            // `EXTRATOR_CONFIG` and other single-word variables are not key overrides.
            rest.contains("__").then(|| {
                let path = rest.split("__").map(str::to_ascii_lowercase).collect();
                (name.clone(), path, value)
            })
        })
        .collect();
    found.sort();
    found
}

/// Applies environment overrides on top of the file's table, coercing each value to the type the
/// key has in the defaults (so `EXTRATOR_API__CONCURRENCY=8` is a number, `…__USER=123` a string).
fn apply_env(text: &str, overrides: &[(String, Vec<String>, String)]) -> Result<Config, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).unwrap_or_default();
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    for (name, path, raw) in overrides {
        let env_error = |message: String| ConfigError {
            source: format!("variável de ambiente {name}"),
            position: None,
            key: Some(path.join(".")),
            message,
        };
        let (last, parents) = path.split_last().ok_or_else(|| env_error("nome vazio".to_owned()))?;
        let value = match lookup(&defaults, path) {
            Some(toml::Value::String(_)) | None => toml::Value::String(raw.clone()),
            Some(_) => toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut parsed| parsed.remove("v"))
                .ok_or_else(|| env_error(format!("valor \"{raw}\" não é um valor TOML válido")))?,
        };
        let mut node = &mut table;
        for part in parents {
            let entry = node.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry.as_table_mut().ok_or_else(|| env_error(format!("`{part}` não é uma seção")))?;
        }
        node.insert(last.clone(), value);
    }
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
        let key = key_of(error.path());
        let variable = overrides
            .iter()
            .find(|(_, path, _)| Some(path.join(".")) == key)
            .or_else(|| {
                // An unknown key is reported at its section; name the variable under it.
                overrides
                    .iter()
                    .find(|(_, path, _)| key.as_deref().is_none_or(|key| path.join(".").starts_with(key)))
            })
            .map_or_else(
                || "variáveis de ambiente EXTRATOR_*".to_owned(),
                |(name, ..)| format!("variável de ambiente {name}"),
            );
        ConfigError {
            source: variable,
            position: None,
            message: translate_for(key.as_deref(), error.into_inner().message()),
            key,
        }
    })
}

/// Where `key` (`api.request.body.itens[0]`) is written in `text`: the line and column of its
/// name (or of the array element), for errors found after parsing. `None` when the file does not
/// have it (a default, or an environment override).
fn key_position(text: &str, key: &str) -> Option<(usize, usize)> {
    use toml::de::{DeTable, DeValue};
    let document = DeTable::parse(text).ok()?;
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    let mut start = None;
    for part in key.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        let table = match value.map(toml::Spanned::get_ref) {
            None => document.get_ref(),
            Some(DeValue::Table(table)) => table,
            Some(_) => return None,
        };
        let (found_key, found) = table.iter().find(|(candidate, _)| candidate.get_ref() == name)?;
        start = Some(found_key.span().start);
        value = Some(found);
        for index in indexes.split('[').filter(|index| !index.is_empty()) {
            let index: usize = index.trim_end_matches(']').parse().ok()?;
            let DeValue::Array(array) = value?.get_ref() else { return None };
            let element = array.get(index)?;
            start = Some(element.span().start);
            value = Some(element);
        }
    }
    start.map(|offset| line_column(text, offset))
}

/// Looks up a dotted key path in a table.
fn lookup<'t>(table: &'t toml::Table, path: &[String]) -> Option<&'t toml::Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(first)?;
    if rest.is_empty() { Some(value) } else { lookup(value.as_table()?, rest) }
}

/// The key path of a serde error, or `None` at the top level.
fn key_of(path: &serde_path_to_error::Path) -> Option<String> {
    let key = path.to_string();
    (key != ".").then_some(key)
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
    (line, column)
}

/// The TOML parser's syntax messages ("invalid string", "expected `=`", …), marked as such.
fn translate_syntax(message: &str) -> String {
    let message = message.trim();
    if message.starts_with("duplicate key") {
        return "chave repetida: cada chave aparece uma vez só em cada tabela".to_owned();
    }
    let (what, expected) = match message.split_once(", expected ") {
        Some((what, expected)) => (what, Some(expected)),
        None => (message, None),
    };
    let Some(&(_, said)) = TOML_SYNTAX.iter().find(|(english, _)| *english == what) else {
        // A rarer phrase of the parser: kept whole rather than guessed at.
        return format!("sintaxe TOML inválida ({message})");
    };
    match expected {
        Some("nothing") | None => format!("sintaxe TOML inválida: {said}"),
        Some("literal string") => format!("sintaxe TOML inválida: {said}; esperava um texto entre aspas"),
        Some(expected) => format!("sintaxe TOML inválida: {said}; esperava {expected}"),
    }
}

/// The TOML parser's (toml_parser) commonest complaints, in pt-BR.
const TOML_SYNTAX: [(&str, &str); 25] = [
    ("unclosed table", "o nome da tabela não foi fechado"),
    ("unclosed array table", "o nome da tabela [[…]] não foi fechado"),
    ("unclosed array", "a lista não foi fechada"),
    ("unclosed inline table", "a tabela em linha não foi fechada"),
    ("string values must be quoted", "textos precisam estar entre aspas"),
    ("key with no value", "chave sem valor (falta `=` e o valor)"),
    ("missing value", "falta o valor"),
    ("missing value for key", "falta o valor da chave"),
    ("missing assignment between key-value pairs", "falta `=` entre a chave e o valor"),
    ("extra assignment between key-value pairs", "`=` sobrando"),
    ("extra `=`", "`=` sobrando"),
    ("invalid basic string", "texto entre aspas inválido ou não fechado"),
    ("invalid multi-line basic string", "texto de várias linhas inválido ou não fechado"),
    ("missing escaped value", "barra invertida sem um escape válido (para uma barra, escreva \\\\)"),
    ("invalid unquoted key", "nome de chave inválido (use letras, dígitos, _ e -, ou ponha entre aspas)"),
    ("unquoted keys cannot be empty", "nome de chave vazio"),
    ("missing comma between array elements", "falta vírgula entre os elementos da lista"),
    ("extra comma in array", "vírgula sobrando na lista"),
    ("missing comma between key-value pairs", "falta vírgula entre os pares da tabela em linha"),
    ("extra comma in inline table", "vírgula sobrando no fim da tabela em linha"),
    ("unexpected leading zero", "número com zero à esquerda"),
    ("unexpected content", "conteúdo inesperado"),
    ("unexpected content between comment and newline", "conteúdo inesperado no comentário"),
    ("unexpected key or value", "chave ou valor inesperado"),
    ("invalid value", "valor inválido"),
];

/// `translate`, except that the value of a secret key is never quoted: `password = 12345`
/// (unquoted) must not put the password in an error message.
fn translate_for(key: Option<&str>, message: &str) -> String {
    if key.is_some_and(|key| SECRET_KEYS.contains(&key)) {
        return "esperava a senha como texto entre aspas (o valor não é mostrado)".to_owned();
    }
    translate(message)
}

/// Keys whose values are secrets.
const SECRET_KEYS: [&str; 1] = ["api.auth.password"];

/// Turns serde's English messages into pt-BR. Our own deserializers (durations, templates,
/// paths) already speak pt-BR and pass through unchanged.
fn translate(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (field, expected) = split_expected(rest);
        return match expected {
            Some(expected) => {
                format!("chave desconhecida {field}; as chaves válidas aqui são: {}", names(expected))
            }
            None => format!("chave desconhecida {field}"),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let (value, expected) = split_expected(rest);
        return format!("valor desconhecido {value}; use um de: {}", names(expected.unwrap_or("")));
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("falta a chave obrigatória {field}");
    }
    for (prefix, what) in [("invalid type: ", "tipo errado"), ("invalid value: ", "valor inválido")] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
            return format!("{what}: encontrei {}, esperava {}", found_pt(found), expected_pt(expected));
        }
    }
    if message.starts_with("duplicate key") {
        return format!("chave repetida ({message})");
    }
    message.to_owned()
}

/// Splits "`x`, expected one of `a`, `b`" into ("`x`", Some("`a`, `b`")).
fn split_expected(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(", expected ") {
        Some((head, expected)) => (head, Some(expected.strip_prefix("one of ").unwrap_or(expected))),
        None => (rest.split_once(", there are no").map_or(rest, |(head, _)| head), None),
    }
}

/// "`a`, `b`" → "a, b".
fn names(list: &str) -> String {
    list.replace('`', "")
}

/// serde's description of what was found, in pt-BR.
fn found_pt(found: &str) -> String {
    let pairs = [
        ("string ", "o texto "),
        ("integer ", "o número "),
        ("floating point ", "o número decimal "),
        ("boolean ", "o valor lógico "),
    ];
    for (english, portuguese) in pairs {
        if let Some(rest) = found.strip_prefix(english) {
            return format!("{portuguese}{}", rest.replace('`', ""));
        }
    }
    match found {
        "sequence" => "uma lista".to_owned(),
        "map" => "uma seção (tabela)".to_owned(),
        other => other.to_owned(),
    }
}

/// serde's description of what was expected, in pt-BR.
fn expected_pt(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "um número inteiro não negativo".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "um número inteiro".to_owned(),
        "a string" => "um texto entre aspas".to_owned(),
        "a boolean" => "true ou false".to_owned(),
        "a sequence" => "uma lista entre colchetes".to_owned(),
        "path string" => "um caminho entre aspas".to_owned(),
        other if other.starts_with("struct ") || other == "a map" => "uma seção (tabela)".to_owned(),
        other if other.starts_with("enum ") => "um dos valores permitidos".to_owned(),
        other => other.to_owned(),
    }
}

/// What an operator should know about how the credentials are kept and sent: Basic or login
/// credentials over plain `http://` (the Basic header is base64, readable by anyone on the
/// way), and a password file that accounts other than the service can read.
fn secret_warnings(config: &Config) -> Vec<String> {
    let auth = &config.api.auth;
    let mut warnings = Vec::new();
    let plain = |url: &str| url.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"));
    let (url_key, url) = config.api.url_in_use();
    match auth.mode {
        AuthMode::Basic if plain(url) => warnings.push(format!(
            "{url_key} usa http:// com autenticação basic: usuário e senha vão pela rede sem criptografia \
             (o cabeçalho Basic é só base64); use https://"
        )),
        AuthMode::Login => {
            for (key, url) in [("api.auth.login_url", auth.login_url.as_deref()), (url_key, Some(url))] {
                if url.is_some_and(plain) {
                    warnings.push(format!(
                        "{key} usa http:// com autenticação login: a senha ou o token vão pela rede sem \
                         criptografia; use https://"
                    ));
                }
            }
        }
        _ => {}
    }
    if auth.mode == AuthMode::OAuth2 && auth.token_url.as_deref().is_some_and(plain) {
        warnings.push(
            "api.auth.token_url usa http:// com OAuth2: o segredo do cliente e o token vão pela rede sem \
             criptografia; use https://"
                .to_owned(),
        );
    }
    let mut files: Vec<(&str, &Path)> = Vec::new();
    if auth.mode != AuthMode::None
        && let Some(path) = &auth.password_file
    {
        files.push(("o arquivo de senha", path));
    }
    if auth.mode == AuthMode::OAuth2
        && let Some(path) = &auth.client_secret_file
    {
        files.push(("o arquivo do segredo do cliente OAuth2", path));
    }
    for path in [&config.api.client_certificate_password_file, &config.api.client_key].into_iter().flatten() {
        files.push(("o arquivo", path));
    }
    for path in config.secrets.values() {
        files.push(("o arquivo de segredo", path));
    }
    for (what, path) in files {
        if let Some(who) = who_else_reads(path) {
            warnings.push(format!(
                "{what} {} pode ser lido por {who}: deixe-o só para root e o serviço \
                 (chown root:extrator {}; chmod 0640 {})",
                path.display(),
                path.display(),
                path.display()
            ));
        }
    }
    warnings
}

/// Who besides root and the service can read `path`, in pt-BR, if anyone: every account when
/// it is readable by others, the group's other members when it is readable by a group that
/// has them (from /etc/group; a directory service is not consulted).
fn who_else_reads(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    if meta.mode() & 0o004 != 0 {
        return Some("qualquer conta do servidor".to_owned());
    }
    if meta.mode() & 0o040 == 0 || meta.gid() == 0 {
        return None;
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let (name, members) = groups.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() == 4 && fields[2].parse() == Ok(meta.gid()))
            .then(|| (fields[0].to_owned(), fields[3].to_owned()))
    })?;
    let others: Vec<&str> = members
        .split(',')
        .map(str::trim)
        .filter(|member| !member.is_empty() && *member != "extrator")
        .collect();
    if name == "extrator" && others.is_empty() {
        return None;
    }
    if others.is_empty() {
        return Some(format!("o grupo {name}"));
    }
    Some(format!("o grupo {name} ({})", others.join(", ")))
}

/// True when the file's mode lets users other than its owner and group read it.
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o004 != 0)
}

impl Config {
    /// Every duration key with the range it must fall in: wide enough for any real API and
    /// site, narrow enough that no arithmetic on it can overflow (a lease is
    /// `connect_timeout + request_timeout + 60 s`; delays are multiplied and jittered).
    fn duration_bounds(&self) -> [(&'static str, Duration, Duration, Duration); 10] {
        const MS: u64 = 1;
        const S: u64 = 1_000 * MS;
        const MIN: u64 = 60 * S;
        const H: u64 = 60 * MIN;
        const D: u64 = 24 * H;
        let ms = Duration::from_millis;
        [
            ("api.connect_timeout", self.api.connect_timeout.get(), ms(100 * MS), ms(5 * MIN)),
            ("api.request_timeout", self.api.request_timeout.get(), ms(100 * MS), ms(H)),
            ("api.async_poll_interval", self.api.async_poll_interval.get(), ms(100 * MS), ms(D)),
            ("api.async_max_wait", self.api.async_max_wait.get(), ms(S), ms(30 * D)),
            ("queue.poll_interval", self.queue.poll_interval.get(), ms(10 * MS), ms(H)),
            ("queue.busy_timeout", self.queue.busy_timeout.get(), ms(0), ms(10 * MIN)),
            ("queue.spool_quiet", self.queue.spool_quiet.get(), ms(0), ms(10 * MIN)),
            ("retry.first_delay", self.retry.first_delay.get(), ms(100 * MS), ms(D)),
            ("retry.max_delay", self.retry.max_delay.get(), ms(100 * MS), ms(30 * D)),
            ("history.retention", self.history.retention.get(), ms(H), ms(3_650 * D)),
        ]
    }

    /// Rules that span keys or bound values. Returns the key at fault and a pt-BR message.
    pub fn check(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
        for (key, value, min, max) in self.duration_bounds() {
            within(key, value, min, max)?;
        }
        for (key, value, max) in [
            ("api.concurrency", self.api.concurrency, MAX_CONCURRENCY),
            ("retry.max_attempts", self.retry.max_attempts, MAX_ATTEMPTS),
        ] {
            if !(1..=max).contains(&value) {
                return fail(key, format!("deve estar entre 1 e {max} (está {value})"));
            }
        }
        let api = &self.api;
        match (api.url.trim().is_empty(), &api.request.url) {
            (true, None) => {
                return fail(
                    "api.url",
                    "é obrigatória: informe a URL da API de cancelamento (ou api.request.url)".to_owned(),
                );
            }
            (true, Some(_)) => {}
            (false, _) => check_url("api.url", &api.url)?,
        }
        if let Some(proxy) = &api.proxy {
            check_url("api.proxy", proxy)?;
        }
        match (&api.proxy, &api.proxy_user, &api.proxy_password_file) {
            (None, Some(_), _) | (None, _, Some(_)) => {
                return fail(
                    "api.proxy",
                    "informe o proxy: api.proxy_user e api.proxy_password_file são para ele".to_owned(),
                );
            }
            (Some(_), Some(_), None) => {
                return fail("api.proxy_password_file", "informe o arquivo com a senha do proxy".to_owned());
            }
            (Some(_), None, Some(_)) => {
                return fail("api.proxy_user", "informe o usuário do proxy".to_owned());
            }
            _ => {}
        }
        if api.connect_timeout > api.request_timeout {
            return fail(
                "api.connect_timeout",
                format!(
                    "({}{}) não pode ser maior que api.request_timeout ({}): escreva em [api] \
                     connect_timeout = \"{}\" (ou menos), ou aumente request_timeout",
                    api.connect_timeout,
                    if api.connect_timeout == ApiConfig::default().connect_timeout {
                        ", o padrão"
                    } else {
                        ""
                    },
                    api.request_timeout,
                    api.request_timeout
                ),
            );
        }
        let auth = &api.auth;
        if matches!(auth.mode, AuthMode::Basic | AuthMode::Login) {
            if auth.user.as_deref().is_none_or(|user| user.trim().is_empty()) {
                return fail(
                    "api.auth.user",
                    "é obrigatório com api.auth.mode = \"basic\" ou \"login\"".to_owned(),
                );
            }
            if auth.password.is_none()
                && auth.password_file.is_none()
                && !has_systemd_credential("api-password")
            {
                return fail(
                    "api.auth.password_file",
                    "informe a senha: api.auth.password_file, a credencial systemd `api-password` \
                     ou api.auth.password"
                        .to_owned(),
                );
            }
        }
        if auth.mode == AuthMode::Login {
            match &auth.login_url {
                None => {
                    return fail(
                        "api.auth.login_url",
                        "é obrigatória quando api.auth.mode = \"login\"".to_owned(),
                    );
                }
                Some(url) => check_url("api.auth.login_url", url)?,
            }
            for (key, field) in
                [("api.auth.user_field", &auth.user_field), ("api.auth.password_field", &auth.password_field)]
            {
                if field.trim().is_empty() {
                    return fail(key, "não pode ser vazio".to_owned());
                }
            }
            if auth.user_field == auth.password_field {
                return fail(
                    "api.auth.password_field",
                    format!("não pode ser igual a api.auth.user_field (\"{}\")", auth.user_field),
                );
            }
            if auth.token_field.split('.').any(str::is_empty) {
                return fail(
                    "api.auth.token_field",
                    format!(
                        "\"{}\" não é um campo: use nomes separados por ponto, como \"data.token\"",
                        auth.token_field
                    ),
                );
            }
        }
        if auth.mode == AuthMode::OAuth2 {
            match &auth.token_url {
                None => {
                    return fail(
                        "api.auth.token_url",
                        "é obrigatória com api.auth.mode = \"oauth2\": o endereço do servidor de tokens \
                         (por exemplo \"https://auth.exemplo.com.br/oauth/token\")"
                            .to_owned(),
                    );
                }
                Some(url) => check_url("api.auth.token_url", url)?,
            }
            if auth.client_id.as_deref().is_none_or(|id| id.trim().is_empty()) {
                return fail("api.auth.client_id", "é obrigatório com api.auth.mode = \"oauth2\"".to_owned());
            }
            if auth.client_secret_file.is_none() && !has_systemd_credential("api-client-secret") {
                return fail(
                    "api.auth.client_secret_file",
                    "informe o arquivo com o segredo do cliente OAuth2 (legível só pelo serviço), ou a \
                     credencial systemd api-client-secret"
                        .to_owned(),
                );
            }
            for key in ["grant_type", "client_id", "client_secret"] {
                if auth.token_form.contains_key(key) {
                    return fail(
                        &format!("api.auth.token_form.{key}"),
                        "o extrator envia este campo sozinho: tire-o de [api.auth.token_form]".to_owned(),
                    );
                }
            }
        } else if let Some((key, _)) = [
            ("api.auth.token_url", auth.token_url.is_some()),
            ("api.auth.client_id", auth.client_id.is_some()),
            ("api.auth.client_secret_file", auth.client_secret_file.is_some()),
            ("api.auth.scope", auth.scope.is_some()),
            ("api.auth.audience", auth.audience.is_some()),
            ("api.auth.token_form", !auth.token_form.is_empty()),
        ]
        .into_iter()
        .find(|(_, set)| *set)
        {
            return fail(key, "só vale com api.auth.mode = \"oauth2\"".to_owned());
        }
        match (&api.client_certificate, &api.client_key, &api.client_certificate_password_file) {
            (None, Some(_), _) => {
                return fail(
                    "api.client_key",
                    "é a chave de api.client_certificate: informe o certificado".to_owned(),
                );
            }
            (None, _, Some(_)) => {
                return fail(
                    "api.client_certificate_password_file",
                    "é a senha de api.client_certificate: informe o certificado".to_owned(),
                );
            }
            _ => {}
        }
        if let Some(url) = &api.check_url {
            check_url("api.check_url", url)?;
        }
        if auth.mode != AuthMode::None {
            let named = |names: Vec<&String>, section: &str| {
                names
                    .into_iter()
                    .find(|name| name.eq_ignore_ascii_case("authorization"))
                    .map(|name| format!("{section}.{name}"))
            };
            if let Some(key) = named(api.headers.keys().collect(), "api.headers")
                .or_else(|| named(api.request.headers.keys().collect(), "api.request.headers"))
            {
                return fail(
                    &key,
                    format!(
                        "com api.auth.mode = \"{}\" o extrator já envia o cabeçalho Authorization: tire-o daqui \
                         (dois Authorization na mesma requisição são recusados ou mal lidos pelas APIs)",
                        auth.mode.as_str()
                    ),
                );
            }
        }
        for name in self.secrets.keys() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return fail(
                    &format!("secrets.{name}"),
                    "o nome de um segredo tem só letras, dígitos, `_` e `-`".to_owned(),
                );
            }
        }
        if let Some(status_url) = &api.response.status_url {
            let target = api.request.url.as_ref().map_or_else(|| api.url.clone(), |url| url.0.fixed_prefix());
            if origin(&status_url.0.fixed_prefix()) != origin(&target) {
                return fail(
                    "api.response.status_url",
                    format!(
                        "deve estar no mesmo servidor da API ({}): as credenciais nunca vão para outro lugar",
                        origin(&target)
                    ),
                );
            }
        }
        if let Some(problem) = api.request.problem() {
            return Err(problem);
        }
        if let Err(why) = time_zone(&api.request.time_zone) {
            return fail("api.request.time_zone", why);
        }
        if let Some((key, why)) = api.response.problem() {
            return fail(key, why);
        }
        if let Some(rate) = api.max_rate
            && !(rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate))
        {
            return fail(
                "api.max_rate",
                format!(
                    "deve estar entre {} e {} requisições por segundo (está {})",
                    decimal(MIN_RATE),
                    decimal(MAX_RATE),
                    decimal(rate)
                ),
            );
        }
        if self.retry.first_delay > self.retry.max_delay {
            return fail(
                "retry.first_delay",
                format!(
                    "({}) não pode ser maior que retry.max_delay ({})",
                    self.retry.first_delay, self.retry.max_delay
                ),
            );
        }
        if self.queue.database.as_os_str().is_empty() {
            return fail("queue.database", "é obrigatório".to_owned());
        }
        if self.queue.spool_dir.as_os_str().is_empty() {
            return fail("queue.spool_dir", "é obrigatório".to_owned());
        }
        self.metrics.check()?;
        check_sources(&self.sources)
    }
}

/// A duration key must fall within its range.
fn within(key: &str, value: Duration, min: Duration, max: Duration) -> Result<(), (String, String)> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let format = crate::core::duration::format;
    Err((
        key.to_owned(),
        format!("deve estar entre {} e {} (está {})", format(min), format(max), format(value)),
    ))
}

/// Each `[[source]]`: a unique simple name, a command, bounded times, a mapping onto our fields.
fn check_sources(sources: &[SourceConfig]) -> Result<(), (String, String)> {
    if sources.len() > MAX_SOURCES {
        return Err(("source".to_owned(), format!("no máximo {MAX_SOURCES} fontes (há {})", sources.len())));
    }
    for (index, source) in sources.iter().enumerate() {
        let key = |name: &str| format!("source[{index}].{name}");
        let fail = |name: &str, message: String| Err((key(name), message));
        if source.name.is_empty()
            || source.name.len() > 40
            || !source.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return fail(
                "name",
                "informe um nome de até 40 letras, dígitos, - ou _ (aparece no log, no status e nas métricas)"
                    .to_owned(),
            );
        }
        if sources[..index].iter().any(|earlier| earlier.name == source.name) {
            return fail("name", format!("\"{}\" já é o nome de outra fonte", source.name));
        }
        if source.command.first().is_none_or(|program| program.trim().is_empty()) {
            return fail(
                "command",
                "informe o programa e seus argumentos, como [\"/usr/local/bin/cancelados.sh\", \"7\"]"
                    .to_owned(),
            );
        }
        let ms = Duration::from_millis;
        for (name, value, min, max) in [
            ("interval", source.interval.get(), ms(100), ms(86_400_000)),
            ("timeout", source.timeout.get(), ms(100), ms(3_600_000)),
        ] {
            within(&key(name), value, min, max)?;
        }
        for (column, field) in &source.fields {
            if !crate::core::item::FIELDS.contains(&field.as_str()) {
                return Err((
                    format!("source[{index}].fields.{column}"),
                    format!(
                        "\"{}\" não é um campo do cancelamento: use {}",
                        crate::core::text::terminal_safe(field),
                        crate::core::item::FIELDS.join(", ")
                    ),
                ));
            }
        }
        if source.reason.as_deref().is_some_and(|reason| reason.trim().is_empty()) {
            return fail("reason", "não pode ser vazio (ou retire a chave)".to_owned());
        }
    }
    Ok(())
}

impl MetricsConfig {
    /// `listen` is `IP:PORT` with a port, on loopback unless `allow_remote`.
    fn check(&self) -> Result<(), (String, String)> {
        let Some(listen) = &self.listen else { return Ok(()) };
        let fail = |message: String| Err(("metrics.listen".to_owned(), message));
        let Ok(address) = listen.trim().parse::<std::net::SocketAddr>() else {
            return fail(format!(
                "\"{}\" não é um endereço: use IP:PORTA, como \"127.0.0.1:9845\" (ou \"[::1]:9845\")",
                crate::core::text::terminal_safe(listen)
            ));
        };
        if address.port() == 0 {
            return fail("informe a porta, como \"127.0.0.1:9845\"".to_owned());
        }
        if !address.ip().is_loopback() && !self.allow_remote {
            return fail(format!(
                "{address} não é loopback: a página e as métricas só escutam fora de 127.0.0.1/::1 com \
                 metrics.allow_remote = true e uma senha em metrics.password_file (restrinja o acesso com o firewall)"
            ));
        }
        if !address.ip().is_loopback() && self.password_file.is_none() {
            return Err((
                "metrics.password_file".to_owned(),
                format!(
                    "é obrigatório para escutar em {address} (fora do loopback): a página mostra pedidos e \
                     mensagens da API, então pede usuário (metrics.user) e senha (HTTP Basic)"
                ),
            ));
        }
        if self.user.is_empty() || self.user.contains(':') || self.user.chars().any(char::is_control) {
            return Err(("metrics.user".to_owned(), "informe um usuário sem \":\" (HTTP Basic)".to_owned()));
        }
        Ok(())
    }
}

/// The zone of a `time_zone` value.
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    match name.trim() {
        "local" => Ok(jiff::tz::TimeZone::system()),
        "UTC" | "utc" => Ok(jiff::tz::TimeZone::UTC),
        other => jiff::tz::db().get(other).map_err(|_| {
            format!(
                "fuso horário desconhecido \"{other}\": use \"local\" (o do servidor), \"UTC\" ou um nome como \
                 \"America/Sao_Paulo\""
            )
        }),
    }
}

impl ApiConfig {
    /// The time zone of the request's date patterns (`api.request.time_zone`).
    pub fn request_zone(&self) -> Result<jiff::tz::TimeZone, String> {
        time_zone(&self.request.time_zone).map_err(|why| format!("api.request.time_zone: {why}"))
    }
}

/// A number as Brazilians write it: a decimal comma.
fn decimal(value: f64) -> String {
    value.to_string().replace('.', ",")
}

/// True when systemd handed the service an `api-password` credential.
fn has_systemd_credential(name: &str) -> bool {
    std::env::var_os("CREDENTIALS_DIRECTORY").is_some_and(|dir| Path::new(&dir).join(name).is_file())
}

/// `scheme://host[:port]` of a URL (lower case), to compare origins. Hand-written on purpose: it
/// reads the fixed start of a URL template (`https://api.x/pedidos/` of `…/{order}/status`),
/// which is not always a URL `url::Url` would parse.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{}://{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase())
}

/// A URL must be `http://` or `https://` with a host (`core::http_url`); the refusal in pt-BR,
/// naming `key`.
fn check_url(key: &str, url: &str) -> Result<(), (String, String)> {
    use crate::core::http_url::{Refusal, check};
    match check(url) {
        Ok(_) => Ok(()),
        Err(Refusal::Credentials) if key == "api.proxy" => Err((
            key.to_owned(),
            "não coloque usuário ou senha na URL do proxy: use api.proxy_user e api.proxy_password_file"
                .to_owned(),
        )),
        Err(Refusal::Credentials) => Err((
            key.to_owned(),
            "não coloque usuário ou senha na URL: use [api.auth] (user e password_file)".to_owned(),
        )),
        Err(Refusal::Invalid) => Err((
            key.to_owned(),
            format!("\"{url}\" não é uma URL válida: use http://host/caminho ou https://host/caminho"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[api]\nurl = \"https://api.exemplo.com.br/cancelar\"\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_str(text, "teste.toml")
    }

    #[test]
    fn a_reload_keeps_what_only_a_restart_changes_and_names_it() {
        let running = parse(&format!("{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9845\"\n")).unwrap();
        let mut same = running.clone();
        assert!(keep_restart_only(&mut same, &running).is_empty());
        let mut new = parse(&format!(
            "{MINIMAL}concurrency = 8\n[queue]\ndatabase = \"/tmp/outra.db\"\n[metrics]\nlisten = \"127.0.0.1:9999\"\n"
        ))
        .unwrap();
        assert_eq!(keep_restart_only(&mut new, &running), ["queue.database", "metrics.listen"]);
        assert_eq!(new.queue.database, running.queue.database);
        assert_eq!(new.metrics.listen, running.metrics.listen);
        assert_eq!(new.api.concurrency, 8, "the rest is the new config's");
    }

    #[test]
    fn minimal_config_takes_every_default() {
        let config = parse(MINIMAL).unwrap();
        config.check().unwrap();
        assert_eq!(config.api.request_timeout.to_string(), "30s");
        assert_eq!(config.api.concurrency, 4);
        assert_eq!(config.retry.max_attempts, 10);
        assert_eq!(config.retry.first_delay.to_string(), "30s");
        assert_eq!(config.retry.max_delay.to_string(), "1h");
        assert_eq!(config.queue.database, Path::new("/var/lib/extrator/extrator.db"));
    }

    #[test]
    fn unknown_key_names_line_key_and_the_valid_ones() {
        let error = parse("[api]\nurl = \"https://x\"\nconect_timeout = \"5s\"\n").unwrap_err();
        assert_eq!(error.position, Some((3, 1)), "{error}");
        let text = error.to_string();
        assert!(text.contains("chave desconhecida `conect_timeout`"), "{text}");
        assert!(text.contains("connect_timeout"), "{text}");
        assert!(text.contains("linha 3"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_key_and_what_was_expected() {
        let error = parse("[api]\nurl = \"https://x\"\nconcurrency = \"quatro\"\n").unwrap_err();
        assert_eq!(error.key.as_deref(), Some("api.concurrency"));
        assert_eq!(error.position.map(|p| p.0), Some(3));
        assert!(error.message.contains("esperava um número inteiro"), "{error}");
    }

    #[test]
    fn bad_duration_names_the_key_with_a_hint() {
        let error = parse("[api]\nurl = \"https://x\"\n\n[retry]\nfirst_delay = \"30\"\n").unwrap_err();
        assert_eq!(error.key.as_deref(), Some("retry.first_delay"));
        assert_eq!(error.position.map(|p| p.0), Some(5));
        assert!(error.message.contains("falta a unidade"), "{error}");
    }

    #[test]
    fn bad_enum_lists_the_choices() {
        let error = parse("[api]\nurl = \"https://x\"\n[api.auth]\nmode = \"oauth\"\n").unwrap_err();
        assert_eq!(error.key.as_deref(), Some("api.auth.mode"));
        assert!(error.message.contains("none, basic, login"), "{error}");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let error = parse("[api]\nurl = https://x\n").unwrap_err();
        assert_eq!(error.position.map(|p| p.0), Some(2), "{error}");
        assert!(error.message.starts_with("sintaxe TOML inválida"), "{error}");
        for (text, said) in [
            ("[api\nurl = \"x\"\n", "o nome da tabela não foi fechado; esperava `]`"),
            ("[api]\nurl = https://x\n", "textos precisam estar entre aspas; esperava um texto entre aspas"),
            ("[api]\nurl \"x\"\n", "chave sem valor (falta `=` e o valor); esperava `=`"),
            ("[api]\nurl = \"x\nb = 1\n", "texto entre aspas inválido ou não fechado"),
            ("[api]\nurl = \"a\"\nurl = \"b\"\n", "chave repetida"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.message.contains(said), "{text:?}: {error}");
            assert!(!error.message.contains("expected"), "English left in {text:?}: {error}");
        }
    }

    #[test]
    fn cross_key_rules_name_the_key() {
        let config = parse("[api]\nurl = \"https://x\"\n[api.auth]\nmode = \"basic\"\n").unwrap();
        assert_eq!(config.check().unwrap_err().0, "api.auth.user");
        let config = parse("[api]\nurl = \"ftp://x\"\n").unwrap();
        assert_eq!(config.check().unwrap_err().0, "api.url");
        let config = parse("[api]\nurl = \"https://u:S3nh4@api.x/c\"\n").unwrap();
        let (key, message) = config.check().unwrap_err();
        assert_eq!(key, "api.url");
        assert!(!message.contains("S3nh4"), "the refusal must not repeat the secret: {message}");
        let config = parse("[api]\nurl = \"https://x\"\nproxy = \"http://u:S3nh4@proxy:3128\"\n").unwrap();
        let (key, message) = config.check().unwrap_err();
        assert_eq!(key, "api.proxy");
        assert!(!message.contains("S3nh4") && message.contains("proxy"), "{message}");
        parse("[api]\nurl = \"https://x\"\nproxy = \"http://proxy:3128\"\n").unwrap().check().unwrap();
        for (lines, key) in [
            ("proxy_user = \"u\"\n", "api.proxy"),
            ("proxy = \"http://p:3128\"\nproxy_user = \"u\"\n", "api.proxy_password_file"),
            ("proxy = \"http://p:3128\"\nproxy_password_file = \"/etc/extrator/proxy\"\n", "api.proxy_user"),
        ] {
            let config = parse(&format!("[api]\nurl = \"https://x\"\n{lines}")).unwrap();
            assert_eq!(config.check().unwrap_err().0, key, "{lines}");
        }
        let config = parse("[api]\nurl = \"https://x\"\n[retry]\nfirst_delay = \"2h\"\n").unwrap();
        assert_eq!(config.check().unwrap_err().0, "retry.first_delay");
        assert_eq!(parse("").unwrap().check().unwrap_err().0, "api.url");
        let login = "[api]\nurl = \"https://x\"\n[api.auth]\nmode = \"login\"\nuser = \"u\"\npassword = \"p\"\n\
                     login_url = \"https://x/login\"\n";
        parse(login).unwrap().check().unwrap();
        for (extra, key) in [
            ("user_field = \" \"", "api.auth.user_field"),
            ("password_field = \"user\"", "api.auth.password_field"),
            ("token_field = \"data..token\"", "api.auth.token_field"),
        ] {
            let config = parse(&format!("{login}{extra}\n")).unwrap();
            assert_eq!(config.check().unwrap_err().0, key, "{extra}");
        }
    }

    #[test]
    fn a_secret_is_never_quoted_in_an_error() {
        let text = "[api]\nurl = \"https://x.com.br/c\"\n[api.auth]\nmode = \"basic\"\nuser = \"u\"\npassword = 918273645\n";
        let error = parse_str(text, "teste").unwrap_err().to_string();
        assert!(!error.contains("918273645"), "{error}");
        assert!(error.contains("chave `api.auth.password`") && error.contains("linha 6"), "{error}");
        // Through the environment a string key takes the text as it is: no error there to quote.
    }

    #[test]
    fn credentials_in_clear_and_readable_password_files_are_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("senha");
        std::fs::write(&password, "S3nh4").unwrap();
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = dir.path().join("extrator.toml");
        let text = |url: &str| {
            format!(
                "[api]\nurl = \"{url}\"\n[api.auth]\nmode = \"basic\"\nuser = \"u\"\npassword_file = \"{}\"\n",
                password.display()
            )
        };
        std::fs::write(&config, text("http://api.x.com.br/c")).unwrap();
        let warnings = load_with_env(&config, []).unwrap().warnings.join("\n");
        assert!(warnings.contains("http:// com autenticação basic"), "{warnings}");
        assert!(warnings.contains("pode ser lido por qualquer conta do servidor"), "{warnings}");
        assert!(!warnings.contains("S3nh4"), "{warnings}");
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&config, text("https://api.x.com.br/c")).unwrap();
        assert_eq!(load_with_env(&config, []).unwrap().warnings, Vec::<String>::new());
    }

    #[test]
    fn warnings_name_the_url_in_use_and_the_example_address() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("extrator.toml");
        std::fs::write(
            &config,
            "[api.request]\nurl = \"http://api.x.com.br/v1/{order}\"\n[api.auth]\nmode = \"basic\"\nuser = \"u\"\n\
             password = \"senha-qualquer\"\n",
        )
        .unwrap();
        let warnings = load_with_env(&config, []).unwrap().warnings.join("\n");
        assert!(warnings.contains("api.request.url usa http://"), "{warnings}");
        assert!(!warnings.contains("api.url usa"), "{warnings}");
        std::fs::write(&config, "[api]\nurl = \"https://api.exemplo.invalid/v1/cancelamentos\"\n").unwrap();
        let warnings = load_with_env(&config, []).unwrap().warnings.join("\n");
        assert!(warnings.contains("api.url ainda é o endereço de exemplo"), "{warnings}");
    }

    #[test]
    fn env_overrides_are_typed_by_the_defaults() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), MINIMAL).unwrap();
        let env = [
            ("EXTRATOR_API__CONCURRENCY", "8"),
            ("EXTRATOR_API__REQUEST_TIMEOUT", "45s"),
            ("EXTRATOR_API__AUTH__MODE", "basic"),
            ("EXTRATOR_API__AUTH__USER", "123"),
            ("EXTRATOR_API__AUTH__PASSWORD_FILE", "/run/senha"),
            ("EXTRATOR_CONFIG", "/ignorado"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let loaded = load_with_env(file.path(), env).unwrap();
        assert_eq!(loaded.config.api.concurrency, 8);
        assert_eq!(loaded.config.api.request_timeout.to_string(), "45s");
        assert_eq!(loaded.config.api.auth.user.as_deref(), Some("123"));
    }

    #[test]
    fn env_override_errors_name_the_variable() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), MINIMAL).unwrap();
        let bad = |name: &str, value: &str| {
            load_with_env(file.path(), [(name.to_owned(), value.to_owned())]).unwrap_err()
        };
        let error = bad("EXTRATOR_API__CONCURRENCY", "muitos");
        assert!(error.source.contains("EXTRATOR_API__CONCURRENCY"), "{error}");
        let error = bad("EXTRATOR_RETRY__FIRST_DELAY", "30");
        assert!(error.source.contains("EXTRATOR_RETRY__FIRST_DELAY"), "{error}");
        assert!(error.message.contains("falta a unidade"), "{error}");
        let error = bad("EXTRATOR_QUEUE__DATABSE", "/tmp/x.db");
        assert!(error.source.contains("EXTRATOR_QUEUE__DATABSE"), "{error}");
        assert!(error.message.contains("chave desconhecida `databse`"), "{error}");
    }

    #[test]
    fn password_is_never_in_debug_output() {
        let config = parse(
            "[api]\nurl = \"https://x\"\n[api.auth]\nmode = \"basic\"\nuser = \"u\"\npassword = \"S3nh4-Sup3r-Secreta\"\n",
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("S3nh4"), "{debug}");
        assert_eq!(config.api.auth.password.as_ref().map(Secret::expose), Some("S3nh4-Sup3r-Secreta"));
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let error = load_with_env(Path::new("/nao/existe.toml"), []).unwrap_err();
        assert!(error.to_string().contains("/nao/existe.toml"), "{error}");
        assert!(error.message.contains("não existe"), "{error}");
    }
}
