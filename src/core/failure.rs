//! What a command reports when it fails, and the documented exit codes (SPEC 5):
//! 0 ok, 1 failed, 2 usage error, 78 configuration error (sysexits `EX_CONFIG`). The conversions
//! from the edges' errors live beside those errors (`config`, `io::store`).

use std::fmt;

use crate::core::intake::IntakeError;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command ran and failed (bad input, refused enqueue, database error, …).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the command line itself is wrong.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the configuration is invalid (sysexits `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// A failed command: its exit code and the pt-BR message printed to stderr.
#[derive(Debug)]
pub struct Failure {
    pub exit_code: u8,
    pub message: String,
}

impl Failure {
    /// Exit 1 with `message`.
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure { exit_code: EXIT_FAILED, message: message.into() }
    }

    /// Exit 2 with `message`.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { exit_code: EXIT_USAGE, message: message.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<IntakeError> for Failure {
    fn from(error: IntakeError) -> Failure {
        Failure::failed(error.to_string())
    }
}

/// The result of a command.
pub type Outcome = Result<(), Failure>;
