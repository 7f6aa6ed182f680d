//! Waking the daemon when something is enqueued, so a new cancellation goes out at once instead
//! of at the next poll: the daemon listens on a Unix datagram socket beside the database
//! (`DATABASE.wake`), and `enqueue` sends it one byte after its commit. Best effort on both sides:
//! without the socket, the poll interval still picks the item up.

use std::path::{Path, PathBuf};

/// The socket's path for a database.
pub fn socket_path(database: &Path) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push(".wake");
    PathBuf::from(path)
}

/// Tells a running daemon to look at the queue now. Errors (no daemon, no permission) are
/// ignored: the poll interval is the fallback.
pub fn notify(database: &Path) {
    if let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = socket.send_to(b"!", socket_path(database));
    }
}

/// The daemon's end: binds the socket (replacing a stale one; the daemon lock says none other is
/// alive). `None`, logged, when it cannot.
pub fn listen(database: &Path) -> Option<tokio::net::UnixDatagram> {
    let path = socket_path(database);
    let _ = std::fs::remove_file(&path);
    match tokio::net::UnixDatagram::bind(&path) {
        Ok(socket) => Some(socket),
        Err(error) => {
            tracing::warn!(
                "sem o aviso imediato de novos itens ({}: {}); eles saem no próximo queue.poll_interval",
                path.display(),
                crate::core::text::io_error(&error)
            );
            None
        }
    }
}
