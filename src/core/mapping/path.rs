//! A path into a JSON answer — `status`, `data.protocolo`, `errors[0].message` — as support
//! writes it in `[api.response]`: names separated by dots, `[N]` for the N-th element of a list
//! (from 0). Parsed when the config loads; looked up without allocating.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    source: String,
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `source`; the error is pt-BR.
    pub fn parse(source: &str) -> Result<JsonPath, String> {
        let hint = "use nomes separados por ponto e [N] para listas, como \"data.protocolo\" ou \"errors[0].message\"";
        let invalid = |why: &str| format!("o caminho \"{source}\" não é válido ({why}): {hint}");
        let mut steps = Vec::new();
        let mut rest = source.trim();
        if rest.is_empty() {
            return Err(invalid("está vazio"));
        }
        let mut expect_name = true;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or_else(|| invalid("um `[` sem `]`"))?;
                let index = after[..end]
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| invalid("o que está entre [ ] deve ser um número"))?;
                steps.push(Step::Index(index));
                rest = &after[end + 1..];
                expect_name = false;
            } else if let Some(after) = rest.strip_prefix('.') {
                if expect_name {
                    return Err(invalid("um nome vazio entre pontos"));
                }
                rest = after;
                expect_name = true;
                if rest.is_empty() {
                    return Err(invalid("termina com ponto"));
                }
            } else {
                if !expect_name {
                    return Err(invalid("falta um ponto antes do nome"));
                }
                let end = rest.find(['.', '[', ']']).unwrap_or(rest.len());
                if rest[end..].starts_with(']') {
                    return Err(invalid("um `]` sem `[`"));
                }
                let name = rest[..end].trim();
                if name.is_empty() {
                    return Err(invalid("um nome vazio"));
                }
                steps.push(Step::Key(name.to_owned()));
                rest = &rest[end..];
                expect_name = false;
            }
        }
        Ok(JsonPath { source: source.to_owned(), steps })
    }

    /// The text at this path in a JSON document, as the document wrote it: a number keeps its
    /// digits (a receipt of 25 digits is not a float), a string is unescaped. Walks the raw
    /// document one level at a time.
    pub fn raw_text(&self, document: &[u8]) -> Option<String> {
        use serde_json::value::RawValue;
        let mut current: Box<RawValue> = serde_json::from_slice(document).ok()?;
        for step in &self.steps {
            current = match step {
                Step::Key(key) => {
                    let mut object: std::collections::HashMap<String, Box<RawValue>> =
                        serde_json::from_str(current.get()).ok()?;
                    object.remove(key.as_str())?
                }
                Step::Index(index) => {
                    let mut array: Vec<Box<RawValue>> = serde_json::from_str(current.get()).ok()?;
                    (*index < array.len()).then(|| array.swap_remove(*index))?
                }
            };
        }
        let raw = current.get().trim();
        match raw.as_bytes().first()? {
            b'"' => serde_json::from_str::<String>(raw).ok(),
            b'-' | b'0'..=b'9' => Some(raw.to_owned()),
            _ => None,
        }
    }

    /// The value at this path, if there is one.
    pub fn find<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.steps.iter().try_fold(value, |inside, step| match step {
            Step::Key(key) => inside.get(key.as_str()),
            Step::Index(index) => inside.get(*index),
        })
    }

    /// The text at this path: a string as it is, a number or boolean written out; nothing for
    /// null, objects and lists.
    pub fn text(&self, value: &Value) -> Option<String> {
        match self.find(value)? {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            _ => None,
        }
    }

    /// The path as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for JsonPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonPath, D::Error> {
        let text = String::deserialize(deserializer)?;
        JsonPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for JsonPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_walk_objects_and_lists() {
        let answer = json!({"status": "CANCELADO", "data": {"protocolo": 12345, "itens": [{"ok": true}]},
                            "errors": [{"message": "x"}]});
        let text = |path: &str| JsonPath::parse(path).unwrap().text(&answer);
        assert_eq!(text("status").as_deref(), Some("CANCELADO"));
        assert_eq!(text("data.protocolo").as_deref(), Some("12345"));
        assert_eq!(text("data.itens[0].ok").as_deref(), Some("true"));
        assert_eq!(text("errors[0].message").as_deref(), Some("x"));
        assert_eq!(text("errors[1].message"), None);
        assert_eq!(text("data"), None, "an object is not a text");
        assert_eq!(text("status.nada"), None);
    }

    #[test]
    fn malformed_paths_are_refused_with_the_reason() {
        for (path, why) in [
            ("", "está vazio"),
            ("data..protocolo", "nome vazio entre pontos"),
            (".status", "nome vazio entre pontos"),
            ("data.", "termina com ponto"),
            ("errors[0", "sem `]`"),
            ("errors[x]", "deve ser um número"),
            ("errors]", "sem `[`"),
            ("errors[0]message", "falta um ponto"),
        ] {
            let error = JsonPath::parse(path).unwrap_err();
            assert!(error.contains(why), "{path}: {error}");
        }
    }
}
