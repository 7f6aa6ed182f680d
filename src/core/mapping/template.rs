//! A text with placeholders — `"https://api.x/v1/pedidos/{order}/cancelamento"`,
//! `"{cancelled_at:dd/mm/aaaa HH:MM}"`, `"{branch:number}"` — parsed once when the config loads
//! (errors in pt-BR, naming the placeholder) and rendered for each item without I/O.
//!
//! A placeholder is `{FIELD}` or `{FIELD:MODIFIER}`. Fields are the item's: `order`, `branch`,
//! `reason`, `cancelled_at`, `customer`, `idempotency_key`, `extra` (the whole object) and
//! `extra.KEY` (dots go into nested objects). Modifiers are a type (`string`, `number`,
//! `boolean`), which only a value that is one placeholder and nothing else can take, or, for
//! `cancelled_at`, a date format: `rfc3339` (as the ERP wrote it), `utc`, `epoch`, `epoch_ms`, or
//! a pattern of `dd`, `mm`, `aaaa` (or `yyyy`), `HH`, `MM`, `SS` and separators. `{{` and `}}`
//! are literal braces. Two placeholders read values that are not the item's: `{secret:NAME}`, a
//! secret the config names (`[secrets]`, resolved at the edge and handed in with `Input`), and
//! `{receipt}`, the receipt the API gave the item (for `api.response.status_url`).

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use crate::core::item::Item;

/// The names a placeholder may use, for error messages.
const FIELD_NAMES: &str = "order, branch, reason, cancelled_at, customer, idempotency_key, extra, extra.CAMPO, receipt, secret:NOME";

/// What a template renders from: the item, the time zone of date patterns, and the secrets
/// `{secret:NAME}` names (their values, or a mask for `preview`).
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub item: &'a Item,
    pub zone: &'a jiff::tz::TimeZone,
    pub secrets: &'a std::collections::BTreeMap<String, crate::core::secret::Secret>,
}

/// No secrets.
static NO_SECRETS: std::collections::BTreeMap<String, crate::core::secret::Secret> =
    std::collections::BTreeMap::new();

impl<'a> Input<'a> {
    /// An item in a time zone, with no secrets.
    pub fn new(item: &'a Item, zone: &'a jiff::tz::TimeZone) -> Input<'a> {
        Input { item, zone, secrets: &NO_SECRETS }
    }
}

/// An item field a placeholder reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Order,
    Branch,
    Reason,
    CancelledAt,
    Customer,
    IdempotencyKey,
    /// `extra` itself (empty path) or a value inside it (`extra.loja`, `extra.canal.nome`).
    Extra(Vec<String>),
    /// The API's receipt for the item (`receipt_path`), once it gave one.
    Receipt,
    /// A secret from `[secrets]` (or the systemd credential of that name), by name.
    Secret(String),
}

/// What a placeholder turns its field into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    /// The field's own form: text for the item's fields, the JSON value for `extra.KEY`.
    Plain,
    /// Always a text (a number in `extra` becomes `"7"`).
    Text,
    /// A JSON number (the text must be one).
    Number,
    /// A JSON boolean (`true`/`false`, `1`/`0`, `s`/`n`, `sim`/`não`, `yes`/`no`).
    Boolean,
    /// `cancelled_at` in a date format.
    Date(DateFormat),
}

/// How `cancelled_at` is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateFormat {
    /// As stored: RFC 3339 with the offset the ERP gave (UTC when it gave none).
    Rfc3339,
    /// RFC 3339 in UTC (`2026-11-22T13:30:00Z`).
    Utc,
    /// Seconds since 1970 (a number when it is the whole value).
    Epoch,
    /// Milliseconds since 1970.
    EpochMillis,
    /// A pattern such as `dd/mm/aaaa HH:MM`, in `api.request.time_zone`.
    Pattern(Vec<DatePart>),
}

/// One piece of a date pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatePart {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Literal(char),
}

/// One placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub field: Field,
    pub modifier: Modifier,
    /// As written, braces included, for messages.
    pub written: String,
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder(Placeholder),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The text as the config wrote it.
    source: String,
    parts: Vec<Part>,
}

/// Where a template is used, which decides what it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A body value: a lone placeholder may carry a type and keeps its JSON type.
    Value,
    /// A text (URL, header, form field): types and the whole `extra` object are refused.
    Text,
}

impl Template {
    /// Parses `source` for `use_`. The error is pt-BR and names the offending placeholder.
    pub fn parse(source: &str, use_: Use) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, next)| *next == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, next)| *next == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(format!(
                        "`}}` sem `{{` antes (para uma chave literal, escreva `}}}}`) em \"{source}\""
                    ));
                }
                '{' => {
                    let rest = &source[at + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!(
                            "a `{{` de \"{source}\" não foi fechada com `}}` (para uma chave literal, escreva `{{{{`)"
                        ));
                    };
                    let inside = &rest[..end];
                    for _ in 0..inside.chars().count() + 1 {
                        chars.next();
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Placeholder(Placeholder::parse(inside)?));
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let template = Template { source: source.to_owned(), parts };
        template.check_use(use_)?;
        Ok(template)
    }

    /// A template that is only literal text (`api.url`, which takes no placeholders).
    pub fn literal(text: &str) -> Template {
        let parts = if text.is_empty() { Vec::new() } else { vec![Part::Literal(text.to_owned())] };
        Template { source: text.to_owned(), parts }
    }

    /// The text as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The placeholder, when the template is exactly one placeholder and nothing else.
    pub fn lone_placeholder(&self) -> Option<&Placeholder> {
        match self.parts.as_slice() {
            [Part::Placeholder(placeholder)] => Some(placeholder),
            _ => None,
        }
    }

    /// Every placeholder, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|part| match part {
            Part::Placeholder(placeholder) => Some(placeholder),
            Part::Literal(_) => None,
        })
    }

    /// The literal text before the first placeholder (all of it when there is none): the part
    /// of the value the config fixes for every item.
    pub fn fixed_prefix(&self) -> String {
        let mut prefix = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => prefix.push_str(text),
                Part::Placeholder(_) => break,
            }
        }
        prefix
    }

    /// The text with every placeholder replaced by `stand_in`, for checks of the shape.
    pub fn with_stand_in(&self, stand_in: &str) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.as_str(),
                Part::Placeholder(_) => stand_in,
            })
            .collect()
    }

    /// Refuses what `use_` does not allow.
    fn check_use(&self, use_: Use) -> Result<(), String> {
        let lone = self.lone_placeholder().is_some();
        for placeholder in self.placeholders() {
            let typed = matches!(placeholder.modifier, Modifier::Number | Modifier::Boolean);
            if typed && (use_ == Use::Text || !lone) {
                let where_ = if use_ == Use::Text {
                    "numa URL, num cabeçalho ou num campo de formulário tudo é texto"
                } else {
                    "o tipo só vale quando o valor é só o marcador, sem texto em volta"
                };
                return Err(format!("{} não pode ter tipo aqui: {where_}", placeholder.written));
            }
            if placeholder.field == Field::Extra(Vec::new()) && (use_ == Use::Text || !lone) {
                return Err(format!(
                    "{} é um objeto e só pode ser o valor inteiro de um campo do corpo JSON; \
                     para um valor dentro dele use {{extra.CAMPO}}",
                    placeholder.written
                ));
            }
        }
        Ok(())
    }

    /// The template as text for `item`: each placeholder's text form, an absent value as
    /// nothing. `write` appends a placeholder's value to the text (percent-encoded in a URL).
    pub fn render_text(
        &self,
        input: &Input<'_>,
        write: impl Fn(&str, &mut String),
    ) -> Result<String, String> {
        let mut text = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal(literal) => text.push_str(literal),
                Part::Placeholder(placeholder) => {
                    if let Some(value) = placeholder.text(input)? {
                        write(&value, &mut text);
                    }
                }
            }
        }
        Ok(text)
    }

    /// Whether every placeholder of the template has a value for `item`; the first that does not.
    pub fn missing<'t>(&'t self, input: &Input<'_>) -> Option<&'t Placeholder> {
        self.placeholders().find(|placeholder| placeholder.raw(input).is_none())
    }

    /// The names of the secrets the template uses.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.placeholders().filter_map(|placeholder| match &placeholder.field {
            Field::Secret(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The template as a body value for `item`: a lone placeholder keeps (or takes) its type and
    /// is `None` when the item has no such value; anything else is a text.
    pub fn render_value(&self, input: &Input<'_>) -> Result<Option<Value>, String> {
        match self.lone_placeholder() {
            Some(placeholder) => placeholder.value(input),
            None => self.render_text(input, as_is).map(|text| Some(Value::String(text))),
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Writes a placeholder's value into a text unchanged.
pub fn as_is(value: &str, text: &mut String) {
    text.push_str(value);
}

/// A field's raw value in the item, before any modifier.
enum Raw<'i> {
    Text(&'i str),
    Json(&'i Value),
    Object(&'i Map<String, Value>),
}

impl Placeholder {
    /// Parses what is between the braces.
    fn parse(inside: &str) -> Result<Placeholder, String> {
        let written = format!("{{{inside}}}");
        let (name, modifier) = match inside.split_once(':') {
            Some((name, modifier)) => (name.trim(), Some(modifier)),
            None => (inside.trim(), None),
        };
        if name == "secret" {
            let secret = modifier.unwrap_or_default().trim();
            if secret.is_empty() || !secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "{written}: o nome do segredo vai depois de `secret:` e tem só letras, dígitos, `_` e `-` \
                     (por exemplo {{secret:chave_api}})"
                ));
            }
            return Ok(Placeholder {
                field: Field::Secret(secret.to_owned()),
                modifier: Modifier::Plain,
                written,
            });
        }
        let field = match name {
            "order" => Field::Order,
            "branch" => Field::Branch,
            "reason" => Field::Reason,
            "cancelled_at" => Field::CancelledAt,
            "customer" => Field::Customer,
            "idempotency_key" => Field::IdempotencyKey,
            "receipt" => Field::Receipt,
            "extra" => Field::Extra(Vec::new()),
            "" => return Err(format!("marcador vazio {written}: use um de {FIELD_NAMES}")),
            other => match other.strip_prefix("extra.") {
                Some(path) if path.split('.').all(|key| !key.trim().is_empty()) => {
                    Field::Extra(path.split('.').map(|key| key.trim().to_owned()).collect())
                }
                Some(_) => {
                    return Err(format!(
                        "{written}: falta o nome do campo depois de `extra.` (por exemplo {{extra.loja}})"
                    ));
                }
                None => {
                    return Err(format!("marcador desconhecido {written}: use um de {FIELD_NAMES}"));
                }
            },
        };
        let modifier = match (modifier.map(str::trim), &field) {
            (None, _) => Modifier::Plain,
            (Some(format), Field::CancelledAt) => match format {
                "string" => Modifier::Date(DateFormat::Rfc3339),
                other => Modifier::Date(DateFormat::parse(other).map_err(|why| format!("{written}: {why}"))?),
            },
            (Some("string"), _) => Modifier::Text,
            (Some("number"), _) => Modifier::Number,
            (Some("boolean"), _) => Modifier::Boolean,
            (Some(other), _) => {
                return Err(format!(
                    "{written}: tipo desconhecido `{other}`; use string, number ou boolean \
                     (formatos de data só valem para cancelled_at)"
                ));
            }
        };
        Ok(Placeholder { field, modifier, written })
    }

    /// The field's raw value, `None` when the item has none.
    fn raw<'i>(&self, input: &Input<'i>) -> Option<Raw<'i>> {
        let item = input.item;
        Some(match &self.field {
            Field::Order => Raw::Text(&item.order),
            Field::Branch => Raw::Text(&item.branch),
            Field::Reason => Raw::Text(&item.reason),
            Field::CancelledAt => Raw::Text(&item.cancelled_at),
            Field::Customer => Raw::Text(item.customer.as_deref()?),
            Field::IdempotencyKey => Raw::Text(&item.idempotency_key),
            Field::Receipt => Raw::Text(item.receipt.as_deref()?),
            Field::Secret(name) => Raw::Text(input.secrets.get(name)?.expose()),
            Field::Extra(path) if path.is_empty() => Raw::Object(item.extra.as_ref()?),
            Field::Extra(path) => {
                let (first, rest) = path.split_first()?;
                let value =
                    rest.iter().try_fold(item.extra.as_ref()?.get(first)?, |value, key| value.get(key))?;
                match value {
                    Value::Null => return None,
                    other => Raw::Json(other),
                }
            }
        })
    }

    /// The text form of the placeholder for `item`, `None` when the item has no such value.
    pub fn text<'i>(&self, input: &Input<'i>) -> Result<Option<Cow<'i, str>>, String> {
        let Some(raw) = self.raw(input) else { return Ok(None) };
        if let Modifier::Date(format) = &self.modifier {
            return format.render(&input.item.cancelled_at, input.zone).map(Some);
        }
        Ok(Some(match raw {
            Raw::Text(text) => Cow::Borrowed(text),
            Raw::Json(Value::String(text)) => Cow::Borrowed(text.as_str()),
            Raw::Json(other) => Cow::Owned(other.to_string()),
            Raw::Object(object) => Cow::Owned(Value::Object(object.clone()).to_string()),
        }))
    }

    /// The JSON value of a lone placeholder for `item`, `None` when the item has no such value.
    fn value(&self, input: &Input<'_>) -> Result<Option<Value>, String> {
        let Some(raw) = self.raw(input) else { return Ok(None) };
        let value = match (&self.modifier, raw) {
            (Modifier::Plain, Raw::Json(value)) => value.clone(),
            (Modifier::Plain, Raw::Object(object)) => Value::Object(object.clone()),
            (Modifier::Date(DateFormat::Epoch | DateFormat::EpochMillis), _) => {
                let text = self.text(input)?.unwrap_or_default();
                Value::Number(text.parse::<i64>().map_err(|_| format!("data inválida \"{text}\""))?.into())
            }
            (Modifier::Number, Raw::Json(Value::Number(number))) => Value::Number(number.clone()),
            (Modifier::Boolean, Raw::Json(Value::Bool(flag))) => Value::Bool(*flag),
            (Modifier::Number, _) => {
                let text = self.text(input)?.unwrap_or_default();
                number(&text).ok_or_else(|| {
                    format!(
                        "o valor \"{}\" de {} não é um número",
                        crate::core::text::terminal_safe(&text),
                        self.written
                    )
                })?
            }
            (Modifier::Boolean, _) => {
                let text = self.text(input)?.unwrap_or_default();
                Value::Bool(boolean(&text).ok_or_else(|| {
                    format!(
                        "o valor \"{}\" de {} não é verdadeiro/falso (use true/false, 1/0, s/n, sim/não)",
                        crate::core::text::terminal_safe(&text),
                        self.written
                    )
                })?)
            }
            _ => Value::String(self.text(input)?.unwrap_or_default().into_owned()),
        };
        Ok(Some(value))
    }
}

/// A JSON number from a text: an integer when it is one, else a finite decimal.
fn number(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Ok(integer) = text.parse::<i64>() {
        return Some(Value::Number(integer.into()));
    }
    if let Ok(integer) = text.parse::<u64>() {
        return Some(Value::Number(integer.into()));
    }
    let decimal = text.parse::<f64>().ok().filter(|decimal| decimal.is_finite())?;
    serde_json::Number::from_f64(decimal).map(Value::Number)
}

/// A boolean from the ways the ERP and people write one.
fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_lowercase().as_str() {
        "true" | "1" | "s" | "sim" | "y" | "yes" | "verdadeiro" => Some(true),
        "false" | "0" | "n" | "não" | "nao" | "no" | "falso" => Some(false),
        _ => None,
    }
}

impl DateFormat {
    /// A named format or a pattern.
    fn parse(text: &str) -> Result<DateFormat, String> {
        match text {
            "rfc3339" => return Ok(DateFormat::Rfc3339),
            "utc" => return Ok(DateFormat::Utc),
            "epoch" => return Ok(DateFormat::Epoch),
            "epoch_ms" => return Ok(DateFormat::EpochMillis),
            _ => {}
        }
        let hint = "use rfc3339, utc, epoch, epoch_ms ou um padrão com dd, mm, aaaa, HH, MM e SS \
                    (por exemplo \"dd/mm/aaaa HH:MM\")";
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let token = [
                ("aaaa", DatePart::Year),
                ("yyyy", DatePart::Year),
                ("dd", DatePart::Day),
                ("mm", DatePart::Month),
                ("HH", DatePart::Hour),
                ("MM", DatePart::Minute),
                ("SS", DatePart::Second),
            ]
            .into_iter()
            .find(|(token, _)| rest.starts_with(token));
            if let Some((token, part)) = token {
                parts.push(part);
                rest = &rest[token.len()..];
                continue;
            }
            let Some(c) = rest.chars().next() else { break };
            // Letters are fields; `T` and `Z` are the ISO 8601 separators (as in 2026-11-22T10:30Z).
            if c.is_alphanumeric() && !matches!(c, 'T' | 'Z') {
                return Err(format!(
                    "formato de data desconhecido \"{text}\" (não entendi \"{rest}\"): {hint}"
                ));
            }
            parts.push(DatePart::Literal(c));
            rest = &rest[c.len_utf8()..];
        }
        if !parts.iter().any(|part| !matches!(part, DatePart::Literal(_))) {
            return Err(format!("formato de data desconhecido \"{text}\": {hint}"));
        }
        Ok(DateFormat::Pattern(parts))
    }

    /// Writes the stored RFC 3339 `cancelled_at` in this format.
    fn render<'i>(&self, stored: &'i str, zone: &jiff::tz::TimeZone) -> Result<Cow<'i, str>, String> {
        if *self == DateFormat::Rfc3339 {
            return Ok(Cow::Borrowed(stored));
        }
        let at: jiff::Timestamp = stored
            .trim()
            .parse()
            .map_err(|_| format!("cancelled_at \"{stored}\" não é uma data RFC 3339"))?;
        Ok(Cow::Owned(match self {
            DateFormat::Rfc3339 => stored.to_owned(),
            DateFormat::Utc => at.to_string(),
            DateFormat::Epoch => at.as_second().to_string(),
            DateFormat::EpochMillis => at.as_millisecond().to_string(),
            DateFormat::Pattern(parts) => {
                let local = at.to_zoned(zone.clone()).datetime();
                let mut text = String::with_capacity(parts.len() * 2);
                for part in parts {
                    match part {
                        DatePart::Year => text.push_str(&format!("{:04}", local.year())),
                        DatePart::Month => text.push_str(&format!("{:02}", local.month())),
                        DatePart::Day => text.push_str(&format!("{:02}", local.day())),
                        DatePart::Hour => text.push_str(&format!("{:02}", local.hour())),
                        DatePart::Minute => text.push_str(&format!("{:02}", local.minute())),
                        DatePart::Second => text.push_str(&format!("{:02}", local.second())),
                        DatePart::Literal(c) => text.push(*c),
                    }
                }
                text
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Item {
        let mut item = crate::core::mapping::sample_item(std::iter::empty());
        item.order = "12/34".into();
        item.reason = "cliente \"desistiu\" {x}".into();
        item.cancelled_at = "2026-11-22T10:30:05-03:00".into();
        item.customer = None;
        item.extra =
            serde_json::from_str(r#"{"loja": 7, "canal": {"nome": "site"}, "ativo": "S", "nada": null}"#)
                .ok();
        item
    }

    fn utc() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::UTC
    }

    fn value(source: &str) -> Result<Option<Value>, String> {
        Template::parse(source, Use::Value)?.render_value(&Input::new(&item(), &utc()))
    }

    #[test]
    fn lone_placeholders_keep_or_take_their_type() {
        assert_eq!(value("{order}").unwrap(), Some(Value::from("12/34")));
        assert_eq!(value("{extra.loja}").unwrap(), Some(Value::from(7)));
        assert_eq!(value("{extra.loja:string}").unwrap(), Some(Value::from("7")));
        assert_eq!(value("{branch:number}").unwrap(), Some(Value::from(1)));
        assert_eq!(value("{extra.ativo:boolean}").unwrap(), Some(Value::Bool(true)));
        assert_eq!(value("{extra.canal.nome}").unwrap(), Some(Value::from("site")));
        assert_eq!(value("{extra}").unwrap().unwrap()["loja"], 7);
        assert_eq!(value("{cancelled_at:epoch}").unwrap(), Some(Value::from(1_795_354_205)));
        // Absent values are left out by the body, not sent as null or "".
        assert_eq!(value("{customer}").unwrap(), None);
        assert_eq!(value("{extra.nada}").unwrap(), None);
        assert_eq!(value("{extra.falta.aqui}").unwrap(), None);
        let refused = value("{order:number}").unwrap_err();
        assert!(refused.contains("\"12/34\" de {order:number} não é um número"), "{refused}");
    }

    #[test]
    fn texts_mix_literals_and_values() {
        assert_eq!(
            value("Pedido {order} ({reason})").unwrap(),
            Some(Value::from("Pedido 12/34 (cliente \"desistiu\" {x})"))
        );
        assert_eq!(value("{{literal}} {customer}.").unwrap(), Some(Value::from("{literal} .")));
        let template = Template::parse("/p/{order}/c", Use::Text).unwrap();
        let encoded = template
            .render_text(&Input::new(&item(), &utc()), |value, text| {
                text.push_str(&value.replace('/', "%2F"))
            })
            .unwrap();
        assert_eq!(encoded, "/p/12%2F34/c");
        assert_eq!(template.fixed_prefix(), "/p/");
    }

    #[test]
    fn dates_in_every_format() {
        let sao_paulo = jiff::tz::TimeZone::fixed(jiff::tz::offset(-3));
        let render = |format: &str, zone: &jiff::tz::TimeZone| {
            Template::parse(&format!("{{cancelled_at:{format}}}"), Use::Text)
                .unwrap()
                .render_text(&Input::new(&item(), zone), as_is)
                .unwrap()
        };
        assert_eq!(render("rfc3339", &utc()), "2026-11-22T10:30:05-03:00");
        assert_eq!(render("utc", &utc()), "2026-11-22T13:30:05Z");
        assert_eq!(render("epoch_ms", &utc()), "1795354205000");
        assert_eq!(render("dd/mm/aaaa HH:MM", &sao_paulo), "22/11/2026 10:30");
        assert_eq!(render("dd/mm/aaaa HH:MM", &utc()), "22/11/2026 13:30");
        assert_eq!(render("yyyy-mm-ddTHH:MM:SS", &sao_paulo), "2026-11-22T10:30:05");
        assert_eq!(render("dd.mm.aaaa", &sao_paulo), "22.11.2026");
    }

    #[test]
    fn mistakes_are_named() {
        let error = |source: &str, use_| Template::parse(source, use_).unwrap_err();
        assert!(error("/{pedido}", Use::Text).contains("marcador desconhecido {pedido}: use um de order"));
        assert!(error("{order", Use::Text).contains("não foi fechada"));
        assert!(error("a}b", Use::Text).contains("`}` sem `{`"));
        assert!(error("{}", Use::Value).contains("marcador vazio"));
        assert!(error("{extra.}", Use::Value).contains("falta o nome do campo"));
        assert!(error("{order:numero}", Use::Value).contains("tipo desconhecido `numero`"));
        assert!(
            error("{cancelled_at:dd/mm/aaaa hh:mm}", Use::Value).contains("formato de data desconhecido")
        );
        assert!(error("{cancelled_at:-}", Use::Value).contains("formato de data desconhecido"));
        assert!(error("{branch:number}", Use::Text).contains("não pode ter tipo aqui"));
        assert!(error("x{branch:number}", Use::Value).contains("só vale quando o valor é só o marcador"));
        assert!(error("{extra}", Use::Text).contains("é um objeto"));
        assert!(Template::parse("{ order }", Use::Text).is_ok(), "spaces inside the braces are forgiven");
    }
}
