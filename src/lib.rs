//! extrator: takes Winthor's order cancellations into a durable SQLite queue and delivers them to
//! a third-party cancellation API. `main.rs` only calls `cli::main`; everything lives here so tests
//! can reach it. The folders are the architecture (ARCHITECTURE.md, "Layers"): `core` decides and
//! does no I/O; `config` is the typed configuration and its loader; `io` is every edge (SQLite,
//! the API, files, sockets, systemd, the journal); `daemon` runs the service; `web` serves the
//! status page and metrics; `view` renders the read model in pt-BR for both; `cli` is the
//! commands; `simulator` is the demo's and tests' API.

pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod io;
pub mod simulator;
pub mod view;
pub mod web;
