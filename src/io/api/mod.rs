//! The HTTP client of the cancellation API: one request per attempt, shaped by the request
//! mapping (`mapping::RequestPlan`: the original `POST api.url` without one), with the deadlines
//! kept apart (`connect_timeout` by reqwest, `request_timeout` by our own timer around headers
//! and body), redirects never followed, and every failure turned into a `classify::Exchange` by
//! walking the error chain — including inside `io::Error`, where hyper-rustls hides certificate
//! errors. An asynchronous answer with `async_poll = "location"` is followed by GETs of the URL
//! it gave, on the API's own server only.

pub mod auth;
mod resolver;
pub mod tls;

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};

pub use auth::Auth;
pub use resolver::{DnsFailure, GetAddrInfo, lookup};

use crate::config::Config;
use crate::core::classify::{
    self, Code, Exchange, Kind, MAX_BODY_BYTES, Outcome, Response, Rules, TransportFailure, Verdict,
};
use crate::core::item::Item;
use crate::core::mapping::{AsyncPoll, Method, RenderedRequest, RequestPlan};

/// One attempt's exchange, classified: what the dispatcher decides the item's fate from.
pub use crate::core::dispatch::Exchanged as Attempt;

use crate::io::secrets::Redactor;

/// A client built from the config. Cheap to share: reqwest pools connections inside.
pub struct Client {
    http: reqwest::Client,
    plan: RequestPlan,
    request_timeout: Duration,
    auth: Auth,
    rules: Rules,
    /// `api.proxy`, named in the message of every failure before a response.
    proxy: Option<String>,
    redactor: Redactor,
    /// `api.check_url`, for `extrator check`.
    check_url: Option<String>,
    /// The client certificate's expiry and subject, when mutual TLS is configured.
    certificate: Option<(jiff::Timestamp, String)>,
}

impl Client {
    /// What masks every secret this client sends, in every encoding (for texts made elsewhere
    /// from what it saw: the support report).
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Builds the client. Fails (pt-BR, naming the key) when the CA bundle, a header or the
    /// password cannot be used.
    pub fn new(config: &Config) -> Result<Client, String> {
        let api = &config.api;
        let plan = api.request_plan(api.request_zone()?);
        // The secrets `{secret:NAME}` names, in the request and in `[api.headers]`.
        let mut names: Vec<String> = plan.secret_names().map(str::to_owned).collect();
        for value in api.headers.values() {
            names.extend(crate::io::secrets::placeholders(value).map(str::to_owned));
        }
        let named = crate::io::secrets::named(&config.secrets, names.iter().map(String::as_str))?;
        let mut redactor = Redactor::of_secrets(named.values().map(|secret| secret.expose()));
        let mut headers = HeaderMap::new();
        for (name, value) in &api.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("api.headers: \"{name}\" não é um nome de cabeçalho HTTP válido"))?;
            let value = crate::io::secrets::fill(value, &named)
                .map_err(|why| format!("api.headers.{name}: {why}"))?;
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| format!("api.headers.{name}: o valor tem caracteres não permitidos"))?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(api.connect_timeout.get())
            .dns_resolver(std::sync::Arc::new(GetAddrInfo { timeout: api.connect_timeout.get() }))
            .no_proxy();
        if let Some(url) = &api.proxy {
            let mut proxy = reqwest::Proxy::all(url)
                .map_err(|_| format!("api.proxy: \"{url}\" não é uma URL de proxy válida"))?;
            if let (Some(user), Some(path)) = (&api.proxy_user, &api.proxy_password_file) {
                let password = crate::io::secrets::read_secret(path, "api.proxy_password_file")?;
                redactor.add_secret(password.expose());
                redactor.add_basic(user, password.expose());
                proxy = proxy.basic_auth(user, password.expose());
            }
            builder = builder.proxy(proxy);
        }
        if let Some(path) = &api.ca_file {
            let pem = std::fs::read(path).map_err(|error| {
                format!(
                    "api.ca_file: não foi possível ler {}: {}",
                    path.display(),
                    crate::core::text::io_error(&error)
                )
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
                format!("api.ca_file: {} não contém certificados PEM válidos", path.display())
            })?;
            builder = builder.tls_certs_merge(certificates);
        }
        let certificate = tls::load(api)?;
        let certificate = certificate.map(|certificate| {
            builder = std::mem::take(&mut builder).identity(certificate.identity);
            (certificate.not_after, certificate.subject)
        });
        let http = builder.build().map_err(|error| {
            let causes: Vec<String> = causes(&error).iter().skip(1).map(ToString::to_string).collect();
            let detail = if causes.is_empty() { error.to_string() } else { causes.join(": ") };
            match &certificate {
                Some(_) => {
                    format!("api.client_certificate: o certificado de cliente não pôde ser usado ({detail})")
                }
                None => format!("não foi possível criar o cliente HTTP: {detail}"),
            }
        })?;
        let auth = Auth::new(&api.auth)?;
        // Fixed credentials written in the config's headers are secrets too, when echoed.
        for (name, value) in &api.headers {
            redactor.add_fixed_header(name, value, plan.idempotency_header());
        }
        for (name, template) in &api.request.headers {
            redactor.add_fixed_header(name, template.0.source(), plan.idempotency_header());
        }
        let redactor = redactor.and(&auth.redactor());
        Ok(Client {
            http,
            plan: plan.with_secrets(named),
            request_timeout: api.request_timeout.get(),
            auth,
            rules: Rules::from_config(config),
            proxy: api.proxy.clone(),
            redactor,
            check_url: api.check_url.clone(),
            certificate,
        })
    }

    /// Sends one item and classifies the outcome. Never fails: every failure is a verdict. An
    /// item the API is processing with `async_poll = "location"` is polled at its URL instead.
    pub async fn send(&self, item: &Item) -> Attempt {
        let started_at = jiff::Timestamp::now();
        let clock = Instant::now();
        let polling = match self.rules.response.async_poll {
            AsyncPoll::Location => item.poll_url.clone().map(Ok),
            AsyncPoll::Get if item.processing_since.is_some() => self.plan.status_url(item),
            AsyncPoll::Get | AsyncPoll::Resend => None,
        };
        let (exchange, verdict) = match polling {
            Some(Ok(url)) => {
                let exchange = self.redacted(self.authenticated(|| self.http.get(&url)).await).await;
                let mut verdict = classify::classify_poll(&exchange, &self.rules, jiff::Timestamp::now());
                self.follow_location(&exchange, &url, &mut verdict);
                (exchange, verdict)
            }
            Some(Err(error)) => {
                let exchange = Exchange::NotSent(error.to_string());
                let verdict = self.classify(&exchange);
                (exchange, verdict)
            }
            None => match self.plan.render(item) {
                Ok(request) => {
                    let exchange = self.redacted(self.authenticated(|| self.build(&request)).await).await;
                    let mut verdict = self.classify(&exchange);
                    self.follow_location(&exchange, &request.url, &mut verdict);
                    (exchange, verdict)
                }
                Err(error) => {
                    let exchange = Exchange::NotSent(error.to_string());
                    let verdict = self.classify(&exchange);
                    (exchange, verdict)
                }
            },
        };
        let excerpt = match &exchange {
            Exchange::Response(response) => classify::excerpt(&response.body),
            Exchange::TokenEndpoint(inner) => match inner.as_ref() {
                Exchange::Response(response) => classify::excerpt(&response.body),
                _ => None,
            },
            Exchange::Transport(_) | Exchange::NotSent(_) => None,
        };
        Attempt { started_at, duration: clock.elapsed(), verdict, excerpt }
    }

    /// The exchange with every secret this client sent masked in what came back (the body, the
    /// `Location`), before anything reads it: the message, the receipt and the excerpt are made
    /// from the masked text.
    async fn redacted(&self, exchange: Exchange) -> Exchange {
        if let Exchange::TokenEndpoint(inner) = exchange {
            return Exchange::TokenEndpoint(Box::new(Box::pin(self.redacted(*inner)).await));
        }
        let Exchange::Response(mut response) = exchange else { return exchange };
        let token = self.auth.current_token().await;
        let body = String::from_utf8_lossy(&response.body);
        let masked = self.redactor.redact(&body, token.as_deref());
        if masked != body {
            response.body = masked.into_bytes();
        }
        response.location =
            response.location.map(|location| self.redactor.redact(&location, token.as_deref()));
        Exchange::Response(response)
    }

    /// Sends `request()` with the credentials; with login, once more with a fresh token on a 401.
    async fn authenticated(&self, request: impl Fn() -> reqwest::RequestBuilder) -> Exchange {
        let (mut exchange, used) = self.with_credentials(request(), None).await;
        if self.auth.renews_on_401()
            && let Some(used) = used
            && matches!(&exchange, Exchange::Response(response) if response.status == 401)
        {
            // The token may have expired or been revoked: a new one, once (shared by the
            // requests that met the same 401 together).
            exchange = self.with_credentials(request(), Some(used)).await.0;
        }
        exchange
    }

    /// The reqwest request of a rendered one: the idempotency header first, then the templated
    /// headers, then the body with its type (the original request's order).
    fn build(&self, request: &RenderedRequest) -> reqwest::RequestBuilder {
        let method = match request.method {
            Method::POST => reqwest::Method::POST,
            Method::PUT => reqwest::Method::PUT,
            Method::PATCH => reqwest::Method::PATCH,
            Method::DELETE => reqwest::Method::DELETE,
        };
        let mut builder = self.http.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &request.body {
            builder = builder.header(CONTENT_TYPE, body.content_type).body(body.bytes.clone());
        }
        builder
    }

    /// With `async_poll = "location"`, a 202's `Location` (resolved against the request's URL)
    /// becomes the URL to poll — on the API's own server only: the credentials never go elsewhere.
    fn follow_location(&self, exchange: &Exchange, request_url: &str, verdict: &mut Verdict) {
        if self.rules.response.async_poll != AsyncPoll::Location || verdict.outcome != Outcome::Processing {
            return;
        }
        let Exchange::Response(Response { location: Some(location), .. }) = exchange else { return };
        let Ok(base) = reqwest::Url::parse(request_url) else { return };
        match base.join(location.trim()) {
            Ok(target) if target.origin() == base.origin() => verdict.poll_url = Some(target.to_string()),
            _ => {
                verdict.outcome = Outcome::Failure(Code::Rejected);
                verdict.kind = Kind::ForeignLocation;
                verdict.message = Some(format!(
                    "a API aceitou o cancelamento e mandou consultar o resultado em \"{}\", fora do servidor \
                     da API: por segurança o extrator não envia as credenciais para lá (confira com o \
                     fornecedor, ou use api.response.async_poll = \"resend\")",
                    crate::core::text::truncate(location, 200)
                ));
            }
        }
    }

    /// A harmless GET of the request's URL (rendered for a sample item), with or without the
    /// credentials, for `extrator check`. It cancels nothing: a GET never does.
    pub async fn probe_get(&self, authenticated: bool) -> Verdict {
        let url = self.sample_url();
        let exchange = if authenticated {
            self.authenticated(|| self.http.get(&url)).await
        } else {
            perform(self.http.get(&url), self.request_timeout).await
        };
        self.classify(&self.redacted(exchange).await)
    }

    /// The client certificate's expiry and subject, when one is configured.
    pub fn certificate(&self) -> Option<(jiff::Timestamp, &str)> {
        self.certificate.as_ref().map(|(not_after, subject)| (*not_after, subject.as_str()))
    }

    /// The token endpoint (a login or OAuth2), when the credentials are exchanged for a token.
    pub fn token_endpoint(&self) -> Option<&str> {
        self.auth.token_endpoint()
    }

    /// Obtains a token now (for `check`): how long it lasts, or why there is none (classified:
    /// 02/03, or the transport's code).
    pub async fn obtain_token(&self) -> Result<Option<Duration>, Verdict> {
        match self.auth.obtain(&self.http, self.request_timeout).await {
            Ok(life) => Ok(life),
            Err(exchange) => {
                Err(self.classify(&self.redacted(Exchange::TokenEndpoint(Box::new(exchange))).await))
            }
        }
    }

    /// `api.check_url`, if configured.
    pub fn check_url(&self) -> Option<&str> {
        self.check_url.as_deref()
    }

    /// A GET of `url` with the credentials (for `check`'s `api.check_url`).
    pub async fn get_with_credentials(&self, url: &str) -> Verdict {
        let exchange = self.authenticated(|| self.http.get(url)).await;
        self.classify(&self.redacted(exchange).await)
    }

    /// The URL requests go to, rendered for the sample item (the fixed part if that fails).
    pub fn sample_url(&self) -> String {
        self.plan
            .render(&self.plan.sample())
            .map_or_else(|_| self.plan.url_template().fixed_prefix(), |request| request.url)
    }

    /// The verdict on an exchange; with a proxy, failures before any response say so.
    fn classify(&self, exchange: &Exchange) -> Verdict {
        let mut verdict = classify::classify(exchange, &self.rules, jiff::Timestamp::now());
        // The message is decoded from the masked body (JSON escapes, entities): masked again, so
        // that no decoding can bring a secret back.
        verdict.message = verdict.message.map(|message| self.redactor.redact(&message, None));
        if let (Some(proxy), Exchange::Transport(_)) = (&self.proxy, exchange) {
            verdict.message = verdict.message.map(|message| format!("{message} (via proxy {proxy})"));
        }
        verdict
    }

    /// Adds the credentials (logging in first when needed) and performs the request.
    /// Performs `request` with the credentials; the token it carried, if one. `refused` is a
    /// token the API refused: a new one is obtained unless another request already did.
    async fn with_credentials(
        &self,
        request: reqwest::RequestBuilder,
        refused: Option<crate::core::secret::Secret>,
    ) -> (Exchange, Option<crate::core::secret::Secret>) {
        match self.auth.apply(request, &self.http, self.request_timeout, refused.as_ref()).await {
            Ok((request, token)) => (perform(request, self.request_timeout).await, token),
            Err(exchange) => (exchange, None),
        }
    }
}

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("extrator/", env!("CARGO_PKG_VERSION"));

/// Sends a request and reads the response within `request_timeout` (headers and body together),
/// telling apart "no answer" from "answer that stalled".
pub(crate) async fn perform(request: reqwest::RequestBuilder, request_timeout: Duration) -> Exchange {
    let deadline = tokio::time::Instant::now() + request_timeout;
    let mut response = match tokio::time::timeout_at(deadline, request.send()).await {
        Err(_) => return Exchange::Transport(TransportFailure::ResponseTimeout),
        Ok(Err(error)) => return Exchange::Transport(transport_failure(&error)),
        Ok(Ok(response)) => response,
    };
    let header = |name| {
        response.headers().get(name).and_then(|value: &HeaderValue| value.to_str().ok()).map(str::to_owned)
    };
    let mut reduced = Response {
        status: response.status().as_u16(),
        content_type: header(CONTENT_TYPE),
        retry_after: header(RETRY_AFTER),
        location: header(LOCATION),
        body: Vec::new(),
    };
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return Exchange::Transport(TransportFailure::BodyTimeout),
            Ok(Err(error)) => return Exchange::Transport(body_failure(&error)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => {
                let room = MAX_BODY_BYTES.saturating_sub(reduced.body.len());
                reduced.body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if reduced.body.len() >= MAX_BODY_BYTES {
                    break;
                }
            }
        }
    }
    Exchange::Response(reduced)
}

/// Every error in the chain, descending into `io::Error`s, whose `source()` skips the error they
/// wrap (that is where hyper-rustls puts certificate errors).
fn causes<'e>(error: &'e (dyn StdError + 'static)) -> Vec<&'e (dyn StdError + 'static)> {
    let mut found = Vec::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        found.push(cause);
        if let Some(inner) = cause.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            found.extend(causes(inner));
        }
        next = cause.source();
    }
    found
}

/// A failure before any response.
fn transport_failure(error: &reqwest::Error) -> TransportFailure {
    let chain = causes(error);
    for cause in &chain {
        if let Some(dns) = cause.downcast_ref::<DnsFailure>() {
            return match dns {
                DnsFailure::NoName => TransportFailure::DnsNoName,
                DnsFailure::Unavailable => TransportFailure::DnsUnavailable,
                DnsFailure::Timeout => TransportFailure::DnsTimeout,
                DnsFailure::Other(detail) => TransportFailure::Other(detail.clone()),
            };
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return tls_failure(tls);
        }
    }
    // The proxy's answer to CONNECT (hyper-util's tunnel errors have no public type to downcast).
    // Checked before the I/O errors: a proxy that refuses and hangs up is the proxy's doing. Not
    // reaching the proxy at all goes on to the I/O errors below (refused, unreachable, …).
    let tunnel = chain.iter().map(ToString::to_string).find(|cause| cause.starts_with("tunnel error: "));
    if let Some(tunnel) = tunnel.filter(|cause| !cause.ends_with("failed to create underlying connection")) {
        let detail = match tunnel.trim_start_matches("tunnel error: ") {
            "proxy authorization required" => return TransportFailure::ProxyAuth,
            // Some proxies answer wrong credentials with 401 or 403, not 407.
            "unsuccessful" => {
                "o proxy recusou abrir o túnel (CONNECT) até a API: confira com a equipe de rede \
                               se ele libera a porta da API e, se exige autenticação, api.proxy_user e \
                               api.proxy_password_file"
                    .to_owned()
            }
            "io error establishing tunnel" | "unexpected end of file" => {
                "o proxy encerrou a conexão ao abrir o túnel (CONNECT) até a API".to_owned()
            }
            other => format!("falha no túnel do proxy: {other}"),
        };
        return TransportFailure::Proxy(detail);
    }
    for cause in &chain {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return TransportFailure::ConnectRefused,
                std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
                    return TransportFailure::Unreachable;
                }
                std::io::ErrorKind::TimedOut => return TransportFailure::ConnectTimeout,
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof => return TransportFailure::Reset,
                _ => {}
            }
        }
    }
    if error.is_timeout() {
        // reqwest's only deadline is the connect timeout; ours is handled by the caller.
        return TransportFailure::ConnectTimeout;
    }
    // reqwest's own line names the URL; its causes say what went wrong.
    let causes: Vec<String> = chain.iter().skip(1).map(ToString::to_string).collect();
    let text = if causes.is_empty() { error.to_string() } else { causes.join(": ") };
    // hyper's own error, asked rather than read: the connection ended mid-answer, or what came
    // back is not an HTTP response.
    for cause in &chain {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                return TransportFailure::Reset;
            }
            if hyper.is_parse() || hyper.is_parse_too_large() || hyper.is_parse_status() {
                return TransportFailure::InvalidResponse(text);
            }
        }
    }
    TransportFailure::Other(text)
}

/// A failure while reading the body: the connection went away mid-response.
fn body_failure(error: &reqwest::Error) -> TransportFailure {
    match transport_failure(error) {
        TransportFailure::Other(_) => TransportFailure::Reset,
        other => other,
    }
}

/// A rustls error in support's words.
fn tls_failure(error: &rustls::Error) -> TransportFailure {
    use rustls::CertificateError as Cert;
    let certificate = |detail: &str| TransportFailure::Tls { certificate: true, detail: detail.to_owned() };
    match error {
        rustls::Error::InvalidCertificate(problem) => match problem {
            Cert::UnknownIssuer => certificate(
                "emitido por autoridade desconhecida (autoassinado, ou a CA não está em api.ca_file)",
            ),
            Cert::NotValidForName | Cert::NotValidForNameContext { .. } => {
                certificate("não vale para o nome do servidor em api.url")
            }
            Cert::Expired | Cert::ExpiredContext { .. } => certificate("expirado"),
            Cert::NotValidYet | Cert::NotValidYetContext { .. } => {
                certificate("ainda não está válido (confira o relógio)")
            }
            Cert::Revoked => certificate("revogado"),
            Cert::BadSignature => {
                certificate("assinatura inválida (não foi emitido pela autoridade que diz)")
            }
            other => certificate(&format!("{other:?}")),
        },
        rustls::Error::AlertReceived(alert) if client_certificate_alert(*alert) => {
            TransportFailure::ClientCertificate(format!(
                "o servidor encerrou a negociação com o alerta TLS {alert:?}"
            ))
        }
        other => TransportFailure::Tls { certificate: false, detail: other.to_string() },
    }
}

/// The TLS alerts a server sends when it wants a client certificate it did not get, or refuses
/// the one it got.
fn client_certificate_alert(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as Alert;
    matches!(
        alert,
        Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::CertificateUnknown
            | Alert::UnsupportedCertificate
            | Alert::UnknownCA
            | Alert::AccessDenied
    )
}
