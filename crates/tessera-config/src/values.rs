//! Typed setting values, each parsed once when the settings are loaded: the signing algorithm,
//! browser origins and proxy CIDRs. A value that does not parse fails the load, naming its key;
//! nothing downstream parses the strings again.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The algorithms Tessera signs with (`keys.algorithm`). HMAC and `none` do not exist here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    Es256,
    EdDsa,
    Rs256,
}

impl KeyAlg {
    /// Every algorithm, in the order discovery lists them.
    pub const ALL: [KeyAlg; 3] = [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256];

    /// The algorithm with this JOSE name (`ES256`, `EdDSA`, `RS256`; RFC 7518 §3.1, RFC 8037).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }
}

impl std::fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for KeyAlg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for KeyAlg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "keys.algorithm must be ES256, EdDSA or RS256, not {s:?}"
            ))
        })
    }
}

/// A browser origin (`http.cors_origins`), in the ASCII serialisation browsers send (RFC 6454
/// §6.2: lowercase scheme and host, no default port, no path, no trailing slash). The
/// allow-lists compare origins byte for byte, so an entry in any other form is refused at
/// load, with the form to write instead.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin(String);

impl Origin {
    /// The origin of `url`: `None` for an opaque origin (`null`, `data:`, a string that is not
    /// a URL) and for schemes other than http and https.
    pub fn of_url(url: &str) -> Option<Origin> {
        let origin = url::Url::parse(url).ok()?.origin();
        origin
            .is_tuple()
            .then(|| origin.ascii_serialization())
            .filter(|o| o.starts_with("https://") || o.starts_with("http://"))
            .map(Origin)
    }

    /// The serialisation, as browsers send it in `Origin`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match Origin::of_url(&s) {
            Some(o) if o.0 == s => Ok(o),
            Some(o) => Err(serde::de::Error::custom(format!(
                "http.cors_origins: {s:?} is not in the form browsers send; write {:?}",
                o.0
            ))),
            None => Err(serde::de::Error::custom(
                "http.cors_origins entries must be origins like \"https://app.example.com\" (no path, no '*')",
            )),
        }
    }
}

/// A trusted proxy (`http.trusted_proxies`): a CIDR, or a single address (its /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet(pub IpNet);

impl ProxyNet {
    /// Parses a CIDR or an address; the error names the value. A network with host bits set
    /// (`10.0.0.1/8`: a typo for an address or for `10.0.0.0/8`) and one that holds every
    /// address (`0.0.0.0/0`, `::/0`: every peer could then forge the client's address) are
    /// refused.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let net = s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("{s:?} is not an address or a CIDR"))?;
        if net.prefix_len() == 0 {
            return Err(format!(
                "{s:?} trusts every address: any client could forge its address"
            ));
        }
        if net.network() != net.addr() {
            return Err(format!(
                "{s:?} has host bits set: write {:?} for the network, or the address alone",
                net.trunc().to_string()
            ));
        }
        Ok(ProxyNet(net))
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.contains(ip)
    }
}

impl Serialize for ProxyNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProxyNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ProxyNet::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("http.trusted_proxies: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_read_in_the_form_browsers_send() {
        let of = |u: &str| Origin::of_url(u).map(|o| o.0);
        assert_eq!(
            of("HTTPS://APP.example.com:443/x?y").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            of("http://localhost:8080").as_deref(),
            Some("http://localhost:8080")
        );
        assert_eq!(of("null"), None);
        assert_eq!(of("data:text/plain,x"), None);
        assert_eq!(of("ftp://example.com"), None);
        let parse = |s: &str| serde_json::from_value::<Origin>(serde_json::json!(s));
        assert!(parse("https://app.example.com").is_ok());
        let e = parse("https://app.example.com/").unwrap_err().to_string();
        assert!(
            e.contains("write \\\"https://app.example.com\\\"")
                || e.contains("write \"https://app.example.com\""),
            "{e}"
        );
        assert!(parse("*").is_err());
    }

    #[test]
    fn proxies_are_cidrs_or_addresses() {
        let net = ProxyNet::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(&"10.1.2.3".parse().unwrap()));
        assert!(!net.contains(&"11.0.0.1".parse().unwrap()));
        let one = ProxyNet::parse(" 192.168.1.1 ").unwrap();
        assert!(one.contains(&"192.168.1.1".parse().unwrap()));
        assert!(!one.contains(&"192.168.1.2".parse().unwrap()));
        assert!(ProxyNet::parse("10.0.0.0/33").is_err());
        assert!(ProxyNet::parse("example.com").is_err());
        // Every address, or host bits set: refused, naming the value (both started silently).
        for bad in ["0.0.0.0/0", "::/0", "10.0.0.1/8", "fd00::1/8"] {
            let e = ProxyNet::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        assert!(ProxyNet::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("\"10.0.0.0/8\""));
        assert!(ProxyNet::parse("::1").is_ok());
        assert!(ProxyNet::parse("2001:db8::/32").is_ok());
    }
}
