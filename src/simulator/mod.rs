//! A simulated cancellation API on loopback: a small HTTP/1.1 server whose answer to each
//! request is chosen by the order number in its body, deterministically. Besides responses it can
//! stall before answering, stall in the middle of a body, or reset the connection mid-body — the
//! faults the dispatcher must classify. Tests drive it; so will the demo and the benchmarks.
//!
//! Hand-written rather than built on hyper's server so that a fault is exactly the bytes we send.
//! With a `Contract` (see `contract.rs`) it also checks each request the way a given real API
//! does, and finds the order number where that API keeps it.

pub mod contract;

pub use contract::Contract;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the simulator answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// A complete response.
    Respond { status: u16, headers: Vec<(String, String)>, body: String },
    /// Read the request, then never answer (a server that hangs, a firewall that drops).
    Stall,
    /// Send the headers and half the body, then hang.
    StallBody,
    /// Send the headers and half the body, then reset the connection (RST).
    ResetMidBody,
    /// Answer with this status and the whole request — request line, headers, body — as a
    /// plain-text body, as a debug endpoint or a WAF's block page does.
    Echo(u16),
    /// Answer with this status and `{"message": "requisição inválida: <the whole request>"}`
    /// escaped as PHP's `json_encode` writes it (`\/`, every non-ASCII character as `\uXXXX`).
    EchoJson(u16),
    /// Wait this many milliseconds, then behave as `then` (a slow API).
    Slow { millis: u64, then: Box<Behavior> },
}

/// JSON text as PHP's `json_encode` writes it: `/` escaped, every character outside ASCII as a
/// `\uXXXX` escape (a surrogate pair beyond the BMP).
fn php_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0_u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

impl Behavior {
    /// A JSON response.
    pub fn json(status: u16, body: &str) -> Behavior {
        Behavior::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_owned(),
        }
    }

    /// A response with a content type.
    pub fn with_type(status: u16, content_type: &str, body: &str) -> Behavior {
        Behavior::Respond {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.to_owned(),
        }
    }

    /// This behavior, after `millis` milliseconds.
    pub fn after(self, millis: u64) -> Behavior {
        Behavior::Slow { millis, then: Box::new(self) }
    }

    /// The same response plus a header.
    pub fn header(self, name: &str, value: &str) -> Behavior {
        match self {
            Behavior::Respond { status, mut headers, body } => {
                headers.push((name.to_owned(), value.to_owned()));
                Behavior::Respond { status, headers, body }
            }
            other => other,
        }
    }
}

/// Which behavior each order gets. An order with a list gets its n-th request answered by the
/// n-th behavior, the last one repeating (so `[202, 208, 200]` is the async flow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub by_order: HashMap<String, Vec<Behavior>>,
    pub default: Behavior,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario { by_order: HashMap::new(), default: Behavior::json(200, r#"{"status": "cancelado"}"#) }
    }
}

impl Scenario {
    /// Adds the behaviors of one order.
    pub fn order(mut self, order: &str, behaviors: Vec<Behavior>) -> Scenario {
        self.by_order.insert(order.to_owned(), behaviors);
        self
    }
}

/// One request as received, for tests to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The `order` field of a JSON body, if any.
    pub order: Option<String>,
    /// When the request was complete.
    pub received_at: std::time::Instant,
}

impl Received {
    /// A header's value by (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// Decides whether a request carries acceptable credentials.
pub type Authorizer = Arc<dyn Fn(&Received) -> bool + Send + Sync>;

/// State shared by the connections.
#[derive(Default)]
pub struct Shared {
    scenario: Mutex<Scenario>,
    received: Mutex<Vec<Received>>,
    /// When set, a request whose `Authorization` differs gets a 401 (to test credentials).
    authorization: Mutex<Option<String>>,
    /// When set, a request this refuses gets a 401 (a token issued elsewhere, an API key).
    authorize: Mutex<Option<Authorizer>>,
    /// Requests seen per order, to pick the n-th behavior without scanning `received`.
    seen: Mutex<HashMap<String, usize>>,
    /// When set, requests are checked as this API checks them.
    contract: Mutex<Option<Contract>>,
}

impl Shared {
    /// A shared state answering with `scenario`.
    pub fn new(scenario: Scenario) -> Arc<Shared> {
        Arc::new(Shared {
            scenario: Mutex::new(scenario),
            received: Mutex::new(Vec::new()),
            authorization: Mutex::new(None),
            authorize: Mutex::new(None),
            seen: Mutex::new(HashMap::new()),
            contract: Mutex::new(None),
        })
    }

    /// Checks every request from now on as `contract` says (and reads the order where it says).
    pub fn set_contract(&self, contract: Contract) {
        if let Ok(mut current) = self.contract.lock() {
            *current = Some(contract);
        }
    }

    /// How many requests were received so far (cheaper than `received().len()`).
    pub fn count(&self) -> usize {
        self.received.lock().map(|received| received.len()).unwrap_or(0)
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|received| received.clone()).unwrap_or_default()
    }

    /// Replaces the scenario (e.g. to bring a "down" API back).
    pub fn set_scenario(&self, scenario: Scenario) {
        if let Ok(mut current) = self.scenario.lock() {
            *current = scenario;
        }
    }

    /// Requires this exact `Authorization` header from now on.
    pub fn require_authorization(&self, value: &str) {
        if let Ok(mut required) = self.authorization.lock() {
            *required = Some(value.to_owned());
        }
    }

    /// Requires credentials `accept` approves from now on (others get a 401).
    pub fn authorize_with(&self, accept: impl Fn(&Received) -> bool + Send + Sync + 'static) {
        if let Ok(mut authorize) = self.authorize.lock() {
            *authorize = Some(Arc::new(accept));
        }
    }

    /// Records a request and picks its behavior.
    fn answer(&self, mut request: Received) -> Behavior {
        let judged = self
            .contract
            .lock()
            .ok()
            .and_then(|contract| contract.as_ref().map(|contract| contract.judge(&request)));
        match judged {
            Some(contract::Verdict::Answer(behavior)) => {
                if let Ok(mut received) = self.received.lock() {
                    received.push(request);
                }
                return behavior;
            }
            Some(contract::Verdict::Accept(order)) => request.order = order,
            None => {}
        }
        if request.order.is_none() {
            request.order = self.order_in_body(&request).or_else(|| self.order_in_url(&request));
        }
        let required = self.authorization.lock().ok().and_then(|required| required.clone());
        let authorize = self.authorize.lock().ok().and_then(|authorize| authorize.clone());
        let refused = required
            .is_some_and(|required| request.header("authorization") != Some(required.as_str()))
            || authorize.is_some_and(|accept| !accept(&request));
        if refused {
            if let Ok(mut received) = self.received.lock() {
                received.push(request);
            }
            return Behavior::json(401, r#"{"message": "invalid credentials"}"#);
        }
        let mut received = self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = match &request.order {
            Some(order) => {
                let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let count = seen.entry(order.clone()).or_insert(0);
                *count += 1;
                *count - 1
            }
            None => 0,
        };
        let scenario = self.scenario.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let behavior = request
            .order
            .as_ref()
            .and_then(|order| scenario.by_order.get(order))
            .and_then(|list| list.get(seen).or_else(|| list.last()))
            .cloned()
            .unwrap_or_else(|| scenario.default.clone());
        if let Behavior::Echo(status) | Behavior::EchoJson(status) = behavior {
            let mut echo = format!("{} {}\n", request.method, request.path);
            for (name, value) in &request.headers {
                echo.push_str(&format!("{name}: {value}\n"));
            }
            echo.push('\n');
            echo.push_str(&request.body);
            received.push(request);
            if matches!(behavior, Behavior::EchoJson(_)) {
                let message = serde_json::json!({ "message": format!("requisição inválida: {echo}") });
                return Behavior::json(status, &php_json(&message.to_string()));
            }
            return Behavior::with_type(status, "text/plain", &echo);
        }
        received.push(request);
        behavior
    }
}

impl Shared {
    /// An order the scenario knows, anywhere in a JSON body (any field, nested) or a form's
    /// values: a mapping that sends `{"pedido": {"numero": "100203"}}` still gets that order's
    /// answer.
    fn order_in_body(&self, request: &Received) -> Option<String> {
        let scenario = self.scenario.lock().ok()?;
        if scenario.by_order.is_empty() {
            return None;
        }
        fn find(value: &Value, known: &HashMap<String, Vec<Behavior>>) -> Option<String> {
            match value {
                Value::String(text) => known.contains_key(text).then(|| text.clone()),
                Value::Number(number) => {
                    let text = number.to_string();
                    known.contains_key(&text).then_some(text)
                }
                Value::Array(values) => values.iter().find_map(|value| find(value, known)),
                Value::Object(fields) => fields.values().find_map(|value| find(value, known)),
                _ => None,
            }
        }
        match serde_json::from_str::<Value>(&request.body) {
            Ok(value) => find(&value, &scenario.by_order),
            Err(_) => form_urlencoded::parse(request.body.as_bytes())
                .map(|(_, value)| value.into_owned())
                .find(|value| scenario.by_order.contains_key(value)),
        }
    }

    /// The order a request's path or query names (a `DELETE /pedidos/N`, a status
    /// `GET /status/N?x=1`), when its body names none: one the scenario knows, else the last
    /// path segment that is a number.
    fn order_in_url(&self, request: &Received) -> Option<String> {
        let scenario = self.scenario.lock().ok()?;
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let decode = |part: &str| percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned();
        let parts: Vec<String> = path
            .split('/')
            .map(decode)
            .chain(form_urlencoded::parse(query.as_bytes()).map(|(_, value)| value.into_owned()))
            .collect();
        // A known order anywhere, else the last path segment that is a number.
        parts.iter().find(|part| scenario.by_order.contains_key(*part)).cloned().or_else(|| {
            path.split('/')
                .rev()
                .map(decode)
                .find(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        })
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("received", &self.count()).finish_non_exhaustive()
    }
}

/// A connection the simulator can also abort with a reset.
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send {
    /// Ends the connection abruptly (an RST where the transport allows).
    fn abort(self);
}

impl Connection for TcpStream {
    fn abort(self) {
        // Zero linger makes close send an RST at once; it never blocks.
        let _ = self.set_zero_linger();
        drop(self);
    }
}

/// Accepts connections on `listener` forever, serving each with `shared`'s scenario.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, shared.clone()));
    }
}

/// Serves one connection: requests in a row (keep-alive) until the client closes or a fault.
pub async fn serve_connection<C: Connection>(mut stream: C, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else { return };
        let mut behavior = shared.answer(request);
        while let Behavior::Slow { millis, then } = behavior {
            tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
            behavior = *then;
        }
        match behavior {
            Behavior::Respond { status, headers, body } => {
                let mut head =
                    format!("HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n", reason(status), body.len());
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                if stream.write_all(head.as_bytes()).await.is_err()
                    || stream.write_all(body.as_bytes()).await.is_err()
                {
                    return;
                }
            }
            Behavior::Stall => {
                std::future::pending::<()>().await;
            }
            Behavior::StallBody => {
                if send_half_a_response(&mut stream).await {
                    std::future::pending::<()>().await;
                }
                return;
            }
            Behavior::ResetMidBody => {
                send_half_a_response(&mut stream).await;
                stream.abort();
                return;
            }
            // `answer` turns an echo into the response it is, and the loop above waits out a
            // slow one.
            Behavior::Echo(_) | Behavior::EchoJson(_) | Behavior::Slow { .. } => return,
        }
    }
}

/// Headers promising 40 bytes of body, and only part of it. True if it was written.
async fn send_half_a_response<C: Connection>(stream: &mut C) -> bool {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"status\": \"cancel";
    stream.write_all(head.as_bytes()).await.is_ok() && stream.flush().await.is_ok()
}

/// Reads one request (head and `Content-Length` body); `None` when the client is gone.
async fn read_request<C: Connection>(stream: &mut C, buffer: &mut Vec<u8>) -> Option<Received> {
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0_u8; 8192];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 || buffer.len() > 1 << 20 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let total = head_end + 4 + length;
    while buffer.len() < total {
        let mut chunk = [0_u8; 8192];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = String::from_utf8_lossy(&buffer[head_end + 4..total]).into_owned();
    buffer.drain(..total);
    let order = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|value| value.get("order").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| {
            let form = headers.iter().any(|(name, value)| {
                name == "content-type" && value.starts_with("application/x-www-form-urlencoded")
            });
            form.then(|| form_urlencoded::parse(body.as_bytes()).find(|(key, _)| key == "order"))
                .flatten()
                .map(|(_, value)| value.into_owned())
        });
    Some(Received { method, path, headers, body, order, received_at: std::time::Instant::now() })
}

/// The reason phrase of a status.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        208 => "Already Reported",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A simulator on its own thread and runtime, for synchronous callers (tests that also run the
/// real binary). It stops when dropped.
pub struct Background {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Background {
    /// Starts on `127.0.0.1` with a free port.
    pub fn start(scenario: Scenario) -> std::io::Result<Background> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        Background::start_on(listener, scenario)
    }

    /// Starts on an already bound listener (so a test can reopen a port it closed).
    pub fn start_on(listener: std::net::TcpListener, scenario: Scenario) -> std::io::Result<Background> {
        Background::resume_on(listener, Shared::new(scenario))
    }

    /// Starts again on `listener` with the state of a simulator stopped before (its scenario,
    /// what it received, how often each order was seen): an API that was down and came back.
    pub fn resume_on(listener: std::net::TcpListener, shared: Arc<Shared>) -> std::io::Result<Background> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = shared.clone();
        std::thread::Builder::new().name("simulator".into()).spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else { return };
                tokio::select! {
                    () = serve(listener, serving) => {}
                    _ = stopped => {}
                }
            });
        })?;
        Ok(Background { addr, shared, stop: Some(stop) })
    }

    /// `http://127.0.0.1:PORT/cancelamentos`.
    pub fn url(&self) -> String {
        format!("http://{}/cancelamentos", self.addr)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
