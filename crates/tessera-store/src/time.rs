//! Time as Tessera stores it: integer milliseconds since the Unix epoch, in both databases.
//! Conversions between `Duration`, milliseconds and the whole seconds of JWT claims live here
//! and nowhere else.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since the Unix epoch (how every `*_at` column is stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The current time; the epoch if the clock is before it.
    pub fn now() -> Self {
        Self(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
                .unwrap_or(0),
        )
    }

    /// The JWT `NumericDate` of this time: whole seconds, rounded down (RFC 7519 §2).
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The start of the given JWT `NumericDate`.
    pub fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(millis(d)))
    }
}

impl UnixMillis {
    /// A fresh UUIDv7 whose timestamp is this time (RFC 9562 §5.7), random otherwise: a `jti`
    /// that also says, to the millisecond, when its token was issued.
    pub fn uuid_v7(self) -> uuid::Uuid {
        let ms = self.0.max(0) as u64;
        let ts =
            uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000);
        uuid::Uuid::new_v7(ts)
    }
}

/// How long past `exp + leeway` (ms) a token is still accepted: claims are whole seconds and
/// compared as `now_secs <= exp + leeway`, so the last second runs to its end. What must
/// outlive every accepted token (a denylist entry) lives this much longer.
pub const ACCEPTED_PAST_EXP_MS: i64 = 1000;

/// A duration in whole milliseconds, saturating at `i64::MAX`.
pub fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    UnixMillis::now().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        let t = UnixMillis(1_700_000_000_999);
        assert_eq!(t.as_secs(), 1_700_000_000);
        assert_eq!(UnixMillis::from_secs(2), UnixMillis(2000));
        assert_eq!(t.plus(Duration::from_millis(1)).0, 1_700_000_001_000);
        assert_eq!(UnixMillis(-1).as_secs(), -1);
        assert_eq!(millis(Duration::MAX), i64::MAX);
        let id = t.uuid_v7();
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos / 1_000_000), (1_700_000_000, 999));
        assert_ne!(t.uuid_v7(), id, "random beyond the timestamp");
    }
}
