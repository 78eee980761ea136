//! The hosted HTML pages of the OpenID Provider: login, consent, logout confirmation, the error
//! page and "signed in as X". Empty until that work lands.
//!
//! What goes here, and the rules it keeps (docs/DESIGN.md):
//! - server-rendered HTML that works without JavaScript, from templates embedded in the binary
//!   that an operator's directory can override;
//! - every form CSRF-checked, every page with a strict CSP and `frame-ancestors 'none'`;
//! - the same domain use cases as the JSON API (`tessera-auth`), with `AuthError` turned into
//!   pages here, as `http::error` turns it into statuses;
//! - a browser's authenticated state comes only from the SSO session cookie (invariant 9).
