//! Credentials: none, HTTP Basic, or a login that returns a Bearer token (cached, renewed once on
//! a 401). The password comes from `password_file`, the systemd credential `api-password`, or the
//! config, in that order, and is held only as a `Secret`.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use crate::classify::{Exchange, TransportFailure};
use crate::config::{AuthConfig, AuthMode, Secret};

/// How requests are authenticated.
pub enum Auth {
    None,
    Basic { user: String, password: Secret },
    Login { url: String, fields: LoginFields, user: String, password: Secret, token: Mutex<Option<Secret>> },
}

/// Where the login request puts the credentials and where its answer has the token.
pub struct LoginFields {
    user: String,
    password: String,
    token: String,
}

impl Auth {
    /// Reads the credentials the config points at.
    pub fn new(config: &AuthConfig) -> Result<Auth, String> {
        let user = || config.user.clone().unwrap_or_default();
        Ok(match config.mode {
            AuthMode::None => Auth::None,
            AuthMode::Basic => Auth::Basic { user: user(), password: password(config)? },
            AuthMode::Login => Auth::Login {
                url: config.login_url.clone().unwrap_or_default(),
                fields: LoginFields {
                    user: config.user_field.clone(),
                    password: config.password_field.clone(),
                    token: config.token_field.clone(),
                },
                user: user(),
                password: password(config)?,
                token: Mutex::new(None),
            },
        })
    }

    /// Every form in which this sends a secret, for `Redactor`: the password as it is and as a
    /// JSON string (the login body), and the Basic header's base64 of `user:password`.
    pub fn secret_forms(&self) -> Vec<String> {
        match self {
            Auth::None => Vec::new(),
            Auth::Basic { user, password } => {
                let mut forms = password_forms(password.expose());
                forms.extend(basic_forms(user, password.expose()));
                forms
            }
            Auth::Login { password, .. } => password_forms(password.expose()),
        }
    }

    /// The Bearer token in use, if any (it changes with each login).
    pub async fn current_token(&self) -> Option<String> {
        match self {
            Auth::Login { token, .. } => token.lock().await.as_ref().map(|token| token.expose().to_owned()),
            _ => None,
        }
    }

    /// Whether a 401 may be a stale token worth one fresh login.
    pub fn renews_on_401(&self) -> bool {
        matches!(self, Auth::Login { .. })
    }

    /// Adds the credentials to a request. For `login`, logs in first when there is no token (or
    /// `fresh` asks for a new one); a failed login is returned as the exchange to classify.
    pub async fn apply(
        &self,
        request: reqwest::RequestBuilder,
        http: &reqwest::Client,
        request_timeout: Duration,
        fresh: bool,
    ) -> Result<reqwest::RequestBuilder, Exchange> {
        match self {
            Auth::None => Ok(request),
            Auth::Basic { user, password } => Ok(request.basic_auth(user, Some(password.expose()))),
            Auth::Login { url, fields, user, password, token } => {
                let mut cached = token.lock().await;
                if fresh || cached.is_none() {
                    *cached = None;
                    let mut body = serde_json::Map::new();
                    body.insert(fields.user.clone(), Value::from(user.as_str()));
                    body.insert(fields.password.clone(), Value::from(password.expose()));
                    let exchange = super::perform(http.post(url).json(&body), request_timeout).await;
                    *cached = Some(token_from(&exchange, &fields.token)?);
                }
                let bearer = cached.as_ref().map(Secret::expose).unwrap_or_default();
                Ok(request.bearer_auth(bearer))
            }
        }
    }
}

/// A password as sent in a login body: itself, and JSON-escaped when that differs.
pub fn password_forms(password: &str) -> Vec<String> {
    let mut forms = vec![password.to_owned()];
    let escaped = serde_json::to_string(password).unwrap_or_default();
    let escaped = escaped.trim_matches('"');
    if escaped != password {
        forms.push(escaped.to_owned());
    }
    forms
}

/// The base64 of a Basic header's `user:password`, with and without its padding.
pub fn basic_forms(user: &str, password: &str) -> Vec<String> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let unpadded = encoded.trim_end_matches('=').to_owned();
    vec![encoded, unpadded]
}

/// The token of a successful login, or the exchange that explains why there is none.
fn token_from(exchange: &Exchange, field: &str) -> Result<Secret, Exchange> {
    let Exchange::Response(response) = exchange else { return Err(exchange.clone()) };
    if !(200..300).contains(&response.status) {
        return Err(exchange.clone());
    }
    serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|value| {
            field.split('.').try_fold(&value, |inside, name| inside.get(name))?.as_str().map(str::to_owned)
        })
        .map(Secret::new)
        .ok_or_else(|| {
            Exchange::Transport(TransportFailure::Other(format!(
                "o login respondeu {} sem o campo \"{field}\" (confira api.auth.token_field)",
                response.status
            )))
        })
}

/// The password: `password_file`, else the systemd credential, else `password`.
fn password(config: &AuthConfig) -> Result<Secret, String> {
    if let Some(path) = &config.password_file {
        return read_secret(path, "api.auth.password_file");
    }
    if let Some(directory) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&directory).join("api-password");
        if path.is_file() {
            return read_secret(&path, "a credencial systemd api-password");
        }
    }
    config.password.clone().ok_or_else(|| {
        "api.auth.password_file: informe a senha (password_file, a credencial systemd api-password ou password)"
            .to_owned()
    })
}

/// The largest secret file read: a password or token is a line, not a file's worth.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// A secret file's content without its trailing newline, not empty (`read_small_text`).
pub fn read_secret(path: &Path, what: &str) -> Result<Secret, String> {
    let text = read_small_text(path, what)?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{what}: {} está vazio", path.display()));
    }
    Ok(Secret::new(secret.to_owned()))
}

/// A small UTF-8 file that holds secrets (a password, an environment file). Only a regular file
/// is read (opened without blocking, so a FIFO cannot hang the daemon), and at most
/// `MAX_SECRET_BYTES`: a path such as `/dev/zero` is refused, not read for ever. Errors name
/// `what` and the path, never the content.
pub fn read_small_text(path: &Path, what: &str) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |detail: String| format!("{what}: não foi possível ler {}: {detail}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|error| cannot(crate::text::io_error(&error)))?;
    let meta = file.metadata().map_err(|error| cannot(crate::text::io_error(&error)))?;
    if !meta.is_file() {
        return Err(cannot("não é um arquivo comum (um dispositivo, FIFO ou diretório)".to_owned()));
    }
    let too_big = || cannot(format!("tem mais de {} KiB: não parece uma senha", MAX_SECRET_BYTES / 1024));
    if meta.len() > MAX_SECRET_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| cannot(crate::text::io_error(&error)))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| cannot("não está em UTF-8".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("senha");
        std::fs::write(&good, "S3nh4\n").unwrap();
        assert_eq!(read_secret(&good, "teste").unwrap().expose(), "S3nh4");
        let error = read_secret(Path::new("/dev/zero"), "api.auth.password_file").err().unwrap();
        assert!(error.contains("não é um arquivo comum"), "{error}");
        let big = dir.path().join("grande");
        std::fs::write(&big, vec![b'x'; 70_000]).unwrap();
        assert!(read_secret(&big, "teste").err().unwrap().contains("não parece uma senha"));
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(read_secret(&fifo, "teste").err().unwrap().contains("não é um arquivo comum"));
    }
}
