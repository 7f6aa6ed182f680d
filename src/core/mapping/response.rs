//! `[api.response]`: how to read a customer's API answer when its envelope is not one of the
//! built-in ones — which value at a path means success, failure or "still processing", where
//! its message is, and where it puts a receipt (a protocol or cancellation number). Pure.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::path::JsonPath;

/// How a `202 Accepted` is followed until the final answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AsyncPoll {
    /// Send the same request again (same idempotency key) every `api.async_poll_interval`.
    #[default]
    Resend,
    /// GET the URL the 202 gave in its `Location` header every `api.async_poll_interval`.
    Location,
    /// GET `status_url` (a template: the item's fields and `{receipt}`) every
    /// `api.async_poll_interval`, read by the same rules (`success_values`, `failure_values`,
    /// `processing_values`): an API that answers "pendente" and exposes the status elsewhere.
    Get,
}

/// `[api.response]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseConfig {
    /// Where a 2xx answer says how the cancellation went (`"status"`, `"data.situacao"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_path: Option<JsonPath>,
    /// Values at `status_path` that mean "cancelled" (compared without regard to case).
    pub success_values: Vec<String>,
    /// Values that mean the API refused the cancellation (code 07).
    pub failure_values: Vec<String>,
    /// Values that mean "accepted, still processing" (polled like a 202).
    pub processing_values: Vec<String>,
    /// Where the API's message is, tried in order before the built-in envelopes.
    pub message_paths: Vec<JsonPath>,
    /// Where a 2xx answer carries the protocol or cancellation number, recorded with the attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_path: Option<JsonPath>,
    /// How a 202 is followed.
    pub async_poll: AsyncPoll,
    /// With `async_poll = "get"`: the status's URL, on the API's own server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_url: Option<super::UrlTemplate>,
}

/// What the configured status says about a 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Success,
    /// A failure value, as found.
    Failure(String),
    /// A processing value, as found.
    Processing(String),
    /// Neither: the value found, if any.
    Unknown(Option<String>),
}

/// The longest receipt kept; a protocol number is short, anything longer is not one.
const MAX_RECEIPT_CHARS: usize = 120;

impl ResponseConfig {
    /// What the status at `status_path` means; `None` when no status is configured.
    pub fn judge(&self, body: Option<&Value>) -> Option<Judgement> {
        let path = self.status_path.as_ref()?;
        let found = body.and_then(|body| path.text(body));
        let Some(value) = found else { return Some(Judgement::Unknown(None)) };
        let matches =
            |values: &[String]| values.iter().any(|known| known.trim().eq_ignore_ascii_case(value.trim()));
        Some(if matches(&self.failure_values) {
            Judgement::Failure(value)
        } else if matches(&self.processing_values) {
            Judgement::Processing(value)
        } else if matches(&self.success_values)
            || (self.success_values.is_empty() && !self.failure_values.is_empty())
        {
            // With only failure values listed, anything else is success.
            Judgement::Success
        } else {
            Judgement::Unknown(Some(value))
        })
    }

    /// The API's message at the first `message_paths` entry that holds a text.
    pub fn message(&self, body: &Value) -> Option<String> {
        self.message_paths.iter().find_map(|path| path.text(body).filter(|text| !text.trim().is_empty()))
    }

    /// The receipt at `receipt_path`, as the API wrote it (a number keeps its digits): one line,
    /// bounded, no control characters.
    pub fn receipt(&self, body: &[u8]) -> Option<String> {
        let text = self.receipt_path.as_ref()?.raw_text(body)?;
        let receipt = crate::core::text::truncate(text.trim(), MAX_RECEIPT_CHARS);
        (!receipt.is_empty()).then_some(receipt)
    }

    /// A rule that spans keys is broken: the key and why (pt-BR).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let listed = !self.success_values.is_empty()
            || !self.failure_values.is_empty()
            || !self.processing_values.is_empty();
        let lists = [
            ("api.response.success_values", &self.success_values),
            ("api.response.failure_values", &self.failure_values),
            ("api.response.processing_values", &self.processing_values),
        ];
        match (&self.status_path, listed) {
            (None, true) => {
                let key = lists
                    .iter()
                    .find(|(_, values)| !values.is_empty())
                    .map_or("api.response.status_path", |(key, _)| key);
                return Some((
                    key,
                    "informe também api.response.status_path: o caminho do campo da resposta onde aparecem \
                     esses valores"
                        .to_owned(),
                ));
            }
            (Some(_), false) => {
                return Some((
                    "api.response.status_path",
                    "informe os valores do status que significam sucesso (success_values) ou falha (failure_values)"
                        .to_owned(),
                ));
            }
            _ => {}
        }
        match (self.async_poll, &self.status_url) {
            (AsyncPoll::Get, None) => {
                return Some((
                    "api.response.status_url",
                    "com async_poll = \"get\" informe a URL onde a API mostra o status do cancelamento \
                     (por exemplo \"https://api.exemplo.com.br/v1/cancelamentos/{receipt}\")"
                        .to_owned(),
                ));
            }
            (AsyncPoll::Get, Some(_)) if self.status_path.is_none() => {
                return Some((
                    "api.response.status_path",
                    "com async_poll = \"get\" informe onde a resposta da consulta traz o status, e os valores \
                     (success_values, failure_values, processing_values)"
                        .to_owned(),
                ));
            }
            (AsyncPoll::Resend | AsyncPoll::Location, Some(_)) => {
                return Some(("api.response.status_url", "só vale com async_poll = \"get\"".to_owned()));
            }
            _ => {}
        }
        for (index, (key, values)) in lists.iter().enumerate() {
            for value in values.iter() {
                if value.trim().is_empty() {
                    return Some((key, "não pode ter valores vazios".to_owned()));
                }
                for (other_key, others) in &lists[index + 1..] {
                    if others.iter().any(|other| other.trim().eq_ignore_ascii_case(value.trim())) {
                        return Some((
                            other_key,
                            format!("\"{value}\" já está em {key}: um valor só pode ter um sentido"),
                        ));
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(success: &[&str], failure: &[&str], processing: &[&str]) -> ResponseConfig {
        let strings = |values: &[&str]| values.iter().map(|value| (*value).to_owned()).collect();
        ResponseConfig {
            status_path: Some(JsonPath::parse("data.situacao").unwrap()),
            success_values: strings(success),
            failure_values: strings(failure),
            processing_values: strings(processing),
            message_paths: vec![JsonPath::parse("data.mensagem").unwrap(), JsonPath::parse("erro").unwrap()],
            receipt_path: Some(JsonPath::parse("data.protocolo").unwrap()),
            async_poll: AsyncPoll::Resend,
            status_url: None,
        }
    }

    #[test]
    fn the_status_decides_without_regard_to_case() {
        let rules = rules(&["CANCELADO", "OK"], &["REJEITADO"], &["EM_PROCESSAMENTO"]);
        let say = |situacao: &str| rules.judge(Some(&json!({"data": {"situacao": situacao}})));
        assert_eq!(say("cancelado"), Some(Judgement::Success));
        assert_eq!(say(" OK "), Some(Judgement::Success));
        assert_eq!(say("REJEITADO"), Some(Judgement::Failure("REJEITADO".into())));
        assert_eq!(say("em_processamento"), Some(Judgement::Processing("em_processamento".into())));
        assert_eq!(say("???"), Some(Judgement::Unknown(Some("???".into()))));
        assert_eq!(rules.judge(Some(&json!({"outro": 1}))), Some(Judgement::Unknown(None)));
        assert_eq!(rules.judge(None), Some(Judgement::Unknown(None)));
        assert_eq!(ResponseConfig::default().judge(Some(&json!({}))), None);
        let only_failures = self::rules(&[], &["ERRO"], &[]);
        assert_eq!(
            only_failures.judge(Some(&json!({"data": {"situacao": "qualquer"}}))),
            Some(Judgement::Success)
        );
    }

    #[test]
    fn messages_and_receipts_come_from_their_paths() {
        let rules = rules(&["OK"], &[], &[]);
        let body = json!({"data": {"protocolo": 998877, "mensagem": ""}, "erro": "pedido já faturado"});
        assert_eq!(rules.message(&body).as_deref(), Some("pedido já faturado"));
        assert_eq!(rules.receipt(body.to_string().as_bytes()).as_deref(), Some("998877"));
        // A receipt too large for a 64-bit integer keeps the digits the API sent.
        let big = br#"{"data": {"protocolo": 12345678901234567890123}}"#;
        assert_eq!(rules.receipt(big).as_deref(), Some("12345678901234567890123"));
        let hostile = json!({"data": {"protocolo": format!("\u{1b}[31mX{}", "9".repeat(500))}});
        let receipt = rules.receipt(hostile.to_string().as_bytes()).unwrap();
        assert!(!receipt.contains('\u{1b}') && receipt.chars().count() <= MAX_RECEIPT_CHARS, "{receipt}");
    }

    #[test]
    fn rules_that_span_keys() {
        assert_eq!(ResponseConfig::default().problem(), None);
        let mut config = rules(&["OK"], &["ok"], &[]);
        assert_eq!(config.problem().unwrap().0, "api.response.failure_values");
        config.failure_values.clear();
        config.status_path = None;
        let (key, why) = config.problem().unwrap();
        assert_eq!(key, "api.response.success_values", "the key the file has");
        assert!(why.contains("api.response.status_path"), "{why}");
        let no_values =
            ResponseConfig { status_path: Some(JsonPath::parse("s").unwrap()), ..ResponseConfig::default() };
        assert_eq!(no_values.problem().unwrap().0, "api.response.status_path");
    }
}
