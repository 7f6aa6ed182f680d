//! `Config::check`: the rules that span keys (bounds, what requires what, URLs, secrets' names),
//! each refusal naming the key and saying what to write, in pt-BR. Pure but for
//! `load::has_systemd_credential`, which asks whether systemd handed over a credential.

use std::time::Duration;

use super::load::has_systemd_credential;
use super::{
    ApiConfig, AuthMode, Config, MAX_ATTEMPTS, MAX_CONCURRENCY, MAX_RATE, MAX_SOURCES, MIN_RATE,
    MetricsConfig, SourceConfig,
};

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
        self.check_bounds()?;
        self.check_endpoint()?;
        self.check_credentials()?;
        self.check_mapping()?;
        self.check_queue()?;
        self.metrics.check()?;
        check_sources(&self.sources)
    }

    /// Every duration and count within its documented range.
    fn check_bounds(&self) -> Result<(), (String, String)> {
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
        Ok(())
    }

    /// Where requests go: the URL, the proxy and its credentials, the two timeouts.
    fn check_endpoint(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
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
        Ok(())
    }

    /// The credentials: each auth mode's keys, client certificates, header secrets.
    fn check_credentials(&self) -> Result<(), (String, String)> {
        self.check_user_and_password()?;
        self.check_oauth2()?;
        self.check_certificates_and_headers()?;
        Ok(())
    }

    /// `basic` and `login`: the user, the password (one source), the login request.
    fn check_user_and_password(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
        let auth = &self.api.auth;
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
        Ok(())
    }

    /// `oauth2`: the token URL, the client, its secret (one source).
    fn check_oauth2(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
        let auth = &self.api.auth;
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
        Ok(())
    }

    /// Client certificates, `check_url`, and credentials written in headers.
    fn check_certificates_and_headers(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
        let api = &self.api;
        let auth = &self.api.auth;
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
        Ok(())
    }

    /// The request and the response mapping: secrets' names, the status URL, the rate.
    fn check_mapping(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
        let api = &self.api;
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
        Ok(())
    }

    /// The retry schedule and the queue's paths.
    fn check_queue(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
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
        Ok(())
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
