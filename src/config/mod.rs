//! The configuration file (`/etc/extrator/extrator.toml`): every key, its default, and the loader
//! that every command (the daemon, `check`, `enqueue`, …) shares.
//!
//! Loading is two stages, as support needs it: (1) TOML → typed structs with
//! `deny_unknown_fields`, where an error names the file, line, column and key; (2) `Config::check`,
//! for rules that span keys. Environment overrides `EXTRATOR_<SECTION>__<KEY>` are applied on top
//! of the file and named in their own errors. All operator text is pt-BR.
//!
//! This file is the types and their defaults (the one place a default lives); `load.rs` reads the
//! file and the environment (the only I/O here), `messages.rs` turns the parser's complaints into
//! pt-BR, `check.rs` is `Config::check`, and `settings.rs` builds what the core reads.

mod check;
mod load;
mod messages;
mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

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

pub use check::time_zone;
pub use load::{load, load_queue_paths, load_with_env, parse_str, unreadable};

#[cfg(test)]
mod tests {
    use std::path::Path;

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
