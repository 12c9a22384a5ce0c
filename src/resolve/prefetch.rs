//! Prefetch: refreshing a popular cache entry in the background before it expires.
//!
//! Owns: the refresh task. The pipeline decides when (a fresh hit in the last tenth of the
//! entry's TTL, the entry hit at least twice, once per entry: `CachedAnswer::hit_wants_prefetch`)
//! and only for names the current policy lets through; it hands over an in-flight permit, so
//! prefetches count against `limits.max_in_flight` like client queries and never starve them.
//! The refreshed answer replaces the entry; a failed or uncacheable refresh leaves the old one to
//! expire (and serve-stale applies as usual).
//! Does not own: the policy check of the refreshed answer's CNAME chain (the pipeline passes
//! `stamp`, which records it as the miss path does).

use std::{sync::Arc, time::Instant};

use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

use crate::{
    config::CacheConfig,
    dns::wire,
    resolve::cache::{self, Cache, CachedAnswer},
    upstream::pool::Upstreams,
};

/// One refresh, ready to run.
pub struct Refresh {
    /// The query to send upstream (the pipeline's upstream query for the client's question).
    pub asked: Vec<u8>,
    pub upstreams: Arc<Upstreams>,
    pub cache: Cache,
    pub limits: CacheConfig,
    /// The moment of the hit that asked for it, in the caller's clock (tests pass their own).
    pub now: Instant,
    pub permit: OwnedSemaphorePermit,
}

impl Refresh {
    /// Runs the refresh in a task of the current runtime (none: nothing happens). `stamp` marks
    /// the new answer with the policy generation and whether its chain is banned.
    pub fn spawn<F>(self, stamp: F)
    where
        F: FnOnce(&[u8], &mut CachedAnswer) + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(self.run(stamp));
    }

    async fn run<F>(self, stamp: F)
    where
        F: FnOnce(&[u8], &mut CachedAnswer),
    {
        let started = Instant::now();
        let Refresh { asked, upstreams, cache, limits, now, permit } = self;
        let Ok(query) = wire::parse_query(&asked) else {
            return;
        };
        let response = match upstreams.exchange(&asked, query.name.as_bytes()).await {
            Ok(response) => response,
            Err(error) => {
                debug!(%error, qname = %query.name.to_text(), "prefetch failed");
                return;
            }
        };
        drop(permit);
        // Stored as of the answer's arrival, on the caller's clock.
        let stored_at = now + started.elapsed();
        let inspected = match CachedAnswer::from_upstream(&query, &response, &limits, stored_at, 0) {
            Ok(inspected) if inspected.ttl.is_some() && !inspected.chain_loop => inspected,
            _ => return,
        };
        let mut answer = inspected.answer;
        stamp(query.name.as_bytes(), &mut answer);
        let mut key = [0u8; cache::MAX_KEY];
        cache.insert(cache::key(&query, &mut key), Arc::new(answer));
        debug!(qname = %query.name.to_text(), "prefetched");
    }
}
