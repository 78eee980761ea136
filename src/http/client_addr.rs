//! The client's address. It is the socket peer, unless that peer is a trusted proxy
//! (`http.trusted_proxies`). Then the address comes from RFC 7239 `Forwarded` or from
//! `X-Forwarded-For`: the right-most entry that is not itself a trusted proxy. Headers from
//! any other peer are ignored, so a client cannot choose the address its logins are
//! throttled and logged under.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap};
use ipnet::IpNet;

/// Parses `http.trusted_proxies`: CIDRs, or single addresses.
pub fn parse_trusted(list: &[String]) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is not an address or a CIDR"))
        })
        .collect()
}

/// The client address of a request that came from `peer`.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // The chain as the proxies appended to it: client first, nearest proxy last.
    let chain = forwarded_for(headers).or_else(|| x_forwarded_for(headers));
    let Some(chain) = chain else {
        return peer;
    };
    chain
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or_else(|| chain.first())
        .copied()
        .unwrap_or(peer)
}

/// The `for=` addresses of every `Forwarded` header (RFC 7239 §4), in order. `None` when the
/// header is absent or any element cannot be read (then nothing from it is believed).
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut out = Vec::new();
    let mut seen = false;
    for value in headers.get_all(header::FORWARDED) {
        seen = true;
        let value = value.to_str().ok()?;
        for element in value.split(',') {
            for pair in element.split(';') {
                let Some((k, v)) = pair.trim().split_once('=') else {
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("for") {
                    out.push(node_ip(v.trim().trim_matches('"'))?);
                }
            }
        }
    }
    (seen && !out.is_empty()).then_some(out)
}

/// An RFC 7239 §6 node: `192.0.2.60`, `192.0.2.60:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn node_ip(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The addresses of every `X-Forwarded-For` header, in order; `None` when absent or unreadable.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut out = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for part in value.to_str().ok()?.split(',') {
            out.push(node_ip(part.trim())?);
        }
    }
    (!out.is_empty()).then_some(out)
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

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let trusted = parse_trusted(&["10.0.0.0/8".into(), "192.168.1.1".into()]).unwrap();
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let xff = headers(&[("x-forwarded-for", "198.51.100.7, 10.9.9.9")]);
        // From the proxy: the right-most address that is not a proxy.
        assert_eq!(
            client_ip(&xff, peer, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // From anyone else, the header changes nothing.
        assert_eq!(client_ip(&xff, stranger, &trusted), stranger);
        assert_eq!(client_ip(&xff, peer, &[]), peer);
        // A client cannot put itself further left: the right-most untrusted entry wins.
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7")]);
        assert_eq!(
            client_ip(&spoof, peer, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // RFC 7239, with ports, quotes and IPv6, preferred over X-Forwarded-For.
        let fwd = headers(&[
            (
                "forwarded",
                r#"for="[2001:db8::1]:4711";proto=https, for=10.2.2.2"#,
            ),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_ip(&fwd, peer, &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        // Garbage is not believed.
        let junk = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_ip(&junk, peer, &trusted), peer);
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(client_ip(&unknown, peer, &trusted), peer);
        // Only proxies in the chain: the left-most one.
        let proxies = headers(&[("x-forwarded-for", "10.5.5.5, 10.6.6.6")]);
        assert_eq!(
            client_ip(&proxies, peer, &trusted),
            "10.5.5.5".parse::<IpAddr>().unwrap()
        );
        assert!(parse_trusted(&["10.0.0.0/33".into()]).is_err());
    }
}
