//! Credentials: none, HTTP Basic, a login that returns a token, or OAuth2 client credentials
//! (RFC 6749 §4.4). A token (login or OAuth2) is cached in memory only, renewed before its
//! `expires_in` runs out (less a margin) and once on a 401, and sent as Bearer. What a token
//! endpoint answers when it refuses is about the credentials, never about the item: it comes
//! back as `Exchange::TokenEndpoint`, which `classify` turns into 02/03 (or the transport's own
//! code), so an item is never failed because a token could not be had.
//!
//! Passwords and client secrets come from a file, a systemd credential, or (the password only)
//! the config, and are held only as `Secret`s (`secrets.rs`).

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::{AuthConfig, AuthMode, ClientAuth, LoginFormat};
use crate::core::classify::Exchange;
use crate::core::secret::Secret;
use crate::io::secrets;

/// How requests are authenticated.
pub enum Auth {
    None,
    Basic {
        user: String,
        password: Secret,
    },
    /// A Bearer token from a login or an OAuth2 token endpoint.
    Token(Box<TokenSource>),
}

/// Where a token comes from, and the one in use.
pub struct TokenSource {
    grant: Grant,
    cached: Mutex<Option<Cached>>,
}

/// A token in use, and when to get a new one before it expires.
struct Cached {
    token: Secret,
    renew_at: Option<Instant>,
}

/// How a token is obtained.
enum Grant {
    /// POST the user and password (JSON or form) to `url`; the token at `token_field`.
    Login {
        url: String,
        format: LoginFormat,
        user_field: String,
        password_field: String,
        token_field: String,
        user: String,
        password: Secret,
    },
    /// OAuth2 client credentials.
    OAuth2 {
        url: String,
        client_id: String,
        secret: Secret,
        client_auth: ClientAuth,
        form: Vec<(String, String)>,
    },
}

/// How long before `expires_in` runs out a token is renewed: a tenth of its life, between 5 s
/// and a minute (a request in flight must not carry a token that expires on the way).
fn margin(expires_in: Duration) -> Duration {
    (expires_in / 10).clamp(Duration::from_secs(5), Duration::from_secs(60)).min(expires_in / 2)
}

impl Auth {
    /// Reads the credentials the config points at.
    pub fn new(config: &AuthConfig) -> Result<Auth, String> {
        let user = || config.user.clone().unwrap_or_default();
        let token = |grant| Auth::Token(Box::new(TokenSource { grant, cached: Mutex::new(None) }));
        Ok(match config.mode {
            AuthMode::None => Auth::None,
            AuthMode::Basic => Auth::Basic { user: user(), password: password(config)? },
            AuthMode::Login => token(Grant::Login {
                url: config.login_url.clone().unwrap_or_default(),
                format: config.format,
                user_field: config.user_field.clone(),
                password_field: config.password_field.clone(),
                token_field: config.token_field.clone(),
                user: user(),
                password: password(config)?,
            }),
            AuthMode::OAuth2 => {
                let secret = secrets::from_file_or_credential(
                    config.client_secret_file.as_deref(),
                    "api.auth.client_secret_file",
                    "api-client-secret",
                )?
                .ok_or_else(|| {
                    "api.auth.client_secret_file: informe o segredo do cliente OAuth2 (um arquivo legível só \
                     pelo serviço, ou a credencial systemd api-client-secret)"
                        .to_owned()
                })?;
                let mut form = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
                if let Some(scope) = &config.scope {
                    form.push(("scope".to_owned(), scope.clone()));
                }
                if let Some(audience) = &config.audience {
                    form.push(("audience".to_owned(), audience.clone()));
                }
                form.extend(config.token_form.iter().map(|(key, value)| (key.clone(), value.clone())));
                token(Grant::OAuth2 {
                    url: config.token_url.clone().unwrap_or_default(),
                    client_id: config.client_id.clone().unwrap_or_default(),
                    secret,
                    client_auth: config.client_auth,
                    form,
                })
            }
        })
    }

    /// A redactor for the secrets this sends: the password or client secret (in any encoding),
    /// and the Basic header's base64 of `user:password` (or `client_id:secret`).
    pub fn redactor(&self) -> secrets::Redactor {
        let mut redactor = secrets::Redactor::default();
        match self {
            Auth::None => {}
            Auth::Basic { user, password } => {
                redactor.add_secret(password.expose());
                redactor.add_basic(user, password.expose());
            }
            Auth::Token(source) => match &source.grant {
                Grant::Login { password, .. } => redactor.add_secret(password.expose()),
                Grant::OAuth2 { client_id, secret, .. } => {
                    redactor.add_secret(secret.expose());
                    redactor.add_basic(client_id, secret.expose());
                    redactor.add_basic(&form_encoded(client_id), &form_encoded(secret.expose()));
                }
            },
        }
        redactor
    }

    /// The Bearer token in use, if any (it changes with each renewal).
    pub async fn current_token(&self) -> Option<String> {
        match self {
            Auth::Token(source) => {
                source.cached.lock().await.as_ref().map(|cached| cached.token.expose().to_owned())
            }
            _ => None,
        }
    }

    /// Whether a 401 may be a stale token worth one fresh one.
    pub fn renews_on_401(&self) -> bool {
        matches!(self, Auth::Token(_))
    }

    /// Whether this mode gets a token from an endpoint (`check` can test the credentials there).
    pub fn token_endpoint(&self) -> Option<&str> {
        match self {
            Auth::Token(source) => Some(match &source.grant {
                Grant::Login { url, .. } | Grant::OAuth2 { url, .. } => url,
            }),
            _ => None,
        }
    }

    /// Adds the credentials to a request, and says which token it carries. A token is obtained
    /// first when there is none, when it is about to expire, or when the API `refused` the one in
    /// use (a 401) and no other request has renewed it meanwhile; a token endpoint that refuses
    /// is returned as `Exchange::TokenEndpoint`, to be classified.
    pub async fn apply(
        &self,
        request: reqwest::RequestBuilder,
        http: &reqwest::Client,
        request_timeout: Duration,
        refused: Option<&Secret>,
    ) -> Result<(reqwest::RequestBuilder, Option<Secret>), Exchange> {
        match self {
            Auth::None => Ok((request, None)),
            Auth::Basic { user, password } => Ok((request.basic_auth(user, Some(password.expose())), None)),
            Auth::Token(source) => {
                let token = source.token(http, request_timeout, refused, false).await?;
                Ok((request.bearer_auth(token.expose()), Some(token)))
            }
        }
    }

    /// Obtains a token now (for `check`): `Ok` with how long it lasts, or the refusal.
    pub async fn obtain(
        &self,
        http: &reqwest::Client,
        request_timeout: Duration,
    ) -> Result<Option<Duration>, Exchange> {
        match self {
            Auth::Token(source) => {
                source.token(http, request_timeout, None, true).await?;
                let cached = source.cached.lock().await;
                Ok(cached
                    .as_ref()
                    .and_then(|cached| cached.renew_at)
                    .map(|at| at.saturating_duration_since(Instant::now())))
            }
            _ => Ok(None),
        }
    }
}

impl TokenSource {
    /// The token to send: the cached one while it is good (not expiring, not the one the API
    /// `refused`), else a new one; `fresh` asks for a new one regardless (`check`).
    async fn token(
        &self,
        http: &reqwest::Client,
        request_timeout: Duration,
        refused: Option<&Secret>,
        fresh: bool,
    ) -> Result<Secret, Exchange> {
        let mut cached = self.cached.lock().await;
        let stale = cached.as_ref().is_none_or(|cached| {
            cached.renew_at.is_some_and(|at| Instant::now() >= at)
                || refused.is_some_and(|refused| refused.expose() == cached.token.expose())
        });
        if fresh || stale {
            *cached = None;
            let asked = Instant::now();
            let exchange = super::perform(self.request(http), request_timeout).await;
            let (token, expires_in) =
                self.read(&exchange).map_err(|exchange| Exchange::TokenEndpoint(Box::new(exchange)))?;
            let renew_at = expires_in.map(|expires_in| asked + expires_in.saturating_sub(margin(expires_in)));
            *cached = Some(Cached { token, renew_at });
        }
        Ok(cached.as_ref().map(|cached| cached.token.clone()).unwrap_or_else(|| Secret::new(String::new())))
    }

    /// The token request.
    fn request(&self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        match &self.grant {
            Grant::Login { url, format, user_field, password_field, user, password, .. } => {
                let request = http.post(url);
                match format {
                    LoginFormat::Json => {
                        let mut body = serde_json::Map::new();
                        body.insert(user_field.clone(), Value::from(user.as_str()));
                        body.insert(password_field.clone(), Value::from(password.expose()));
                        request.json(&body)
                    }
                    LoginFormat::Form => request
                        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(
                            form_urlencoded::Serializer::new(String::new())
                                .append_pair(user_field, user)
                                .append_pair(password_field, password.expose())
                                .finish(),
                        ),
                }
            }
            Grant::OAuth2 { url, client_id, secret, client_auth, form } => {
                let mut body = form_urlencoded::Serializer::new(String::new());
                for (key, value) in form {
                    body.append_pair(key, value);
                }
                let mut request = http.post(url).header(reqwest::header::ACCEPT, "application/json");
                match client_auth {
                    // RFC 6749 §2.3.1: the id and secret are form-encoded, then go in Basic.
                    ClientAuth::Basic => {
                        request =
                            request.basic_auth(form_encoded(client_id), Some(form_encoded(secret.expose())));
                    }
                    ClientAuth::Body => {
                        body.append_pair("client_id", client_id)
                            .append_pair("client_secret", secret.expose());
                    }
                }
                request
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body.finish())
            }
        }
    }

    /// The token (and its `expires_in`) of a successful answer, or the exchange that explains
    /// why there is none.
    fn read(&self, exchange: &Exchange) -> Result<(Secret, Option<Duration>), Exchange> {
        let Exchange::Response(response) = exchange else { return Err(exchange.clone()) };
        if !(200..300).contains(&response.status) {
            return Err(exchange.clone());
        }
        let field = match &self.grant {
            Grant::Login { token_field, .. } => token_field.as_str(),
            Grant::OAuth2 { .. } => "access_token",
        };
        let body = serde_json::from_slice::<Value>(&response.body).ok();
        let token = body
            .as_ref()
            .and_then(|value| field.split('.').try_fold(value, |inside, name| inside.get(name)))
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            let hint = match &self.grant {
                Grant::Login { .. } => "confira api.auth.token_field",
                Grant::OAuth2 { .. } => {
                    "confira api.auth.token_url: a resposta não é a de um servidor OAuth2"
                }
            };
            return Err(Exchange::Transport(crate::core::classify::TransportFailure::InvalidResponse(
                format!(
                    "o servidor de tokens respondeu {} sem o campo \"{field}\" ({hint})",
                    response.status
                ),
            )));
        };
        let expires_in = body
            .as_ref()
            .and_then(|value| value.get("expires_in"))
            .and_then(|value| value.as_u64().or_else(|| value.as_str()?.trim().parse().ok()))
            .filter(|seconds| *seconds > 0)
            .map(Duration::from_secs);
        Ok((Secret::new(token.to_owned()), expires_in))
    }
}

/// A value as `application/x-www-form-urlencoded` writes it.
fn form_encoded(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The password: `password_file`, else the systemd credential, else `password`.
fn password(config: &AuthConfig) -> Result<Secret, String> {
    if let Some(password) = secrets::from_file_or_credential(
        config.password_file.as_deref(),
        "api.auth.password_file",
        "api-password",
    )? {
        return Ok(password);
    }
    config.password.clone().ok_or_else(|| {
        "api.auth.password_file: informe a senha (password_file, a credencial systemd api-password ou password)"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_a_tenth_of_its_life_early_within_bounds() {
        assert_eq!(margin(Duration::from_secs(3_600)), Duration::from_secs(60));
        assert_eq!(margin(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(margin(Duration::from_secs(20)), Duration::from_secs(5));
        assert_eq!(margin(Duration::from_secs(6)), Duration::from_secs(3), "never more than half its life");
    }
}
