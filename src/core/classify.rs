//! From what happened on the wire to the support team's error code. Pure: the HTTP client turns
//! reqwest's results into an `Exchange`, and `classify` decides the code, a short machine `kind`,
//! the API's own message, its receipt and any `Retry-After`, by the built-in rules (every row of
//! the code table is a test here) and the customer's `[api.response]` rules.

use std::time::Duration;

use serde_json::Value;

pub use crate::core::codes::Code;
use crate::core::mapping::{Judgement, ResponseConfig};

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
    /// Nothing was sent: the item's request could not be built from `[api.request]` (the reason).
    NotSent(String),
    /// The token endpoint (a login, OAuth2) did not give a token: what it answered, or why
    /// there is no answer. About the credentials, never the item.
    TokenEndpoint(Box<Exchange>),
}

/// What exactly happened, in a short machine word (`connect_refused`, `dns_nxdomain`,
/// `http_503`, …): the `kind` of records, journal fields and `--json`, which support filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    DnsNxdomain,
    DnsUnavailable,
    DnsTimeout,
    ConnectRefused,
    Unreachable,
    ConnectTimeout,
    TlsCertificate,
    TlsHandshake,
    ReadTimeout,
    BodyTimeout,
    ConnectionReset,
    ProxyRefused,
    /// A proxy's 407, to `CONNECT` or as a response: one journal filter finds both.
    ProxyAuth,
    /// Any other failure before a response.
    Transport,
    /// The answer was not HTTP.
    InvalidResponse,
    InvalidJson,
    RejectedInBody,
    Redirect,
    WrongPath,
    /// A configured `status_path` with a value in no list (or missing).
    UnknownStatus,
    /// The mapping could not build the request: nothing was sent. It says nothing about the API,
    /// so the circuit breaker ignores it.
    RequestMapping,
    /// An asynchronous API said to poll on another server.
    ForeignLocation,
    /// An asynchronous API gave no final answer within `api.async_max_wait`.
    AsyncTimeout,
    /// The API's TLS server refused the connection for want of a (valid) client certificate.
    ClientCertificate,
    /// The token endpoint answered with this status instead of a token.
    TokenHttp(u16),
    /// The token endpoint could not be reached, or did not answer in time.
    TokenUnreachable,
    /// Any other HTTP status, as it was.
    Http(u16),
}

impl Kind {
    /// The stored word.
    pub fn as_str(self) -> std::borrow::Cow<'static, str> {
        use std::borrow::Cow::Borrowed;
        Borrowed(match self {
            Kind::DnsNxdomain => "dns_nxdomain",
            Kind::DnsUnavailable => "dns_unavailable",
            Kind::DnsTimeout => "dns_timeout",
            Kind::ConnectRefused => "connect_refused",
            Kind::Unreachable => "unreachable",
            Kind::ConnectTimeout => "connect_timeout",
            Kind::TlsCertificate => "tls_certificate",
            Kind::TlsHandshake => "tls_handshake",
            Kind::ReadTimeout => "read_timeout",
            Kind::BodyTimeout => "body_timeout",
            Kind::ConnectionReset => "connection_reset",
            Kind::ProxyRefused => "proxy_refused",
            Kind::ProxyAuth => "proxy_auth",
            Kind::Transport => "transport",
            Kind::InvalidResponse => "invalid_response",
            Kind::InvalidJson => "invalid_json",
            Kind::RejectedInBody => "rejected_in_body",
            Kind::Redirect => "redirect",
            Kind::WrongPath => "wrong_path",
            Kind::UnknownStatus => "unknown_status",
            Kind::RequestMapping => "request_mapping",
            Kind::ForeignLocation => "foreign_location",
            Kind::AsyncTimeout => "async_timeout",
            Kind::ClientCertificate => "client_certificate",
            Kind::TokenUnreachable => "token_unreachable",
            Kind::TokenHttp(status) => return std::borrow::Cow::Owned(format!("token_http_{status}")),
            Kind::Http(status) => return std::borrow::Cow::Owned(format!("http_{status}")),
        })
    }
}

impl Kind {
    /// Whether this is the token endpoint's failure: never the item's, whatever its code.
    pub fn is_token(self) -> bool {
        matches!(self, Kind::TokenHttp(_) | Kind::TokenUnreachable)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
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
    /// The server refused our client certificate, or the lack of one (a TLS alert); the detail
    /// says which.
    ClientCertificate(String),
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
    /// What came back is not an HTTP response (hyper's parse error as the detail).
    InvalidResponse(String),
    /// Anything else, with the HTTP stack's description (never the URL).
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
    Failure(Code),
}

/// The classification of one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// What exactly happened: `connect_refused`, `dns_nxdomain`, `http_503`, …
    pub kind: Kind,
    pub http_status: Option<u16>,
    /// The API's own message, or our explanation when it gave none.
    pub message: Option<String>,
    /// How long the API asked us to wait (08).
    pub retry_after: Option<Duration>,
    /// The API's receipt (`[api.response] receipt_path`), when its answer has one.
    pub receipt: Option<String>,
    /// The URL to poll for the final answer (`async_poll = "location"`), set by the client.
    pub poll_url: Option<String>,
}

impl Verdict {
    /// The code, when it failed.
    pub fn code(&self) -> Option<Code> {
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

/// The configured part of classification: the fragments of a 401/403/404 body that mean code 03
/// or 02 (already folded: lower case, no accents), and `[api.response]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    user_not_found: Vec<String>,
    invalid_credentials: Vec<String>,
    pub response: ResponseConfig,
}

impl Rules {
    /// Rules from the patterns as written and the response rules.
    pub fn new(user_not_found: &[String], invalid_credentials: &[String], response: ResponseConfig) -> Rules {
        let folded = |patterns: &[String]| {
            patterns
                .iter()
                .map(|pattern| fold(pattern.trim()))
                .filter(|pattern| !pattern.is_empty())
                .collect()
        };
        Rules {
            user_not_found: folded(user_not_found),
            invalid_credentials: folded(invalid_credentials),
            response,
        }
    }
}

/// Lower case without the accents of Portuguese (and the other Latin ones), so "USUÁRIO NÃO" and
/// "usuario nao" compare equal.
pub fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            'ý' | 'ÿ' => 'y',
            other => other,
        })
        .collect()
}

/// Classifies an exchange by `rules`; `now` resolves an HTTP-date `Retry-After`.
pub fn classify(exchange: &Exchange, rules: &Rules, now: jiff::Timestamp) -> Verdict {
    match exchange {
        Exchange::Transport(failure) => transport(failure),
        Exchange::Response(response) => response_verdict(response, rules, now),
        Exchange::TokenEndpoint(inner) => token_endpoint(inner, rules, now),
        Exchange::NotSent(why) => Verdict {
            outcome: Outcome::Failure(Code::Rejected),
            kind: Kind::RequestMapping,
            http_status: None,
            message: Some(format!(
                "o cancelamento não foi enviado: não foi possível montar a requisição ({why})"
            )),
            retry_after: None,
            receipt: None,
            poll_url: None,
        },
    }
}

/// What the token endpoint (a login or OAuth2's `token_url`) said instead of giving a token:
/// about the credentials, not the item. A refusal (any 4xx but 429, a body without a token) is
/// 02 — or 03 when it says the user does not exist — and pauses sending until the credentials
/// are mended; a 429 waits its `Retry-After`; a 5xx or a transport failure keeps its own code
/// but opens the circuit like an unreachable endpoint (`policy::Circuit::judge`), so no item
/// spends an attempt on it.
fn token_endpoint(inner: &Exchange, rules: &Rules, now: jiff::Timestamp) -> Verdict {
    const WHERE: &str = "o servidor de tokens (api.auth.token_url ou login_url)";
    match inner {
        Exchange::Response(response) => {
            let status = response.status;
            let said = extract_message(&response.body, response.content_type.as_deref());
            let folded = fold(&String::from_utf8_lossy(&response.body));
            let user_unknown = rules.user_not_found.iter().any(|pattern| folded.contains(pattern.as_str()));
            let (code, what) = match status {
                429 => (Code::RateLimited, "pediu para esperar (HTTP 429)".to_owned()),
                500..=599 => (Code::Generic, format!("falhou (HTTP {status})")),
                _ if user_unknown => {
                    (Code::UserNotFound, format!("não reconhece o usuário ou cliente (HTTP {status})"))
                }
                200..=299 => (Code::InvalidPassword, format!("respondeu {status} sem um token")),
                _ => (
                    Code::InvalidPassword,
                    format!(
                        "recusou as credenciais (HTTP {status}): confira api.auth.client_id e o segredo (ou o usuário e a senha), e api.auth.scope"
                    ),
                ),
            };
            Verdict {
                outcome: Outcome::Failure(code),
                kind: Kind::TokenHttp(status),
                http_status: Some(status),
                message: Some(one_line(&match said {
                    Some(said) => format!("{WHERE} {what}: {said}"),
                    None => format!("{WHERE} {what}"),
                })),
                retry_after: (status == 429).then(|| {
                    retry_after(response.retry_after.as_deref(), now).unwrap_or(DEFAULT_RETRY_AFTER)
                }),
                receipt: None,
                poll_url: None,
            }
        }
        Exchange::Transport(TransportFailure::InvalidResponse(detail))
            if detail.starts_with("o servidor de tokens") =>
        {
            Verdict {
                outcome: Outcome::Failure(Code::InvalidPassword),
                kind: Kind::TokenHttp(200),
                http_status: None,
                message: Some(detail.clone()),
                retry_after: None,
                receipt: None,
                poll_url: None,
            }
        }
        Exchange::Transport(failure) => {
            let verdict = transport(failure);
            Verdict {
                kind: Kind::TokenUnreachable,
                message: verdict.message.map(|message| one_line(&format!("{WHERE}: {message}"))),
                ..verdict
            }
        }
        other => classify(other, rules, now),
    }
}

/// Classifies the answer to a GET of the `Location` an asynchronous API gave: a `303 See Other`
/// there means the operation finished (its result is elsewhere); the rest reads as any answer.
pub fn classify_poll(exchange: &Exchange, rules: &Rules, now: jiff::Timestamp) -> Verdict {
    match exchange {
        Exchange::Response(response) if response.status == 303 => Verdict {
            outcome: Outcome::Success,
            kind: Kind::Http(303),
            http_status: Some(303),
            message: None,
            retry_after: None,
            receipt: None,
            poll_url: None,
        },
        _ => classify(exchange, rules, now),
    }
}

/// What a refusal of the client certificate means, for the messages of both ways it comes (a TLS
/// alert, or nginx's HTTP 400 page after the handshake).
pub const CLIENT_CERTIFICATE: &str = "o servidor da API exige um certificado de cliente (TLS mútuo) e recusou o \
     enviado, ou a falta dele: confira api.client_certificate (validade, senha, se é o certificado que o \
     fornecedor cadastrou)";

/// The titles nginx (and servers that copy it) answers with, in a 400, when the client
/// certificate is missing or fails verification.
const CLIENT_CERTIFICATE_PAGES: [&str; 3] =
    ["no required ssl certificate was sent", "the ssl certificate error", "ssl certificate error"];

/// A proxy's 407, in a response or as its answer to `CONNECT`.
pub const PROXY_AUTH: &str = "o proxy exige autenticação (HTTP 407) ou recusou a informada: confira api.proxy_user e \
     api.proxy_password_file";

/// A failure with no response.
fn transport(failure: &TransportFailure) -> Verdict {
    let (code, kind, message): (Code, Kind, String) = match failure {
        TransportFailure::DnsNoName => {
            (Code::UnknownHost, Kind::DnsNxdomain, "o nome do servidor não existe no DNS".into())
        }
        TransportFailure::DnsUnavailable => (
            Code::UnknownHost,
            Kind::DnsUnavailable,
            "nenhum servidor DNS respondeu (ou falha temporária de resolução)".into(),
        ),
        TransportFailure::DnsTimeout => {
            (Code::UnknownHost, Kind::DnsTimeout, "o DNS não respondeu a tempo".into())
        }
        TransportFailure::ConnectRefused => {
            (Code::ConnectionRefused, Kind::ConnectRefused, "conexão recusada pelo servidor".into())
        }
        TransportFailure::Unreachable => {
            (Code::ConnectionRefused, Kind::Unreachable, "servidor ou rede inalcançável".into())
        }
        TransportFailure::ConnectTimeout => (
            Code::Timeout,
            Kind::ConnectTimeout,
            "a conexão não foi estabelecida dentro de api.connect_timeout".into(),
        ),
        TransportFailure::Tls { certificate: true, detail } => {
            (Code::Tls, Kind::TlsCertificate, format!("certificado do servidor recusado: {detail}"))
        }
        TransportFailure::Tls { certificate: false, detail } => {
            (Code::Tls, Kind::TlsHandshake, format!("falha na negociação TLS: {detail}"))
        }
        TransportFailure::ClientCertificate(detail) => {
            (Code::Tls, Kind::ClientCertificate, format!("{CLIENT_CERTIFICATE}: {detail}"))
        }
        TransportFailure::ResponseTimeout => {
            (Code::Timeout, Kind::ReadTimeout, "a API não respondeu dentro de api.request_timeout".into())
        }
        TransportFailure::BodyTimeout => (
            Code::Timeout,
            Kind::BodyTimeout,
            "a API começou a responder mas não terminou dentro de api.request_timeout".into(),
        ),
        TransportFailure::Reset => {
            (Code::Generic, Kind::ConnectionReset, "a conexão caiu antes de a resposta terminar".into())
        }
        TransportFailure::Proxy(detail) => (Code::ConnectionRefused, Kind::ProxyRefused, detail.clone()),
        // The same kind as a 407 response to a plain-HTTP request: one journal filter finds both.
        TransportFailure::ProxyAuth => (Code::ConnectionRefused, Kind::ProxyAuth, PROXY_AUTH.to_owned()),
        TransportFailure::InvalidResponse(detail) => (
            Code::Generic,
            Kind::InvalidResponse,
            format!(
                "a API respondeu algo que não é uma resposta HTTP válida ({})",
                crate::core::text::truncate(detail, 200)
            ),
        ),
        TransportFailure::Other(detail) => (
            Code::Generic,
            Kind::Transport,
            format!("falha de comunicação com a API ({})", crate::core::text::truncate(detail, 200)),
        ),
    };
    Verdict {
        outcome: Outcome::Failure(code),
        kind,
        http_status: None,
        message: Some(message),
        retry_after: None,
        receipt: None,
        poll_url: None,
    }
}

/// A complete response. A failure always has a message: with nothing readable in the body, it
/// names the status and its reason phrase.
fn response_verdict(response: &Response, rules: &Rules, now: jiff::Timestamp) -> Verdict {
    let mut verdict = read_response(response, rules, now);
    if verdict.message.is_none() && matches!(verdict.outcome, Outcome::Failure(_)) {
        let status = response.status;
        let reason = http::StatusCode::from_u16(status).ok().and_then(|code| code.canonical_reason());
        verdict.message = Some(match reason {
            Some(reason) => format!("a API respondeu HTTP {status} ({reason}) sem mensagem no corpo"),
            None => format!("a API respondeu HTTP {status} sem mensagem no corpo"),
        });
    }
    verdict
}

/// `response_verdict` before the fallback message.
fn read_response(response: &Response, rules: &Rules, now: jiff::Timestamp) -> Verdict {
    let status = response.status;
    let content_type = response.content_type.as_deref();
    let json = parse_json(&response.body, content_type);
    let message = match &json {
        Ok(Some(value)) => {
            rules.response.message(value).or_else(|| from_json_envelope(value)).map(|text| one_line(&text))
        }
        _ => extract_message(&response.body, content_type),
    }
    .filter(|message| !message.is_empty());
    let receipt = match (&json, status) {
        (Ok(Some(_)), 200..=299) => rules.response.receipt(&response.body),
        _ => None,
    };
    let verdict = |outcome: Outcome, kind: Kind, message: Option<String>| Verdict {
        outcome,
        kind,
        http_status: Some(status),
        message,
        retry_after: None,
        receipt: receipt.clone(),
        poll_url: None,
    };
    // Only a 401/403/404 can be about the user or the credentials: the body is folded only then.
    let folded = matches!(status, 401 | 403 | 404).then(|| fold(&String::from_utf8_lossy(&response.body)));
    let says = |patterns: &[String]| {
        folded.as_ref().is_some_and(|body| patterns.iter().any(|pattern| body.contains(pattern.as_str())))
    };
    let kind = Kind::Http(status);
    match status {
        202 | 208 => verdict(Outcome::Processing, kind, message),
        200..=299 => {
            let (outcome, kind, message) = judge_2xx(status, json, message, rules);
            verdict(outcome, kind, message)
        }
        300..=399 => {
            let location = response.location.as_deref().map_or_else(|| "(sem Location)".to_owned(), one_line);
            verdict(
                Outcome::Failure(Code::Rejected),
                Kind::Redirect,
                Some(format!(
                    "a API respondeu {status} redirecionando para {location}: a URL da API provavelmente mudou (confira api.url)"
                )),
            )
        }
        401 | 403 | 404 if says(&rules.user_not_found) => {
            verdict(Outcome::Failure(Code::UserNotFound), kind, message)
        }
        401 | 403 | 404 if says(&rules.invalid_credentials) => {
            verdict(Outcome::Failure(Code::InvalidPassword), kind, message)
        }
        401 => verdict(
            Outcome::Failure(Code::InvalidPassword),
            kind,
            message.or_else(|| Some("credenciais recusadas".to_owned())),
        ),
        403 if message.as_deref().is_some_and(|text| text.contains("Missing Authentication Token")) => {
            verdict(
                Outcome::Failure(Code::Rejected),
                Kind::WrongPath,
                Some(format!(
                    "{}: a URL da API provavelmente está errada (confira o caminho em api.url)",
                    message.as_deref().unwrap_or("")
                )),
            )
        }
        403 if folded.as_deref().is_some_and(mentions_credentials) => {
            verdict(Outcome::Failure(Code::InvalidPassword), kind, message)
        }
        429 => Verdict {
            retry_after: Some(
                retry_after(response.retry_after.as_deref(), now).unwrap_or(DEFAULT_RETRY_AFTER),
            ),
            ..verdict(Outcome::Failure(Code::RateLimited), kind, message)
        },
        503 if response.retry_after.is_some() => Verdict {
            retry_after: Some(
                retry_after(response.retry_after.as_deref(), now).unwrap_or(DEFAULT_RETRY_AFTER),
            ),
            ..verdict(Outcome::Failure(Code::RateLimited), kind, message)
        },
        // Only a proxy answers 407: the API was never reached, so nothing was rejected.
        407 => {
            verdict(Outcome::Failure(Code::ConnectionRefused), Kind::ProxyAuth, Some(PROXY_AUTH.to_owned()))
        }
        400 if message
            .as_deref()
            .is_some_and(|text| CLIENT_CERTIFICATE_PAGES.iter().any(|page| fold(text).contains(page))) =>
        {
            verdict(
                Outcome::Failure(Code::Tls),
                Kind::ClientCertificate,
                Some(format!("{CLIENT_CERTIFICATE} (HTTP 400: {})", message.as_deref().unwrap_or(""))),
            )
        }
        400..=499 => verdict(Outcome::Failure(Code::Rejected), kind, message),
        _ => verdict(Outcome::Failure(Code::Generic), kind, message),
    }
}

/// A 2xx answer's verdict: an unreadable body, what `[api.response]` says of it, or a body that
/// says it failed; otherwise a success. (Outcome, kind, message) for `read_response` to finish.
fn judge_2xx(
    status: u16,
    json: Result<Option<Value>, ()>,
    message: Option<String>,
    rules: &Rules,
) -> (Outcome, Kind, Option<String>) {
    let kind = Kind::Http(status);
    match json {
        Err(()) => (
            Outcome::Failure(Code::Generic),
            Kind::InvalidJson,
            Some(format!("resposta {status} com JSON ilegível")),
        ),
        Ok(value) => match rules.response.judge(value.as_ref()) {
            Some(Judgement::Success) => (Outcome::Success, kind, message),
            Some(Judgement::Processing(_)) => (Outcome::Processing, kind, message),
            Some(Judgement::Failure(found)) => (
                Outcome::Failure(Code::Rejected),
                Kind::RejectedInBody,
                message.or_else(|| {
                    Some(format!(
                        "a API respondeu {status} com status \"{}\" (api.response.failure_values)",
                        one_line(&found)
                    ))
                }),
            ),
            Some(Judgement::Unknown(found)) => {
                let path = rules.response.status_path.as_ref().map_or("", |path| path.source());
                let what = match found {
                    Some(found) => format!(
                        "com status \"{}\", que não está em success_values nem em failure_values",
                        one_line(&found)
                    ),
                    None => format!("sem o campo \"{path}\" (api.response.status_path)"),
                };
                (
                    Outcome::Failure(Code::Generic),
                    Kind::UnknownStatus,
                    Some(format!("a API respondeu {status} {what}")),
                )
            }
            None if value.as_ref().is_some_and(says_it_failed) => (
                Outcome::Failure(Code::Rejected),
                Kind::RejectedInBody,
                message.or_else(|| Some(format!("resposta {status} indica falha no corpo"))),
            ),
            None => (Outcome::Success, kind, message),
        },
    }
}

/// A message cut to one readable line of at most 500 characters.
fn one_line(text: &str) -> String {
    crate::core::text::truncate(text.trim(), 500)
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

/// A 403 whose (folded) body is about credentials rather than permission on the order.
fn mentions_credentials(folded: &str) -> bool {
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
    .any(|word| folded.contains(word))
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
    message.map(|message| one_line(&message)).filter(|message| !message.is_empty())
}

/// The most field errors of a problem details answer kept in a message.
const MAX_FIELD_ERRORS: usize = 5;

/// `{"errors":[{"key","message"}]}`, `{"message","code"}`, `{"error":true,"errorMessage",…}`,
/// and RFC 9457 problem details (`{"type","title","status","detail"}`, with the field errors of
/// `errors`, `validation` or `invalid-params`: field and message, the first few).
fn from_json_envelope(value: &Value) -> Option<String> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(problem) = problem_details(value) {
        return Some(problem);
    }
    if let Some(errors) = value.get("errors").and_then(Value::as_array) {
        let parts: Vec<String> = errors
            .iter()
            .filter_map(|error| {
                let field =
                    |keys: &[&str]| keys.iter().find_map(|key| error.get(*key).and_then(Value::as_str));
                let message = field(&["message", "errorMessage", "description", "detail"])?;
                Some(match field(&["key", "field", "location"]) {
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

/// An RFC 9457 problem (it has `title` or `detail`, and `type` or `status`): the `detail` (else
/// the `title`) and the field errors, which say what is wrong where the detail is generic.
fn problem_details(value: &Value) -> Option<String> {
    let text = |value: &Value, key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let headline = text(value, "detail").or_else(|| text(value, "title"))?;
    if value.get("type").is_none() && value.get("status").is_none() {
        return None;
    }
    let listed = ["errors", "validation", "invalid-params", "invalid_params", "violations", "fields"]
        .iter()
        .find_map(|key| value.get(*key).and_then(Value::as_array));
    let mut fields: Vec<String> = listed
        .into_iter()
        .flatten()
        .filter_map(|error| {
            let message = ["message", "reason", "detail", "title", "description"]
                .iter()
                .find_map(|key| text(error, key));
            let field =
                ["field", "name", "pointer", "path", "key", "propertyPath", "param", "location", "loc"]
                    .iter()
                    .find_map(|key| {
                        text(error, key).or_else(|| {
                            // Prism and FastAPI write where as a list: ["body", "reason"].
                            let parts: Vec<String> = error
                                .get(*key)?
                                .as_array()?
                                .iter()
                                .map(|part| match part {
                                    Value::String(part) => part.clone(),
                                    other => other.to_string(),
                                })
                                .collect();
                            (!parts.is_empty()).then(|| parts.join("."))
                        })
                    })
                    .map(|field| field.trim_start_matches("#/").trim_start_matches('/').replace('/', "."));
            match (field, message) {
                (Some(field), Some(message)) => Some(format!("{field}: {message}")),
                (None, Some(message)) => Some(message),
                (Some(field), None) => Some(field),
                (None, None) => error.as_str().map(str::to_owned),
            }
        })
        .collect();
    let more = fields.len().saturating_sub(MAX_FIELD_ERRORS);
    fields.truncate(MAX_FIELD_ERRORS);
    if more > 0 {
        fields.push(format!("e mais {more}"));
    }
    Some(if fields.is_empty() { headline } else { format!("{headline} ({})", fields.join("; ")) })
}

/// The `<title>` of an HTML page, else its text without tags.
fn from_html(html: &str) -> Option<String> {
    // ASCII lower case keeps every byte where it was, so the offsets found in `lower` are char
    // boundaries of `html` too (full Unicode lower case changes lengths: "İ" is 2 bytes, "i̇" 3).
    let lower = html.to_ascii_lowercase();
    if let Some(start) = lower.find("<title>").map(|at| at + "<title>".len())
        && let Some(length) = lower[start..].find("</title>")
    {
        return Some(html[start..start + length].trim().to_owned());
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
