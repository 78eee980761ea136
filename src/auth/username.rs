//! Usernames and role names, parsed once into normalised values.

use precis_core::profile::Profile;
use precis_profiles::UsernameCaseMapped;
use unicode_normalization::UnicodeNormalization;

/// Longest raw username accepted on the wire, in bytes.
pub const MAX_RAW_BYTES: usize = 256;
/// Longest normalised username, in characters.
const MAX_CHARS: usize = 64;

/// A username in its one comparable form: RFC 8265 PRECIS `UsernameCaseMapped` (width
/// mapping, lower case, NFC, and only letters, digits and visible symbols: no spaces, no
/// invisible or bidirectional controls), after trimming surrounding white space. Two inputs
/// with the same form are the same account, and no new account can look like another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("username must be 1 to 64 characters")]
    Length,
    #[error("username may contain only letters, digits and visible symbols (RFC 8265 UsernameCaseMapped): no spaces, invisible or control characters")]
    Disallowed,
    #[error("role names must be 1 to 64 characters of letters, digits, '_', '-', ':' or '.'")]
    Role,
}

impl Username {
    /// The name of a new account: PRECIS `UsernameCaseMapped`, strictly.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.len() > MAX_RAW_BYTES {
            return Err(NameError::Length);
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(NameError::Length);
        }
        let enforced = UsernameCaseMapped::new()
            .enforce(trimmed)
            .map_err(|_| NameError::Disallowed)?;
        let n = enforced.chars().count();
        if n == 0 || n > MAX_CHARS {
            return Err(NameError::Length);
        }
        Ok(Self(enforced.into_owned()))
    }

    /// The form to look an existing account up by. The PRECIS form when the input has one;
    /// otherwise the normalisation accounts were created with before PRECIS (NFKC, trimmed,
    /// lower-cased), so that such an account still logs in. For every name PRECIS accepts,
    /// the two forms are equal, so one account never has two names.
    pub fn for_lookup(raw: &str) -> Result<Self, NameError> {
        match Self::parse(raw) {
            Ok(name) => Ok(name),
            Err(NameError::Disallowed) => Self::legacy(raw),
            Err(e) => Err(e),
        }
    }

    fn legacy(raw: &str) -> Result<Self, NameError> {
        let norm: String = raw.nfkc().collect::<String>().trim().to_lowercase();
        // Lower-casing can change the NFKC form of a few characters; normalise once more.
        let norm: String = norm.nfkc().collect();
        let n = norm.chars().count();
        if n == 0 || n > MAX_CHARS {
            return Err(NameError::Length);
        }
        if norm.chars().any(|c| c.is_control()) {
            return Err(NameError::Disallowed);
        }
        Ok(Self(norm))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Validates role names and removes duplicates, keeping order.
pub fn parse_roles(roles: Vec<String>) -> Result<Vec<String>, NameError> {
    let mut out: Vec<String> = Vec::new();
    for r in roles {
        let r = r.trim().to_string();
        let ok = !r.is_empty()
            && r.len() <= 64
            && r.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-:.".contains(c));
        if !ok {
            return Err(NameError::Role);
        }
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precis_merges_case_and_width_and_refuses_lookalikes() {
        let a = Username::parse("  Alice ").unwrap();
        assert_eq!(a.as_str(), "alice");
        // Fullwidth letters map to ASCII (RFC 8265 width mapping).
        assert_eq!(Username::parse("ＡＬＩＣＥ").unwrap(), a);
        assert_eq!(Username::parse("Dörte").unwrap().as_str(), "dörte");
        // Invisible characters, bidirectional overrides and spaces make no new account.
        for lookalike in [
            "ali\u{200B}ce",
            "ali\u{00AD}ce",
            "\u{202E}ecila",
            "ali\u{2060}ce",
            "al ice",
            "a\u{0000}b",
        ] {
            assert!(Username::parse(lookalike).is_err(), "{lookalike:?}");
        }
        assert!(Username::parse("").is_err());
        assert!(Username::parse("   ").is_err());
        assert!(Username::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn accounts_made_before_precis_are_still_found() {
        // "ﬁnn" (a compatibility ligature) and "john smith" were valid names before; PRECIS
        // refuses them for new accounts, and the lookup finds the stored forms.
        assert!(Username::parse("\u{FB01}nn").is_err());
        assert_eq!(Username::for_lookup("\u{FB01}nn").unwrap().as_str(), "finn");
        assert_eq!(
            Username::for_lookup("John Smith").unwrap().as_str(),
            "john smith"
        );
        // For names PRECIS accepts, both forms agree.
        for name in ["Alice", "ＡＬＩＣＥ", "Dörte", "bob.o'neil-99"] {
            assert_eq!(
                Username::for_lookup(name).unwrap(),
                Username::parse(name).unwrap()
            );
        }
    }

    #[test]
    fn roles_are_validated() {
        assert_eq!(
            parse_roles(vec!["admin".into(), "admin".into()]).unwrap(),
            vec!["admin"]
        );
        assert!(parse_roles(vec!["bad role".into()]).is_err());
    }
}
