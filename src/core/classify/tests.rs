//! Every row of SPEC 3, every error envelope, and `Retry-After` in both forms.

use super::*;

fn patterns() -> Rules {
    Rules::default()
}

fn now() -> jiff::Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

fn response(status: u16, body: &str) -> Exchange {
    Exchange::Response(Response { status, body: body.as_bytes().to_vec(), ..Response::default() })
}

fn with(status: u16, body: &str, edit: impl FnOnce(&mut Response)) -> Exchange {
    let mut response = Response { status, body: body.as_bytes().to_vec(), ..Response::default() };
    edit(&mut response);
    Exchange::Response(response)
}

#[test]
fn every_row_of_the_code_table() {
    let cases: Vec<(Exchange, Option<&str>, &str, Option<&str>)> = vec![
        // (exchange, code, kind, a fragment of the message)
        (response(200, r#"{"ok": true}"#), None, "http_200", None),
        (response(201, ""), None, "http_201", None),
        (response(204, ""), None, "http_204", None),
        (response(200, "OK"), None, "http_200", Some("OK")),
        (
            Exchange::Transport(TransportFailure::ConnectRefused),
            Some("01"),
            "connect_refused",
            Some("recusada"),
        ),
        (Exchange::Transport(TransportFailure::Unreachable), Some("01"), "unreachable", Some("inalcançável")),
        (
            Exchange::Transport(TransportFailure::Proxy("o proxy recusou".into())),
            Some("01"),
            "proxy_refused",
            Some("o proxy recusou"),
        ),
        (Exchange::Transport(TransportFailure::ProxyAuth), Some("01"), "proxy_auth", Some("o proxy exige")),
        (
            response(401, r#"{"message": "invalid credentials"}"#),
            Some("02"),
            "http_401",
            Some("invalid credentials"),
        ),
        (response(401, ""), Some("02"), "http_401", Some("credenciais recusadas")),
        (
            response(403, r#"{"message": "Invalid password"}"#),
            Some("02"),
            "http_403",
            Some("Invalid password"),
        ),
        (response(401, r#"{"message": "User not found"}"#), Some("03"), "http_401", Some("User not found")),
        (
            response(404, r#"{"errors":[{"key":"user","message":"Usuário não encontrado"}]}"#),
            Some("03"),
            "http_404",
            Some("user: Usuário não encontrado"),
        ),
        (
            Exchange::Transport(TransportFailure::ConnectTimeout),
            Some("04"),
            "connect_timeout",
            Some("connect_timeout"),
        ),
        (
            Exchange::Transport(TransportFailure::ResponseTimeout),
            Some("04"),
            "read_timeout",
            Some("request_timeout"),
        ),
        (
            Exchange::Transport(TransportFailure::BodyTimeout),
            Some("04"),
            "body_timeout",
            Some("não terminou"),
        ),
        (Exchange::Transport(TransportFailure::DnsNoName), Some("05"), "dns_nxdomain", Some("não existe")),
        (
            Exchange::Transport(TransportFailure::DnsUnavailable),
            Some("05"),
            "dns_unavailable",
            Some("nenhum servidor DNS"),
        ),
        (Exchange::Transport(TransportFailure::DnsTimeout), Some("05"), "dns_timeout", None),
        (
            Exchange::Transport(TransportFailure::Tls { certificate: true, detail: "UnknownIssuer".into() }),
            Some("06"),
            "tls_certificate",
            Some("UnknownIssuer"),
        ),
        (
            Exchange::Transport(TransportFailure::Tls { certificate: false, detail: "alert".into() }),
            Some("06"),
            "tls_handshake",
            Some("alert"),
        ),
        (
            response(400, r#"{"errors":[{"key":"orderKey","message":"pedido inválido"}]}"#),
            Some("07"),
            "http_400",
            Some("orderKey: pedido inválido"),
        ),
        (response(402, "pagamento"), Some("07"), "http_402", Some("pagamento")),
        (
            response(404, r#"{"message": "order 123 not found"}"#),
            Some("07"),
            "http_404",
            Some("order 123 not found"),
        ),
        (response(409, r#"{"message": "já cancelado"}"#), Some("07"), "http_409", Some("já cancelado")),
        (
            response(412, r#"{"message": "Precondition failed", "code": 412}"#),
            Some("07"),
            "http_412",
            Some("Precondition failed"),
        ),
        (
            response(
                422,
                r#"{"error": true, "errorMessage": "Pedido faturado", "errorCode": "E12", "errorDescription": "não pode cancelar"}"#,
            ),
            Some("07"),
            "http_422",
            Some("Pedido faturado (não pode cancelar)"),
        ),
        (
            response(200, r#"{"success": false, "message": "pedido inexistente"}"#),
            Some("07"),
            "rejected_in_body",
            Some("pedido inexistente"),
        ),
        (
            response(200, r#"{"error": true, "errorMessage": "bloqueado"}"#),
            Some("07"),
            "rejected_in_body",
            Some("bloqueado"),
        ),
        (
            response(403, r#"{"message":"Missing Authentication Token"}"#),
            Some("07"),
            "wrong_path",
            Some("a URL da API provavelmente está errada"),
        ),
        (
            with(302, "", |r| r.location = Some("https://nova.api/v2".into())),
            Some("07"),
            "redirect",
            Some("https://nova.api/v2"),
        ),
        (with(301, "", |_| {}), Some("07"), "redirect", Some("URL da API provavelmente mudou")),
        (with(429, "", |r| r.retry_after = Some("120".into())), Some("08"), "http_429", None),
        (response(407, "Proxy Authentication Required"), Some("01"), "proxy_auth", Some("o proxy exige")),
        (with(503, "busy", |r| r.retry_after = Some("5".into())), Some("08"), "http_503", Some("busy")),
        (
            response(500, "<html><head><title>500 Internal Server Error</title></head><body>x</body></html>"),
            Some("99"),
            "http_500",
            Some("500 Internal Server Error"),
        ),
        (
            response(503, "<html><body><h1>Service</h1> Unavailable</body></html>"),
            Some("99"),
            "http_503",
            Some("Service Unavailable"),
        ),
        (response(200, r#"{"ok": tru"#), Some("99"), "invalid_json", Some("JSON ilegível")),
        (
            with(200, "nao json", |r| r.content_type = Some("application/json".into())),
            Some("99"),
            "invalid_json",
            None,
        ),
        (Exchange::Transport(TransportFailure::Reset), Some("99"), "connection_reset", Some("conexão caiu")),
        (Exchange::Transport(TransportFailure::Other("x".into())), Some("99"), "transport", Some("x")),
    ];
    for (exchange, code, kind, fragment) in cases {
        let verdict = classify(&exchange, &patterns(), now());
        assert_eq!(verdict.code().map(crate::core::codes::Code::as_str), code, "{exchange:?} → {verdict:?}");
        assert_eq!(verdict.kind.as_str(), kind, "{exchange:?}");
        if let Some(fragment) = fragment {
            let message = verdict.message.clone().unwrap_or_default();
            assert!(message.contains(fragment), "{exchange:?}: message {message:?} lacks {fragment:?}");
        }
        if let Exchange::Response(response) = &exchange {
            assert_eq!(verdict.http_status, Some(response.status));
        }
    }
}

#[test]
fn async_answers_are_processing_not_failures() {
    let verdict = classify(&response(202, r#"{"status": "queued"}"#), &patterns(), now());
    assert_eq!(verdict.outcome, Outcome::Processing);
    let still = r#"{"errors":[{"key":"orderKey","message":"still processing"}]}"#;
    let verdict = classify(&response(208, still), &patterns(), now());
    assert_eq!(verdict.outcome, Outcome::Processing);
    assert_eq!(verdict.message.as_deref(), Some("orderKey: still processing"));
}

#[test]
fn retry_after_in_seconds_as_a_date_or_missing() {
    let at = |value: Option<&str>| {
        let exchange = with(429, "", |r| r.retry_after = value.map(str::to_owned));
        classify(&exchange, &patterns(), now()).retry_after
    };
    assert_eq!(at(Some("120")), Some(Duration::from_secs(120)));
    assert_eq!(at(Some("Sun, 22 Nov 2026 12:01:30 GMT")), Some(Duration::from_secs(90)));
    assert_eq!(at(Some("Sun, 22 Nov 2026 11:00:00 GMT")), Some(Duration::ZERO), "a past date means now");
    assert_eq!(at(None), Some(DEFAULT_RETRY_AFTER));
    assert_eq!(at(Some("amanhã")), Some(DEFAULT_RETRY_AFTER));
}

#[test]
fn user_not_found_patterns_are_configurable() {
    let custom = Rules::new(&["login desconhecido".to_owned()], &[], ResponseConfig::default());
    let exchange = response(401, "Erro: LOGIN DESCONHECIDO");
    assert_eq!(classify(&exchange, &custom, now()).code().map(crate::core::codes::Code::as_str), Some("03"));
    assert_eq!(
        classify(&exchange, &patterns(), now()).code().map(crate::core::codes::Code::as_str),
        Some("02")
    );
}

#[test]
fn the_vendor_guide_wording_without_regard_to_case_or_accents() {
    for status in [401, 403, 404] {
        for body in [
            r#"{"message": "Usuário informado não foi encontrado"}"#,
            r#"{"message": "USUARIO INFORMADO NAO FOI ENCONTRADO"}"#,
            "usuário informado não foi encontrado",
        ] {
            let verdict = classify(&response(status, body), &patterns(), now());
            assert_eq!(verdict.code().map(crate::core::codes::Code::as_str), Some("03"), "{status} {body}");
        }
        for body in [r#"{"message": "Credenciais inválidas"}"#, "CREDENCIAIS INVALIDAS"] {
            let verdict = classify(&response(status, body), &patterns(), now());
            assert_eq!(verdict.code().map(crate::core::codes::Code::as_str), Some("02"), "{status} {body}");
        }
    }
    // A 404 about the order, not the user, stays a rejected cancellation.
    let verdict = classify(&response(404, r#"{"message": "Pedido não encontrado"}"#), &patterns(), now());
    assert_eq!(verdict.code().map(crate::core::codes::Code::as_str), Some("07"));
    assert_eq!(fold("AÇÃO Não"), "acao nao");
}

/// Response rules as support writes them.
fn rules(text: &str) -> Rules {
    let config =
        crate::config::parse_str(&format!("[api]\nurl = \"https://x/c\"\n[api.response]\n{text}"), "t")
            .unwrap_or_else(|error| panic!("{error}"));
    Rules::from_config(&config)
}

#[test]
fn configured_status_message_and_receipt() {
    let rules = rules(
        "status_path = \"situacao\"\nsuccess_values = [\"CANCELADO\"]\nfailure_values = [\"RECUSADO\"]\n\
         processing_values = [\"EM ANDAMENTO\"]\nmessage_paths = [\"detalhe.texto\"]\nreceipt_path = \"dados.protocolo\"\n",
    );
    let done = classify(
        &response(200, r#"{"situacao": "cancelado", "dados": {"protocolo": "PRT-9"}}"#),
        &rules,
        now(),
    );
    assert_eq!((done.outcome, done.receipt.as_deref()), (Outcome::Success, Some("PRT-9")));
    let refused = classify(
        &response(200, r#"{"situacao": "RECUSADO", "detalhe": {"texto": "pedido já faturado"}}"#),
        &rules,
        now(),
    );
    assert_eq!(
        (refused.code().map(crate::core::codes::Code::as_str), refused.kind.to_string().as_str()),
        (Some("07"), "rejected_in_body")
    );
    assert_eq!(refused.message.as_deref(), Some("pedido já faturado"));
    let waiting = classify(&response(200, r#"{"situacao": "em andamento"}"#), &rules, now());
    assert_eq!(waiting.outcome, Outcome::Processing);
    let odd = classify(&response(200, r#"{"situacao": "???"}"#), &rules, now());
    assert_eq!(
        (odd.code().map(crate::core::codes::Code::as_str), odd.kind.to_string().as_str()),
        (Some("99"), "unknown_status")
    );
    assert!(odd.message.unwrap().contains("\"???\""));
    let bare = classify(&response(204, ""), &rules, now());
    assert_eq!(
        bare.code().map(crate::core::codes::Code::as_str),
        Some("99"),
        "the status was configured and is missing"
    );
    // The message paths also read error answers.
    let error = classify(&response(422, r#"{"detalhe": {"texto": "filial inválida"}}"#), &rules, now());
    assert_eq!(
        (error.code().map(crate::core::codes::Code::as_str), error.message.as_deref()),
        (Some("07"), Some("filial inválida"))
    );
    // A 202's receipt is kept too.
    let accepted = classify(&response(202, r#"{"dados": {"protocolo": 77}}"#), &rules, now());
    assert_eq!((accepted.outcome, accepted.receipt.as_deref()), (Outcome::Processing, Some("77")));
}

#[test]
fn a_request_never_sent_and_a_poll_that_ends_in_303() {
    let verdict = classify(&Exchange::NotSent("api.request.url: x".into()), &patterns(), now());
    assert_eq!(
        (verdict.code().map(crate::core::codes::Code::as_str), verdict.kind.as_str(), verdict.http_status),
        (Some("07"), "request_mapping".into(), None)
    );
    assert!(verdict.message.unwrap().contains("não foi enviado"));
    let done =
        classify_poll(&with(303, "", |r| r.location = Some("/resultado/1".into())), &patterns(), now());
    assert_eq!(done.outcome, Outcome::Success);
    let moved = classify(&with(303, "", |r| r.location = Some("/x".into())), &patterns(), now());
    assert_eq!(
        moved.code().map(crate::core::codes::Code::as_str),
        Some("07"),
        "a 303 to the request itself is a moved URL"
    );
}

#[test]
fn excerpts_are_bounded() {
    let body = vec![b'a'; 10_000];
    let text = excerpt(&body).unwrap();
    assert!(text.len() <= EXCERPT_BYTES + '…'.len_utf8());
    assert_eq!(excerpt(b""), None);
    let long = "x".repeat(5_000);
    assert!(extract_message(long.as_bytes(), None).unwrap().chars().count() <= 500);
}

#[test]
fn html_with_any_text_never_panics() {
    // An API answering this aborted the daemon (a title found in the Unicode lower case was cut
    // from the original text with the lower case's offsets), in a crash loop.
    let crashing = with(500, "İ<title>é</title>", |r| r.content_type = Some("text/html".into()));
    let verdict = classify(&crashing, &patterns(), now());
    assert_eq!(
        (verdict.code().map(crate::core::codes::Code::as_str), verdict.message.as_deref()),
        (Some("99"), Some("é"))
    );
    // Random non-ASCII HTML around titles, in every case mix: a verdict each, never a panic.
    let pieces = [
        "İ",
        "é",
        "ß",
        "ǅ",
        "Ⅷ",
        "ẞ",
        "<title>",
        "</TITLE>",
        "<TiTlE>",
        "</title >",
        "<",
        ">",
        "ﬃ",
        "\u{130}\u{307}",
        " ",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        let mut body = String::new();
        for _ in 0..12 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            body.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        let verdict =
            classify(&with(502, &body, |r| r.content_type = Some("text/html".into())), &patterns(), now());
        assert_eq!(verdict.code().map(crate::core::codes::Code::as_str), Some("99"), "{body}");
    }
}

/// What a token endpoint says instead of a token, classified.
fn token(exchange: Exchange) -> Verdict {
    classify(&Exchange::TokenEndpoint(Box::new(exchange)), &patterns(), now())
}

#[test]
fn a_token_endpoint_that_refuses_is_about_the_credentials_never_the_item() {
    let refused = token(response(
        401,
        r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
    ));
    assert_eq!((refused.code(), refused.kind), (Some(Code::InvalidPassword), Kind::TokenHttp(401)));
    let message = refused.message.unwrap();
    assert!(
        message.contains("servidor de tokens") && message.contains("client authentication failed"),
        "{message}"
    );
    // A 400 (invalid_scope, unauthorized_client…) is the credentials' or the config's, not 07.
    let scope = token(response(400, r#"{"error":"invalid_scope"}"#));
    assert_eq!(scope.code(), Some(Code::InvalidPassword));
    let unknown = token(response(401, r#"{"message":"Usuário informado não foi encontrado"}"#));
    assert_eq!(unknown.code(), Some(Code::UserNotFound));
    let down = token(response(503, "<html><title>503 Service Unavailable</title></html>"));
    assert_eq!((down.code(), down.kind), (Some(Code::Generic), Kind::TokenHttp(503)));
    assert!(down.kind.is_token());
    let slow = token(Exchange::Transport(TransportFailure::ResponseTimeout));
    assert_eq!((slow.code(), slow.kind), (Some(Code::Timeout), Kind::TokenUnreachable));
    assert!(slow.message.unwrap().starts_with("o servidor de tokens"));
    let refused_tcp = token(Exchange::Transport(TransportFailure::ConnectRefused));
    assert_eq!(refused_tcp.code(), Some(Code::ConnectionRefused));
    let limited = token(with(429, "", |response| response.retry_after = Some("30".into())));
    assert_eq!(
        (limited.code(), limited.retry_after),
        (Some(Code::RateLimited), Some(Duration::from_secs(30)))
    );
    assert_eq!(Kind::TokenHttp(401).to_string(), "token_http_401");
}

#[test]
fn problem_details_keep_the_field_errors() {
    let prism = r#"{"type":"https://stoplight.io/prism/errors#UNPROCESSABLE_ENTITY","title":"Invalid request","status":422,"detail":"Your request is not valid","validation":[{"location":["body","reason"],"severity":"Error","code":"type","message":"Request body property reason must be string"}]}"#;
    let verdict = classify(&response(422, prism), &patterns(), now());
    assert_eq!(verdict.code(), Some(Code::Rejected));
    assert_eq!(
        verdict.message.as_deref(),
        Some("Your request is not valid (body.reason: Request body property reason must be string)")
    );
    let rfc = r#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"Dados inválidos","invalid-params":[{"name":"motivo","reason":"obrigatório"},{"name":"loja","reason":"deve ser número"}]}"#;
    assert_eq!(
        classify(&response(400, rfc), &patterns(), now()).message.as_deref(),
        Some("Dados inválidos (motivo: obrigatório; loja: deve ser número)")
    );
    let many: Vec<String> = (0..9).map(|n| format!(r#"{{"field":"f{n}","message":"m"}}"#)).collect();
    let spring = format!(r#"{{"title":"Erro","status":400,"errors":[{}]}}"#, many.join(","));
    let message = classify(&response(400, &spring), &patterns(), now()).message.unwrap();
    assert!(message.ends_with("f4: m; e mais 4)"), "bounded: {message}");
    let title_only = r#"{"type":"x","title":"Pedido não encontrado","status":404}"#;
    assert_eq!(
        classify(&response(404, title_only), &patterns(), now()).message.as_deref(),
        Some("Pedido não encontrado")
    );
}

#[test]
fn a_server_that_wants_a_client_certificate_is_06_not_07() {
    let nginx = "<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n</body></html>";
    let verdict = classify(
        &with(400, nginx, |response| response.content_type = Some("text/html".into())),
        &patterns(),
        now(),
    );
    assert_eq!((verdict.code(), verdict.kind), (Some(Code::Tls), Kind::ClientCertificate));
    assert!(verdict.message.unwrap().contains("api.client_certificate"));
    let alert = classify(
        &Exchange::Transport(TransportFailure::ClientCertificate("alerta CertificateRequired".into())),
        &patterns(),
        now(),
    );
    assert_eq!((alert.code(), alert.kind), (Some(Code::Tls), Kind::ClientCertificate));
}
