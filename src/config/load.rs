//! Loading a config file: read it (bounded, no link followed by the caller's choice of path),
//! apply the `EXTRATOR_<SECTION>__<KEY>` overrides, parse (errors with file, line, column and
//! key, in pt-BR via `messages`), check (`check.rs`), and warn about secrets others can read.
//! The one part of `config` that does I/O.

use std::path::Path;

use super::messages::{translate_for, translate_syntax};
use super::{AuthMode, Config, ConfigError, ENV_PREFIX, Loaded};

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

/// True when systemd handed the service an `api-password` credential.
pub(super) fn has_systemd_credential(name: &str) -> bool {
    std::env::var_os("CREDENTIALS_DIRECTORY").is_some_and(|dir| Path::new(&dir).join(name).is_file())
}
