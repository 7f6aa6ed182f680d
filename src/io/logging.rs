//! Logging setup: `tracing` events to the journal (`journal::Layer`: native protocol, fields
//! `EXTRATOR_CODE`, `EXTRATOR_ORDER`, … and `MESSAGE_ID`, so `journalctl -u extrator
//! EXTRATOR_CODE=04` works and `journalctl -x` explains) when stderr is connected to journald,
//! readable lines on stderr otherwise (without the `message_id`). Level from `[log] level`,
//! overridden by `RUST_LOG`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogLevel;

/// Installs the subscriber once; later calls (tests in one process) are no-ops.
pub fn init(level: LogLevel) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    if stderr_is_journal()
        && let Ok(journal) = crate::io::journal::Layer::new()
    {
        let _ = tracing_subscriber::registry().with(filter).with(journal).try_init();
        return;
    }
    // `name=value` as tracing-subscriber writes them, but the message first and unquoted, and
    // no `message_id` (it is for the journal).
    let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| match field.name() {
        "message_id" => Ok(()),
        "message" => write!(writer, "{value:?}"),
        name => write!(writer, " {name}={value:?}"),
    });
    let _ = tracing_subscriber::fmt()
        .fmt_fields(fields)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// True when systemd connected our stderr to the journal: `JOURNAL_STREAM` names the device and
/// inode of stderr (see systemd.exec(5)). A redirected stderr keeps readable lines.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((device, inode)) = stream.to_str().and_then(|text| text.split_once(':')) else { return false };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else { return false };
    device.parse() == Ok(stderr.dev()) && inode.parse() == Ok(stderr.ino())
}
