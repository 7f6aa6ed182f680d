//! A secret value (a password, a client secret, a token, a `{secret:NAME}` value): `Debug` and
//! `Serialize` show only `MASK`, so no log line, `--json` or panic can carry it; `expose` is
//! called by the one place that sends it. Reading secrets (files, systemd credentials) and
//! masking them in text the API echoes is `io::secrets`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What every secret is replaced by wherever a human or a record could see it.
pub const MASK: &str = "***";

/// A password: never printed by `Debug`, and serialized only as a placeholder.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from elsewhere (a file, a credential, a login response).
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}
