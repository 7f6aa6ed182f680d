//! From what happened on the wire to the support team's error code. Pure: the HTTP client turns
//! reqwest's results into an `Exchange`, and `classify` decides the code, a short machine `kind`,
//! the API's own message and any `Retry-After`. Every row of SPEC 3 is a test here.

use std::time::Duration;

use serde_json::Value;

/// The most of a response body that is read; the rest is not needed to classify it.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most of a body kept in an attempt record.
pub const EXCERPT_BYTES: usize = 2 * 1024;
/// `Retry-After` when a 429 does not say.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What one request produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// A complete response (body read up to `MAX_BODY_BYTES`).
    Response(Response),
    /// No complete response.
    Transport(TransportFailure),
}

/// An HTTP response, reduced to what classification reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// Why there is no complete response. Built by the client from the error chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportFailure {
    /// The name does not exist (NXDOMAIN, `EAI_NONAME`).
    DnsNoName,
    /// No DNS server answered, or a temporary resolver failure (`EAI_AGAIN`).
    DnsUnavailable,
    /// The resolver did not answer within the connect timeout.
    DnsTimeout,
    /// TCP connect refused (`ECONNREFUSED`, an outbound REJECT).
    ConnectRefused,
    /// Host or network unreachable.
    Unreachable,
    /// DNS + TCP + TLS did not finish within `api.connect_timeout`.
    ConnectTimeout,
    /// TLS handshake or certificate verification failed; the detail says which.
    Tls { certificate: bool, detail: String },
    /// Connected, but no response headers within `api.request_timeout`.
    ResponseTimeout,
    /// Headers arrived, then the body stalled past `api.request_timeout`.
    BodyTimeout,
    /// The connection was reset or closed before the response was complete.
    Reset,
    /// The proxy (`api.proxy`) would not open a tunnel to the API; the detail says why.
    Proxy(String),
    /// The proxy answered the tunnel request with 407: it wants (other) credentials.
    ProxyAuth,
    /// Anything else, with reqwest's description.
    Other(String),
}

/// What became of the request, for the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Success,
    /// Accepted asynchronously (202) or still processing (208).
    Processing,
    /// Failed with this catalog code.
    Failure(&'static str),
}

/// The classification of one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// A short machine word: `connect_refused`, `dns_nxdomain`, `http_503`, …
    pub kind: String,
    pub http_status: Option<u16>,
    /// The API's own message, or our explanation when it gave none.
    pub message: Option<String>,
    /// How long the API asked us to wait (08).
    pub retry_after: Option<Duration>,
}

impl Verdict {
    /// The code, when it failed.
    pub fn code(&self) -> Option<&'static str> {
        match self.outcome {
            Outcome::Failure(code) => Some(code),
            _ => None,
        }
    }
}

/// A bounded, lossless-enough excerpt of a body for the record.
pub fn excerpt(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let cut = &body[..body.len().min(EXCERPT_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if body.len() > EXCERPT_BYTES {
        text.push('…');
    }
    Some(text)
}

/// Classifies an exchange. `user_not_found` are the configured case-insensitive fragments that
/// turn a 401/403/404 into code 03; `now` resolves an HTTP-date `Retry-After`.
pub fn classify(exchange: &Exchange, user_not_found: &[String], now: jiff::Timestamp) -> Verdict {
    match exchange {
        Exchange::Transport(failure) => transport(failure),
        Exchange::Response(response) => response_verdict(response, user_not_found, now),
    }
}

/// A proxy's 407, in a response or as its answer to `CONNECT`.
pub const PROXY_AUTH: &str = "o proxy exige autenticação (HTTP 407) ou recusou a informada: confira api.proxy_user e \
     api.proxy_password_file";

/// A failure with no response.
fn transport(failure: &TransportFailure) -> Verdict {
    let (code, kind, message): (&str, &str, String) = match failure {
        TransportFailure::DnsNoName => ("05", "dns_nxdomain", "o nome do servidor não existe no DNS".into()),
        TransportFailure::DnsUnavailable => (
            "05",
            "dns_unavailable",
            "nenhum servidor DNS respondeu (ou falha temporária de resolução)".into(),
        ),
        TransportFailure::DnsTimeout => ("05", "dns_timeout", "o DNS não respondeu a tempo".into()),
        TransportFailure::ConnectRefused => {
            ("01", "connect_refused", "conexão recusada pelo servidor".into())
        }
        TransportFailure::Unreachable => ("01", "unreachable", "servidor ou rede inalcançável".into()),
        TransportFailure::ConnectTimeout => {
            ("04", "connect_timeout", "a conexão não foi estabelecida dentro de api.connect_timeout".into())
        }
        TransportFailure::Tls { certificate: true, detail } => {
            ("06", "tls_certificate", format!("certificado do servidor recusado: {detail}"))
        }
        TransportFailure::Tls { certificate: false, detail } => {
            ("06", "tls_handshake", format!("falha na negociação TLS: {detail}"))
        }
        TransportFailure::ResponseTimeout => {
            ("04", "read_timeout", "a API não respondeu dentro de api.request_timeout".into())
        }
        TransportFailure::BodyTimeout => (
            "04",
            "body_timeout",
            "a API começou a responder mas não terminou dentro de api.request_timeout".into(),
        ),
        TransportFailure::Reset => {
            ("99", "connection_reset", "a conexão caiu antes de a resposta terminar".into())
        }
        TransportFailure::Proxy(detail) => ("01", "proxy_refused", detail.clone()),
        // The same kind as a 407 response to a plain-HTTP request: one journal filter finds both.
        TransportFailure::ProxyAuth => ("01", "proxy_auth", PROXY_AUTH.to_owned()),
        TransportFailure::Other(detail) => ("99", "transport", format!("falha de comunicação: {detail}")),
    };
    Verdict {
        outcome: Outcome::Failure(code),
        kind: kind.to_owned(),
        http_status: None,
        message: Some(message),
        retry_after: None,
    }
}

/// A complete response.
fn response_verdict(response: &Response, user_not_found: &[String], now: jiff::Timestamp) -> Verdict {
    let status = response.status;
    let message = extract_message(&response.body, response.content_type.as_deref());
    let verdict = |outcome: Outcome, kind: String, message: Option<String>| Verdict {
        outcome,
        kind,
        http_status: Some(status),
        message,
        retry_after: None,
    };
    // Only a 401/403/404 can mean "unknown user": the body is lowered only for those.
    let body_says_user_is_unknown = matches!(status, 401 | 403 | 404) && {
        let body = String::from_utf8_lossy(&response.body).to_lowercase();
        user_not_found.iter().any(|pattern| !pattern.is_empty() && body.contains(&pattern.to_lowercase()))
    };
    let kind = format!("http_{status}");
    match status {
        202 | 208 => verdict(Outcome::Processing, kind, message),
        200..=299 => {
            let json = parse_json(&response.body, response.content_type.as_deref());
            match json {
                Err(()) => verdict(
                    Outcome::Failure("99"),
                    "invalid_json".to_owned(),
                    Some(format!("resposta {status} com JSON ilegível")),
                ),
                Ok(Some(value)) if says_it_failed(&value) => verdict(
                    Outcome::Failure("07"),
                    "rejected_in_body".to_owned(),
                    message.or_else(|| Some(format!("resposta {status} indica falha no corpo"))),
                ),
                Ok(_) => verdict(Outcome::Success, kind, message),
            }
        }
        300..=399 => {
            let location = response.location.as_deref().unwrap_or("(sem Location)");
            verdict(
                Outcome::Failure("07"),
                "redirect".to_owned(),
                Some(format!(
                    "a API respondeu {status} redirecionando para {location}: a URL da API provavelmente mudou (confira api.url)"
                )),
            )
        }
        401 | 403 | 404 if body_says_user_is_unknown => verdict(Outcome::Failure("03"), kind, message),
        401 => verdict(
            Outcome::Failure("02"),
            kind,
            message.or_else(|| Some("credenciais recusadas".to_owned())),
        ),
        403 if message.as_deref().is_some_and(|text| text.contains("Missing Authentication Token")) => {
            verdict(
                Outcome::Failure("07"),
                "wrong_path".to_owned(),
                Some(format!(
                    "{}: a URL da API provavelmente está errada (confira o caminho em api.url)",
                    message.as_deref().unwrap_or("")
                )),
            )
        }
        403 if mentions_credentials(&response.body) => verdict(Outcome::Failure("02"), kind, message),
        429 => Verdict {
            retry_after: Some(
                retry_after(response.retry_after.as_deref(), now).unwrap_or(DEFAULT_RETRY_AFTER),
            ),
            ..verdict(Outcome::Failure("08"), kind, message)
        },
        503 if response.retry_after.is_some() => Verdict {
            retry_after: Some(
                retry_after(response.retry_after.as_deref(), now).unwrap_or(DEFAULT_RETRY_AFTER),
            ),
            ..verdict(Outcome::Failure("08"), kind, message)
        },
        // Only a proxy answers 407: the API was never reached, so nothing was rejected.
        407 => verdict(Outcome::Failure("01"), "proxy_auth".to_owned(), Some(PROXY_AUTH.to_owned())),
        400..=499 => verdict(Outcome::Failure("07"), kind, message),
        _ => verdict(Outcome::Failure("99"), kind, message),
    }
}

/// `Ok(None)` for an empty or non-JSON body, `Err` for a body that claims to be JSON (by type or
/// by its first character) and does not parse.
fn parse_json(body: &[u8], content_type: Option<&str>) -> Result<Option<Value>, ()> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let claims_json = content_type.is_some_and(|kind| kind.contains("json"))
        || matches!(trimmed.first(), Some(b'{' | b'['));
    if !claims_json {
        return Ok(None);
    }
    serde_json::from_slice(trimmed).map(Some).map_err(|_| ())
}

/// A 2xx body that says the cancellation failed: `"success": false` or `"error": true`.
fn says_it_failed(value: &Value) -> bool {
    value.get("success") == Some(&Value::Bool(false)) || value.get("error") == Some(&Value::Bool(true))
}

/// A 403 whose body is about credentials rather than permission on the order.
fn mentions_credentials(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_lowercase();
    [
        "password",
        "senha",
        "credential",
        "credencia",
        "unauthorized",
        "invalid token",
        "authenticat",
        "autentica",
    ]
    .iter()
    .any(|word| text.contains(word))
}

/// The human message of an error body, from any of the envelopes the vendors use, plain text or
/// HTML. Bounded to one readable line.
pub fn extract_message(body: &[u8], content_type: Option<&str>) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let message = match parse_json(body, content_type) {
        Ok(Some(value)) => from_json_envelope(&value),
        Ok(None) if text.starts_with('<') || content_type.is_some_and(|kind| kind.contains("html")) => {
            from_html(text)
        }
        _ => Some(text.to_owned()),
    };
    message.map(|message| crate::text::truncate(message.trim(), 500)).filter(|message| !message.is_empty())
}

/// `{"errors":[{"key","message"}]}`, `{"message","code"}`, `{"error":true,"errorMessage",…}`.
fn from_json_envelope(value: &Value) -> Option<String> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(errors) = value.get("errors").and_then(Value::as_array) {
        let parts: Vec<String> = errors
            .iter()
            .filter_map(|error| {
                let message = error.get("message").and_then(Value::as_str)?;
                Some(match error.get("key").and_then(Value::as_str) {
                    Some(key) => format!("{key}: {message}"),
                    None => message.to_owned(),
                })
            })
            .collect();
        if !parts.is_empty() {
            return Some(parts.join("; "));
        }
    }
    if let Some(message) = text("errorMessage") {
        return Some(match text("errorDescription") {
            Some(description) if description != message => format!("{message} ({description})"),
            _ => message,
        });
    }
    text("message").or_else(|| text("error_description")).or_else(|| text("error")).or_else(|| text("detail"))
}

/// The `<title>` of an HTML page, else its text without tags.
fn from_html(html: &str) -> Option<String> {
    let lower = html.to_lowercase();
    if let (Some(start), Some(end)) = (lower.find("<title>"), lower.find("</title>"))
        && start + 7 <= end
    {
        return Some(html[start + 7..end].trim().to_owned());
    }
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `Retry-After` as seconds or an HTTP-date, from `now`.
pub fn retry_after(value: Option<&str>, now: jiff::Timestamp) -> Option<Duration> {
    let value = value?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.as_millisecond().saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

#[cfg(test)]
mod tests;
