//! Human durations as support writes them in the config and on the command line: `"30s"`, `"5m"`,
//! `"1h30m"`, `"500ms"`, `"7d"`.
//!
//! Written here rather than taken from `humantime` (unmaintained, RUSTSEC-2025-0014) or jiff's
//! friendly-duration parser (in the lockfile, and it reads most of the same text): the grammar we
//! accept is small, and every error must say in pt-BR which unit was wrong and what to write.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from (and written back to) a human string such as `"30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Builds one from whole seconds.
    pub const fn secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }

    /// The duration itself.
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Why a duration string was refused, in pt-BR; shown to the operator next to the key or flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDurationError(String);

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseDurationError {}

const UNITS_HINT: &str =
    "use um número seguido de ms, s, m, h ou d, por exemplo \"30s\", \"5m\" ou \"1h30m\"";

/// Parses `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`, `"2d"`. A bare number is refused: a support
/// analyst who writes `timeout = "30"` should be told the unit, not get 30 of something.
pub fn parse(text: &str) -> Result<Duration, ParseDurationError> {
    let trimmed = text.trim();
    let refuse = |why: &str| ParseDurationError(format!("duração inválida \"{text}\": {why}; {UNITS_HINT}"));
    if trimmed.is_empty() {
        return Err(refuse("vazia"));
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(refuse("esperava um número"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| refuse("número grande demais"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = rest[unit_len..].trim_start();
        let seconds_per_unit = match unit {
            "ms" => None,
            "s" | "seg" => Some(1),
            "m" | "min" => Some(60),
            "h" => Some(3_600),
            "d" => Some(86_400),
            "" => return Err(refuse("falta a unidade")),
            other => return Err(refuse(&format!("unidade desconhecida \"{other}\""))),
        };
        let part = match seconds_per_unit {
            None => Some(Duration::from_millis(number)),
            Some(factor) => number.checked_mul(factor).map(Duration::from_secs),
        };
        total = part.and_then(|part| total.checked_add(part)).ok_or_else(|| refuse("grande demais"))?;
    }
    Ok(total)
}

/// Formats a duration in the same grammar `parse` reads, largest units first (`"1h30m"`).
pub fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let mut secs = duration.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse(text).map(HumanDuration)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Accepts only strings, so that `timeout = 30` gets the same hint as `"30"`.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "uma duração entre aspas ({UNITS_HINT})")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_support_writes() {
        let cases = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("250ms", 250),
            ("2d", 172_800_000),
            (" 10s ", 10_000),
            ("0s", 0),
        ];
        for (text, millis) in cases {
            assert_eq!(parse(text).map(|d| d.as_millis()), Ok(millis), "{text}");
        }
    }

    #[test]
    fn refuses_with_a_pt_br_hint() {
        for text in ["30", "", "s", "30x", "1.5h", "-5s", "99999999999999999999s", "5 minutos"] {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.starts_with("duração inválida"), "{text}: {error}");
            assert!(error.contains("\"30s\""), "{text}: {error}");
        }
        assert!(parse("30").unwrap_err().to_string().contains("falta a unidade"));
        assert!(parse("30x").unwrap_err().to_string().contains("unidade desconhecida \"x\""));
    }

    #[test]
    fn format_round_trips() {
        for text in ["30s", "5m", "1h30m", "250ms", "2d", "1d1h1m1s", "0s"] {
            let duration = parse(text).unwrap();
            assert_eq!(format(duration), text);
            assert_eq!(parse(&format(duration)).unwrap(), duration);
        }
    }
}
