//! Tessera's integration tests: one binary (linking one binary is what costs time on two
//! cores), every scenario run against a real server on SQLite and on Postgres.

mod helpers;

mod accounts;
mod admin;
mod audit;
mod browser;
mod cli;
mod cookie;
mod discovery;
mod domain;
mod email;
mod feed;
mod findings;
mod grants;
mod hygiene;
mod import;
mod interop;
mod keys;
mod login;
mod master_key;
mod mfa;
mod oauth;
mod oidc;
mod oidc_device;
mod oidc_interop;
mod oidc_logout;
mod operations;
mod passkey;
mod refresh;
mod resilience;
mod store;
mod userinfo;
mod verified_cache;
mod verifier;
