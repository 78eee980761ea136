//! Users' email addresses: checked by `email_address` (RFC 5322's addr-spec, without display
//! text or domain literals, with a local part in Unicode normal form NFKC), and compared in
//! one form: the local part in lower case, the domain IDNA-normalised to its ASCII form (UTS
//! #46) and in lower case, so that `Bob@Bücher.example` and `bob@xn--bcher-kva.example` are
//! one address.

use email_address::{EmailAddress, Options};

use crate::AuthError;

/// The longest address accepted, in bytes (RFC 5321 §4.5.3.1.3's path, less the brackets).
pub const MAX_EMAIL_BYTES: usize = 254;
/// The refusals of `Email::parse` that name their rule in an answer (a static text is shown in
/// `error_description`; one built at run time is not).
const TOO_LONG: &str = "an email address is at most 254 bytes";
const INVISIBLE: &str = "email may not hold quotes, control, invisible or bidirectional characters";

/// A checked address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// As given, trimmed: what mail is sent to and what `/userinfo` shows.
    pub address: String,
    /// What is compared and unique among users (`users.email_key`).
    pub key: String,
}

impl Email {
    /// Checks an address.
    ///
    /// Errors: `BadInput` naming the rule (too long, not an address, a domain that is not a
    /// valid internationalised domain name).
    pub fn parse(raw: &str) -> Result<Email, AuthError> {
        // Spaces around it are trimmed; a control character (a tab, a line break) anywhere is
        // refused, as one inside it is below.
        if raw.chars().any(char::is_control) {
            return Err(AuthError::BadInput(INVISIBLE.into()));
        }
        let address = raw.trim();
        if address.len() > MAX_EMAIL_BYTES {
            return Err(AuthError::BadInput(TOO_LONG.into()));
        }
        let options = Options::default()
            .without_domain_literal()
            .with_required_tld();
        // What mail can be sent to, and what a person can tell apart: no quoted local part
        // (SMTP libraries refuse them, so such an account could never get its mail), no
        // control, invisible or bidirectional characters.
        if address.starts_with('"') || address.chars().any(invisible) {
            return Err(AuthError::BadInput(INVISIBLE.into()));
        }
        let parsed = EmailAddress::parse_with_options(
            address,
            Options {
                allow_display_text: false,
                ..options
            },
        )
        .map_err(|_| {
            AuthError::BadInput("email is not a valid address (name@example.com)".into())
        })?;
        let domain = idna::domain_to_ascii(parsed.domain()).map_err(|_| {
            AuthError::BadInput("the email address's domain is not a valid domain name".into())
        })?;
        // One written form per address: a local part that Unicode normalisation would change
        // (a decomposed `ë`, a full-width `ｂ`) is refused, so that no two accounts hold one
        // address spelt two ways. (Refusing rather than normalising keeps every stored
        // `email_key` as it was.)
        let local = parsed.local_part();
        if !unicode_normalization::is_nfkc(local) {
            return Err(AuthError::BadInput(
                "email must be written in Unicode normal form (NFKC): no decomposed or \
                 full-width characters"
                    .into(),
            ));
        }
        Ok(Email {
            address: address.to_string(),
            key: format!("{}@{}", local.to_lowercase(), domain.to_ascii_lowercase()),
        })
    }

    /// The names an account named by this address can have: the address as written, its
    /// compared form (ASCII domain) and its Unicode domain, each in the form names are looked
    /// up by (accounts named before PRECIS included). Empty for an address too long to be a
    /// name.
    pub(crate) fn names(&self) -> Vec<String> {
        let unicode = self.key.rsplit_once('@').map(|(local, domain)| {
            let (domain, _) = idna::domain_to_unicode(domain);
            format!("{local}@{domain}")
        });
        let mut names: Vec<String> = [Some(self.address.clone()), Some(self.key.clone()), unicode]
            .into_iter()
            .flatten()
            .filter_map(|n| crate::Username::for_lookup(&n).ok())
            .map(|n| n.as_str().to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The address to send to: the local part as given, the domain in its ASCII (IDNA) form,
    /// which every SMTP server takes.
    pub fn smtp_address(&self) -> String {
        match self.address.rsplit_once('@') {
            Some((local, domain)) => match idna::domain_to_ascii(domain) {
                Ok(ascii) => format!("{local}@{ascii}"),
                Err(_) => self.address.clone(),
            },
            None => self.address.clone(),
        }
    }
}

/// Characters an address may not hold: controls, and the invisible and bidirectional ones
/// (zero-width, joiners, marks, isolates, overrides, the BOM).
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{180E}' | '\u{FEFF}'
        )
        || ('\u{200B}'..='\u{200F}').contains(&c)
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2060}'..='\u{206F}').contains(&c)
        || ('\u{FE00}'..='\u{FE0F}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_compare_case_insensitively_with_idna_domains() {
        let a = Email::parse(" Bob@Bücher.Example ").unwrap();
        let b = Email::parse("bob@xn--bcher-kva.example").unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.key, "bob@xn--bcher-kva.example");
        assert_eq!(a.address, "Bob@Bücher.Example");
        assert_ne!(a.key, Email::parse("bob2@bücher.example").unwrap().key);
        assert_eq!(a.smtp_address(), "Bob@xn--bcher-kva.example");
    }

    /// A tab or line break at either end was trimmed away and the address taken; the length
    /// refusal named no rule in the answer (its text was built at run time).
    #[test]
    fn control_characters_and_length_are_refused_by_their_rule() {
        for raw in [
            "new@example.com\n",
            "\tnew@example.com",
            "new@example.com\r",
        ] {
            match Email::parse(raw) {
                Err(AuthError::BadInput(std::borrow::Cow::Borrowed(rule))) => {
                    assert_eq!(rule, INVISIBLE, "{raw:?}")
                }
                other => panic!("{raw:?}: {other:?}"),
            }
        }
        assert!(Email::parse(" new@example.com ").is_ok());
        let long = format!("xxxxxxx@{}com", format!("{}.", "a".repeat(60)).repeat(4));
        assert_eq!(long.len(), 255);
        match Email::parse(&long) {
            Err(AuthError::BadInput(std::borrow::Cow::Borrowed(rule))) => {
                assert_eq!(rule, TOO_LONG);
                assert!(rule.contains(&MAX_EMAIL_BYTES.to_string()));
            }
            other => panic!("{other:?}"),
        }
        assert!(Email::parse(&long[1..]).is_ok());
    }

    #[test]
    fn local_parts_have_one_written_form() {
        // The failing input: a composed and a decomposed ë were two addresses, held by two
        // accounts. The decomposed one (and a full-width letter) is now refused.
        let composed = Email::parse("Zo\u{eb}@B\u{fc}cher.Example").unwrap();
        assert_eq!(composed.key, "zo\u{eb}@xn--bcher-kva.example");
        assert!(Email::parse("zoe\u{308}@bu\u{308}cher.example").is_err());
        assert!(Email::parse("\u{ff42}ob@example.com").is_err());
        // A decomposed domain is IDNA-normalised, as before.
        let d = Email::parse("zo\u{eb}@bu\u{308}cher.example").unwrap();
        assert_eq!(d.key, composed.key);
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "",
            "bob",
            "bob@",
            "@example.com",
            "bob@@example.com",
            "Bob <bob@example.com>",
            "bob@[127.0.0.1]",
            "bob@localhost",
            "bob@exa mple.com",
            "\"quoted local\"@example.com",
            "\"a>, evil@attacker.com, <b\"@example.com",
            "a\u{200b}@example.com",
            "\u{202e}evil@example.com",
            "a\r\nBcc: x@y.com@example.com",
            &format!("{}@example.com", "a".repeat(250)),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }
}
