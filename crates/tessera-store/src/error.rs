//! What a store call can fail with: the meaning callers need, never a driver error.

/// What a write would have duplicated: the unique value another row already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// A user's name, taken outright.
    Username,
    /// A user's confusable skeleton (UTS #39): the name looks like another account's.
    UsernameSkeleton,
    /// A user's email address (compared as `users.email_key`).
    Email,
    /// The key an automatic rotation replaces: another replica rotated it first.
    KeySuccessor,
    /// Any other unique value (a signing key's kid).
    Other,
}

/// The column's name, as errors and logs have always named it.
impl std::fmt::Display for Duplicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Duplicate::Username => "username",
            Duplicate::UsernameSkeleton => "username_skeleton",
            Duplicate::Email => "email",
            Duplicate::KeySuccessor => "succeeds",
            Duplicate::Other => "key",
        })
    }
}

/// A store failure, with the meaning callers need.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated; what was duplicated is named.
    #[error("duplicate {0}")]
    Duplicate(Duplicate),
    /// The database cannot be reached or the pool is exhausted. The caller fails closed (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The tables do not exist: the database was never migrated.
    #[error("the database has no schema")]
    NoSchema,
    /// Anything else: a bug or corrupted data.
    #[error("database error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;
