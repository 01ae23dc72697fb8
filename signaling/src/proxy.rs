//! The client address of a request that came through trusted reverse proxies.
//!
//! A proxy appends the address it received a request from to `X-Forwarded-For`, so the header
//! reads `client, proxy1, proxy2` and the TCP peer is the last proxy. Only the entries added by
//! proxies we trust are reliable: a client can send any `X-Forwarded-For` it likes, which ends up
//! at the left of the list. So the list is read from the right, skipping trusted proxies, and the
//! first untrusted address is the client. Headers from a peer that is not a trusted proxy are
//! never read.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};

use crate::config::Cidr;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// A forwarding header from a trusted proxy that does not hold an address where one is needed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {header} entry {entry:?}")]
pub(crate) struct MalformedHeader {
    /// The header.
    pub(crate) header: &'static str,
    /// The entry that is not an address (lossily decoded if it is not UTF-8).
    pub(crate) entry: String,
}

/// The address of the client behind a request from `peer`.
///
/// When `peer` is not in `trusted`, that is `peer` itself. Otherwise it is the rightmost
/// address of the `X-Forwarded-For` headers (all of them, in order, split at commas) that is
/// not a trusted proxy, or the leftmost address if all are; without `X-Forwarded-For`, the
/// address in `X-Real-IP`; without either, `peer`. Entries may be `ip`, `ip:port` or
/// `[ipv6]:port`. An entry that is not an address, met before the client is found, is an error:
/// the caller then uses `peer`. The result is canonical (an IPv4-mapped IPv6 address is given
/// as IPv4).
pub(crate) fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[Cidr],
) -> Result<IpAddr, MalformedHeader> {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !is_trusted(peer) {
        return Ok(peer);
    }
    let forwarded: Vec<_> = headers.get_all(X_FORWARDED_FOR).iter().collect();
    if !forwarded.is_empty() {
        let malformed = |entry: &[u8]| MalformedHeader {
            header: "X-Forwarded-For",
            entry: String::from_utf8_lossy(entry).into_owned(),
        };
        let mut leftmost = peer;
        for value in forwarded.iter().rev() {
            let value = value.to_str().map_err(|_| malformed(value.as_bytes()))?;
            for entry in value.rsplit(',') {
                let ip = parse_entry(entry).ok_or_else(|| malformed(entry.as_bytes()))?;
                if !is_trusted(ip) {
                    return Ok(ip);
                }
                leftmost = ip;
            }
        }
        return Ok(leftmost);
    }
    let mut real_ip = headers.get_all(X_REAL_IP).iter();
    match (real_ip.next(), real_ip.next()) {
        (None, _) => Ok(peer),
        (Some(value), None) => {
            value
                .to_str()
                .ok()
                .and_then(parse_entry)
                .ok_or_else(|| MalformedHeader {
                    header: "X-Real-IP",
                    entry: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                })
        }
        (Some(_), Some(_)) => Err(MalformedHeader {
            header: "X-Real-IP",
            entry: "(more than one header)".to_owned(),
        }),
    }
}

/// `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`, with surrounding whitespace, as a canonical
/// address.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse::<std::net::Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter()
            .map(|text| text.parse().expect("a CIDR block"))
            .collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        headers
    }

    fn resolve(peer: &str, pairs: &[(&'static str, &str)], trusted: &[&str]) -> IpAddr {
        client_ip(ip(peer), &headers(pairs), &cidrs(trusted)).expect("resolves")
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let spoofed = [
            ("x-forwarded-for", "203.0.113.7"),
            ("x-real-ip", "203.0.113.8"),
        ];
        assert_eq!(resolve("192.0.2.1", &spoofed, &[]), ip("192.0.2.1"));
        assert_eq!(
            resolve("192.0.2.1", &spoofed, &["127.0.0.1", "10.0.0.0/8"]),
            ip("192.0.2.1")
        );
        // Not even malformed headers matter.
        let garbage = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(
            client_ip(ip("192.0.2.1"), &garbage, &cidrs(&["127.0.0.1"])),
            Ok(ip("192.0.2.1"))
        );
    }

    #[test]
    fn a_trusted_peer_names_the_client() {
        let trusted = ["127.0.0.1"];
        let forwarded = [("x-forwarded-for", "203.0.113.7")];
        assert_eq!(
            resolve("127.0.0.1", &forwarded, &trusted),
            ip("203.0.113.7")
        );
        // Without any forwarding header the peer is the client.
        assert_eq!(resolve("127.0.0.1", &[], &trusted), ip("127.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let trusted = ["127.0.0.1", "10.0.0.0/8"];
        // client → 10.0.0.5 → 10.0.0.6 → 127.0.0.1 (the peer)
        let chain = [("x-forwarded-for", "203.0.113.7, 10.0.0.5,10.0.0.6")];
        assert_eq!(resolve("127.0.0.1", &chain, &trusted), ip("203.0.113.7"));
        // A client that sends its own X-Forwarded-For only adds entries on the left.
        let spoofed = [("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.5")];
        assert_eq!(resolve("127.0.0.1", &spoofed, &trusted), ip("203.0.113.7"));
        let spoofed = [("x-forwarded-for", "198.51.100.1, 203.0.113.7")];
        assert_eq!(
            resolve("127.0.0.1", &spoofed, &["127.0.0.1"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn several_header_lines_are_one_list_in_order() {
        let lines = [
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "203.0.113.7, 10.0.0.5"),
            ("x-forwarded-for", "10.0.0.6"),
        ];
        assert_eq!(
            resolve("127.0.0.1", &lines, &["127.0.0.1", "10.0.0.0/8"]),
            ip("203.0.113.7")
        );
        let all_trusted = [
            ("x-forwarded-for", "10.0.0.4"),
            ("x-forwarded-for", "10.0.0.5, 10.0.0.6"),
        ];
        assert_eq!(
            resolve("127.0.0.1", &all_trusted, &["127.0.0.1", "10.0.0.0/8"]),
            ip("10.0.0.4")
        );
    }

    #[test]
    fn when_every_entry_is_trusted_the_leftmost_is_the_client() {
        let chain = [("x-forwarded-for", "10.1.2.3, 10.0.0.5")];
        assert_eq!(
            resolve("127.0.0.1", &chain, &["127.0.0.1", "10.0.0.0/8"]),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn entries_may_carry_ports_and_brackets() {
        let trusted = ["127.0.0.1", "::1"];
        for (entry, expected) in [
            ("203.0.113.7:51234", "203.0.113.7"),
            ("2001:db8::7", "2001:db8::7"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("  203.0.113.7  ", "203.0.113.7"),
        ] {
            assert_eq!(
                resolve("127.0.0.1", &[("x-forwarded-for", entry)], &trusted),
                ip(expected),
                "{entry}"
            );
        }
        assert_eq!(
            resolve(
                "::1",
                &[("x-forwarded-for", "[2001:db8::7]:443, [::1]:8080")],
                &trusted
            ),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn malformed_entries_met_on_the_way_are_errors() {
        let trusted = cidrs(&["127.0.0.1", "10.0.0.0/8"]);
        for value in [
            "unknown",
            "203.0.113.7, garbage",
            "203.0.113.7,",
            "",
            "[2001:db8::7:443",
            "203.0.113.7:port",
            "_hidden",
        ] {
            let error = client_ip(
                ip("127.0.0.1"),
                &headers(&[("x-forwarded-for", value)]),
                &trusted,
            )
            .expect_err(value);
            assert_eq!(error.header, "X-Forwarded-For", "{value}");
        }
        // An entry left of the client is never read.
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                &headers(&[("x-forwarded-for", "garbage, 203.0.113.7, 10.0.0.5")]),
                &trusted
            ),
            Ok(ip("203.0.113.7"))
        );
        let mut not_utf8 = HeaderMap::new();
        not_utf8.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.\xff").expect("opaque header value"),
        );
        assert!(client_ip(ip("127.0.0.1"), &not_utf8, &trusted).is_err());
    }

    #[test]
    fn x_real_ip_is_used_without_x_forwarded_for() {
        let trusted = cidrs(&["127.0.0.1"]);
        let resolve =
            |pairs: &[(&'static str, &str)]| client_ip(ip("127.0.0.1"), &headers(pairs), &trusted);
        assert_eq!(
            resolve(&[("x-real-ip", "203.0.113.7")]),
            Ok(ip("203.0.113.7"))
        );
        assert_eq!(
            resolve(&[("x-real-ip", "[2001:db8::7]:443")]),
            Ok(ip("2001:db8::7"))
        );
        // X-Forwarded-For wins when both are present.
        assert_eq!(
            resolve(&[
                ("x-real-ip", "203.0.113.8"),
                ("x-forwarded-for", "203.0.113.7")
            ]),
            Ok(ip("203.0.113.7"))
        );
        for bad in [
            &[("x-real-ip", "203.0.113.7, 203.0.113.8")][..],
            &[("x-real-ip", "nobody")],
            &[("x-real-ip", "203.0.113.7"), ("x-real-ip", "203.0.113.8")],
        ] {
            let error = resolve(bad).expect_err("malformed");
            assert_eq!(error.header, "X-Real-IP");
        }
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let trusted = ["127.0.0.1", "10.0.0.0/8"];
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
        assert_eq!(
            resolve(
                "::ffff:127.0.0.1",
                &[("x-forwarded-for", "203.0.113.7")],
                &trusted
            ),
            ip("203.0.113.7")
        );
        // Mapped entries are trusted like their IPv4 address, and the client comes out as IPv4.
        assert_eq!(
            resolve(
                "127.0.0.1",
                &[("x-forwarded-for", "::ffff:203.0.113.7, ::ffff:10.0.0.5")],
                &trusted
            ),
            ip("203.0.113.7")
        );
        // Untrusted when mapped from an untrusted address.
        assert_eq!(
            resolve(
                "::ffff:192.0.2.1",
                &[("x-forwarded-for", "203.0.113.7")],
                &trusted
            ),
            ip("192.0.2.1")
        );
    }
}
