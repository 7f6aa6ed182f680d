//! Speaking the customer's API: the request built from `[api.request]` and the answer read with
//! `[api.response]`, against the simulated API.

use extrator::simulator::{Background, Scenario};

/// With no `[api.request]`, the request is exactly what extrator has always sent: the method,
/// path, headers in order and body bytes captured from the release before request mapping.
#[test]
fn without_a_mapping_the_request_is_byte_for_byte_the_original() {
    let api = Background::start(Scenario::default()).unwrap();
    let config = crate::client::config_for(&api.url());
    let mut item = crate::client::item("100201");
    item.customer = Some("C-88".into());
    item.extra =
        Some(serde_json::from_str(r#"{"loja": 7, "canal": {"nome": "site", "tags": ["a", "ç"]}}"#).unwrap());
    item.reason = "cliente \"desistiu\" {x}\nção".into();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { extrator::api::Client::new(&config).unwrap().send(&item).await });
    let received = api.shared.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/cancelamentos"));
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter(|(name, _)| name != "host")
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("idempotency-key", "extrator-100201-1"),
            ("content-type", "application/json"),
            ("accept", "*/*"),
            ("user-agent", "extrator/0.1.0"),
            ("content-length", "196"),
        ]
    );
    assert_eq!(
        request.body,
        r#"{"branch":"1","cancelled_at":"2026-11-22T10:30:00-03:00","customer":"C-88","extra":{"canal":{"nome":"site","tags":["a","ç"]},"loja":7},"order":"100201","reason":"cliente \"desistiu\" {x}\nção"}"#
    );
}
