//! The client's address. It is the socket peer, unless that peer is a trusted proxy
//! (`http.trusted_proxies`). Then the address comes from the one header the deployment's
//! proxies write (`http.forwarded_header`: `X-Forwarded-For` or RFC 7239 `Forwarded`), read
//! from the right: the right-most entry that is not itself a trusted proxy. The other header is
//! never read: nginx, HAProxy, Traefik and Caddy append to one and pass the other through as
//! the client wrote it. Headers from any other peer are ignored, so a client cannot choose the
//! address its logins are throttled and logged under.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap};

use crate::config::{ForwardedHeader, ProxyNet};

/// Whom a deployment trusts to name the client, and in which header.
#[derive(Debug, Clone, Default)]
pub struct ProxyTrust {
    /// `http.trusted_proxies`.
    pub proxies: Vec<ProxyNet>,
    /// `http.forwarded_header`.
    pub header: ForwardedHeader,
}

impl ProxyTrust {
    fn trusts(&self, ip: &IpAddr) -> bool {
        self.proxies.iter().any(|net| net.contains(ip))
    }
}

/// The client address of a request that came from `peer`.
///
/// Addresses are canonical: an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, how a socket bound
/// to `[::]` sees an IPv4 peer, or how a proxy may write one) is the IPv4 address, so that it
/// matches IPv4 trusted proxies and one client has one throttle key.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trust: &ProxyTrust) -> IpAddr {
    let peer = peer.to_canonical();
    if !trust.trusts(&peer) {
        return peer;
    }
    // The chain as the proxies appended to it (client first, nearest proxy last), walked from
    // the nearest: each trusted hop vouches for the entry to its left. An entry that cannot be
    // read ends the walk; the last hop read is then the best address known.
    let entries = match trust.header {
        ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
        ForwardedHeader::Forwarded => forwarded_for(headers),
    };
    let mut client = peer;
    for entry in entries.iter().rev() {
        match entry {
            Some(ip) => {
                client = *ip;
                if !trust.trusts(ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The `for=` nodes of every `Forwarded` header (RFC 7239 §4), in order; `None` for a node or
/// element that cannot be read (`unknown`, an obfuscated name, garbage). Each header is split
/// as bytes: a client's non-ASCII element must not make the elements a proxy appended after it
/// unreadable.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut out = Vec::new();
    for value in headers.get_all(header::FORWARDED) {
        for element in value.as_bytes().split(|b| *b == b',') {
            let Ok(element) = std::str::from_utf8(element) else {
                out.push(None);
                continue;
            };
            let node = element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| node_ip(v.trim().trim_matches('"')))
            });
            // An element without `for=` names no hop; one with an unreadable node does.
            match node {
                Some(ip) => out.push(ip),
                None if element.trim().is_empty() => out.push(None),
                None => {}
            }
        }
    }
    out
}

/// An RFC 7239 §6 node: `192.0.2.60`, `192.0.2.60:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn node_ip(node: &str) -> Option<IpAddr> {
    let ip = if let Some(rest) = node.strip_prefix('[') {
        rest.split_once(']')?.0.parse().ok()
    } else {
        node.parse()
            .ok()
            .or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
    };
    ip.map(|ip: IpAddr| ip.to_canonical())
}

/// The entries of every `X-Forwarded-For` header, in order; `None` for one that is not an
/// address. Split as bytes, like `Forwarded`.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|part| {
            std::str::from_utf8(part)
                .ok()
                .and_then(|p| node_ip(p.trim()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trust(header: ForwardedHeader) -> ProxyTrust {
        ProxyTrust {
            proxies: ["10.0.0.0/8", "192.168.1.1"]
                .map(|p| ProxyNet::parse(p).unwrap())
                .to_vec(),
            header,
        }
    }

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let xff_trust = trust(ForwardedHeader::XForwardedFor);
        let peer = ip("10.1.2.3");
        let stranger = ip("203.0.113.9");
        let xff = headers(&[("x-forwarded-for", "198.51.100.7, 10.9.9.9")]);
        // From the proxy: the right-most address that is not a proxy.
        assert_eq!(client_ip(&xff, peer, &xff_trust), ip("198.51.100.7"));
        // From anyone else, the header changes nothing.
        assert_eq!(client_ip(&xff, stranger, &xff_trust), stranger);
        assert_eq!(client_ip(&xff, peer, &ProxyTrust::default()), peer);
        // A client cannot put itself further left: the right-most untrusted entry wins.
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7")]);
        assert_eq!(client_ip(&spoof, peer, &xff_trust), ip("198.51.100.7"));
        // Only proxies in the chain: the left-most one.
        let proxies = headers(&[("x-forwarded-for", "10.5.5.5, 10.6.6.6")]);
        assert_eq!(client_ip(&proxies, peer, &xff_trust), ip("10.5.5.5"));
    }

    /// nginx, HAProxy, Traefik and Caddy append to `X-Forwarded-For` and pass a client's
    /// `Forwarded` through untouched: with the default setting it is never read.
    #[test]
    fn the_header_the_proxy_does_not_write_is_never_read() {
        let peer = ip("10.1.2.3");
        let forged = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_ip(&forged, peer, &trust(ForwardedHeader::XForwardedFor)),
            ip("198.51.100.7")
        );
        // And the other way round, for proxies that write RFC 7239.
        let fwd = headers(&[
            (
                "forwarded",
                r#"for="[2001:db8::1]:4711";proto=https, for=10.2.2.2"#,
            ),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(
            client_ip(&fwd, peer, &trust(ForwardedHeader::Forwarded)),
            ip("2001:db8::1")
        );
    }

    /// A socket bound to `[::]` sees IPv4 peers as IPv4-mapped IPv6 addresses; proxies may
    /// write them too. They are the IPv4 address: trusted as such, one throttle key.
    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let t = trust(ForwardedHeader::XForwardedFor);
        let xff = headers(&[("x-forwarded-for", "::ffff:1.2.3.4, ::ffff:10.9.9.9")]);
        assert_eq!(client_ip(&xff, ip("::ffff:10.1.2.3"), &t), ip("1.2.3.4"));
        assert_eq!(
            client_ip(&HeaderMap::new(), ip("::ffff:203.0.113.9"), &t),
            ip("203.0.113.9")
        );
    }

    /// An unreadable entry stops the walk from the right; what was read before it stands.
    #[test]
    fn a_chain_is_read_from_the_right_up_to_an_unreadable_entry() {
        let t = trust(ForwardedHeader::XForwardedFor);
        let peer = ip("10.1.2.3");
        let left_junk = headers(&[("x-forwarded-for", "not-an-ip, 198.51.100.7")]);
        assert_eq!(client_ip(&left_junk, peer, &t), ip("198.51.100.7"));
        let mid_junk = headers(&[("x-forwarded-for", "1.2.3.4, junk, 10.9.9.9")]);
        assert_eq!(client_ip(&mid_junk, peer, &t), ip("10.9.9.9"));
        let junk = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_ip(&junk, peer, &t), peer);
        // A client's non-ASCII entry in the line the proxy appended to.
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xc3\xa9, 198.51.100.7").unwrap(),
        );
        assert_eq!(client_ip(&h, peer, &t), ip("198.51.100.7"));
        let mut h = HeaderMap::new();
        h.append(
            "forwarded",
            axum::http::HeaderValue::from_bytes(b"for=\xc3\xa9, for=198.51.100.7").unwrap(),
        );
        assert_eq!(
            client_ip(&h, peer, &trust(ForwardedHeader::Forwarded)),
            ip("198.51.100.7")
        );
        let f = trust(ForwardedHeader::Forwarded);
        let unknown = headers(&[("forwarded", "for=unknown, for=198.51.100.7")]);
        assert_eq!(client_ip(&unknown, peer, &f), ip("198.51.100.7"));
        let only_unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(client_ip(&only_unknown, peer, &f), peer);
    }
}
