//! The daemon's HTTP listener (`[metrics] listen`): `GET /metrics` in the Prometheus text format,
//! and the status page (`GET /`, `GET /pedido?numero=N`, rendered by `page.rs`). Read-only: no
//! route changes anything.
//!
//! Bound before the daemon says READY, so a taken port is a clear error at start (`bind`), not a
//! silent gap in the monitoring. With `metrics.password_file` (required off loopback) every route
//! asks for HTTP Basic credentials (the scheme in any case); the password is read once at start
//! and never logged. On loopback, a request whose `Host` is a name other than `localhost` is
//! refused: a page a browser loaded from elsewhere cannot reach it through DNS rebinding. Served
//! with hyper's HTTP/1 server on the daemon's runtime, and bounded so nobody who can reach the
//! port can hurt the delivery or blind the monitoring: at most `MAX_CONNECTIONS` at once — a new
//! one takes the place of the oldest idle one (no request under way), or of the oldest of all
//! once it is older than `BUSY_GRACE` — `HEADER_TIMEOUT` to send the request head, and
//! `CONNECTION_TIMEOUT` for a whole connection. Holding connections open costs an attacker the
//! connections, not the scrapes. A scrape reads the queue's figures on a read-only
//! connection of its own, on the blocking pool — never through the writer thread, so a scrape
//! never delays a claim or a record — one scrape at a time.

pub mod metrics;
pub mod page;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::config::Config;
use crate::core::failure::Failure;
use crate::io::store::{Access, Store};
use crate::web::metrics::Metrics;

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may last, keep-alive included.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection with a request under way keeps its place this long against newcomers (a scrape
/// or a page takes milliseconds; a slow reader does not get to keep the slot).
const BUSY_GRACE: Duration = Duration::from_secs(5);

/// A bound listener and the credentials it asks for.
#[derive(Debug)]
pub struct Listener {
    pub socket: std::net::TcpListener,
    /// The base64 of `user:password` that opens it (HTTP Basic), if any.
    credentials: Option<crate::core::secret::Secret>,
    /// It listens on loopback: the `Host` must be `localhost` or an address.
    loopback: bool,
}

/// Binds `[metrics] listen`, if set, and reads its password file: a port that cannot be had is
/// an error naming the key (exit 1); an unreadable or empty password file too (exit 78).
pub fn bind(config: &Config) -> Result<Option<Listener>, Failure> {
    let Some(address) = config.metrics.address() else { return Ok(None) };
    // The Basic header's value, as `api.auth` builds it for the API (`basic_forms`).
    let credentials = match &config.metrics.password_file {
        None => None,
        Some(path) => {
            let password = crate::io::secrets::read_secret(path, "metrics.password_file")
                .map_err(|message| Failure { exit_code: crate::core::failure::EXIT_CONFIG, message })?;
            let encoded =
                crate::io::secrets::basic_forms(&config.metrics.user, password.expose()).swap_remove(0);
            Some(crate::core::secret::Secret::new(encoded))
        }
    };
    let cannot = |error: std::io::Error| {
        let why = match error.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "a porta {} já está em uso por outro programa (veja qual com `ss -ltnp 'sport = :{}'`) \
                 ou outra instância do extrator; escolha outra porta em metrics.listen",
                address.port(),
                address.port()
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                "este servidor não tem esse endereço IP; confira metrics.listen".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "portas abaixo de 1024 exigem privilégios que o serviço não tem; use uma porta acima de 1024"
                    .to_owned()
            }
            _ => crate::core::text::io_error(&error),
        };
        Failure::failed(format!("não foi possível escutar em metrics.listen = \"{address}\": {why}"))
    };
    let socket = std::net::TcpListener::bind(address).map_err(cannot)?;
    socket.set_nonblocking(true).map_err(cannot)?;
    Ok(Some(Listener { socket, credentials, loopback: address.ip().is_loopback() }))
}

/// What the listener serves from.
pub struct Site {
    metrics: Arc<Metrics>,
    credentials: Option<crate::core::secret::Secret>,
    loopback: bool,
    database: PathBuf,
    busy_timeout: Duration,
    /// The read-only connection, kept between scrapes; one scrape at a time uses it.
    reader: Mutex<Option<Store>>,
}

impl Site {
    /// The site of a daemon's metrics and database, asking for `listener`'s credentials.
    pub fn new(metrics: Arc<Metrics>, config: &Config, listener: &Listener) -> Site {
        Site {
            metrics,
            credentials: listener.credentials.clone(),
            loopback: listener.loopback,
            database: config.queue.database.clone(),
            busy_timeout: config.queue.busy_timeout.get().min(Duration::from_secs(5)),
            reader: Mutex::new(None),
        }
    }

    /// `read` on the read-only connection (opened on first use, and again after a failure: the
    /// file may have been replaced). Blocking: run it off the loop. One reader at a time.
    fn read<T>(
        &self,
        read: impl FnOnce(&Store) -> Result<T, crate::io::store::StoreError>,
    ) -> Result<T, String> {
        let mut reader = self.reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if reader.is_none() {
            *reader = Some(
                Store::open(&self.database, Access::ReadOnly, self.busy_timeout)
                    .map_err(|e| e.to_string())?,
            );
        }
        let Some(store) = reader.as_ref() else { return Err("banco de dados indisponível".to_owned()) };
        let result = read(store).map_err(|error| error.to_string());
        if result.is_err() {
            *reader = None;
            self.metrics.database_error();
        }
        result
    }

    /// The metrics page, with the queue's figures read now. Blocking.
    pub fn metrics_page(&self) -> String {
        match self.read(Store::queue_figures) {
            Ok(figures) => self.metrics.queue(Some(&figures), jiff::Timestamp::now()),
            Err(_) => self.metrics.queue(None, jiff::Timestamp::now()),
        }
        self.metrics.encode()
    }

    /// The status page's overview, read now: bounded queries only. Blocking.
    pub fn overview_page(&self) -> Result<String, String> {
        let now = jiff::Timestamp::now();
        let since = now.checked_sub(jiff::SignedDuration::from_hours(31 * 24)).unwrap_or(now);
        let data = self.read(|store| {
            Ok(crate::web::page::Overview {
                now,
                daemon: store.daemon_row()?,
                figures: store.queue_figures()?,
                last_success: store.last_success()?,
                hours: store.attempt_hours(since)?,
                failed: store.recent_failures(crate::web::page::FAILED_SHOWN)?,
            })
        })?;
        Ok(crate::web::page::overview(&data))
    }

    /// One order and its attempts. Blocking.
    pub fn item_page(&self, order: &str) -> Result<String, String> {
        let found = self.read(|store| {
            let Some(item) = store.get_by_order(order)? else { return Ok(None) };
            let (attempts, total) = store.last_attempts(item.id, crate::web::page::ATTEMPTS_SHOWN)?;
            Ok(Some((item, attempts, total)))
        })?;
        Ok(crate::web::page::item_page(
            order,
            found.as_ref().map(|(item, attempts, total)| (item, attempts.as_slice(), *total)),
        ))
    }

    /// Whether a request carries the credentials (always, when none are asked for). The
    /// comparison takes the same time wherever the first difference is.
    fn admits(&self, request: &Request<Incoming>) -> bool {
        let Some(expected) = &self.credentials else { return true };
        let header =
            request.headers().get(hyper::header::AUTHORIZATION).map_or(&[][..], |value| value.as_bytes());
        // RFC 9110: the scheme is case-insensitive ("basic" works as "Basic").
        let given = match header.split_first_chunk::<6>() {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"basic ") => rest.trim_ascii(),
            _ => &[][..],
        };
        let expected = expected.expose().as_bytes();
        given.len() == expected.len()
            && given.iter().zip(expected).fold(0_u8, |diff, (a, b)| diff | (a ^ b)) == 0
    }

    /// Whether the request's `Host` may reach a loopback listener: `localhost` or an IP
    /// address, any port (`ssh -L` picks its own). A name is what a DNS rebinding attack sends.
    fn host_allowed(&self, request: &Request<Incoming>) -> bool {
        if !self.loopback {
            return true;
        }
        let Some(host) = request.headers().get(hyper::header::HOST).and_then(|value| value.to_str().ok())
        else {
            // HTTP/1.0 without a Host: no browser sends that.
            return true;
        };
        host_is_local(host)
    }
}

/// Whether a `Host` header names loopback: `localhost` or an IP address, with any port.
fn host_is_local(host: &str) -> bool {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => {
            return rest.split_once(']').is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host
            .rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// An open connection, for the choice of which one gives its place to a newcomer.
struct Open {
    since: std::time::Instant,
    /// A request is under way.
    busy: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::AbortHandle,
}

/// Which open connection to close for a newcomer when all places are taken: the oldest idle
/// one, else the oldest of all once it is older than `BUSY_GRACE`; `None` when every one is
/// busy and young (the newcomer is then closed).
fn evict(open: &[(bool, std::time::Duration)]) -> Option<usize> {
    open.iter()
        .enumerate()
        .filter(|(_, (busy, _))| !busy)
        .max_by_key(|(_, (_, age))| *age)
        .or_else(|| {
            open.iter()
                .enumerate()
                .filter(|(_, (_, age))| *age >= BUSY_GRACE)
                .max_by_key(|(_, (_, age))| *age)
        })
        .map(|(index, _)| index)
}

/// Serves until the task is dropped.
pub async fn serve(listener: Listener, site: Arc<Site>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Ok(listener) = tokio::net::TcpListener::from_std(listener.socket) else { return };
    let mut tasks = tokio::task::JoinSet::new();
    let mut open: Vec<Open> = Vec::with_capacity(MAX_CONNECTIONS);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while tasks.try_join_next().is_some() {}
        open.retain(|connection| !connection.task.is_finished());
        if open.len() >= MAX_CONNECTIONS {
            let now = std::time::Instant::now();
            let states: Vec<(bool, Duration)> = open
                .iter()
                .map(|connection| {
                    (connection.busy.load(Ordering::Relaxed), now.duration_since(connection.since))
                })
                .collect();
            match evict(&states) {
                Some(index) => open.swap_remove(index).task.abort(),
                None => continue,
            }
        }
        let busy = Arc::new(AtomicBool::new(false));
        let (site, flag) = (site.clone(), busy.clone());
        let task = tasks.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (site, flag) = (site.clone(), flag.clone());
                async move {
                    flag.store(true, Ordering::Relaxed);
                    let response = answer(site, request).await;
                    flag.store(false, Ordering::Relaxed);
                    response
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
        open.push(Open { since: std::time::Instant::now(), busy, task });
    }
}

/// One request's answer.
async fn answer(site: Arc<Site>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    use hyper::header::{ALLOW, HeaderValue, WWW_AUTHENTICATE};
    if !site.host_allowed(&request) {
        return Ok(message(
            StatusCode::MISDIRECTED_REQUEST,
            "extrator: endereço não permitido",
            "O painel no loopback só atende por http://localhost:PORTA/ ou pelo endereço IP (proteção contra DNS rebinding).",
        ));
    }
    if !site.admits(&request) {
        let mut response = message(
            StatusCode::UNAUTHORIZED,
            "extrator: usuário e senha",
            "Informe o usuário e a senha de metrics.user e metrics.password_file.",
        );
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"extrator\", charset=\"UTF-8\""),
        );
        return Ok(response);
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = message(
            StatusCode::METHOD_NOT_ALLOWED,
            "extrator: só leitura",
            "Esta página só mostra; reenvios são feitos com extrator retry.",
        );
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let blocking = |work: Box<dyn FnOnce() -> Result<String, String> + Send>| async move {
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|_| Err("a leitura foi interrompida".to_owned()))
    };
    let page = |result: Result<String, String>| match result {
        Ok(page) => respond(StatusCode::OK, HTML, page),
        Err(why) => message(StatusCode::SERVICE_UNAVAILABLE, "extrator: banco de dados indisponível", &why),
    };
    Ok(match path.as_str() {
        "/metrics" => {
            let site = site.clone();
            let text = blocking(Box::new(move || Ok(site.metrics_page()))).await.unwrap_or_default();
            respond(StatusCode::OK, crate::web::metrics::CONTENT_TYPE, text)
        }
        "/" => {
            let site = site.clone();
            page(blocking(Box::new(move || site.overview_page())).await)
        }
        "/pedido" => {
            let order = form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "numero")
                .map(|(_, value)| value.trim().chars().take(64).collect::<String>())
                .unwrap_or_default();
            if order.is_empty() {
                message(StatusCode::BAD_REQUEST, "extrator: busca", "Informe o número do pedido.")
            } else {
                let site = site.clone();
                page(blocking(Box::new(move || site.item_page(&order))).await)
            }
        }
        _ => message(
            StatusCode::NOT_FOUND,
            "extrator: página não encontrada",
            "O painel está em / e as métricas em /metrics.",
        ),
    })
}

/// The `Content-Type` of the pages.
const HTML: &str = "text/html; charset=utf-8";

/// A page that only says something (`page::message_page`), with its status.
fn message(status: StatusCode, title: &str, text: &str) -> Response<Full<Bytes>> {
    respond(status, HTML, crate::web::page::message_page(title, text))
}

/// A response with a body.
fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    use hyper::header::{self, HeaderValue};
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Belt and braces on top of the escaping: no script, no outside resource, no framing.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_localhost_and_addresses_reach_a_loopback_listener() {
        for host in
            ["localhost", "localhost:9845", "LOCALHOST:8080", "127.0.0.1:9845", "[::1]:9845", "10.0.0.5"]
        {
            assert!(host_is_local(host), "{host}");
        }
        for host in [
            "evil.example.com",
            "evil.example.com:9845",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
            "[evil]:1",
        ] {
            assert!(!host_is_local(host), "{host}");
        }
    }

    #[test]
    fn a_newcomer_takes_the_place_of_the_oldest_idle_connection() {
        let s = Duration::from_secs;
        assert_eq!(
            evict(&[(true, s(1)), (false, s(3)), (false, s(9)), (true, s(20))]),
            Some(2),
            "the oldest idle"
        );
        assert_eq!(
            evict(&[(true, s(1)), (true, s(8)), (true, s(2))]),
            Some(1),
            "all busy: the oldest past the grace"
        );
        assert_eq!(
            evict(&[(true, s(1)), (true, s(2))]),
            None,
            "all busy and young: the newcomer waits its turn"
        );
    }
}
