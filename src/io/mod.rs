//! The edges: the SQLite queue (`store`, with `writer` its single writing thread), the API's
//! HTTP client (`api`), secrets read from files and credentials, the spool and safe file access,
//! polled sources, the intake socket (`handoff`), systemd's notify protocol, the journal and the
//! log setup.

pub mod api;
pub mod handoff;
pub mod journal;
pub mod logging;
pub mod queue;
pub mod safe_fs;
pub mod secrets;
pub mod source;
pub mod spool;
pub mod store;
pub mod systemd;
pub mod writer;
