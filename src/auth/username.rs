//! Usernames and role names, parsed once into normalised values.

use unicode_normalization::UnicodeNormalization;

/// Longest raw username accepted on the wire, in bytes.
pub const MAX_RAW_BYTES: usize = 256;
/// Longest normalised username, in characters.
const MAX_CHARS: usize = 64;

/// A username after NFKC normalisation, trimming and lower-casing. Two inputs that normalise
/// to the same string are the same account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("username must be 1 to 64 characters")]
    Length,
    #[error("username must not contain control characters")]
    Control,
    #[error("role names must be 1 to 64 characters of letters, digits, '_', '-', ':' or '.'")]
    Role,
}

impl Username {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.len() > MAX_RAW_BYTES {
            return Err(NameError::Length);
        }
        let norm: String = raw.nfkc().collect::<String>().trim().to_lowercase();
        // Lower-casing can change the NFKC form of a few characters; normalise once more.
        let norm: String = norm.nfkc().collect();
        let n = norm.chars().count();
        if n == 0 || n > MAX_CHARS {
            return Err(NameError::Length);
        }
        if norm.chars().any(|c| c.is_control()) {
            return Err(NameError::Control);
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
    fn normalisation_merges_lookalikes() {
        let a = Username::parse("  Alice ").unwrap();
        assert_eq!(a.as_str(), "alice");
        // Fullwidth letters normalise (NFKC) to ASCII.
        assert_eq!(Username::parse("ＡＬＩＣＥ").unwrap(), a);
        // The "fi" ligature becomes "fi".
        assert_eq!(Username::parse("\u{FB01}nn").unwrap().as_str(), "finn");
        assert!(Username::parse("").is_err());
        assert!(Username::parse("   ").is_err());
        assert!(Username::parse("a\u{0000}b").is_err());
        assert!(Username::parse(&"x".repeat(65)).is_err());
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
