//! Fuzzes the whole classification of an answer: an arbitrary status, content type,
//! `Retry-After`, `Location` and body (HTML, JSON, plain text, invalid UTF-8), read by the built-in
//! rules and by configured `[api.response]` rules, as a cancellation's answer, a poll's and a
//! token endpoint's, with the client's secret masking in front. Every answer gets a verdict, never a panic, and the
//! message is one bounded line. Layout: 2 bytes status, 1 byte of choices (content type, rules,
//! poll), 1 byte length of Retry-After, that many bytes, 1 byte length of Location, that many
//! bytes, the rest is the body. Seeded with the HTML that once crashed the daemon
//! (`corpus/classify/html-title-dotted-i`).
#![no_main]

use std::sync::OnceLock;

use extrator::io::secrets::Redactor;
use extrator::core::classify::{Exchange, Response, Rules, classify, classify_poll};

/// Response rules as support would write them, with paths into arrays and nested objects.
fn configured() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let text = "[api]\nurl = \"https://x/c\"\n[api.response]\nstatus_path = \"data.situacao\"\n\
                    success_values = [\"CANCELADO\"]\nfailure_values = [\"RECUSADO\"]\nprocessing_values = [\"EM ANDAMENTO\"]\n\
                    message_paths = [\"erros[0].mensagem\", \"data.msg\"]\nreceipt_path = \"data.protocolo\"\n\
                    async_poll = \"location\"\n";
        Rules::from_config(&extrator::config::parse_str(text, "fuzz").expect("fuzz rules"))
    })
}

/// Takes a length byte and that many bytes.
fn field<'d>(data: &mut &'d [u8]) -> Option<String> {
    let (&length, rest) = data.split_first()?;
    let length = usize::from(length).min(rest.len());
    let (value, rest) = rest.split_at(length);
    *data = rest;
    (!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]) % 1000;
    let choices = data[2];
    let mut rest = &data[3..];
    let retry_after = field(&mut rest);
    let location = field(&mut rest);
    let content_type = match choices % 4 {
        0 => None,
        1 => Some("application/json".to_owned()),
        2 => Some("text/html".to_owned()),
        _ => Some("text/plain".to_owned()),
    };
    let rules = if choices & 4 == 0 { Rules::default() } else { configured().clone() };
    let body = rest.to_vec();
    // The client masks what it sent before anything reads the answer.
    let mut redactor = Redactor::of_secrets(["S3nh4"]);
    redactor.add_basic("user", "S3nh4");
    let masked = redactor.redact(&String::from_utf8_lossy(&body), Some("token-x"));
    for body in [body, masked.into_bytes()] {
        let mut exchange = Exchange::Response(Response {
            status,
            content_type: content_type.clone(),
            retry_after: retry_after.clone(),
            location: location.clone(),
            body,
        });
        if choices & 16 != 0 {
            exchange = Exchange::TokenEndpoint(Box::new(exchange));
        }
        let verdict = if choices & 8 == 0 {
            classify(&exchange, &rules, jiff::Timestamp::UNIX_EPOCH)
        } else {
            classify_poll(&exchange, &rules, jiff::Timestamp::UNIX_EPOCH)
        };
        if let Some(message) = &verdict.message {
            assert!(message.chars().count() <= 700, "{message}");
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
        if let Some(receipt) = &verdict.receipt {
            assert!(receipt.chars().count() <= 120 && !receipt.chars().any(char::is_control), "{receipt:?}");
        }
        let _ = extrator::core::classify::excerpt(match &exchange {
            Exchange::Response(response) => &response.body,
            _ => &[],
        });
    }
});
