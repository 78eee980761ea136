//! Usernames and role names, parsed once into normalised values.

use precis_core::profile::Profile;
use precis_profiles::UsernameCaseMapped;
use unicode_normalization::UnicodeNormalization;
use unicode_security::{skeleton, RestrictionLevel, RestrictionLevelDetection};

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
    #[error("username mixes scripts or uses letters outside the identifier profile: its letters and digits must be of one script, or Han with Hiragana and Katakana, Hangul or Bopomofo, each also with Latin, and allowed in identifiers (Unicode UTS #39 restriction level highly restrictive)")]
    MixedScript,
    #[error("username has combining marks that hide or pile up (Unicode UTS #39 §5.4): a dot above on i or j, one mark twice in a row, or more than four in a row")]
    HiddenMarks,
    #[error("usernames starting with \"deleted-\" are reserved for erased accounts")]
    Reserved,
    #[error("role names must be 1 to 64 characters of letters, digits, '_', '-', ':' or '.'")]
    Role,
}

/// The prefix of an erased account's name (`deleted-<id>`): no new name takes it.
pub const TOMBSTONE_PREFIX: &str = "deleted-";

/// Letters whose dot a combining dot above (U+0307) would hide: the Soft_Dotted ones a
/// username can hold, and the dotless i and j it would dot.
const DOTTED: &[char] = &['i', 'j', 'ı', 'ȷ', 'į', 'ɨ', 'ʝ', 'ј', 'і', 'ⅰ', 'ⅼ'];

/// UTS #39 §5.4's optional checks on nonspacing marks: no mark that its base hides (a dot
/// above on i or j), no mark twice in a row, no more than four in a row.
fn marks_are_visible(name: &str) -> bool {
    use unicode_normalization::char::is_combining_mark;
    let (mut base, mut prev, mut run) = (None, None, 0);
    // Decomposed (UTS #39 §5.4 works on NFD): `à` + U+0300 is two graves in a row.
    for c in name.nfd() {
        if !is_combining_mark(c) {
            (base, prev, run) = (Some(c), None, 0);
            continue;
        }
        run += 1;
        if run > 4
            || prev == Some(c)
            || (c == '\u{0307}' && base.is_some_and(|b| DOTTED.contains(&b)))
        {
            return false;
        }
        prev = Some(c);
    }
    true
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
        // An erased account's name, or one that looks like it (`de1eted-…`).
        if enforced.starts_with(TOMBSTONE_PREFIX)
            || skeleton_key(&enforced).starts_with(&skeleton_key(TOMBSTONE_PREFIX))
        {
            return Err(NameError::Reserved);
        }
        if !marks_are_visible(&enforced) {
            return Err(NameError::HiddenMarks);
        }
        // UTS #39 §5.2, on the letters and digits: the symbols PRECIS allows (`.`, `-`, `_`,
        // `@`, `+`) belong to no script and would otherwise make every e-mail-like name
        // "unrestricted".
        let letters: String = enforced.chars().filter(|c| c.is_alphanumeric()).collect();
        if !letters
            .as_str()
            .check_restriction_level(RestrictionLevel::HighlyRestrictive)
        {
            return Err(NameError::MixedScript);
        }
        Ok(Self(enforced.into_owned()))
    }

    /// The name's confusable skeleton (UTS #39 §4), made case-blind: `rоot` (Cyrillic о),
    /// `r00t` and `ROOT` all give the skeleton of `root`. Two accounts never share one.
    pub fn skeleton(&self) -> String {
        skeleton_key(self.as_str())
    }

    /// A generated name, `user-<32 hex digits>`: for an account whose address cannot be its
    /// name (longer than a name may be, or like another account's name). It logs in with its
    /// address either way.
    pub fn generated() -> Self {
        Username(format!("user-{}", uuid::Uuid::new_v4().simple()))
    }

    /// The form to look an existing account up by. The PRECIS form when the input has one;
    /// otherwise the normalisation accounts were created with before PRECIS (NFKC, trimmed,
    /// lower-cased), so that such an account still logs in. For every name PRECIS accepts,
    /// the two forms are equal, so one account never has two names.
    pub fn for_lookup(raw: &str) -> Result<Self, NameError> {
        match Self::parse(raw) {
            Ok(name) => Ok(name),
            // Accounts named before PRECIS, or before the mixed-script rule, still log in.
            // Erased accounts (`deleted-<id>`) are looked up by their name too.
            Err(
                NameError::Disallowed
                | NameError::MixedScript
                | NameError::HiddenMarks
                | NameError::Reserved,
            ) => Self::legacy(raw),
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

/// The case-blind confusable skeleton of `name`: skeleton, lower case, skeleton again (the
/// skeleton mapping is case-sensitive and maps some letters to capitals, `l` to `I`'s form
/// and back).
pub fn skeleton_key(name: &str) -> String {
    // Greek final sigma is the lower case of Σ at a word's end: PRECIS lower-cases Σ to σ
    // everywhere, so `ΣΊΣΥΦΟΣ` and `Σίσυφος` would otherwise be two names.
    let name = name.replace('ς', "σ");
    let once: String = skeleton(&name).collect();
    skeleton(&once.to_lowercase()).collect()
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
    fn hidden_marks_reserved_names_and_final_sigma() {
        // A dot above that i or j hides, whether the i is dotted or dotless.
        for hidden in [
            "admi\u{0307}n",
            "adm\u{0131}\u{0307}n",
            "j\u{0307}ohn",
            "x\u{0300}\u{0300}",
        ] {
            assert!(
                matches!(Username::parse(hidden), Err(NameError::HiddenMarks)),
                "{hidden:?}"
            );
        }
        assert!(matches!(
            Username::parse("a\u{0300}\u{0301}\u{0302}\u{0303}\u{0304}\u{0306}"),
            Err(NameError::HiddenMarks)
        ));
        // Composed forms are checked decomposed: à + grave, ị + dot above.
        for hidden in ["a\u{0300}\u{0300}", "\u{00e0}\u{0300}", "i\u{0323}\u{0307}"] {
            assert!(
                matches!(Username::parse(hidden), Err(NameError::HiddenMarks)),
                "{hidden:?}"
            );
        }
        // Marks that show are fine: é (NFC), ṅ, a Vietnamese stack of two.
        for fine in ["rene\u{0301}", "n\u{0307}", "e\u{0302}\u{0301}"] {
            assert!(Username::parse(fine).is_ok(), "{fine:?}");
        }
        // Erased accounts' names are no one's new name, but are found.
        assert!(matches!(
            Username::parse("Deleted-0123"),
            Err(NameError::Reserved)
        ));
        assert_eq!(
            Username::for_lookup("deleted-0123").unwrap().as_str(),
            "deleted-0123"
        );
        assert!(Username::parse("undeleted-0123").is_ok());
        for lookalike in ["de1eted-0123", "de|eted-0123"] {
            assert!(
                matches!(Username::parse(lookalike), Err(NameError::Reserved)),
                "{lookalike}"
            );
        }
        // Σ lower-cased mid-word and at the end: one skeleton.
        let typed = Username::parse("Σίσυφος").unwrap();
        let shouted = Username::parse("ΣΊΣΥΦΟΣ").unwrap();
        assert_ne!(typed, shouted);
        assert_eq!(typed.skeleton(), shouted.skeleton());
    }

    #[test]
    fn mixed_scripts_are_refused_and_lookalikes_share_a_skeleton() {
        // Latin r, Cyrillic о, Latin o, t: renders as "root".
        let e = Username::parse("r\u{043E}ot").unwrap_err();
        assert!(matches!(e, NameError::MixedScript), "{e}");
        assert!(e.to_string().contains("UTS #39"), "{e}");
        // An account named before the rule is still found.
        assert_eq!(
            Username::for_lookup("R\u{043E}ot").unwrap().as_str(),
            "r\u{043E}ot"
        );
        for ok in [
            "root",
            "josé",
            "παύλος",
            "日本語abc",
            "alice@example.com",
            "a.b-c_d+1",
        ] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        // Single-script look-alikes are allowed as names, but share a skeleton.
        let root = Username::parse("root").unwrap().skeleton();
        for lookalike in ["r00t", "ROOT", "rooT"] {
            assert_eq!(
                Username::parse(lookalike).unwrap().skeleton(),
                root,
                "{lookalike}"
            );
        }
        // A whole-Cyrillic look-alike ("рор") is one script, and has the Latin one's skeleton.
        assert_eq!(
            skeleton_key("\u{0440}\u{043E}\u{0440}"),
            Username::parse("pop").unwrap().skeleton()
        );
        assert_ne!(Username::parse("rout").unwrap().skeleton(), root);
    }

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
