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
    runtime.block_on(async { extrator::io::api::Client::new(&config).unwrap().send(&item).await });
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

use std::time::Duration;

use extrator::simulator::contract::{Body, Contract, Kind, Login, Route, Style};
use extrator::simulator::{Behavior, Received};

use crate::util::{Env, expect_exit, signal, wait_until};

/// Items not yet in a final state.
const UNFINISHED: &str = "SELECT COUNT(*) FROM items WHERE state NOT IN ('done', 'failed')";

/// One of the shipped examples, and what a test changes to run it on loopback.
struct Example {
    /// The file in docs/exemplos/.
    file: &'static str,
    /// The API's origin in the file, replaced by the simulator's.
    origin: &'static str,
    /// The password the simulated API expects.
    password: &'static str,
}

/// How one delivery ended: the item's state, code, message and receipt, and what the API saw.
struct Ended {
    state: String,
    code: Option<String>,
    message: Option<String>,
    receipt: Option<String>,
    received: Vec<Received>,
    env: Env,
}

impl Example {
    /// The example as shipped.
    fn text(&self) -> String {
        std::fs::read_to_string(format!("{}/docs/exemplos/{}", env!("CARGO_MANIFEST_DIR"), self.file))
            .unwrap()
    }

    /// An installation running `text` (the example, maybe edited) against `api`.
    fn install(&self, text: &str, api: &Background) -> Env {
        let text = text
            .replace(self.origin, &format!("http://{}", api.addr))
            .replace("async_poll_interval = \"30s\"", "async_poll_interval = \"100ms\"");
        let env = Env::with_config(&text);
        let password = env.dir.path().join("senha");
        std::fs::write(&password, format!("{}\n", self.password)).unwrap();
        let config = std::fs::read_to_string(&env.config).unwrap();
        std::fs::write(&env.config, config.replace("/etc/extrator/senha", &password.display().to_string()))
            .unwrap();
        env
    }

    /// Runs the daemon on the example edited by `edit` until `record` (one JSON item) is final.
    fn deliver(&self, api: Background, edit: impl Fn(&str) -> String, record: &str) -> Ended {
        let env = self.install(&edit(&self.text()), &api);
        expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], record.as_bytes()), 0);
        let mut daemon = env.spawn_daemon();
        wait_until("the item to be final", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
        signal(&daemon, "TERM");
        assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
        let (state, code, message, receipt) = env
            .db()
            .query_row("SELECT state, last_code, last_message, receipt FROM items", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap();
        Ended { state, code, message, receipt, received: api.shared.received(), env }
    }
}

/// Asserts a mistake ended as a rejected cancellation with the API's own words.
#[track_caller]
fn rejected(ended: &Ended, words: &str) {
    assert_eq!((ended.state.as_str(), ended.code.as_deref()), ("failed", Some("07")), "{:?}", ended.message);
    let message = ended.message.clone().unwrap_or_default();
    assert!(message.contains(words), "message {message:?} lacks {words:?}");
}

/// Every example passes `extrator check` against its simulated API (exit 0, the sample request
/// shown), and loads unchanged with the daemon's loader.
#[track_caller]
fn checks(example: &Example, api: &Background) {
    extrator::config::load_with_env(
        std::path::Path::new(&format!("{}/docs/exemplos/{}", env!("CARGO_MANIFEST_DIR"), example.file)),
        [],
    )
    .unwrap_or_else(|error| panic!("{}: {error}", example.file));
    let env = example.install(&example.text(), api);
    let (stdout, stderr) = expect_exit(&env.run(&["check"]), 0);
    assert!(stdout.contains("✓ requisição: montada para um pedido de exemplo"), "{stdout}");
    // "Tudo certo" only when the credentials were seen accepted; a simulated API that answers the
    // test GET with 405 before looking at them gets the honest "not verified".
    let verified = ["✓ credenciais: token obtido", "✓ credenciais: aceitas pela API"]
        .iter()
        .any(|line| stdout.contains(line));
    if verified {
        assert!(stdout.contains("Tudo certo"), "{stdout}");
    } else {
        assert!(
            stdout.contains("⚠ credenciais não verificadas") && !stdout.contains("Tudo certo"),
            "{stdout}"
        );
    }
    assert!(!stdout.contains(example.password) && !stderr.contains(example.password), "the password leaked");
}

const HUB: Example =
    Example { file: "integration-hub.toml", origin: "https://hub.exemplo.com.br", password: "S3nh4-Hub" };

/// The integration hub as it validates requests.
fn hub_api() -> Background {
    let service = "8f14e45f-ea0b-4a7c-9d2e-3b1c5a6f7d90".to_owned();
    let contract = Contract::new(
        Style::Hub,
        vec![
            Route::new("POST", "/api/v1/orders/cancel", Body::Json)
                .field("integrationHubServiceId", Kind::OneOf(vec![service]))
                .field("orderKeyType", Kind::OneOf(vec!["ORDER_ID".into(), "ORDER_CODE".into()]))
                .field("orderKey", Kind::Text)
                .field("branchId", Kind::Number)
                .field("reason", Kind::Text)
                .field("cancelledAt", Kind::Rfc3339)
                .order_in("orderKey"),
        ],
    );
    let scenario = Scenario::default().order(
        "100201",
        vec![
            Behavior::json(202, r#"{"status":"RECEIVED"}"#),
            Behavior::json(208, r#"{"errors":[{"key":"orderKey","message":"still processing"}]}"#),
            Behavior::json(200, r#"{"orderKey":"100201","status":"CANCELLED","cancellationId":"CNL-7F3A"}"#),
        ],
    );
    let api = Background::start(scenario).unwrap();
    api.shared.set_contract(contract);
    api.shared.require_authorization("Basic d2ludGhvci1pbnRlZ3JhY2FvOlMzbmg0LUh1Yg==");
    api
}

/// A reason that would break a body built by concatenation.
const HOSTILE_REASON: &str = "cliente \"desistiu\" {x}, \\ fim\nsegunda linha: ação";

#[test]
fn the_integration_hub_example_delivers_and_its_mistakes_are_07_with_the_apis_words() {
    checks(&HUB, &hub_api());
    let record = serde_json::json!({"order": "100201", "branch": "12", "reason": HOSTILE_REASON,
                                    "cancelled_at": "2026-11-22T10:30:00-03:00"})
    .to_string();
    let ended = HUB.deliver(hub_api(), |text| text.to_owned(), &record);
    assert_eq!(
        (ended.state.as_str(), ended.receipt.as_deref()),
        ("done", Some("CNL-7F3A")),
        "{:?}",
        ended.message
    );
    let sent: Vec<&Received> = ended.received.iter().filter(|request| request.method == "POST").collect();
    assert_eq!(sent.len(), 3, "202 → 208 → 200 resends the same request");
    let body: serde_json::Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(body["reason"], HOSTILE_REASON, "the reason arrives intact and the JSON stays valid");
    assert_eq!(
        (body["orderKey"].clone(), body["branchId"].clone()),
        (serde_json::json!("100201"), serde_json::json!(12))
    );
    assert_eq!(body["cancelledAt"], "2026-11-22T13:30:00Z");
    assert!(
        sent.iter().all(|request| request.header("idempotency-key") == sent[0].header("idempotency-key"))
    );
    // The receipt is in `show`, `list --json` and the journal event.
    let (shown, _) = expect_exit(&ended.env.run(&["show", "--order", "100201"]), 0);
    assert!(shown.contains("Protocolo da API:") && shown.contains("CNL-7F3A"), "{shown}");
    let (listed, _) = expect_exit(&ended.env.run(&["list", "--json"]), 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&listed).unwrap()[0]["receipt"], "CNL-7F3A");
    assert!(ended.env.daemon_log().contains("protocolo da API: CNL-7F3A"), "{}", ended.env.daemon_log());

    let mistakes: [(&str, &str, &str); 4] = [
        (
            "orderKey = \"{order}\"",
            "orderKey = \"{order:number}\"",
            "orderKey: body.orderKey must be a string",
        ),
        ("orderKeyType = \"ORDER_ID\"\n", "", "orderKeyType: body.orderKeyType is required"),
        ("method = \"POST\"", "method = \"PUT\"", "Method Not Allowed"),
        ("/orders/cancel\"", "/orders/cancelar\"", "Cannot POST /api/v1/orders/cancelar"),
    ];
    for (right, wrong, words) in mistakes {
        let ended = HUB.deliver(hub_api(), |text| text.replace(right, wrong), &record);
        rejected(&ended, words);
    }
}

const REST_PUT: Example = Example {
    file: "rest-put-formulario.toml",
    origin: "https://erp-api.exemplo.com.br",
    password: "S3nh4-Put",
};

/// The REST API with a login, a PUT on the order's path and a form body.
fn rest_put_api() -> Background {
    let mut contract = Contract::new(
        Style::Rest,
        vec![
            Route::new("PUT", "/v2/pedidos/{order}/cancelamento", Body::Form)
                .field("filial", Kind::Number)
                .field("motivo", Kind::Text)
                .field("data_cancelamento", Kind::DateBr),
        ],
    );
    contract.login = Some(Login {
        path: "/v2/auth/login".into(),
        expect: vec![("usuario".into(), "winthor".into()), ("senha".into(), "S3nh4-Put".into())],
        answer: r#"{"data":{"token":"tok-put-1"}}"#.into(),
        authorization: "Bearer tok-put-1".into(),
    });
    let scenario = Scenario::default()
        .order(
            "100301",
            vec![Behavior::json(
                200,
                r#"{"status":"CANCELADO","data":{"protocolo":"2026/000123","mensagem":"Pedido cancelado"}}"#,
            )],
        )
        .order(
            "100302",
            vec![Behavior::json(200, r#"{"status":"RECUSADO","data":{"mensagem":"pedido já faturado"}}"#)],
        );
    let api = Background::start(scenario).unwrap();
    api.shared.set_contract(contract);
    api
}

#[test]
fn the_rest_put_form_example_delivers_and_its_mistakes_are_07_with_the_apis_words() {
    checks(&REST_PUT, &rest_put_api());
    let record = |order: &str| {
        serde_json::json!({"order": order, "branch": "3", "reason": "troca & devolução = 100%",
                           "cancelled_at": "2026-11-22T13:30:00Z"})
        .to_string()
    };
    let ended = REST_PUT.deliver(rest_put_api(), |text| text.to_owned(), &record("100301"));
    assert_eq!(
        (ended.state.as_str(), ended.receipt.as_deref()),
        ("done", Some("2026/000123")),
        "{:?}",
        ended.message
    );
    let put = ended.received.iter().find(|request| request.method == "PUT").unwrap();
    assert_eq!(put.path, "/v2/pedidos/100301/cancelamento");
    let form: Vec<(String, String)> = form_urlencoded::parse(put.body.as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    assert_eq!(
        form,
        [
            ("filial".to_owned(), "3".to_owned()),
            ("motivo".to_owned(), "troca & devolução = 100%".to_owned()),
            ("data_cancelamento".to_owned(), "22/11/2026 10:30".to_owned()),
        ],
        "the date in Brasília time"
    );
    // A 200 whose status is a failure value is a rejected cancellation, with the API's message.
    let refused = REST_PUT.deliver(rest_put_api(), |text| text.to_owned(), &record("100302"));
    rejected(&refused, "pedido já faturado");

    let mistakes: [(&str, &str, &str); 4] = [
        (
            "\"{cancelled_at:dd/mm/aaaa HH:MM}\"",
            "\"{cancelled_at}\"",
            "campo data_cancelamento inválido: use o formato dd/mm/aaaa HH:MM",
        ),
        ("motivo = \"{reason}\"\n", "", "campo obrigatório ausente: motivo"),
        (
            "method = \"PUT\"",
            "method = \"POST\"",
            "método POST não permitido em /v2/pedidos/100301/cancelamento",
        ),
        (
            "/v2/pedidos/{order}",
            "/v2/pedido/{order}",
            "recurso não encontrado: PUT /v2/pedido/100301/cancelamento",
        ),
    ];
    for (right, wrong, words) in mistakes {
        let ended = REST_PUT.deliver(rest_put_api(), |text| text.replace(right, wrong), &record("100301"));
        rejected(&ended, words);
    }
}

const REST_DELETE: Example =
    Example { file: "rest-delete.toml", origin: "https://pedidos.exemplo.com.br", password: "S3nh4-Del" };

/// The REST API that cancels with a DELETE and refuses unknown headers.
fn rest_delete_api() -> Background {
    let mut contract = Contract::new(
        Style::Rest,
        vec![
            Route::new("DELETE", "/api/pedidos/{order}", Body::None)
                .query("filial", Kind::Number)
                .query("motivo", Kind::Text),
        ],
    );
    contract.refused_headers = vec!["idempotency-key".into()];
    let scenario = Scenario::default().order(
        "2026/100401",
        vec![Behavior::json(200, r#"{"pedido":"2026/100401","cancelamento":{"numero":"CNC-100401"}}"#)],
    );
    let api = Background::start(scenario).unwrap();
    api.shared.set_contract(contract);
    api.shared.require_authorization("Basic aW50ZWdyYWNhbzpTM25oNC1EZWw=");
    api
}

#[test]
fn the_rest_delete_example_delivers_and_its_mistakes_are_07_with_the_apis_words() {
    checks(&REST_DELETE, &rest_delete_api());
    let record = serde_json::json!({"order": "2026/100401", "branch": "7", "customer": "C 9",
                                    "reason": "loja fechada & sem estoque: ação"})
    .to_string();
    let ended = REST_DELETE.deliver(rest_delete_api(), |text| text.to_owned(), &record);
    assert_eq!(
        (ended.state.as_str(), ended.receipt.as_deref()),
        ("done", Some("CNC-100401")),
        "{:?}",
        ended.message
    );
    let delete = ended.received.iter().find(|request| request.method == "DELETE").unwrap();
    assert!(delete.path.starts_with("/api/pedidos/2026%2F100401?filial=7&motivo="), "{}", delete.path);
    let query = delete.path.split_once('?').unwrap().1;
    let motivo = form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "motivo").unwrap().1;
    assert_eq!(motivo, "loja fechada & sem estoque: ação", "percent-encoded, arrives intact");
    assert!(delete.body.is_empty() && delete.header("idempotency-key").is_none());
    assert!(delete.header("x-request-id").is_some_and(|key| key.starts_with("extrator-2026/100401-")));

    let mistakes: [(&str, &str, &str); 5] = [
        ("filial={branch}", "filial={customer}", "campo filial deve ser numérico"),
        ("&motivo={reason}", "", "campo obrigatório ausente: motivo"),
        (
            "method = \"DELETE\"",
            "method = \"POST\"",
            "método POST não permitido em /api/pedidos/2026%2F100401",
        ),
        (
            "/api/pedidos/{order}",
            "/api/pedido/{order}",
            "recurso não encontrado: DELETE /api/pedido/2026%2F100401",
        ),
        ("idempotency_header = \"\"\n", "", "cabeçalho não permitido: idempotency-key"),
    ];
    for (right, wrong, words) in mistakes {
        let ended = REST_DELETE.deliver(rest_delete_api(), |text| text.replace(right, wrong), &record);
        rejected(&ended, words);
    }
}

const LOCATION: Example =
    Example { file: "assincrona-location.toml", origin: "https://api.exemplo.com.br", password: "S3nh4-Loc" };

/// The asynchronous API: a 202 with a Location, polled by GET until it says CONCLUIDO.
fn location_api() -> Background {
    let contract = Contract::new(
        Style::Rest,
        vec![
            Route::new("POST", "/v1/cancelamentos", Body::Json)
                .field("pedido", Kind::Text)
                .field("filial", Kind::Text)
                .field("motivo", Kind::Text)
                .field("data", Kind::Rfc3339)
                .order_in("pedido"),
            Route::new("GET", "/v1/operacoes/{order}", Body::None),
        ],
    );
    let scenario = Scenario::default()
        .order(
            "100501",
            vec![
                Behavior::json(202, r#"{"situacao":"PROCESSANDO"}"#)
                    .header("Location", "/v1/operacoes/100501"),
                Behavior::json(200, r#"{"situacao":"PROCESSANDO"}"#),
                Behavior::json(200, r#"{"situacao":"CONCLUIDO","protocolo":"OP-100501"}"#),
            ],
        )
        .order(
            "100502",
            vec![
                Behavior::json(202, "{}")
                    .header("Location", "http://outro.exemplo.invalid/v1/operacoes/100502"),
            ],
        );
    let api = Background::start(scenario).unwrap();
    api.shared.set_contract(contract);
    api.shared.require_authorization("Basic aW50ZWdyYWNhbzpTM25oNC1Mb2M=");
    api
}

#[test]
fn the_location_example_polls_the_url_the_api_gave_and_only_on_its_server() {
    checks(&LOCATION, &location_api());
    let record =
        |order: &str| serde_json::json!({"order": order, "branch": "1", "reason": "desistiu"}).to_string();
    let ended = LOCATION.deliver(location_api(), |text| text.to_owned(), &record("100501"));
    assert_eq!(
        (ended.state.as_str(), ended.receipt.as_deref()),
        ("done", Some("OP-100501")),
        "{:?}",
        ended.message
    );
    let requests: Vec<(&str, &str)> =
        ended.received.iter().map(|request| (request.method.as_str(), request.path.as_str())).collect();
    assert_eq!(
        requests,
        [("POST", "/v1/cancelamentos"), ("GET", "/v1/operacoes/100501"), ("GET", "/v1/operacoes/100501")]
    );
    assert!(ended.received.iter().all(|request| request.header("authorization").is_some()));

    let foreign = LOCATION.deliver(location_api(), |text| text.to_owned(), &record("100502"));
    rejected(&foreign, "fora do servidor da API");
    assert_eq!(foreign.received.len(), 1, "nothing was sent anywhere else");

    let mistakes: [(&str, &str, &str); 4] = [
        ("pedido = \"{order}\"", "pedido = \"{order:number}\"", "campo pedido inválido"),
        ("motivo = \"{reason}\"\n", "", "campo obrigatório ausente: motivo"),
        (
            "[api.request]\n",
            "[api.request]\nmethod = \"PUT\"\n",
            "método PUT não permitido em /v1/cancelamentos",
        ),
        ("/v1/cancelamentos\"", "/v1/cancelamento\"", "recurso não encontrado: POST /v1/cancelamento"),
    ];
    for (right, wrong, words) in mistakes {
        let ended = LOCATION.deliver(location_api(), |text| text.replace(right, wrong), &record("100501"));
        rejected(&ended, words);
    }
}

#[test]
fn preview_prints_the_exact_request_with_no_secret_and_sends_nothing() {
    let api = hub_api();
    let env = HUB.install(&HUB.text(), &api);
    // An empty queue: a sample item.
    let (stdout, _) = expect_exit(&env.run(&["preview"]), 0);
    assert!(stdout.contains("um pedido de exemplo"), "{stdout}");
    assert!(stdout.contains(&format!("POST http://{}/api/v1/orders/cancel", api.addr)), "{stdout}");
    expect_exit(
        &env.run_with_input(
            &["enqueue", "--json", "-"],
            br#"{"order": "100201", "branch": "12", "reason": "cliente \u001b[31mdesistiu\u202e"}"#,
        ),
        0,
    );
    let (stdout, stderr) = expect_exit(&env.run(&["preview", "--order", "100201"]), 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("Requisição para o pedido 100201 (item 1) — nada foi enviado"), "{stdout}");
    assert!(lines.contains(&"Content-Type: application/json"), "{stdout}");
    assert!(lines.iter().any(|line| line.starts_with("Idempotency-Key: extrator-100201-")), "{stdout}");
    assert!(
        lines.contains(&"Authorization: Basic *** (usuário winthor-integracao, senha mascarada)"),
        "{stdout}"
    );
    let body = lines.last().unwrap();
    assert!(body.starts_with(r#"{"integrationHubServiceId":"8f14e45f-ea0b-4a7c-9d2e-3b1c5a6f7d90","orderKeyType":"ORDER_ID","orderKey":"100201","branchId":12"#), "{body}");
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{202e}'),
        "terminal escapes are shown escaped: {stdout}"
    );
    for secret in ["S3nh4-Hub", "d2ludGhvci1pbnRlZ3JhY2FvOlMzbmg0LUh1Yg=="] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} leaked");
    }
    // With no --order, the next item due.
    let (stdout, _) = expect_exit(&env.run(&["preview"]), 0);
    assert!(stdout.contains("o próximo da fila, pedido 100201"), "{stdout}");
    let (_, stderr) = expect_exit(&env.run(&["preview", "--order", "999"]), 1);
    assert!(stderr.contains("o pedido 999 não está na fila"), "{stderr}");
    assert!(api.shared.received().is_empty(), "preview sends nothing");
}

#[test]
fn an_item_the_mapping_cannot_build_fails_with_07_and_the_key_and_nothing_is_sent() {
    let api = Background::start(Scenario::default()).unwrap();
    let env = Env::build(
        &api.url(),
        "",
        "[api.request.body]\npedido = \"{order}\"\nloja = \"{extra.loja:number}\"\n",
    );
    let env_text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, env_text.replace("[queue]", "[api.request]\n[queue]")).unwrap();
    expect_exit(
        &env.run_with_input(
            &["enqueue", "--json", "-"],
            br#"{"order": "1", "branch": "1", "reason": "x", "extra": {"loja": "matriz"}}"#,
        ),
        0,
    );
    let (_, stderr) = expect_exit(&env.run(&["preview", "--order", "1"]), 1);
    assert!(
        stderr.contains("api.request.body.loja: o valor \"matriz\" de {extra.loja:number} não é um número"),
        "{stderr}"
    );
    let mut daemon = env.spawn_daemon();
    wait_until("the item to be final", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    let (state, code, kind): (String, String, String) = env
        .db()
        .query_row(
            "SELECT i.state, a.code, a.kind FROM items i JOIN attempts a ON a.item_id = i.id",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), code.as_str(), kind.as_str()), ("failed", "07", "request_mapping"));
    assert!(api.shared.received().is_empty());
}

#[test]
fn every_validation_error_names_its_line_and_key_and_exits_78() {
    let env = Env::new();
    let cases = [
        (
            "[api.request]\nurl = \"https://x/{pedido}\"\n",
            "linha 6",
            "api.request.url",
            "marcador desconhecido {pedido}",
        ),
        ("[api.request]\nmethod = \"GET\"\n", "linha 6", "api.request.method", "método desconhecido \"GET\""),
        (
            "[api.request.body]\nn = \"{branch:inteiro}\"\n",
            "linha 6",
            "api.request.body.n",
            "tipo desconhecido `inteiro`",
        ),
        (
            "[api.request.body]\nd = \"{cancelled_at:dd/mm/aa}\"\n",
            "linha 6",
            "api.request.body.d",
            "formato de data desconhecido",
        ),
        (
            "[api.response]\nreceipt_path = \"data..protocolo\"\n",
            "linha 6",
            "api.response.receipt_path",
            "não é válido",
        ),
        (
            "[api.request]\nmethod = \"DELETE\"\n[api.request.body]\na = \"{order}\"\n",
            "linha 7",
            "api.request.body",
            "DELETE não leva corpo",
        ),
        (
            "[api.request]\nformat = \"form\"\n[api.request.body.dados]\na = \"{order}\"\n",
            "linha 7",
            "api.request.body.dados",
            "campos simples",
        ),
        (
            "[api.request]\nurl = \"https://{extra.host}/c\"\n",
            "linha 6",
            "api.request.url",
            "nunca no servidor",
        ),
        (
            "[api.request]\ntime_zone = \"Brasil\"\n",
            "linha 6",
            "api.request.time_zone",
            "fuso horário desconhecido",
        ),
        (
            "[api.response]\nsuccess_values = [\"OK\"]\n",
            "linha 6",
            "api.response.success_values",
            "status_path",
        ),
    ];
    for (section, line, key, words) in cases {
        std::fs::write(
            &env.config,
            format!("[api]\nurl = \"https://x.com.br/c\"\nmax_rate = 5\n\n{section}"),
        )
        .unwrap();
        let (stdout, _) = expect_exit(&env.run(&["check"]), 78);
        assert!(stdout.contains(&format!(", {line}, ")), "{section}\n{stdout}");
        assert!(stdout.contains(&format!("chave `{key}`")), "{section}\n{stdout}");
        assert!(stdout.contains(words), "{section}\n{stdout}");
    }
    std::fs::write(&env.config, "[api]\nurl = \"https://x.com.br/c\"\nmax_rate = 0\n").unwrap();
    let (_, stderr) = expect_exit(&env.run(&["status"]), 78);
    assert!(
        stderr.contains("linha 3") && stderr.contains("chave `api.max_rate`: deve estar entre 0,01 e 10000"),
        "{stderr}"
    );
}

#[test]
fn a_reload_with_a_bad_mapping_keeps_the_running_one() {
    let api = Background::start(Scenario::default()).unwrap();
    let env = Env::build(&api.url(), "", "[api.request.body]\nchave = \"{order}\"\n");
    let good = std::fs::read_to_string(&env.config).unwrap().replace("[queue]", "[api.request]\n[queue]");
    std::fs::write(&env.config, &good).unwrap();
    let mut daemon = env.spawn_daemon();
    wait_until("the daemon to be ready", Duration::from_secs(30), || env.daemon_log().contains("pronto"));
    std::fs::write(&env.config, good.replace("{order}", "{pedido}")).unwrap();
    signal(&daemon, "HUP");
    wait_until("the reload to be refused", Duration::from_secs(30), || {
        env.daemon_log().contains("recarga recusada")
    });
    // The ERP queues with a config of its own (every command refuses the broken one).
    let erp_config = env.dir.path().join("erp.toml");
    std::fs::write(&erp_config, &good).unwrap();
    let queued = env
        .command(&["enqueue", "--order", "77", "--branch", "1", "--reason", "x"])
        .env("EXTRATOR_CONFIG", &erp_config)
        .output()
        .unwrap();
    expect_exit(&queued, 0);
    wait_until("the item to be delivered", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    assert!(env.daemon_log().contains("marcador desconhecido {pedido}"), "{}", env.daemon_log());
    let received = api.shared.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, r#"{"chave":"77"}"#, "the old mapping still applies");
}

#[test]
fn the_vendor_wording_of_02_and_03_is_recognised_on_401_and_404() {
    let scenario = Scenario::default()
        .order("401-user", vec![Behavior::json(401, r#"{"message":"Usuário informado não foi encontrado"}"#)])
        .order(
            "404-user",
            vec![Behavior::json(404, r#"{"mensagem":"USUARIO INFORMADO NAO FOI ENCONTRADO"}"#)],
        )
        .order("401-password", vec![Behavior::json(401, r#"{"message":"Credenciais inválidas"}"#)])
        .order("404-password", vec![Behavior::with_type(404, "text/plain", "credenciais invalidas")]);
    let api = Background::start(scenario).unwrap();
    let config = crate::client::config_for(&api.url());
    for (order, code) in
        [("401-user", "03"), ("404-user", "03"), ("401-password", "02"), ("404-password", "02")]
    {
        let attempt = crate::client::send(&config, order);
        assert_eq!(
            attempt.verdict.code().map(extrator::core::codes::Code::as_str),
            Some(code),
            "{order}: {:?}",
            attempt.verdict
        );
    }
}

#[test]
fn max_rate_holds_under_a_1000_item_backlog() {
    let api = Background::start(Scenario::default()).unwrap();
    let env = Env::build(&api.url(), "max_rate = 100\nconcurrency = 8\n", "");
    expect_exit(
        &env.run_with_input(&["enqueue", "--json", "-"], crate::util::json_lines(1, 1_000).as_bytes()),
        0,
    );
    let mut daemon = env.spawn_daemon();
    wait_until("every item to be delivered", Duration::from_secs(120), || env.number(UNFINISHED) == 0);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    let mut times: Vec<std::time::Instant> =
        api.shared.received().iter().map(|request| request.received_at).collect();
    times.sort();
    assert_eq!(times.len(), 1_000);
    // In any one second, at most the rate (and the request at the window's edge).
    let busiest = (0..times.len())
        .map(|first| {
            times[first..]
                .iter()
                .take_while(|at| at.duration_since(times[first]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(busiest <= 101, "{busiest} requests in one second with max_rate = 100");
    eprintln!("max_rate = 100: busiest second had {busiest} requests");
}
