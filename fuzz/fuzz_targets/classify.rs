//! Fuzzes the response classifier with an arbitrary status, headers and body: every response gets
//! a verdict, never a panic. Layout: 2 bytes status, 1 byte content-type choice, 1 byte length of
//! Retry-After, that many bytes of Retry-After, the rest is the body.
#![no_main]

use extrator::classify::{Exchange, Response, Rules, classify};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]) % 1000;
    let content_type = match data[2] % 4 {
        0 => None,
        1 => Some("application/json".to_owned()),
        2 => Some("text/html".to_owned()),
        _ => Some("text/plain".to_owned()),
    };
    let retry_len = usize::from(data[3]).min(data.len() - 4);
    let retry_after = Some(String::from_utf8_lossy(&data[4..4 + retry_len]).into_owned());
    let body = data[4 + retry_len..].to_vec();
    let exchange = Exchange::Response(Response { status, content_type, retry_after, location: None, body });
    let verdict = classify(&exchange, &Rules::default(), jiff::Timestamp::UNIX_EPOCH);
    if let Some(message) = verdict.message {
        assert!(message.chars().count() <= 600);
    }
});
