//! The verifier's background tasks: refreshing the key set and polling the revocation feed.
//! They start once `VerifierBuilder::build` has succeeded and stop with the last clone of the
//! verifier.

use std::sync::Arc;
use std::time::Duration;

use crate::feed::Feed;
use crate::keys::KeyCache;

/// Refreshes the key set at 80% of its freshness; after a failure, retries with backoff (1 s
/// doubling to 30 s), logging a warning once the set is stale.
pub(crate) async fn refresh_keys(keys: Arc<KeyCache>) {
    let mut backoff = Duration::from_secs(1);
    let mut wait = keys.next_refresh_in();
    loop {
        tokio::time::sleep(wait).await;
        match keys.refresh().await {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                wait = keys.next_refresh_in().max(Duration::from_secs(1));
            }
            Err(e) => {
                if keys.is_stale() {
                    tracing::warn!(error = %e, "the key set is stale: the issuer is unreachable; serving the last good set");
                } else {
                    tracing::info!(error = %e, "refreshing the key set failed; retrying");
                }
                wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Polls the feed every `every`. A failure is logged at debug, and once the state is stale a
/// warning at most every 30 s, so a long outage does not flood the log.
pub(crate) async fn poll_feed(feed: Arc<Feed>, every: Duration) {
    const WARN_EVERY: Duration = Duration::from_secs(30);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut warned: Option<std::time::Instant> = None;
    loop {
        tick.tick().await;
        match feed.poll().await {
            Ok(()) => {
                if warned.take().is_some() {
                    tracing::info!("the revocation feed is read again");
                }
            }
            Err(e) if feed.is_stale() && warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) => {
                warned = Some(std::time::Instant::now());
                tracing::warn!(error = %e, "the revocation feed is stale: polling has failed for longer than max_staleness");
            }
            Err(e) => tracing::debug!(error = %e, "polling the revocation feed failed; retrying"),
        }
    }
}
