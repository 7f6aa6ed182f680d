//! `[api.request.body]`: a TOML table that mirrors the JSON (or form) to send. Tables become
//! objects, arrays stay arrays, numbers and booleans are constants, and every string is a
//! template (a constant when it has no placeholder). The body is built as a value and serialized
//! by serde_json, so a `reason` with quotes or braces cannot change its shape.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use super::template::{Template, Use};

/// One node of the body template.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyNode {
    /// An object, keys in the config's order.
    Table(Vec<(String, BodyNode)>),
    Array(Vec<BodyNode>),
    /// A string: placeholders, or a constant text.
    Template(Template),
    /// A number or a boolean from the config.
    Constant(Value),
}

/// A body rendered for one item: the value to serialize, keys in the config's order.
#[derive(Debug, PartialEq)]
pub enum Rendered<'t> {
    Object(Vec<(&'t str, Rendered<'t>)>),
    Array(Vec<Rendered<'t>>),
    Value(Value),
}

/// A body that could not be rendered: the pt-BR reason and the key path inside the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// From the outermost key inwards (`["cancel", "date"]`, `["itens", "[0]"]`).
    pub path: Vec<String>,
    pub message: String,
}

impl RenderError {
    /// `api.request.body.cancel.date`.
    pub fn key(&self) -> String {
        let mut key = "api.request.body".to_owned();
        for part in &self.path {
            if !part.starts_with('[') {
                key.push('.');
            }
            key.push_str(part);
        }
        key
    }
}

impl BodyNode {
    /// Renders the node for `item`; `None` when it is a lone placeholder the item has no value
    /// for, which its object then leaves out.
    pub fn render<'t>(
        &'t self,
        input: &super::template::Input<'_>,
    ) -> Result<Option<Rendered<'t>>, RenderError> {
        let inside = |part: String| {
            move |mut error: RenderError| {
                error.path.insert(0, part);
                error
            }
        };
        Ok(Some(match self {
            BodyNode::Table(entries) => {
                let mut object = Vec::with_capacity(entries.len());
                for (key, node) in entries {
                    if let Some(value) = node.render(input).map_err(inside(key.clone()))? {
                        object.push((key.as_str(), value));
                    }
                }
                Rendered::Object(object)
            }
            BodyNode::Array(nodes) => {
                let mut array = Vec::with_capacity(nodes.len());
                for (index, node) in nodes.iter().enumerate() {
                    if let Some(value) = node.render(input).map_err(inside(format!("[{index}]")))? {
                        array.push(value);
                    }
                }
                Rendered::Array(array)
            }
            BodyNode::Template(template) => match template
                .render_value(input)
                .map_err(|message| RenderError { path: Vec::new(), message })?
            {
                Some(value) => Rendered::Value(value),
                None => return Ok(None),
            },
            BodyNode::Constant(value) => Rendered::Value(value.clone()),
        }))
    }

    /// Every template in the body, with its key path, for checks and the sample item.
    pub fn templates(&self) -> Vec<(String, &Template)> {
        let mut found = Vec::new();
        self.collect("api.request.body".to_owned(), &mut found);
        found
    }

    fn collect<'t>(&'t self, key: String, found: &mut Vec<(String, &'t Template)>) {
        match self {
            BodyNode::Table(entries) => {
                for (name, node) in entries {
                    node.collect(format!("{key}.{name}"), found);
                }
            }
            BodyNode::Array(nodes) => {
                for (index, node) in nodes.iter().enumerate() {
                    node.collect(format!("{key}[{index}]"), found);
                }
            }
            BodyNode::Template(template) => found.push((key, template)),
            BodyNode::Constant(_) => {}
        }
    }

    /// A form body is flat: the first key (`api.request.body.…`) holding a table or an array,
    /// or a value that is not text, with why.
    pub fn not_flat(&self) -> Option<(String, String)> {
        let BodyNode::Table(entries) = self else {
            return Some(("api.request.body".to_owned(), "deve ser uma tabela".to_owned()));
        };
        entries.iter().find_map(|(name, node)| {
            let key = format!("api.request.body.{name}");
            match node {
                BodyNode::Table(_) | BodyNode::Array(_) => Some((
                    key,
                    "com format = \"form\" o corpo só tem campos simples (sem tabelas nem listas); \
                     use format = \"json\" para um corpo aninhado"
                        .to_owned(),
                )),
                BodyNode::Template(template) => Template::parse(template.source(), Use::Text)
                    .err()
                    .map(|why| (key, format!("{why} (com format = \"form\" todo campo é texto)"))),
                BodyNode::Constant(_) => None,
            }
        })
    }
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Rendered::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            Rendered::Array(values) => {
                let mut seq = serializer.serialize_seq(Some(values.len()))?;
                for value in values {
                    seq.serialize_element(value)?;
                }
                seq.end()
            }
            Rendered::Value(value) => value.serialize(serializer),
        }
    }
}

impl Rendered<'_> {
    /// The fields of a flat object as form pairs (texts as they are, numbers and booleans
    /// written out).
    pub fn form_pairs(&self) -> Vec<(&str, String)> {
        let Rendered::Object(entries) = self else { return Vec::new() };
        entries
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    Rendered::Value(Value::String(text)) => text.clone(),
                    Rendered::Value(other) => other.to_string(),
                    other => serde_json::to_string(other).unwrap_or_default(),
                };
                (*key, text)
            })
            .collect()
    }
}

impl Serialize for BodyNode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            BodyNode::Table(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            BodyNode::Array(nodes) => {
                let mut seq = serializer.serialize_seq(Some(nodes.len()))?;
                for node in nodes {
                    seq.serialize_element(node)?;
                }
                seq.end()
            }
            BodyNode::Template(template) => serializer.serialize_str(template.source()),
            BodyNode::Constant(value) => value.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for BodyNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BodyNode, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// Builds a `BodyNode` from whatever TOML value it meets.
struct NodeVisitor;

/// The key under which the TOML deserializer hands over a date-time value.
const TOML_DATETIME: &str = "$__toml_private_datetime";

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = BodyNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("um texto, número, valor lógico, lista ou tabela")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<BodyNode, E> {
        Ok(BodyNode::Constant(Value::Bool(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<BodyNode, E> {
        Ok(BodyNode::Constant(Value::from(value)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<BodyNode, E> {
        Ok(BodyNode::Constant(Value::from(value)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<BodyNode, E> {
        serde_json::Number::from_f64(value)
            .map(|number| BodyNode::Constant(Value::Number(number)))
            .ok_or_else(|| E::custom("número inválido (infinito ou NaN) no corpo"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<BodyNode, E> {
        Template::parse(value, Use::Value).map(BodyNode::Template).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BodyNode, A::Error> {
        let mut nodes = Vec::new();
        while let Some(node) = seq.next_element::<BodyNode>()? {
            nodes.push(node);
        }
        Ok(BodyNode::Array(nodes))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BodyNode, A::Error> {
        let mut entries: Vec<(String, BodyNode)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == TOML_DATETIME {
                // A bare TOML date (`data = 2026-11-22`) is sent as the text it was written as.
                let text: String = map.next_value()?;
                return Ok(BodyNode::Template(Template::literal(&text)));
            }
            let node = map.next_value::<BodyNode>()?;
            entries.push((key, node));
        }
        Ok(BodyNode::Table(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(toml_text: &str) -> BodyNode {
        #[derive(serde::Deserialize)]
        struct Wrapper {
            body: BodyNode,
        }
        toml::from_str::<Wrapper>(toml_text).unwrap().body
    }

    #[test]
    fn the_body_mirrors_the_table_in_its_order_and_types() {
        let node = body(
            "[body]\nintegrationHubServiceId = \"5f0c1d2e\"\norderKeyType = \"ORDER_ID\"\norderKey = \"{order}\"\n\
             branch = \"{branch:number}\"\nurgent = true\nweight = 1.5\ntags = [\"a\", \"{extra.loja}\"]\n\
             customer = \"{customer}\"\n[body.cancel]\nreason = \"{reason}\"\nwhen = \"{cancelled_at:epoch}\"\n",
        );
        let mut item = crate::core::mapping::sample_item(std::iter::empty());
        item.order = "100201".into();
        item.reason = "aspas \" e chaves {} e\nlinha".into();
        item.customer = None;
        item.extra = serde_json::from_str(r#"{"loja": 7}"#).ok();
        item.cancelled_at = "2026-11-22T10:30:00-03:00".into();
        let rendered = node
            .render(&crate::core::mapping::template::Input::new(&item, &jiff::tz::TimeZone::UTC))
            .unwrap()
            .unwrap();
        let text = serde_json::to_string(&rendered).unwrap();
        assert_eq!(
            text,
            r#"{"integrationHubServiceId":"5f0c1d2e","orderKeyType":"ORDER_ID","orderKey":"100201","branch":1,"urgent":true,"weight":1.5,"tags":["a",7],"cancel":{"reason":"aspas \" e chaves {} e\nlinha","when":1795354200}}"#
        );
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["cancel"]["reason"], "aspas \" e chaves {} e\nlinha");
    }

    #[test]
    fn render_errors_name_the_key() {
        let node = body("[body.itens]\nlista = [\"{order:number}\"]\n");
        let mut item = crate::core::mapping::sample_item(std::iter::empty());
        item.order = "A-1".into();
        let error = node
            .render(&crate::core::mapping::template::Input::new(&item, &jiff::tz::TimeZone::UTC))
            .unwrap_err();
        assert_eq!(error.key(), "api.request.body.itens.lista[0]");
        assert!(error.message.contains("não é um número"), "{error:?}");
    }

    #[test]
    fn form_bodies_must_be_flat_text() {
        assert_eq!(body("[body]\na = \"{order}\"\nb = 2\n").not_flat(), None);
        let (key, why) = body("[body]\na = \"x\"\n[body.b]\nc = 1\n").not_flat().unwrap();
        assert_eq!(key, "api.request.body.b");
        assert!(why.contains("campos simples"), "{why}");
        let (key, why) = body("[body]\nn = \"{branch:number}\"\n").not_flat().unwrap();
        assert_eq!(key, "api.request.body.n");
        assert!(why.contains("todo campo é texto"), "{why}");
    }
}
