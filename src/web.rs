//! The daemon's HTTP listener (`[metrics] listen`): `GET /metrics` in the Prometheus text format.
//!
//! Bound before the daemon says READY, so a taken port is a clear error at start (`bind`), not a
//! silent gap in the monitoring. Served with hyper's HTTP/1 server on the daemon's runtime, and
//! bounded so nobody who can reach the port can hurt the delivery: at most `MAX_CONNECTIONS`
//! at once (more are closed at once), `HEADER_TIMEOUT` to send the request head, and
//! `CONNECTION_TIMEOUT` for a whole connection. A scrape reads the queue's figures on a read-only
//! connection of its own, on the blocking pool — never through the writer thread, so a scrape
//! never delays a claim or a record — one scrape at a time.

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
use crate::failure::Failure;
use crate::metrics::Metrics;
use crate::store::{Access, Store};

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may last, keep-alive included.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Binds `[metrics] listen`, if set; a port that cannot be had is an error naming the key.
pub fn bind(config: &Config) -> Result<Option<std::net::TcpListener>, Failure> {
    let Some(address) = config.metrics.address() else { return Ok(None) };
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
            _ => crate::text::io_error(&error),
        };
        Failure::failed(format!("não foi possível escutar em metrics.listen = \"{address}\": {why}"))
    };
    let listener = std::net::TcpListener::bind(address).map_err(cannot)?;
    listener.set_nonblocking(true).map_err(cannot)?;
    Ok(Some(listener))
}

/// What the listener serves from.
pub struct Site {
    metrics: Arc<Metrics>,
    database: PathBuf,
    busy_timeout: Duration,
    /// The read-only connection, kept between scrapes; one scrape at a time uses it.
    reader: Mutex<Option<Store>>,
}

impl Site {
    /// The site of a daemon's metrics and database.
    pub fn new(metrics: Arc<Metrics>, config: &Config) -> Site {
        Site {
            metrics,
            database: config.queue.database.clone(),
            busy_timeout: config.queue.busy_timeout.get().min(Duration::from_secs(5)),
            reader: Mutex::new(None),
        }
    }

    /// The metrics page, with the queue's figures read now. Blocking: run it off the loop.
    pub fn metrics_page(&self) -> String {
        let mut reader = self.reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if reader.is_none() {
            *reader = Store::open(&self.database, Access::ReadOnly, self.busy_timeout).ok();
        }
        let figures = reader.as_ref().map(Store::queue_figures);
        match figures {
            Some(Ok(figures)) => self.metrics.queue(Some(&figures), jiff::Timestamp::now()),
            _ => {
                // Opened again at the next scrape (the file may have been replaced).
                *reader = None;
                self.metrics.database_error();
                self.metrics.queue(None, jiff::Timestamp::now());
            }
        }
        self.metrics.encode()
    }
}

/// Serves until the task is dropped.
pub async fn serve(listener: std::net::TcpListener, site: Arc<Site>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
        let site = site.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(site.clone(), request));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(slot);
        });
    }
}

/// One request's answer.
async fn answer(site: Arc<Site>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let head = request.method() == Method::HEAD;
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let page = tokio::task::spawn_blocking(move || site.metrics_page()).await.unwrap_or_default();
            respond(StatusCode::OK, crate::metrics::CONTENT_TYPE, if head { String::new() } else { page })
        }
        (_, "/metrics") => {
            let mut response =
                respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "use GET\n".to_owned());
            response
                .headers_mut()
                .insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
            response
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "não encontrado: as métricas do extrator estão em /metrics\n".to_owned(),
        ),
    })
}

/// A response with a body.
fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}
