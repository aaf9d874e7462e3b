//! Device identities for voucher access tokens (seed 000).
//!
//! A voucher's access token is bound to the device that redeemed it (`dev` claim). The
//! control plane writes the device as [`normalize`] gives it, and the gate compares the
//! request's device, normalized the same way, so both sides agree on one spelling: a MAC
//! address in any of its usual forms (`AA-BB-CC-DD-EE-FF`, `aabb.ccdd.eeff`,
//! `aabbccddeeff`) is `aa:bb:cc:dd:ee:ff`, an IP address is its canonical text, anything
//! else is an opaque id of at most [`MAX_DEVICE_LEN`] characters from `[A-Za-z0-9._:-]`,
//! lower-cased.

use std::net::IpAddr;

/// The longest device id.
pub const MAX_DEVICE_LEN: usize = 64;

/// The one spelling of a device id, or `None` when it cannot be one (empty, too long, or
/// a character outside `[A-Za-z0-9._:-]`).
pub fn normalize(raw: &str) -> Option<String> {
    let s = raw.trim_matches(|c: char| c == ' ' || c == '\t');
    if s.is_empty() || s.len() > MAX_DEVICE_LEN || !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')) {
        return None;
    }
    if let Some(mac) = mac(s) {
        return Some(mac);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical_ip(ip).to_string());
    }
    Some(s.to_ascii_lowercase())
}

/// A MAC address in one of its usual forms, as `aa:bb:cc:dd:ee:ff`.
fn mac(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let hex: Vec<u8> = match b.len() {
        // aabbccddeeff
        12 => b.to_vec(),
        // aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff (one separator throughout)
        17 => {
            let sep = *b.get(2)?;
            if !matches!(sep, b':' | b'-') || (0..5).any(|i| b.get(2 + 3 * i) != Some(&sep)) {
                return None;
            }
            b.iter().enumerate().filter(|(i, _)| i % 3 != 2).map(|(_, c)| *c).collect()
        }
        // aabb.ccdd.eeff
        14 => {
            if b.get(4) != Some(&b'.') || b.get(9) != Some(&b'.') {
                return None;
            }
            b.iter().enumerate().filter(|(i, _)| *i != 4 && *i != 9).map(|(_, c)| *c).collect()
        }
        _ => return None,
    };
    if hex.len() != 12 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let lower: Vec<char> = hex.iter().map(|c| c.to_ascii_lowercase() as char).collect();
    let mut out = String::with_capacity(17);
    for (i, pair) in lower.chunks(2).enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.extend(pair);
    }
    Some(out)
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are the IPv4 address.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The IP address of a peer as Envoy gives it (`source.address`: `10.0.0.7:51234`,
/// `[2001:db8::1]:443`, or a bare address), canonical.
pub fn peer_ip(address: &str) -> Option<IpAddr> {
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    address.parse::<std::net::SocketAddr>().ok().map(|a| canonical_ip(a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_device() {
        for raw in ["AA:BB:CC:DD:EE:FF", "aa-bb-cc-dd-ee-ff", "aabb.ccdd.eeff", "AABBCCDDEEFF", " aa:bb:cc:dd:ee:ff "] {
            assert_eq!(normalize(raw).as_deref(), Some("aa:bb:cc:dd:ee:ff"), "{raw}");
        }
        assert_eq!(normalize("10.0.0.7").as_deref(), Some("10.0.0.7"));
        assert_eq!(normalize("::ffff:10.0.0.7").as_deref(), Some("10.0.0.7"));
        assert_eq!(normalize("2001:DB8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(normalize("Kiosk-7").as_deref(), Some("kiosk-7"));
        // Mixed separators are not a MAC; they stay an opaque id.
        assert_eq!(normalize("aa:bb-cc:dd-ee:ff").as_deref(), Some("aa:bb-cc:dd-ee:ff"));
    }

    #[test]
    fn refuses_what_cannot_be_a_device() {
        for raw in ["", "   ", "a b", "aa:bb:cc:dd:ee:f\u{e9}", "x\ny", "<script>", &"a".repeat(65)] {
            assert_eq!(normalize(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn peer_addresses() {
        assert_eq!(peer_ip("127.0.0.2:5555"), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(peer_ip("[::1]:80"), Some("::1".parse().unwrap()));
        assert_eq!(peer_ip("[::ffff:127.0.0.1]:80"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(peer_ip("10.1.2.3"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(peer_ip("not an address"), None);
    }
}
