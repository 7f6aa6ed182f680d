//! Logging setup: `tracing` events to stderr, level from `[log] level`, overridden by `RUST_LOG`.
//! (Native journald output is the systemd issue's; stderr already reaches the journal.)

use tracing_subscriber::EnvFilter;

use crate::config::LogLevel;

/// Installs the subscriber once; later calls (tests in one process) are no-ops.
pub fn init(level: LogLevel) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    // Under systemd, journald stamps each line itself; a second timestamp is noise.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let _ = if under_journald { builder.without_time().try_init() } else { builder.try_init() };
}
