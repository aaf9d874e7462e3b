//! Who is calling: the client's address, for the credential throttle. Behind Envoy every
//! connection comes from the proxy, so the address Envoy saw (the last `x-forwarded-for`
//! entry it appends, `use_remote_address: true`) is believed, but only from a peer in
//! `TOKENGATE_TRUSTED_PROXIES`; anyone else's `x-forwarded-for` is ignored.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client's address: the last `x-forwarded-for` entry when the peer is a trusted
/// proxy and the entry is an address, else the peer itself.
pub fn source(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    // Several headers are joined, as one list.
    let last = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).last();
    last.and_then(|s| s.trim().parse().ok()).unwrap_or(peer)
}

/// `TOKENGATE_TRUSTED_PROXIES`: comma-separated addresses or networks (`10.0.0.0/8`).
pub fn parse_trusted(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is not an address or a network such as 10.0.0.0/8"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn security_forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = parse_trusted("127.0.0.1, ::1, 10.0.0.0/8").unwrap();
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        h.append("x-forwarded-for", "3.3.3.3".parse().unwrap());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source(&h, ip("127.0.0.1"), &trusted), ip("3.3.3.3"), "the entry the proxy appended");
        assert_eq!(source(&h, ip("10.1.2.3"), &trusted), ip("3.3.3.3"));
        assert_eq!(source(&h, ip("192.0.2.7"), &trusted), ip("192.0.2.7"), "an untrusted peer's header is ignored");
        let mut bad = HeaderMap::new();
        bad.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(source(&bad, ip("127.0.0.1"), &trusted), ip("127.0.0.1"));
        assert_eq!(source(&HeaderMap::new(), ip("::1"), &trusted), ip("::1"));
        assert!(parse_trusted("10.0.0.0/33").is_err());
        assert!(parse_trusted("nope").is_err());
    }
}
