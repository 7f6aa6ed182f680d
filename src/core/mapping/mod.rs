//! Request and response mapping: the request a customer's API expects (`[api.request]`: method,
//! URL with placeholders, a body that mirrors its JSON or form, templated headers, the
//! idempotency header) and how its answer is read (`[api.response]`). Without `[api.request]`
//! the request is the original one — `POST api.url` with the item's fields as JSON.
//!
//! Everything here is pure: templates are parsed when the config loads (so every mistake is a
//! pt-BR error with its line and key), and `RequestPlan::render` builds one item's request as a
//! value, with no I/O; `api::Client` sends it.

pub mod body;
pub mod path;
pub mod response;
pub mod template;

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

pub use body::BodyNode;
pub use path::JsonPath;
pub use response::{AsyncPoll, Judgement, ResponseConfig};
pub use template::{Field, Modifier, Template, Use};

use crate::core::item::Item;

/// The methods a cancellation may be sent with (written in any case in the config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Method {
    #[default]
    POST,
    PUT,
    PATCH,
    DELETE,
}

impl Method {
    /// Every method, as the config names them.
    pub const ALL: [Method; 4] = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
        }
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Method, D::Error> {
        let text = String::deserialize(deserializer)?;
        Method::ALL.into_iter().find(|method| method.as_str().eq_ignore_ascii_case(text.trim())).ok_or_else(
            || {
                serde::de::Error::custom(format!(
                    "método desconhecido \"{text}\"; use um de: POST, PUT, PATCH, DELETE"
                ))
            },
        )
    }
}

impl Serialize for Method {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `application/json`.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// The header that carries the item's idempotency key unless the config names another (or none).
pub const DEFAULT_IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// `[api.request]`. Each key left out keeps the original request's behaviour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestConfig {
    pub method: Method,
    /// The URL, with placeholders in its path or query; `api.url` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<UrlTemplate>,
    pub format: Format,
    /// The body; the item's fields as JSON when absent (none for `DELETE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyNode>,
    /// Headers of the cancellation request, with placeholders (`[api.headers]` go on every request).
    pub headers: BTreeMap<String, TextTemplate>,
    /// The header that carries the idempotency key; `""` for none (APIs that refuse unknown headers).
    pub idempotency_header: String,
    /// The time zone of date patterns such as `dd/mm/aaaa HH:MM`: `"local"` (the server's),
    /// `"UTC"` or a name such as `"America/Sao_Paulo"`.
    pub time_zone: String,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            method: Method::POST,
            url: None,
            format: Format::Json,
            body: None,
            headers: BTreeMap::new(),
            idempotency_header: DEFAULT_IDEMPOTENCY_HEADER.to_owned(),
            time_zone: "local".to_owned(),
        }
    }
}

/// A template for a text (header values): types and the whole `extra` are refused at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextTemplate(pub Template);

impl<'de> Deserialize<'de> for TextTemplate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TextTemplate, D::Error> {
        let text = String::deserialize(deserializer)?;
        Template::parse(&text, Use::Text).map(TextTemplate).map_err(serde::de::Error::custom)
    }
}

impl Serialize for TextTemplate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.source())
    }
}

/// A rendered URL as it goes on the wire (the URL parser's normal form: what `preview` shows is
/// what is sent), refused when a value made a path segment `.` or `..`: the parser would remove
/// it and the segment before it, and the request — with the service's credentials — would go to
/// another resource (`DELETE /v1/lojas/../pedidos/..` is `DELETE /v1/`). Percent-encoding cannot
/// save it: `%2E` is a dot segment to the URL standard too; and `%` in a value is itself encoded.
fn as_sent(url: String) -> Result<String, String> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let path =
        path.split_once("://").map_or(path, |(_, rest)| rest.split_once('/').map_or("", |(_, path)| path));
    let dots = |segment: &str| {
        let folded = segment.to_ascii_lowercase().replace("%2e", ".");
        folded == "." || folded == ".."
    };
    if let Some(segment) = path.split('/').find(|segment| dots(segment)) {
        return Err(format!(
            "um valor do pedido formaria o segmento \"{segment}\" no caminho da URL, que levaria a requisição \
             a outro endereço; nada foi enviado (um número de pedido ou filial não pode ser \".\" nem \"..\")"
        ));
    }
    Ok(url::Url::parse(&url).map_or(url, |parsed| parsed.to_string()))
}

/// The request URL: `http(s)://host[:port]` fixed by the config, placeholders only in the path
/// or query (an order number must never choose the server the credentials go to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(pub Template);

impl UrlTemplate {
    /// Parses and checks a URL template; the error is pt-BR.
    pub fn parse(text: &str) -> Result<UrlTemplate, String> {
        let template = Template::parse(text, Use::Text)?;
        let prefix = template.fixed_prefix();
        let after_scheme = prefix.split_once("://").map_or("", |(_, rest)| rest);
        if template.placeholders().next().is_some() && !after_scheme.contains(['/', '?', '#']) {
            return Err(format!(
                "\"{text}\": os marcadores só podem estar no caminho ou na consulta da URL, nunca no \
                 servidor ou na porta (o servidor da API é fixo na configuração)"
            ));
        }
        let example = template.with_stand_in("x");
        match crate::core::http_url::check(&example) {
            Ok(_) => {}
            Err(crate::core::http_url::Refusal::Credentials) => {
                return Err(
                    "não coloque usuário ou senha na URL: use [api.auth] (user e password_file)".to_owned()
                );
            }
            Err(crate::core::http_url::Refusal::Invalid) => {
                return Err(format!(
                    "\"{example}\" não é uma URL válida: use http://host/caminho ou https://host/caminho"
                ));
            }
        }
        // A secret may go in the query (an `apikey=`), never in the path, where servers, proxies
        // and logs write it down in clear.
        let query_at = text.find('?');
        for placeholder in template.placeholders() {
            if matches!(placeholder.field, Field::Secret(_))
                && query_at.is_none_or(|query| text.find(&placeholder.written).is_some_and(|at| at < query))
            {
                return Err(format!(
                    "\"{text}\": {} só pode estar na consulta da URL (depois do `?`), nunca no caminho",
                    placeholder.written
                ));
            }
        }
        Ok(UrlTemplate(template))
    }
}

impl<'de> Deserialize<'de> for UrlTemplate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<UrlTemplate, D::Error> {
        let text = String::deserialize(deserializer)?;
        UrlTemplate::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for UrlTemplate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.source())
    }
}

impl RequestConfig {
    /// A rule that spans keys is broken: the key and why (pt-BR).
    pub fn problem(&self) -> Option<(String, String)> {
        if self.method == Method::DELETE && self.body.is_some() {
            return Some((
                "api.request.body".to_owned(),
                "o método DELETE não leva corpo: tire [api.request.body] ou use POST, PUT ou PATCH"
                    .to_owned(),
            ));
        }
        if self.format == Format::Form {
            if let Some((key, why)) = self.body.as_ref().and_then(BodyNode::not_flat) {
                return Some((key, why));
            }
            if self.body.is_none() && self.method != Method::DELETE {
                return Some((
                    "api.request.body".to_owned(),
                    "com format = \"form\" informe os campos do formulário em [api.request.body]".to_owned(),
                ));
            }
        }
        for name in self.headers.keys() {
            if http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Some((
                    format!("api.request.headers.{name}"),
                    format!("\"{name}\" não é um nome de cabeçalho HTTP válido"),
                ));
            }
        }
        for (name, template) in &self.headers {
            let fixed = template.0.with_stand_in("");
            if !header_text_is_valid(&fixed) {
                return Some((
                    format!("api.request.headers.{name}"),
                    "o valor tem caracteres que não podem ir num cabeçalho HTTP (acentos, quebras de linha)"
                        .to_owned(),
                ));
            }
        }
        let idempotency = self.idempotency_header.trim();
        if !idempotency.is_empty() && http::header::HeaderName::from_bytes(idempotency.as_bytes()).is_err() {
            return Some((
                "api.request.idempotency_header".to_owned(),
                format!(
                    "\"{idempotency}\" não é um nome de cabeçalho HTTP válido (ou use \"\" para não enviar)"
                ),
            ));
        }
        None
    }
}

/// Whether a header value can go on the wire as is: visible ASCII, spaces and tabs.
fn header_text_is_valid(text: &str) -> bool {
    text.bytes().all(|byte| byte == b'\t' || (0x20..0x7f).contains(&byte))
}

/// What a URL placeholder's value is percent-encoded against: all but the unreserved characters.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The request of one config, ready to render items.
#[derive(Debug, Clone)]
pub struct RequestPlan {
    method: Method,
    url: Template,
    format: Format,
    body: PlanBody,
    headers: Vec<(String, Template)>,
    idempotency_header: Option<String>,
    zone: jiff::tz::TimeZone,
    /// The values of the `{secret:NAME}` placeholders (`with_secrets`), or their masks.
    secrets: BTreeMap<String, crate::core::secret::Secret>,
    /// `api.response.status_url`, with `async_poll = "get"`.
    status_url: Option<Template>,
}

/// The body of a plan.
#[derive(Debug, Clone)]
enum PlanBody {
    /// The item's fields, as the original request sent them.
    Default,
    None,
    Template(BodyNode),
}

/// One item's request, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedRequest {
    pub method: Method,
    pub url: String,
    /// The idempotency header first (as the original request), then the templated headers.
    pub headers: Vec<(String, String)>,
    pub body: Option<RenderedBody>,
}

/// A rendered body and its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedBody {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Why an item's request could not be built: the config key and the pt-BR reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for MappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl RequestPlan {
    /// The plan of `[api.request]` (the original request to `api_url` when it sets nothing),
    /// with `[api.response]`'s status URL, its date patterns in `zone` (`ApiConfig::request_zone`,
    /// resolved by the config's edge). `ApiConfig::request_plan` calls it with the config's parts.
    pub fn new(
        request: &RequestConfig,
        api_url: &str,
        response: &ResponseConfig,
        zone: jiff::tz::TimeZone,
    ) -> RequestPlan {
        let url = match &request.url {
            Some(url) => url.0.clone(),
            None => Template::literal(api_url),
        };
        let body = match (&request.body, request.method) {
            (Some(body), _) => PlanBody::Template(body.clone()),
            (None, Method::DELETE) => PlanBody::None,
            (None, _) => PlanBody::Default,
        };
        let idempotency = request.idempotency_header.trim();
        RequestPlan {
            method: request.method,
            url,
            format: request.format,
            body,
            headers: request.headers.iter().map(|(name, value)| (name.clone(), value.0.clone())).collect(),
            idempotency_header: (!idempotency.is_empty()).then(|| idempotency.to_owned()),
            zone,
            secrets: BTreeMap::new(),
            status_url: response.status_url.as_ref().map(|url| url.0.clone()),
        }
    }

    /// The URL an item's status is read from with `async_poll = "get"`; `None` without one.
    pub fn status_url(&self, item: &Item) -> Option<Result<String, MappingError>> {
        let template = self.status_url.as_ref()?;
        let input = template::Input { item, zone: &self.zone, secrets: &self.secrets };
        let fail = |message: String| MappingError { key: "api.response.status_url".to_owned(), message };
        if let Some(missing) = template.missing(&input) {
            let why = if matches!(missing.field, Field::Receipt) {
                "a API ainda não deu um protocolo ao pedido ({receipt}): confira api.response.receipt_path"
                    .to_owned()
            } else {
                format!("o pedido não tem valor para {}, que a URL usa", missing.written)
            };
            return Some(Err(fail(why)));
        }
        Some(
            template
                .render_text(&input, |value, text| text.extend(utf8_percent_encode(value, URL_VALUE)))
                .and_then(as_sent)
                .map_err(fail),
        )
    }

    /// The plan with the values of its `{secret:NAME}` placeholders (read at the edge).
    pub fn with_secrets(mut self, secrets: BTreeMap<String, crate::core::secret::Secret>) -> RequestPlan {
        self.secrets = secrets;
        self
    }

    /// The plan with every secret shown as `***` (`preview`, `check`): what is sent, masked.
    pub fn masked(mut self) -> RequestPlan {
        let names: Vec<String> = self.secret_names().map(str::to_owned).collect();
        self.secrets = names
            .into_iter()
            .map(|name| (name, crate::core::secret::Secret::new(crate::core::secret::MASK.to_owned())))
            .collect();
        self
    }

    /// The names of the secrets the request uses, each once.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        let mut templates: Vec<&Template> = vec![&self.url];
        templates.extend(self.headers.iter().map(|(_, template)| template));
        templates.extend(self.status_url.iter());
        if let PlanBody::Template(node) = &self.body {
            templates.extend(node.templates().into_iter().map(|(_, template)| template));
        }
        let mut names: Vec<&str> = templates.into_iter().flat_map(Template::secret_names).collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter()
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The URL template (a literal `api.url` without mapping).
    pub fn url_template(&self) -> &Template {
        &self.url
    }

    /// The idempotency header's name, if one is sent.
    pub fn idempotency_header(&self) -> Option<&str> {
        self.idempotency_header.as_deref()
    }

    /// Builds `item`'s request. Fails (naming the key) when the item has no value for a URL
    /// placeholder, a value does not fit its type, or a header would carry what HTTP forbids.
    pub fn render(&self, item: &Item) -> Result<RenderedRequest, MappingError> {
        let fail = |key: &str, message: String| MappingError { key: key.to_owned(), message };
        let input = template::Input { item, zone: &self.zone, secrets: &self.secrets };
        if let Some(missing) = self.url.missing(&input) {
            return Err(fail(
                "api.request.url",
                format!("o pedido não tem valor para {}, que a URL usa", missing.written),
            ));
        }
        let url = self
            .url
            .render_text(&input, |value, text| text.extend(utf8_percent_encode(value, URL_VALUE)))
            .and_then(as_sent)
            .map_err(|why| fail("api.request.url", why))?;
        let mut headers = Vec::with_capacity(self.headers.len() + 1);
        if let Some(name) = &self.idempotency_header {
            headers.push((name.clone(), item.idempotency_key.clone()));
        }
        for (name, template) in &self.headers {
            let key = || format!("api.request.headers.{name}");
            if template.lone_placeholder().is_some() && template.missing(&input).is_some() {
                continue;
            }
            let value = template.render_text(&input, template::as_is).map_err(|why| fail(&key(), why))?;
            if !header_text_is_valid(&value) {
                return Err(fail(
                    &key(),
                    format!(
                        "o valor \"{}\" tem caracteres que não podem ir num cabeçalho HTTP (acentos, quebras de linha)",
                        crate::core::text::terminal_safe(&value)
                    ),
                ));
            }
            headers.push((name.clone(), value));
        }
        let body = match &self.body {
            PlanBody::None => None,
            PlanBody::Default => Some(RenderedBody {
                content_type: "application/json",
                bytes: serde_json::to_vec(&default_body(item)).unwrap_or_default(),
            }),
            PlanBody::Template(node) => {
                let rendered = node
                    .render(&input)
                    .map_err(|error| MappingError { key: error.key(), message: error.message })?
                    .unwrap_or(body::Rendered::Object(Vec::new()));
                Some(match self.format {
                    Format::Json => RenderedBody {
                        content_type: "application/json",
                        bytes: serde_json::to_vec(&rendered).unwrap_or_default(),
                    },
                    Format::Form => RenderedBody {
                        content_type: "application/x-www-form-urlencoded",
                        bytes: form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(rendered.form_pairs())
                            .finish()
                            .into_bytes(),
                    },
                })
            }
        };
        Ok(RenderedRequest { method: self.method, url, headers, body })
    }

    /// An example item with a value for every field the plan uses (`extra` keys included, typed
    /// as their placeholders ask), for `extrator preview` and `extrator check`.
    pub fn sample(&self) -> Item {
        let mut templates: Vec<&Template> = vec![&self.url];
        templates.extend(self.headers.iter().map(|(_, template)| template));
        if let PlanBody::Template(node) = &self.body {
            templates.extend(node.templates().into_iter().map(|(_, template)| template));
        }
        sample_item(templates.into_iter().flat_map(Template::placeholders))
    }
}

/// The original request's body: the item's fields, `customer` and `extra` when present.
pub fn default_body(item: &Item) -> Value {
    let mut body = Map::new();
    body.insert("order".into(), Value::String(item.order.clone()));
    body.insert("branch".into(), Value::String(item.branch.clone()));
    body.insert("reason".into(), Value::String(item.reason.clone()));
    body.insert("cancelled_at".into(), Value::String(item.cancelled_at.clone()));
    if let Some(customer) = &item.customer {
        body.insert("customer".into(), Value::String(customer.clone()));
    }
    if let Some(extra) = &item.extra {
        body.insert("extra".into(), Value::Object(extra.clone()));
    }
    Value::Object(body)
}

/// An example item: order 123456, every `extra` key the placeholders name filled in.
pub fn sample_item<'p>(placeholders: impl Iterator<Item = &'p template::Placeholder>) -> Item {
    /// Puts `example` at `path` inside `object`, making the objects on the way.
    fn insert(object: &mut Map<String, Value>, path: &[String], example: Value) {
        let Some((first, rest)) = path.split_first() else { return };
        if rest.is_empty() {
            object.entry(first.clone()).or_insert(example);
            return;
        }
        let inner = object.entry(first.clone()).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(inner) = inner {
            insert(inner, rest, example);
        }
    }
    let mut extra = Map::new();
    for placeholder in placeholders {
        let Field::Extra(path) = &placeholder.field else { continue };
        let example = match placeholder.modifier {
            Modifier::Number => Value::from(1),
            Modifier::Boolean => Value::Bool(true),
            _ => Value::from("exemplo"),
        };
        insert(&mut extra, path, example);
    }
    let at = jiff::Timestamp::from_second(1_795_354_200).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    Item {
        id: 0,
        order: "123456".to_owned(),
        branch: "1".to_owned(),
        reason: "cliente desistiu da compra".to_owned(),
        cancelled_at: "2026-11-22T10:30:00-03:00".to_owned(),
        customer: Some("1001".to_owned()),
        extra: (!extra.is_empty()).then_some(extra),
        state: crate::core::item::State::Pending,
        attempts: 0,
        last_code: None,
        last_message: None,
        next_attempt_at: None,
        created_at: at,
        updated_at: at,
        idempotency_key: "extrator-123456-1795354200000".to_owned(),
        source: crate::core::item::Origin::Command,
        processing_since: None,
        sent: 0,
        receipt: None,
        poll_url: None,
    }
}

#[cfg(test)]
mod tests;
