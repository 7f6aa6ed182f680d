//! extrator: takes Winthor's order cancellations into a durable SQLite queue and delivers them to
//! a third-party cancellation API. `main.rs` only calls `cli::main`; everything lives here so tests
//! can reach it.

pub mod api;
pub mod assets;
pub mod classify;
pub mod cli;
pub mod codes;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod dispatch;
pub mod duration;
pub mod failure;
pub mod handoff;
pub mod intake;
pub mod item;
pub mod journal;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod page;
pub mod policy;
pub mod safe_fs;
pub mod secrets;
pub mod simulator;
pub mod source;
pub mod spool;
pub mod store;
pub mod systemd;
pub mod text;
pub mod wake;
pub mod web;
pub mod writer;
