use super::*;

fn rules() -> PasswordSettings {
    let s = crate::config::Settings::defaults().unwrap();
    s.password
}

#[test]
fn new_passwords_follow_the_rules() {
    let r = rules();
    let check = |pw: &str, user: &str| check_new_password(&SecretString::from(pw), user, &r);
    for weak in ["password123", "qwertyuiop", "11111111", "alice2024"] {
        let e = check(weak, "alice").unwrap_err().to_string();
        assert!(e.contains("too common"), "{weak}: {e}");
        assert!(e.contains("password.min_score"), "{weak}: {e}");
    }
    assert!(check("short", "alice")
        .unwrap_err()
        .to_string()
        .contains("at least 8 characters"));
    // Length counts characters after NFKC: "ﬀ" (one character) becomes "ff" (two).
    assert!(check("\u{FB00}\u{FB00}\u{FB00}xyz", "alice").is_err());
    let e = check("\u{FB00}\u{FB00}\u{FB00}\u{FB00}qz", "alice").unwrap_err();
    assert!(!e.to_string().contains("characters"), "{e}");
    // No composition rules: long lower-case passphrases pass.
    for good in [
        "correct horse battery staple",
        "carol's password",
        "a fresh password",
        "another password",
        "long enough pw",
        "the new password",
        "a brand new password",
        "a long enough password",
        "a long new password",
    ] {
        assert!(check(good, "alice").is_ok(), "{good}");
    }
}
