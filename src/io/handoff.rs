//! How `extrator enqueue` hands cancellations to the running daemon without write access to the
//! database: over a Unix socket (`queue.socket`, by default `/run/extrator/entrada.sock`, mode
//! 0660 in a directory of the ERP's group). The daemon — the database's one writer — validates
//! the batch again, commits it with `synchronous=FULL`, and only then answers with each order's
//! outcome, so "enfileirado" still means "on disk".
//!
//! The exchange: the client writes the batch as JSON lines and shuts its side down; the server
//! answers one JSON object, `{"ok": true, "outcomes": [...]}` or `{"ok": false, "message": …}`.
//! Both sides bound what they read and how long they wait, so no client — idle, slow or
//! hostile — can hold the socket: the daemon drops a client that has not sent its whole batch
//! within `READ_TIMEOUT` and answers "busy" at once when its slots are taken; `enqueue` connects
//! without blocking on a full backlog and waits a bounded time for the answer, and in every one
//! of those cases writes the batch to the spool instead (durably: intake is idempotent, so a
//! batch that did get in is "já na fila" there).
//!
//! Who may connect is decided by the kernel, on the socket's mode and group (the unit's
//! `PrivateUsers=` maps other accounts to `nobody`, so the daemon cannot check a peer's groups
//! itself); the daemon logs the peer's process id with what it queued.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::core::item::Origin;
use crate::core::item::{NewItem, State};
use crate::io::queue::{Queue, WriterQueue};
use crate::io::store::{EnqueueOutcome, StoreError};

/// How long the daemon gives a client to send its whole batch: `enqueue` writes it at once, and
/// 4 MiB over a local socket take milliseconds; a client idle longer is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the daemon waits to write its answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `enqueue` waits to connect when the socket's backlog is full.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long `enqueue` waits for the daemon's answer (a large batch takes a second or two to
/// validate and commit); past it, the batch goes to the spool.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The most connections served at once; more are answered "busy" at once.
const MAX_CONNECTIONS: usize = 4;

/// The largest batch handed over the socket: tens of thousands of cancellations. A larger one
/// goes through the spool, whose import holds one record at a time; this keeps what the ERP's
/// account can make the daemon hold in memory to `MAX_CONNECTIONS` such batches.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The daemon's answer.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    ok: bool,
    /// The refusal is the database's trouble (locked, full disk), not the batch's.
    #[serde(default)]
    transient: bool,
    /// Every connection slot is taken: try the spool.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    busy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outcomes: Vec<WireOutcome>,
}

/// One order's outcome on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct WireOutcome {
    order: String,
    id: i64,
    already_queued: bool,
    state: String,
}

/// How handing a batch to the daemon went.
#[derive(Debug)]
pub enum Handed {
    /// Queued (or already queued): the daemon's outcomes.
    Queued(Vec<EnqueueOutcome>),
    /// The daemon refused the batch (invalid, or conflicting with the queue): nothing queued.
    Refused(String),
    /// The daemon could not write its database right now (locked, disk full): nothing queued,
    /// and not the batch's fault.
    Unavailable(String),
    /// No daemon listens (no socket, or nobody behind it): nothing was sent.
    NoDaemon,
    /// The daemon is there but busy (its connections taken, its backlog full): nothing queued.
    Busy(String),
    /// This account may not use the socket.
    Denied,
    /// The exchange broke after the batch was sent: it may or may not be queued.
    Broken(String),
}

/// The batch as the socket and the spool take it: one JSON line per item.
pub fn json_lines(items: &[NewItem]) -> Vec<u8> {
    let mut lines = Vec::new();
    for item in items {
        // A `NewItem` always serializes.
        let _ = serde_json::to_writer(&mut lines, item);
        lines.push(b'\n');
    }
    lines
}

/// A connection to the daemon at `socket`, or why there is none (`Handed::NoDaemon`,
/// `Handed::Denied`, or `Handed::Busy` when its backlog stays full for `CONNECT_TIMEOUT`: a
/// blocking connect would wait for ever). A connection closed without sending anything is a
/// probe: the daemon answers nothing to it.
pub fn connect(socket: &Path) -> Result<std::os::unix::net::UnixStream, Handed> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|_| Handed::NoDaemon)?;
    let address = SocketAddrUnix::new(socket).map_err(|_| Handed::NoDaemon)?;
    let deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        match rustix::net::connect(&fd, &address) {
            Ok(()) => break,
            // The backlog is full: the daemon is there, but busy.
            Err(rustix::io::Errno::AGAIN) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(rustix::io::Errno::AGAIN) => {
                return Err(Handed::Busy(format!(
                    "a fila de conexões do socket continuou cheia por {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => return Err(Handed::Denied),
            Err(_) => return Err(Handed::NoDaemon),
        }
    }
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(false).map_err(|_| Handed::NoDaemon)?;
    Ok(stream)
}

/// Sends a batch (`json_lines`, at most `MAX_BATCH_BYTES`) to the daemon at `socket` and waits
/// for its answer.
pub fn hand(socket: &Path, request: &[u8]) -> Handed {
    let mut stream = match connect(socket) {
        Ok(stream) => stream,
        Err(why) => return why,
    };
    let sent = stream
        .set_write_timeout(Some(READ_TIMEOUT))
        .and_then(|()| stream.write_all(request))
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write));
    if let Err(error) = sent {
        return Handed::Broken(crate::core::text::io_error(&error));
    }
    let mut answer = Vec::new();
    // The answer lists each order: a few times the batch at most.
    let limit = u64::try_from(MAX_BATCH_BYTES).unwrap_or(u64::MAX) * 4;
    let read = stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .and_then(|()| (&mut stream).take(limit).read_to_end(&mut answer));
    if let Err(error) = read {
        return Handed::Broken(match error.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("sem resposta em {} s", ANSWER_TIMEOUT.as_secs())
            }
            _ => crate::core::text::io_error(&error),
        });
    }
    let Ok(answer) = serde_json::from_slice::<Answer>(&answer) else {
        return Handed::Broken("o serviço fechou a conexão sem responder".to_owned());
    };
    if answer.busy {
        return Handed::Busy(answer.message.unwrap_or_default());
    }
    if !answer.ok {
        let message = answer.message.unwrap_or_default();
        return if answer.transient { Handed::Unavailable(message) } else { Handed::Refused(message) };
    }
    let outcomes = answer
        .outcomes
        .into_iter()
        .map(|outcome| EnqueueOutcome {
            order: outcome.order,
            id: outcome.id,
            already_queued: outcome.already_queued,
            state: outcome.state.parse().unwrap_or(State::Pending),
        })
        .collect();
    Handed::Queued(outcomes)
}

/// The daemon's end: binds `socket` (replacing a stale socket left by a crash, never anything
/// else), mode 0660. `None`, logged, when it cannot: `enqueue` then falls back to the spool.
pub fn listen(socket: &Path) -> Option<tokio::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    let cannot = |detail: String| {
        tracing::warn!(
            "sem o socket de entrada {} ({detail}): `extrator enqueue` de outras contas grava no spool",
            socket.display()
        );
        None
    };
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.file_type().is_socket() => {
            let _ = std::fs::remove_file(socket);
        }
        Ok(_) => return cannot("o caminho já existe e não é um socket; não foi apagado".to_owned()),
        Err(_) => {}
    }
    let listener = match tokio::net::UnixListener::bind(socket) {
        Ok(listener) => listener,
        Err(error) => return cannot(crate::core::text::io_error(&error)),
    };
    // The directory is the service's alone: the path is the socket just made.
    if let Err(error) = std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660)) {
        return cannot(crate::core::text::io_error(&error));
    }
    Some(listener)
}

/// Serves the socket until the task is dropped: each connection's batch is validated, queued
/// through `queue` (the daemon's writer), answered, and `queued` is notified so the loop looks at
/// once.
pub async fn serve(listener: tokio::net::UnixListener, queue: WriterQueue, queued: Arc<tokio::sync::Notify>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, say: the same error comes back at once, so wait a little
                // rather than spin on the loop's own thread.
                tracing::warn!("socket de entrada: {}", crate::core::text::io_error(&error));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let (queue, queued) = (queue.clone(), queued.clone());
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                connections.spawn(async move {
                    serve_one(stream, queue, &queued).await;
                    drop(permit);
                });
            }
            // Never wait for a slot here: a full accept queue is what leaves `enqueue` blocked.
            Err(_) => {
                connections.spawn(answer_busy(stream));
            }
        }
        while connections.try_join_next().is_some() {}
    }
}

/// Tells a client every slot is taken (it writes to the spool instead), without reading it.
async fn answer_busy(mut stream: tokio::net::UnixStream) {
    let answer = Answer {
        busy: true,
        ..refused(format!("o serviço já atende {MAX_CONNECTIONS} entregas pelo socket"))
    };
    let bytes = serde_json::to_vec(&answer).unwrap_or_default();
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes)).await;
    let _ = stream.shutdown().await;
    // What the client sent is read and dropped (bounded in size and time) before the close: a
    // Unix socket closed with unread data resets the connection, and the client would read
    // "connection reset" instead of "busy".
    let limit = u64::try_from(MAX_BATCH_BYTES + 1).unwrap_or(u64::MAX);
    let _ = tokio::time::timeout(
        READ_TIMEOUT,
        tokio::io::copy(&mut (&mut stream).take(limit), &mut tokio::io::sink()),
    )
    .await;
}

/// One connection: read the batch (bounded in size and time), validate, queue, answer.
async fn serve_one(mut stream: tokio::net::UnixStream, queue: WriterQueue, queued: &tokio::sync::Notify) {
    let peer = stream.peer_cred().ok().and_then(|cred| cred.pid()).unwrap_or(0);
    let mut request = Vec::new();
    let limit = u64::try_from(MAX_BATCH_BYTES + 1).unwrap_or(u64::MAX);
    let read = tokio::time::timeout(READ_TIMEOUT, (&mut stream).take(limit).read_to_end(&mut request)).await;
    let answer = match read {
        // An idle client: dropped, so it holds no slot; nobody reads an answer.
        Err(_) if request.is_empty() => return,
        Err(_) => refused(format!("a entrada não chegou inteira a tempo ({} s)", READ_TIMEOUT.as_secs())),
        Ok(Err(error)) => refused(format!("erro ao ler a entrada: {}", crate::core::text::io_error(&error))),
        // A probe (`connect` and close): nobody reads an answer.
        Ok(Ok(0)) => return,
        Ok(Ok(_)) if request.len() > MAX_BATCH_BYTES => refused(format!(
            "lote grande demais para o socket (máximo {} MiB): grave-o no spool",
            MAX_BATCH_BYTES / (1024 * 1024)
        )),
        Ok(Ok(_)) => take_batch(request, queue, peer, queued).await,
    };
    let bytes = serde_json::to_vec(&answer).unwrap_or_default();
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes)).await;
}

/// Validates a batch (on the blocking pool: up to `MAX_BATCH_BYTES` of JSON) and queues it
/// whole.
async fn take_batch(
    request: Vec<u8>,
    mut queue: WriterQueue,
    peer: i32,
    queued: &tokio::sync::Notify,
) -> Answer {
    let parsed = tokio::task::spawn_blocking(move || crate::core::intake::parse_document(&request)).await;
    let records = match parsed {
        Ok(Ok(records)) => records,
        Ok(Err(error)) => return refused(error.to_string()),
        Err(_) => return refused("falha interna ao validar a entrada".to_owned()),
    };
    let items: Vec<NewItem> = records.into_iter().map(|record| record.item).collect();
    let count = items.len();
    let result =
        tokio::task::spawn_blocking(move || queue.enqueue(items, Origin::Command, jiff::Timestamp::now()))
            .await;
    match result {
        Ok(Ok(outcomes)) => {
            let new = outcomes.iter().filter(|outcome| !outcome.already_queued).count();
            tracing::info!(
                peer_pid = peer,
                new_items = new,
                already_queued = count - new,
                "{} pelo socket de entrada (pid {peer}): {}",
                crate::core::text::count(count as u64, "cancelamento recebido", "cancelamentos recebidos"),
                crate::core::text::count(new as u64, "novo", "novos")
            );
            queued.notify_one();
            Answer {
                ok: true,
                transient: false,
                busy: false,
                message: None,
                outcomes: outcomes
                    .into_iter()
                    .map(|outcome| WireOutcome {
                        order: outcome.order,
                        id: outcome.id,
                        already_queued: outcome.already_queued,
                        state: outcome.state.as_str().to_owned(),
                    })
                    .collect(),
            }
        }
        Ok(Err(error @ StoreError::Conflicts(_))) => refused(error.to_string()),
        Ok(Err(error)) => Answer { transient: true, ..refused(error.to_string()) },
        Err(_) => Answer { transient: true, ..refused("a gravação do lote foi interrompida".to_owned()) },
    }
}

/// A refusal with its pt-BR reason.
fn refused(message: String) -> Answer {
    Answer { ok: false, transient: false, busy: false, message: Some(message), outcomes: Vec::new() }
}
