//! Reads an intake document — one JSON object, an array of objects, or JSON lines — into validated
//! items, or into every reason it cannot be taken, each with its location. Pure: the same code
//! serves `extrator enqueue --json` and the spool directory, so both refuse the same inputs with the
//! same words.

use std::fmt;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::core::item::{self, NewItem};
use crate::core::text::Listed;

/// The largest document accepted; past it, the input is refused before parsing.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// Where a record is in the document, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based record number.
    pub record: usize,
    /// 1-based line where the record starts.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registro {} (linha {})", self.record, self.line)
    }
}

/// A validated item and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub location: Location,
    pub item: NewItem,
}

/// Why a document was refused. `Display` is the whole pt-BR explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeError {
    /// Nothing to queue.
    Empty,
    /// Larger than `MAX_DOCUMENT_BYTES`.
    TooLarge(usize),
    /// Not JSON at all, or broken JSON, at a line and column.
    Syntax { line: usize, column: usize, message: String },
    /// Well-formed JSON whose records are wrong (the first few, and how many).
    Records(Listed<(Location, item::FieldError)>),
}

impl fmt::Display for IntakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntakeError::Empty => f.write_str("entrada vazia: nenhum cancelamento encontrado"),
            IntakeError::TooLarge(size) => write!(
                f,
                "entrada grande demais ({size} bytes; o máximo é {MAX_DOCUMENT_BYTES}): divida-a em arquivos menores"
            ),
            IntakeError::Syntax { line, column, message } => {
                write!(f, "JSON inválido na linha {line}, coluna {column}: {message}")
            }
            IntakeError::Records(errors) => {
                write!(
                    f,
                    "{}:",
                    crate::core::text::count(errors.total as u64, "registro inválido", "registros inválidos")
                )?;
                errors.write_lines(f, |(location, error)| format!("{location}: {error}"))
            }
        }
    }
}

impl std::error::Error for IntakeError {}

/// Parses and validates a whole document. Either every record is valid, or nothing is returned:
/// a batch is all or nothing.
pub fn parse_document(bytes: &[u8]) -> Result<Vec<Record>, IntakeError> {
    let mut records = Vec::new();
    check_document(bytes, |record| records.push(record))?;
    Ok(records)
}

/// Validates a whole document, handing each valid record to `each` as it is read, so a caller
/// that needs only a pass over them (the spool's) holds one at a time, not the document's
/// worth of JSON values. Returns how many records there were; an error means the document is
/// refused (records already handed over are then to be dropped).
pub fn check_document(bytes: &[u8], each: impl FnMut(Record)) -> Result<usize, IntakeError> {
    check_document_with(bytes, |_| {}, each)
}

/// `check_document`, with each value passed through `adapt` before it is validated (a polled
/// source's field names mapped onto ours).
pub fn check_document_with(
    bytes: &[u8],
    mut adapt: impl FnMut(&mut Value),
    mut each: impl FnMut(Record),
) -> Result<usize, IntakeError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(IntakeError::TooLarge(bytes.len()));
    }
    let mut errors = Listed::default();
    let mut count = 0;
    for value in Values::new(bytes)? {
        let (location, mut value) = value?;
        adapt(&mut value);
        count += 1;
        match item::from_json(&value) {
            Ok(item) => each(Record { location, item }),
            Err(error) => errors.push((location, error)),
        }
    }
    if count == 0 {
        return Err(IntakeError::Empty);
    }
    if errors.is_empty() { Ok(count) } else { Err(IntakeError::Records(errors)) }
}

/// The located JSON values of a document, one at a time: the elements of a top-level array, or
/// each top-level value of a single object / JSON-lines stream.
enum Values<'b> {
    Array {
        bytes: &'b [u8],
        elements: std::iter::Enumerate<std::vec::IntoIter<&'b RawValue>>,
        lines: LineCounter,
    },
    Stream {
        bytes: &'b [u8],
        stream: serde_json::StreamDeserializer<'b, serde_json::de::SliceRead<'b>, Strict>,
        lines: LineCounter,
        record: usize,
    },
}

impl<'b> Values<'b> {
    /// Starts reading `bytes`. An array is split up front into raw elements (a slice each, not
    /// a value), which also finds its syntax errors before any record is handed over.
    fn new(bytes: &'b [u8]) -> Result<Values<'b>, IntakeError> {
        let first = bytes.iter().position(|byte| !byte.is_ascii_whitespace());
        if first.is_some_and(|first| bytes[first] == b'[') {
            let array: Vec<&RawValue> =
                serde_json::from_slice(bytes).map_err(|error| syntax_error(&error))?;
            return Ok(Values::Array {
                bytes,
                elements: array.into_iter().enumerate(),
                lines: LineCounter::default(),
            });
        }
        Ok(Values::Stream {
            bytes,
            stream: serde_json::Deserializer::from_slice(bytes).into_iter::<Strict>(),
            lines: LineCounter::default(),
            record: 0,
        })
    }
}

impl Iterator for Values<'_> {
    type Item = Result<(Location, Value), IntakeError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Values::Array { bytes, elements, lines } => {
                let (index, raw) = elements.next()?;
                // The raw element borrows from `bytes`, so its address gives its offset.
                let offset = (raw.get().as_ptr() as usize).saturating_sub(bytes.as_ptr() as usize);
                let location = Location { record: index + 1, line: lines.line_of(bytes, offset) };
                Some(
                    serde_json::from_str::<Strict>(raw.get())
                        .map(|Strict(value)| (location, value))
                        .map_err(|e| syntax_error(&e)),
                )
            }
            Values::Stream { bytes, stream, lines, record } => {
                let start = stream.byte_offset();
                let value = match stream.next()? {
                    Ok(Strict(value)) => value,
                    Err(error) => return Some(Err(syntax_error(&error))),
                };
                let begin = bytes[start..]
                    .iter()
                    .position(|byte| !byte.is_ascii_whitespace())
                    .map_or(start, |skip| start + skip);
                *record += 1;
                Some(Ok((Location { record: *record, line: lines.line_of(bytes, begin) }, value)))
            }
        }
    }
}

/// A JSON value read refusing an object that has the same key twice (serde_json would keep the
/// last one silently: `{"order": "1", "order": "2"}` must not queue order 2 without a word).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

/// Builds a `Value` as serde_json's own visitor does, checking each object's keys.
struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("um valor JSON")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::new();
        while let Some(Strict(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "o campo {} aparece duas vezes no mesmo objeto",
                    crate::core::text::quoted(&key)
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// 1-based lines of increasing byte offsets, counting each newline once: counting from the
/// start for every record made a 100,000-line document take a minute.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    newlines: usize,
}

impl LineCounter {
    /// The line of `offset`, which must not be below the previous call's.
    fn line_of(&mut self, bytes: &[u8], offset: usize) -> usize {
        let offset = offset.min(bytes.len()).max(self.offset);
        self.newlines += bytes[self.offset..offset].iter().filter(|byte| **byte == b'\n').count();
        self.offset = offset;
        self.newlines + 1
    }
}

/// serde_json's syntax error in pt-BR, keeping its line and column.
fn syntax_error(error: &serde_json::Error) -> IntakeError {
    let english = error.to_string();
    // serde_json appends " at line L column C"; the position is reported on its own.
    let english = english.split(" at line ").next().unwrap_or(&english);
    let translations = [
        ("expected value", "esperava um valor JSON (o conteúdo não parece JSON)"),
        ("EOF while parsing", "o arquivo terminou no meio de um valor"),
        ("trailing characters", "há conteúdo depois do fim do JSON"),
        ("trailing comma", "vírgula sobrando antes de ] ou }"),
        ("key must be a string", "a chave de um objeto deve ser um texto entre aspas"),
        ("expected `,` or `}`", "esperava , ou }"),
        ("expected `,` or `]`", "esperava , ou ]"),
        ("expected `:`", "esperava :"),
        ("expected ident", "palavra inválida (use true, false ou null)"),
        ("invalid escape", "sequência de escape inválida num texto"),
        ("invalid unicode code point", "código Unicode inválido num texto"),
        ("control character", "caractere de controle dentro de um texto"),
        ("invalid number", "número inválido"),
        ("number out of range", "número grande demais"),
        ("recursion limit exceeded", "aninhamento profundo demais"),
        ("lone leading surrogate", "código Unicode inválido num texto"),
    ];
    let message = translations.iter().find(|(prefix, _)| english.starts_with(prefix)).map_or_else(
        || {
            if error.is_data() {
                // Our own refusal while reading (a key written twice): pt-BR already.
                english.to_owned()
            } else if english.contains("UTF-8") || english.contains("utf-8") {
                "o conteúdo não é texto UTF-8".to_owned()
            } else {
                format!("erro de sintaxe ({english})")
            }
        },
        |(_, portuguese)| (*portuguese).to_owned(),
    );
    IntakeError::Syntax { line: error.line(), column: error.column(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"{"order": "1", "branch": "1", "reason": "x"}"#;

    #[test]
    fn reads_an_object_an_array_and_json_lines() {
        assert_eq!(parse_document(ONE.as_bytes()).unwrap().len(), 1);
        let array = format!("[{ONE},\n {}]", ONE.replace("\"1\",", "\"2\","));
        let records = parse_document(array.as_bytes()).unwrap();
        assert_eq!(records[1].location, Location { record: 2, line: 2 });
        let lines = format!("{ONE}\n\n{}\n", ONE.replace("\"1\",", "\"3\","));
        let records = parse_document(lines.as_bytes()).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].location, Location { record: 2, line: 3 });
        assert_eq!(records[1].item.order, "3");
    }

    #[test]
    fn every_bad_record_is_listed_with_its_location() {
        let lines =
            format!("{ONE}\n{{\"order\": \"2\"}}\n{{\"order\": \"3\", \"branch\": 1, \"reason\": []}}\n");
        let error = parse_document(lines.as_bytes()).unwrap_err();
        let IntakeError::Records(errors) = &error else { panic!("{error}") };
        assert_eq!(errors.total, 2);
        assert_eq!(errors.first[0].0, Location { record: 2, line: 2 });
        let text = error.to_string();
        assert!(text.contains("registro 2 (linha 2): campo `branch`"), "{text}");
        assert!(text.contains("registro 3 (linha 3): campo `reason`"), "{text}");
    }

    #[test]
    fn syntax_errors_keep_line_and_column_in_pt_br() {
        let error = parse_document(b"{\"order\": \"1\",\n \"branch\": }").unwrap_err();
        assert_eq!(
            error.to_string(),
            "JSON inválido na linha 2, coluna 12: esperava um valor JSON (o conteúdo não parece JSON)"
        );
        let error = parse_document(b"\x00\x9f\x92\x96 binary").unwrap_err();
        assert!(matches!(error, IntakeError::Syntax { line: 1, .. }), "{error}");
        let error = parse_document(b"[{\"order\": \"1\"").unwrap_err();
        assert!(error.to_string().contains("terminou no meio"), "{error}");
    }

    #[test]
    fn empty_and_oversized_inputs_are_refused() {
        assert_eq!(parse_document(b"  \n"), Err(IntakeError::Empty));
        assert_eq!(parse_document(b"[]"), Err(IntakeError::Empty));
        let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert!(matches!(parse_document(&huge), Err(IntakeError::TooLarge(_))));
    }

    #[test]
    fn a_million_bad_records_are_counted_not_kept() {
        let lines = "{}\n".repeat(1_000_000);
        let IntakeError::Records(errors) = parse_document(lines.as_bytes()).unwrap_err() else { panic!() };
        assert_eq!((errors.total, errors.first.len()), (1_000_000, Listed::<()>::MAX));
    }

    #[test]
    fn many_errors_are_summarised() {
        let lines = "{}\n".repeat(25);
        let text = parse_document(lines.as_bytes()).unwrap_err().to_string();
        assert!(text.starts_with("25 registros inválidos:"), "{text}");
        assert!(text.ends_with("… e mais 5"), "{text}");
    }
}
