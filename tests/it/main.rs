//! Integration tests: the real `extrator` binary on a real SQLite file in a temporary directory.
//! One test binary with a module per area (see ripgrep's `tests/tests.rs`).

#![allow(clippy::unwrap_used, reason = "test helpers: a panic is how a test reports failure")]

mod architecture;
mod auth;
mod check;
mod client;
mod config;
mod daemon;
mod demo;
mod dispatch;
mod dns;
mod enqueue;
mod explain;
mod help;
mod hostile;
mod mapping;
mod metrics;
mod mtls;
mod page;
mod privilege;
mod proxy;
mod relatorio;
mod retry;
mod robust;
mod simulate;
mod snapshots;
mod source;
mod spool;
mod systemd;
mod torture;
mod trouble;
mod util;
mod vendors;
mod views;
