//! A cancellation as the ERP hands it over, its states, the validation of one input record, and
//! the read model every view shares (`Item`, `Attempt`, `Origin`; the store builds them from its
//! rows). Pure: no I/O, so every rule is unit-tested here.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::core::codes::Code;

/// A validated cancellation, ready to be queued.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewItem {
    /// The Winthor order number: the queue's unique key.
    pub order: String,
    pub branch: String,
    pub reason: String,
    /// RFC 3339 as given; `None` means "now", decided when it is stored.
    pub cancelled_at: Option<String>,
    pub customer: Option<String>,
    /// An object passed through to the API untouched.
    pub extra: Option<Map<String, Value>>,
}

/// The fields in which two versions of one order differ (`cancelled_at` as an instant, `extra`
/// as JSON), in the intake's names.
pub fn differing_fields(a: &NewItem, b: &NewItem) -> Vec<&'static str> {
    let instant = |at: &Option<String>| at.as_deref().map(|at| parse_rfc3339(at).ok());
    [
        ("branch", a.branch != b.branch),
        ("reason", a.reason != b.reason),
        ("cancelled_at", instant(&a.cancelled_at) != instant(&b.cancelled_at)),
        ("customer", a.customer != b.customer),
        ("extra", a.extra != b.extra),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect()
}

/// The lifecycle of an item (SPEC 2). Stored as the lower-case English name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its next attempt (`next_attempt_at`).
    #[value(help = "esperando a próxima tentativa")]
    Pending,
    /// Claimed by the dispatcher; a request may be on the wire.
    #[value(name = "in_flight", help = "em envio agora")]
    InFlight,
    /// The API accepted it asynchronously (202/208); polled until final.
    #[value(help = "aceito pela API, que ainda está processando (consultado até a resposta final)")]
    Processing,
    /// Delivered.
    #[value(help = "entregue")]
    Done,
    /// Given up on; only `extrator retry` brings it back.
    #[value(help = "em falha definitiva; só `extrator retry` o traz de volta")]
    Failed,
}

impl State {
    /// Every state, in lifecycle order (the order `status` shows them in).
    pub const ALL: [State; 5] =
        [State::Pending, State::InFlight, State::Processing, State::Done, State::Failed];

    /// The stored and `--json` name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::InFlight => "in_flight",
            State::Processing => "processing",
            State::Done => "done",
            State::Failed => "failed",
        }
    }

    /// The pt-BR word shown in tables.
    pub fn label(self) -> &'static str {
        match self {
            State::Pending => "pendente",
            State::InFlight => "enviando",
            State::Processing => "processando",
            State::Done => "concluído",
            State::Failed => "falhou",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| format!("estado desconhecido \"{text}\" no banco de dados"))
    }
}

/// The fields a record may have; anything else is refused so that a typo is not silently lost.
pub const FIELDS: [&str; 6] = ["order", "branch", "reason", "cancelled_at", "customer", "extra"];

/// Longest accepted order number, branch and customer.
const MAX_KEY_LEN: usize = 64;
/// Longest accepted reason.
const MAX_REASON_LEN: usize = 2_000;

/// What is wrong with one field of one record (pt-BR), without the record's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field at fault, or `None` when the record as a whole is wrong.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The field name and the value quoted in the message are the input's own text.
        let message = crate::core::text::terminal_safe(&self.message);
        match &self.field {
            Some(field) => write!(f, "campo `{}`: {message}", crate::core::text::terminal_safe(field)),
            None => f.write_str(&message),
        }
    }
}

/// Validates one JSON record into a `NewItem`, reporting the first fault.
pub fn from_json(record: &Value) -> Result<NewItem, FieldError> {
    let Value::Object(fields) = record else {
        return Err(FieldError {
            field: None,
            message: format!("esperava um objeto JSON {{…}}, encontrei {}", kind_of(record)),
        });
    };
    if let Some(unknown) = fields.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        let unknown: String = unknown.chars().take(crate::core::text::QUOTED_CHARS).collect();
        return Err(field_error(
            &unknown,
            format!("campo desconhecido; os campos válidos são: {}", FIELDS.join(", ")),
        ));
    }
    let order = required(fields, "order", key_text)?;
    if !order.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
        return Err(field_error(
            "order",
            format!(
                "{} tem caracteres não permitidos (use letras, dígitos, - _ . /)",
                crate::core::text::quoted(&order)
            ),
        ));
    }
    let branch = required(fields, "branch", key_text)?;
    let reason = required(fields, "reason", reason_text)?;
    let cancelled_at = optional(fields, "cancelled_at", timestamp_text)?;
    let customer = optional(fields, "customer", key_text)?;
    let extra = optional(fields, "extra", |value| match value {
        Value::Object(map) => Ok(map.clone()),
        other => Err(format!("esperava um objeto JSON {{…}}, encontrei {}", kind_of(other))),
    })?;
    Ok(NewItem { order, branch, reason, cancelled_at, customer, extra })
}

/// A required field, converted by `convert`.
fn required<T>(
    fields: &Map<String, Value>,
    name: &str,
    convert: impl Fn(&Value) -> Result<T, String>,
) -> Result<T, FieldError> {
    match fields.get(name) {
        None | Some(Value::Null) => Err(field_error(name, "obrigatório e ausente".to_owned())),
        Some(value) => convert(value).map_err(|message| field_error(name, message)),
    }
}

/// An optional field (absent or `null`), converted by `convert`.
fn optional<T>(
    fields: &Map<String, Value>,
    name: &str,
    convert: impl Fn(&Value) -> Result<T, String>,
) -> Result<Option<T>, FieldError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => convert(value).map(Some).map_err(|message| field_error(name, message)),
    }
}

/// A `FieldError` for `field`.
fn field_error(field: &str, message: String) -> FieldError {
    FieldError { field: Some(field.to_owned()), message }
}

/// An identifier-like field: a non-empty string, or a non-negative integer (Winthor's numbers).
fn key_text(value: &Value) -> Result<String, String> {
    let text = match value {
        Value::String(text) => text.trim().to_owned(),
        Value::Number(number) if number.is_u64() => number.to_string(),
        other => {
            return Err(format!(
                "esperava um texto ou um número inteiro não negativo, encontrei {}",
                kind_of(other)
            ));
        }
    };
    if text.is_empty() {
        return Err("está vazio".to_owned());
    }
    if text.chars().count() > MAX_KEY_LEN {
        return Err(format!("tem mais de {MAX_KEY_LEN} caracteres"));
    }
    if text.chars().any(char::is_control) {
        return Err("tem caracteres de controle".to_owned());
    }
    Ok(text)
}

/// The free-text reason.
fn reason_text(value: &Value) -> Result<String, String> {
    let Value::String(text) = value else {
        return Err(format!("esperava um texto, encontrei {}", kind_of(value)));
    };
    let text = text.trim();
    if text.is_empty() {
        return Err("está vazio".to_owned());
    }
    if text.chars().count() > MAX_REASON_LEN {
        return Err(format!("tem mais de {MAX_REASON_LEN} caracteres"));
    }
    Ok(text.to_owned())
}

/// An RFC 3339 timestamp with its offset, kept as written.
fn timestamp_text(value: &Value) -> Result<String, String> {
    let Value::String(text) = value else {
        return Err(format!("esperava data e hora RFC 3339 entre aspas, encontrei {}", kind_of(value)));
    };
    let instant = parse_rfc3339(text)?;
    if !(EARLIEST_CANCELLATION..=LATEST_CANCELLATION).contains(&instant.as_second()) {
        return Err(format!(
            "{} está fora do intervalo aceito (de 2000 a 2100): confira a data do ERP",
            crate::core::text::quoted(text.trim())
        ));
    }
    Ok(text.trim().to_owned())
}

/// The earliest `cancelled_at` taken (2000-01-01T00:00:00Z), in Unix seconds.
const EARLIEST_CANCELLATION: i64 = 946_684_800;
/// The latest (2100-01-01T00:00:00Z).
const LATEST_CANCELLATION: i64 = 4_102_444_800;

/// Parses an RFC 3339 instant; the offset is required, since the ERP's clock is local.
pub fn parse_rfc3339(text: &str) -> Result<jiff::Timestamp, String> {
    text.trim().parse::<jiff::Timestamp>().map_err(|_| {
        format!(
            "{} não é data e hora RFC 3339 com fuso, por exemplo \"2026-11-22T10:30:00-03:00\"",
            crate::core::text::quoted(text)
        )
    })
}

/// How a JSON value's type is named to the operator.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "um valor lógico",
        Value::Number(number) if number.is_f64() => "um número decimal",
        Value::Number(number) if number.is_i64() && !number.is_u64() => "um número negativo",
        Value::Number(_) => "um número",
        Value::String(_) => "um texto",
        Value::Array(_) => "uma lista [...]",
        Value::Object(_) => "um objeto {...}",
    }
}

/// Where an item came in from; stored so `show` can tell support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `extrator enqueue`.
    Command,
    /// A file in the spool directory, by name.
    Spool(String),
    /// A polled `[[source]]`, by name.
    Source(String),
}

impl Origin {
    /// The stored form (`enqueue`, `spool:FILE`, `source:NAME`), also `--json`'s.
    pub fn as_text(&self) -> String {
        match self {
            Origin::Command => "enqueue".to_owned(),
            Origin::Spool(name) => format!("spool:{name}"),
            Origin::Source(name) => format!("source:{name}"),
        }
    }
}

impl FromStr for Origin {
    type Err = String;

    /// The stored form back.
    fn from_str(text: &str) -> Result<Origin, String> {
        match text.split_once(':') {
            None if text == "enqueue" => Ok(Origin::Command),
            Some(("spool", name)) => Ok(Origin::Spool(name.to_owned())),
            Some(("source", name)) => Ok(Origin::Source(name.to_owned())),
            _ => Err(format!("origem desconhecida: {text:?}")),
        }
    }
}

/// An item as the operator sees it — `list`, `show`, the page, the mapping's input — read from the
/// store. `--json` is its own type (`cli::json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: i64,
    pub order: String,
    pub branch: String,
    pub reason: String,
    pub cancelled_at: String,
    pub customer: Option<String>,
    pub extra: Option<Map<String, Value>>,
    pub state: State,
    /// Attempts that counted toward `retry.max_attempts` (reset by `retry`).
    pub attempts: i64,
    pub last_code: Option<Code>,
    pub last_message: Option<String>,
    /// When it is next due; `None` once it is `done` or `failed`.
    pub next_attempt_at: Option<jiff::Timestamp>,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
    pub idempotency_key: String,
    /// Where it came in from (`enqueue`, `spool:<file>`, `source:<name>` in `--json`).
    pub source: Origin,
    /// When the API first accepted it asynchronously (202/208), while it is being polled.
    pub processing_since: Option<jiff::Timestamp>,
    /// Requests sent for it so far, of every kind (probes and asynchronous polls included).
    pub sent: i64,
    /// The API's latest receipt for it (a protocol or cancellation number), if it gives one.
    pub receipt: Option<String>,
    /// While it is `processing` with `async_poll = "location"`: the URL to poll.
    pub poll_url: Option<String>,
}

/// One HTTP attempt, as recorded by the dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub number: i64,
    pub started_at: jiff::Timestamp,
    pub duration_ms: i64,
    pub outcome: AttemptOutcome,
    pub code: Option<Code>,
    /// `classify::Kind`'s word when it was recorded. Kept as text: a record says what happened in
    /// the words of the version that wrote it, and an older version's word must still read.
    pub kind: String,
    pub http_status: Option<i64>,
    pub message: Option<String>,
    pub body_excerpt: Option<String>,
    /// A circuit-breaker probe: does not count toward the item's attempts.
    pub probe: bool,
    /// Whether it counted toward `retry.max_attempts`.
    pub counted: bool,
    /// The API's receipt in this answer, if any.
    pub receipt: Option<String>,
}

/// What became of one attempt, as recorded (`success`, `processing`, `failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Success,
    Processing,
    Failure,
}

impl AttemptOutcome {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::Processing => "processing",
            AttemptOutcome::Failure => "failure",
        }
    }
}

impl FromStr for AttemptOutcome {
    type Err = String;

    fn from_str(text: &str) -> Result<AttemptOutcome, String> {
        match text {
            "success" => Ok(AttemptOutcome::Success),
            "processing" => Ok(AttemptOutcome::Processing),
            "failure" => Ok(AttemptOutcome::Failure),
            _ => Err(format!("resultado de tentativa desconhecido: {text:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error_of(record: Value) -> FieldError {
        from_json(&record).expect_err("should be refused")
    }

    #[test]
    fn accepts_strings_and_numbers_for_identifiers() {
        let item = from_json(&json!({
            "order": 123456, "branch": "01", "reason": " cliente desistiu ",
            "cancelled_at": "2026-11-22T10:30:00-03:00", "customer": 42, "extra": {"a": [1]}
        }))
        .unwrap();
        assert_eq!(item.order, "123456");
        assert_eq!(item.branch, "01");
        assert_eq!(item.reason, "cliente desistiu");
        assert_eq!(item.customer.as_deref(), Some("42"));
        assert_eq!(item.cancelled_at.as_deref(), Some("2026-11-22T10:30:00-03:00"));
        assert!(item.extra.is_some());
    }

    #[test]
    fn names_the_field_at_fault() {
        let cases = [
            (json!({"branch": "1", "reason": "x"}), "order", "obrigatório"),
            (json!({"order": null, "branch": "1", "reason": "x"}), "order", "obrigatório"),
            (json!({"order": 1.5, "branch": "1", "reason": "x"}), "order", "número decimal"),
            (json!({"order": -3, "branch": "1", "reason": "x"}), "order", "número negativo"),
            (json!({"order": "", "branch": "1", "reason": "x"}), "order", "vazio"),
            (json!({"order": "12 34", "branch": "1", "reason": "x"}), "order", "não permitidos"),
            (json!({"order": "1", "reason": "x"}), "branch", "obrigatório"),
            (json!({"order": "1", "branch": "1", "reason": 7}), "reason", "esperava um texto"),
            (
                json!({"order": "1", "branch": "1", "reason": "x", "cancelled_at": "ontem"}),
                "cancelled_at",
                "RFC 3339",
            ),
            (
                json!({"order": "1", "branch": "1", "reason": "x", "cancelled_at": "2026-11-22T10:30:00"}),
                "cancelled_at",
                "fuso",
            ),
            (json!({"order": "1", "branch": "1", "reason": "x", "extra": [1]}), "extra", "objeto"),
            (json!({"order": "1", "branch": "1", "reason": "x", "reson": "y"}), "reson", "desconhecido"),
        ];
        for (record, field, fragment) in cases {
            let error = error_of(record.clone());
            assert_eq!(error.field.as_deref(), Some(field), "{record}: {error}");
            assert!(error.message.contains(fragment), "{record}: {error}");
        }
    }

    #[test]
    fn a_record_must_be_an_object() {
        let error = error_of(json!([1, 2]));
        assert_eq!(error.field, None);
        assert!(error.message.contains("uma lista"), "{error}");
    }

    #[test]
    fn states_round_trip_through_their_stored_names() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>(), Ok(state));
        }
        assert!("sent".parse::<State>().is_err());
    }
}
