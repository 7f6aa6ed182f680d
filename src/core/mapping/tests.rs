//! The request plan: whole requests rendered from configs as support writes them.

use super::*;

/// The plan of a config's `[api]` written as TOML.
fn plan(api: &str) -> RequestPlan {
    let config = crate::config::parse_str(&format!("[api]\nurl = \"https://api.x/v1/c\"\n{api}"), "t.toml")
        .unwrap_or_else(|error| panic!("{error}"));
    if let Err((key, why)) = config.check() {
        panic!("{key}: {why}");
    }
    config.api.request_plan(jiff::tz::TimeZone::UTC)
}

fn item(order: &str) -> Item {
    let mut item = sample_item(std::iter::empty());
    item.order = order.to_owned();
    item.idempotency_key = format!("extrator-{order}-1");
    item
}

#[test]
fn without_a_mapping_it_is_the_original_request() {
    let rendered = plan("").render(&item("9")).unwrap();
    assert_eq!(rendered.method, Method::POST);
    assert_eq!(rendered.url, "https://api.x/v1/c");
    assert_eq!(rendered.headers, [("Idempotency-Key".to_owned(), "extrator-9-1".to_owned())]);
    let body = rendered.body.unwrap();
    assert_eq!(body.content_type, "application/json");
    assert_eq!(body.bytes, serde_json::to_vec(&default_body(&item("9"))).unwrap());
}

#[test]
fn url_values_are_percent_encoded_and_headers_templated() {
    let plan = plan(
        "[api.request]\nmethod = \"PUT\"\nurl = \"https://api.x/v1/pedidos/{order}/cancelamento?cliente={customer}\"\n\
         idempotency_header = \"X-Chave\"\n[api.request.headers]\nX-Pedido = \"{order}\"\n",
    );
    let mut with_slash = item("12/34");
    with_slash.customer = Some("Loja Ção & Cia".into());
    let rendered = plan.render(&with_slash).unwrap();
    assert_eq!(rendered.method, Method::PUT);
    assert_eq!(
        rendered.url,
        "https://api.x/v1/pedidos/12%2F34/cancelamento?cliente=Loja%20%C3%87%C3%A3o%20%26%20Cia"
    );
    assert_eq!(rendered.headers[0], ("X-Chave".to_owned(), "extrator-12/34-1".to_owned()));
    assert!(rendered.headers.contains(&("X-Pedido".to_owned(), "12/34".to_owned())));
    // A URL placeholder the item has no value for fails the item, naming the key.
    let mut no_customer = item("1");
    no_customer.customer = None;
    let error = plan.render(&no_customer).unwrap_err();
    assert_eq!(error.key, "api.request.url");
    assert!(error.message.contains("não tem valor para {customer}"), "{error}");
}

#[test]
fn a_value_that_is_a_dot_segment_never_leaves_its_segment() {
    let delete = plan(
        "[api.request]\nmethod = \"DELETE\"\nurl = \"https://api.x/v1/lojas/{branch}/pedidos/{order}?p={order}\"\n",
    );
    for (branch, order) in [("..", ".."), ("1", ".."), ("1", "."), ("..", "9")] {
        let mut hostile = item(order);
        hostile.branch = branch.to_owned();
        let error = delete.render(&hostile).unwrap_err();
        assert_eq!(error.key, "api.request.url");
        assert!(error.message.contains("nada foi enviado"), "{error}");
    }
    // Dots inside a segment, or encoded by the value itself, stay where they are.
    for (order, sent) in
        [("1.2", "/pedidos/1.2?p=1.2"), ("...", "/pedidos/...?p=..."), ("%2e", "/pedidos/%252e?p=%252e")]
    {
        let rendered = delete.render(&item(order)).unwrap();
        assert!(rendered.url.ends_with(sent), "{}", rendered.url);
    }
    // The URL is shown as it goes on the wire (the parser's normal form).
    let upper = plan("[api.request]\nurl = \"https://API.X:443/v1/{order}\"\n");
    assert_eq!(upper.render(&item("7")).unwrap().url, "https://api.x/v1/7");
}

#[test]
fn a_header_the_item_has_no_value_for_is_left_out_and_a_bad_one_is_refused() {
    let plan = plan("[api.request.headers]\nX-Cliente = \"{customer}\"\nX-Motivo = \"{reason}\"\n");
    let mut no_customer = item("1");
    no_customer.customer = None;
    no_customer.reason = "sem acento".into();
    let rendered = plan.render(&no_customer).unwrap();
    assert!(rendered.headers.iter().all(|(name, _)| name != "X-Cliente"), "{:?}", rendered.headers);
    no_customer.reason = "com acentuação\n".into();
    let error = plan.render(&no_customer).unwrap_err();
    assert_eq!(error.key, "api.request.headers.X-Motivo");
    assert!(error.message.contains("não podem ir num cabeçalho"), "{error}");
}

#[test]
fn form_bodies_and_bodiless_deletes() {
    let form = plan(
        "[api.request]\nformat = \"form\"\n[api.request.body]\nfilial = \"{branch}\"\nmotivo = \"{reason}\"\nurgente = true\n",
    );
    let mut quoted = item("7");
    quoted.reason = "a=b & \"c\"".into();
    let body = form.render(&quoted).unwrap().body.unwrap();
    assert_eq!(body.content_type, "application/x-www-form-urlencoded");
    assert_eq!(String::from_utf8(body.bytes).unwrap(), "filial=1&motivo=a%3Db+%26+%22c%22&urgente=true");

    let delete = plan(
        "[api.request]\nmethod = \"DELETE\"\nurl = \"https://api.x/pedidos/{order}\"\nidempotency_header = \"\"\n",
    );
    let rendered = delete.render(&item("5")).unwrap();
    assert_eq!(
        (rendered.method, rendered.url.as_str(), rendered.body),
        (Method::DELETE, "https://api.x/pedidos/5", None)
    );
    assert!(rendered.headers.is_empty(), "no idempotency header: {:?}", rendered.headers);
}

#[test]
fn the_sample_fills_every_extra_key_the_templates_name() {
    let plan = plan("[api.request.body]\nloja = \"{extra.loja:number}\"\ncanal = \"{extra.canal.nome}\"\n");
    let sample = plan.sample();
    let body: Value = serde_json::from_slice(&plan.render(&sample).unwrap().body.unwrap().bytes).unwrap();
    assert_eq!(body, serde_json::json!({"loja": 1, "canal": "exemplo"}));
}

#[test]
fn urls_never_take_placeholders_in_the_server() {
    for url in ["https://{extra.host}/c", "https://api.x:{branch}/c", "https://api.{order}.x/c"] {
        let error = UrlTemplate::parse(url).unwrap_err();
        assert!(error.contains("nunca no servidor"), "{url}: {error}");
    }
    let error = UrlTemplate::parse("ftp://x/{order}").unwrap_err();
    assert!(error.contains("não é uma URL válida"), "{error}");
    assert!(UrlTemplate::parse("https://api.x/{order}").is_ok());
    assert!(UrlTemplate::parse("https://api.x?pedido={order}").is_ok());
}

#[test]
fn the_support_chapter_shows_what_its_example_really_renders() {
    let chapter = include_str!("../../../docs/api-do-cliente.md");
    let block = |fence: &str| {
        let start = chapter.find(fence).unwrap_or_else(|| panic!("no {fence} block")) + fence.len();
        chapter[start..].split("```").next().unwrap_or_default().trim().to_owned()
    };
    let config = crate::config::parse_str(&block("```toml\n"), "api-do-cliente.md").unwrap();
    config.check().unwrap();
    let plan = config.api.request_plan(config.api.request_zone().unwrap());
    let rendered = plan.render(&plan.sample()).unwrap();
    assert_eq!(String::from_utf8(rendered.body.unwrap().bytes).unwrap(), block("```json\n"));
}
