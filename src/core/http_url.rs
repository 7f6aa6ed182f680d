//! Whether a text is a URL the client may call: `http://` or `https://`, a host, and no user or
//! password in it (they would reach logs, records and `check` output with the URL). Parsed by the
//! `url` crate (WHATWG), as reqwest parses it when it sends.

/// Why a URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `user:password@` in the URL.
    Credentials,
    /// Not an absolute `http(s)://host…` URL.
    Invalid,
}

/// The URL, parsed, if the client may call it.
pub fn check(text: &str) -> Result<url::Url, Refusal> {
    let scheme_ok = ["http://", "https://"]
        .iter()
        .any(|scheme| text.get(..scheme.len()).is_some_and(|head| head.eq_ignore_ascii_case(scheme)));
    if !scheme_ok {
        return Err(Refusal::Invalid);
    }
    let url = url::Url::parse(text).map_err(|_| Refusal::Invalid)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    match url.host_str() {
        Some(host) if !host.is_empty() => Ok(url),
        _ => Err(Refusal::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_with_a_host_only() {
        for good in ["https://api.exemplo.com.br/cancelar", "HTTP://10.0.0.1:8080/x?y=1", "http://[::1]/"] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in
            ["ftp://x/", "https://", "http:/x", "api.exemplo.com.br", "https://exa mple/", "http://:80/"]
        {
            assert_eq!(check(bad).unwrap_err(), Refusal::Invalid, "{bad}");
        }
        for with_user in ["https://u:S3nh4@api.x/c", "https://u@api.x/", "http://:senha@api.x/"] {
            assert_eq!(check(with_user).unwrap_err(), Refusal::Credentials, "{with_user}");
        }
    }
}
