//! Name resolution that keeps the real failure kind. reqwest's default resolver loses
//! getaddrinfo's code, so "the name does not exist" (NXDOMAIN, `EAI_NONAME`) and "no DNS server
//! answered" (`EAI_AGAIN`) would look alike; support needs to tell them apart. getaddrinfo runs on
//! the blocking pool, bounded by the connect timeout.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use dns_lookup::LookupErrorKind;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a name did not resolve; found by the client in reqwest's error chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsFailure {
    /// `EAI_NONAME` / `EAI_NODATA`: the name does not exist (or has no address).
    NoName,
    /// `EAI_AGAIN`: no DNS server answered, or a temporary failure.
    Unavailable,
    /// getaddrinfo did not return in time.
    Timeout,
    /// Anything else getaddrinfo said.
    Other(String),
}

impl fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsFailure::NoName => f.write_str("o nome não existe no DNS"),
            DnsFailure::Unavailable => f.write_str("nenhum servidor DNS respondeu"),
            DnsFailure::Timeout => f.write_str("o DNS não respondeu a tempo"),
            DnsFailure::Other(detail) => write!(f, "falha de DNS: {detail}"),
        }
    }
}

impl std::error::Error for DnsFailure {}

/// getaddrinfo with a deadline.
#[derive(Debug, Clone)]
pub struct GetAddrInfo {
    pub timeout: Duration,
}

impl Resolve for GetAddrInfo {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let timeout = self.timeout;
        Box::pin(async move {
            let lookup = tokio::task::spawn_blocking(move || lookup(&host));
            match tokio::time::timeout(timeout, lookup).await {
                Err(_) => Err(Box::new(DnsFailure::Timeout) as Box<dyn std::error::Error + Send + Sync>),
                Ok(Err(join)) => Err(Box::new(DnsFailure::Other(join.to_string())) as _),
                Ok(Ok(Err(failure))) => Err(Box::new(failure) as _),
                Ok(Ok(Ok(addresses))) => Ok(Box::new(addresses.into_iter()) as Addrs),
            }
        })
    }
}

/// Resolves `host` to TCP addresses (port 0: reqwest puts the URL's port in).
pub fn lookup(host: &str) -> Result<Vec<SocketAddr>, DnsFailure> {
    let hints =
        dns_lookup::AddrInfoHints { socktype: dns_lookup::SockType::Stream.into(), ..Default::default() };
    let found =
        dns_lookup::getaddrinfo(Some(host), None, Some(hints)).map_err(|error| match error.kind() {
            LookupErrorKind::NoName | LookupErrorKind::NoData => DnsFailure::NoName,
            LookupErrorKind::Again => DnsFailure::Unavailable,
            other => DnsFailure::Other(format!("{other:?}")),
        })?;
    let addresses: Vec<SocketAddr> = found.filter_map(Result::ok).map(|info| info.sockaddr).collect();
    if addresses.is_empty() { Err(DnsFailure::NoName) } else { Ok(addresses) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_resolves_through_the_system_resolver() {
        let addresses = lookup("localhost").expect("localhost resolves from /etc/hosts");
        assert!(addresses.iter().any(|address| address.ip().is_loopback()), "{addresses:?}");
    }
}
