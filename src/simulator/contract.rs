//! A simulated API that checks each request the way a real one does — its routes (method and
//! path), the fields of its body or query with their types, headers it refuses, a Bearer token
//! from its login — and answers a mistake with that API's own error (400, 401, 404, 405), in its
//! own envelope. The examples in `docs/exemplos/` are tested against such contracts: the right
//! config delivers, each typical mistake ends as code 07 with the API's words.

use serde_json::Value;

use super::{Behavior, Received};

/// How an API writes its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `{"errors":[{"key","message"}]}` with `body.X must be a string` (the integration hub).
    Hub,
    /// `{"status":"ERRO","mensagem":"…"}` in Portuguese (a Brazilian REST API).
    Rest,
}

/// What a field must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A non-empty string (in a form or a query: any non-empty value).
    Text,
    /// A JSON number (in a form or a query: digits).
    Number,
    /// A string equal to one of these.
    OneOf(Vec<String>),
    /// An RFC 3339 date and time.
    Rfc3339,
    /// `dd/mm/aaaa HH:MM`.
    DateBr,
}

/// One field of a body or a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name (dots go into JSON objects).
    pub name: String,
    pub kind: Kind,
}

impl Field {
    /// A field.
    pub fn new(name: &str, kind: Kind) -> Field {
        Field { name: name.to_owned(), kind }
    }
}

/// How the body is encoded, when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Json,
    Form,
}

/// One route of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    /// The path, with `{order}` matching one segment (percent-decoded).
    pub path: String,
    pub body: Body,
    pub fields: Vec<Field>,
    pub query: Vec<Field>,
    /// The body field with the order number, when the path has none.
    pub order_field: Option<String>,
}

impl Route {
    /// A route with no body rules yet.
    pub fn new(method: &str, path: &str, body: Body) -> Route {
        Route {
            method: method.to_owned(),
            path: path.to_owned(),
            body,
            fields: Vec::new(),
            query: Vec::new(),
            order_field: None,
        }
    }

    /// Adds a required body field.
    pub fn field(mut self, name: &str, kind: Kind) -> Route {
        self.fields.push(Field::new(name, kind));
        self
    }

    /// Adds a required query parameter.
    pub fn query(mut self, name: &str, kind: Kind) -> Route {
        self.query.push(Field::new(name, kind));
        self
    }

    /// The order number is in this body field.
    pub fn order_in(mut self, field: &str) -> Route {
        self.order_field = Some(field.to_owned());
        self
    }

    /// The order number of `path` if this route's path matches it.
    fn matches(&self, path: &str) -> Option<Option<String>> {
        let expected: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let given: Vec<&str> = path.trim_matches('/').split('/').collect();
        if expected.len() != given.len() {
            return None;
        }
        let mut order = None;
        for (expected, given) in expected.iter().zip(&given) {
            if *expected == "{order}" {
                let decoded = percent_encoding::percent_decode_str(given).decode_utf8_lossy().into_owned();
                order = Some(decoded);
            } else if expected != given {
                return None;
            }
        }
        Some(order)
    }
}

/// A login the API requires before it accepts a cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub path: String,
    /// The fields (and values) the login's JSON body must carry: the user and the password.
    pub expect: Vec<(String, String)>,
    /// The login's answer (holding the token).
    pub answer: String,
    /// What `Authorization` must then be.
    pub authorization: String,
}

/// The whole contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    pub style: Style,
    pub routes: Vec<Route>,
    /// Headers the API refuses (lower case), such as an `idempotency-key` it does not know.
    pub refused_headers: Vec<String>,
    pub login: Option<Login>,
}

/// What the contract decided about one request.
pub enum Verdict {
    /// Answered by the contract itself: a mistake, as the API would refuse it, or a login.
    Answer(Behavior),
    /// Valid: the order number it is for (`None` for a login).
    Accept(Option<String>),
}

impl Contract {
    /// A contract in `style` with these routes.
    pub fn new(style: Style, routes: Vec<Route>) -> Contract {
        Contract { style, routes, refused_headers: Vec::new(), login: None }
    }

    /// Judges one request.
    pub fn judge(&self, request: &Received) -> Verdict {
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        if let Some(login) = &self.login
            && request.method == "POST"
            && path == login.path
        {
            let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
            let valid = login
                .expect
                .iter()
                .all(|(field, value)| body.get(field).and_then(Value::as_str) == Some(value));
            return Verdict::Answer(if valid {
                Behavior::json(200, &login.answer)
            } else {
                match self.style {
                    Style::Hub => {
                        Behavior::json(401, r#"{"message":"invalid credentials","statusCode":401}"#)
                    }
                    Style::Rest => {
                        Behavior::json(401, r#"{"status":"ERRO","mensagem":"Credenciais inválidas"}"#)
                    }
                }
            });
        }
        let on_path: Vec<(&Route, Option<String>)> =
            self.routes.iter().filter_map(|route| route.matches(path).map(|order| (route, order))).collect();
        if on_path.is_empty() {
            return Verdict::Answer(self.not_found(&request.method, path));
        }
        let Some((route, order)) = on_path.iter().find(|(route, _)| route.method == request.method) else {
            let allowed: Vec<&str> = on_path.iter().map(|(route, _)| route.method.as_str()).collect();
            return Verdict::Answer(
                self.method_not_allowed(&request.method, path).header("Allow", &allowed.join(", ")),
            );
        };
        if let Some(refused) = self.refused_headers.iter().find(|name| request.header(name).is_some()) {
            return Verdict::Answer(self.bad_request(
                None,
                &match self.style {
                    Style::Hub => format!("header {refused} is not allowed"),
                    Style::Rest => format!("cabeçalho não permitido: {refused}"),
                },
            ));
        }
        if let Some(login) = &self.login
            && request.header("authorization") != Some(login.authorization.as_str())
        {
            return Verdict::Answer(match self.style {
                Style::Hub => Behavior::json(401, r#"{"message":"Unauthorized","statusCode":401}"#),
                Style::Rest => {
                    Behavior::json(401, r#"{"status":"ERRO","mensagem":"token ausente ou inválido"}"#)
                }
            });
        }
        let query_values: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        for field in &route.query {
            let value = query_values
                .iter()
                .find(|(key, _)| *key == field.name)
                .map(|(_, value)| Value::from(value.as_str()));
            if let Some(refusal) = self.check(field, value.as_ref(), true) {
                return Verdict::Answer(refusal);
            }
        }
        let body = match route.body {
            Body::None => Value::Null,
            Body::Json => {
                if !request.header("content-type").is_some_and(|kind| kind.starts_with("application/json")) {
                    return Verdict::Answer(self.bad_request(None, "Content-Type must be application/json"));
                }
                match serde_json::from_str(&request.body) {
                    Ok(body) => body,
                    Err(_) => return Verdict::Answer(self.bad_request(None, "invalid JSON body")),
                }
            }
            Body::Form => {
                if !request
                    .header("content-type")
                    .is_some_and(|kind| kind.starts_with("application/x-www-form-urlencoded"))
                {
                    return Verdict::Answer(self.bad_request(
                        None,
                        "o corpo deve ser um formulário (application/x-www-form-urlencoded)",
                    ));
                }
                Value::Object(
                    form_urlencoded::parse(request.body.as_bytes())
                        .map(|(key, value)| (key.into_owned(), Value::from(value.into_owned())))
                        .collect(),
                )
            }
        };
        let textual = route.body == Body::Form;
        for field in &route.fields {
            let value = field.name.split('.').try_fold(&body, |inside, key| inside.get(key));
            if let Some(refusal) = self.check(field, value, textual) {
                return Verdict::Answer(refusal);
            }
        }
        let order = order.clone().or_else(|| {
            let field = route.order_field.as_ref()?;
            match body.get(field)? {
                Value::String(text) => Some(text.clone()),
                other => Some(other.to_string()),
            }
        });
        Verdict::Accept(order)
    }

    /// The API's refusal of a field, if it breaks its rule. `textual`: a form or a query, where
    /// every value is a text.
    fn check(&self, field: &Field, value: Option<&Value>, textual: bool) -> Option<Behavior> {
        let name = &field.name;
        let Some(value) = value.filter(|value| !value.is_null() && value.as_str() != Some("")) else {
            return Some(self.bad_request(
                Some(name),
                &match self.style {
                    Style::Hub => format!("body.{name} is required"),
                    Style::Rest => format!("campo obrigatório ausente: {name}"),
                },
            ));
        };
        let text = value.as_str();
        let fits = match &field.kind {
            Kind::Text => text.is_some(),
            Kind::Number if textual => text.is_some_and(|text| text.chars().all(|c| c.is_ascii_digit())),
            Kind::Number => value.is_number(),
            Kind::OneOf(values) => text.is_some_and(|text| values.iter().any(|known| known == text)),
            Kind::Rfc3339 => text.is_some_and(|text| text.parse::<jiff::Timestamp>().is_ok()),
            Kind::DateBr => text.is_some_and(is_date_br),
        };
        if fits {
            return None;
        }
        let message = match (self.style, &field.kind) {
            (Style::Hub, Kind::Text) => format!("body.{name} must be a string"),
            (Style::Hub, Kind::Number) => format!("body.{name} must be a number"),
            (Style::Hub, Kind::OneOf(values)) => {
                format!("body.{name} must be one of the following values: {}", values.join(", "))
            }
            (Style::Hub, _) => format!("body.{name} must be a valid ISO 8601 date string"),
            (Style::Rest, Kind::Number) => format!("campo {name} deve ser numérico"),
            (Style::Rest, Kind::DateBr) => format!("campo {name} inválido: use o formato dd/mm/aaaa HH:MM"),
            (Style::Rest, _) => format!("campo {name} inválido"),
        };
        Some(self.bad_request(Some(name), &message))
    }

    /// A 400 in the API's envelope.
    fn bad_request(&self, key: Option<&str>, message: &str) -> Behavior {
        match self.style {
            Style::Hub => {
                let error = match key {
                    Some(key) => serde_json::json!({"key": key, "message": message}),
                    None => serde_json::json!({"message": message}),
                };
                Behavior::json(400, &serde_json::json!({"errors": [error]}).to_string())
            }
            Style::Rest => {
                Behavior::json(400, &serde_json::json!({"status": "ERRO", "mensagem": message}).to_string())
            }
        }
    }

    /// A 404 for a path the API does not have.
    fn not_found(&self, method: &str, path: &str) -> Behavior {
        match self.style {
            Style::Hub => Behavior::json(
                404,
                &serde_json::json!({"message": format!("Cannot {method} {path}"), "error": "Not Found", "statusCode": 404})
                    .to_string(),
            ),
            Style::Rest => Behavior::json(
                404,
                &serde_json::json!({"status": "ERRO", "mensagem": format!("recurso não encontrado: {method} {path}")})
                    .to_string(),
            ),
        }
    }

    /// A 405 for a method the path does not take.
    fn method_not_allowed(&self, method: &str, path: &str) -> Behavior {
        match self.style {
            Style::Hub => Behavior::json(405, r#"{"message":"Method Not Allowed","statusCode":405}"#),
            Style::Rest => Behavior::json(
                405,
                &serde_json::json!({"status": "ERRO", "mensagem": format!("método {method} não permitido em {path}")})
                    .to_string(),
            ),
        }
    }
}

/// `dd/mm/aaaa HH:MM`.
fn is_date_br(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 16
        && bytes.iter().enumerate().all(|(at, byte)| match at {
            2 | 5 => *byte == b'/',
            10 => *byte == b' ',
            13 => *byte == b':',
            _ => byte.is_ascii_digit(),
        })
}
