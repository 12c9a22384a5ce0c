//! Resource limits: per-client query rate (token buckets) and TCP connection counts.
//!
//! Owns: deciding whether one more query or connection from a client fits. A client is an IPv4
//! address or an IPv6 /64 (one host usually owns a whole /64). Trusted relays (Wi-Fi controllers,
//! forwarders) carry many devices and get their own, higher rate. Buckets are sharded to keep
//! lock contention low across workers, and idle buckets are swept so memory stays bounded under
//! a spoofed flood. Also which banned queries over the rate still get an attempt record
//! (`OverLimitRecords`: one per client, listed domain and second). Does not own: the global cap
//! on queries in flight (`pipeline`).

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasher, Hash},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use ipnet::IpNet;

use crate::config::LimitsConfig;

const SHARDS: usize = 64;
/// Buckets kept per shard before idle ones are swept.
const SWEEP_AT: usize = 4096;

/// An IPv4 address, or the /64 of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(u32),
    V6(u64),
}

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.into()),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-client token buckets.
pub struct RateLimiter {
    qps: f64,
    burst: f64,
    relay_qps: f64,
    relay_burst: f64,
    relays: Vec<IpNet>,
    shards: Vec<Mutex<HashMap<ClientKey, Bucket>>>,
    hasher: foldhash::fast::FixedState,
}

impl RateLimiter {
    pub fn new(config: &LimitsConfig, relays: &[IpNet]) -> RateLimiter {
        RateLimiter {
            qps: f64::from(config.client_qps),
            burst: f64::from(config.client_burst.max(1)),
            relay_qps: f64::from(config.relay_qps),
            relay_burst: f64::from(config.relay_burst.max(1)),
            relays: relays.to_vec(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x7261_7465),
        }
    }

    /// Takes a token for one query from `ip` at `now`; false = over the limit.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let relay = self.relays.iter().any(|net| net.contains(&ip));
        let (qps, burst) = if relay { (self.relay_qps, self.relay_burst) } else { (self.qps, self.burst) };
        if qps <= 0.0 {
            return true;
        }
        let key = ClientKey::of(ip);
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let Ok(mut buckets) = shard.lock() else { return true };
        if buckets.len() >= SWEEP_AT && !buckets.contains_key(&key) {
            // Full buckets of idle clients carry no state worth keeping.
            buckets.retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() * qps < burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: burst, last: now });
        let refill = now.saturating_duration_since(bucket.last).as_secs_f64() * qps;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Pairs remembered per shard and second at most: beyond it (a spoofed flood of many sources)
/// no further record is made in that second.
const RECORDS_PER_SHARD: usize = 4096;

/// Which (client, listed domain) pairs over the rate got an attempt record in the current
/// second. Each shard forgets its pairs when the second changes, so memory stays bounded.
pub struct OverLimitRecords {
    shards: Vec<Mutex<(u64, HashSet<u64>)>>,
    hasher: foldhash::fast::FixedState,
}

impl OverLimitRecords {
    pub fn new() -> OverLimitRecords {
        OverLimitRecords {
            shards: (0..SHARDS).map(|_| Mutex::new((0, HashSet::new()))).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x6f76_6572),
        }
    }

    /// True the first time `ip` asks for a name under `domain` in `second` (Unix time): that
    /// query gets its record.
    pub fn first_in_second(&self, ip: IpAddr, domain: &str, second: u64) -> bool {
        let pair = self.hasher.hash_one((ip, domain));
        let Ok(mut shard) = self.shards[(pair as usize) % SHARDS].lock() else { return false };
        let (current, seen) = &mut *shard;
        if *current != second {
            *current = second;
            seen.clear();
        }
        seen.len() < RECORDS_PER_SHARD && seen.insert(pair)
    }
}

impl Default for OverLimitRecords {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts open TCP connections, in total and per client.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<(usize, HashMap<ClientKey, usize>)>,
}

/// An admitted connection; dropping it frees its place.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    key: ClientKey,
}

impl ConnectionLimits {
    pub fn new(config: &LimitsConfig) -> ConnectionLimits {
        ConnectionLimits {
            max_total: config.tcp_max_connections,
            max_per_client: config.tcp_max_connections_per_client,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let key = ClientKey::of(ip);
        let mut open = self.open.lock().ok()?;
        let (total, per_client) = &mut *open;
        let mine = per_client.entry(key).or_insert(0);
        if *total >= self.max_total || *mine >= self.max_per_client {
            if *mine == 0 {
                per_client.remove(&key);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(ConnectionSlot { limits: Arc::clone(self), key })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.limits.open.lock() {
            let (total, per_client) = &mut *open;
            *total -= 1;
            if let Some(mine) = per_client.get_mut(&self.key) {
                *mine -= 1;
                if *mine == 0 {
                    per_client.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(qps: u32, burst: u32) -> LimitsConfig {
        LimitsConfig { client_qps: qps, client_burst: burst, ..LimitsConfig::default() }
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let limiter = RateLimiter::new(&limits(10, 5), &[]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        assert_eq!((0..8).filter(|_| limiter.allow(ip, now)).count(), 5);
        assert!(limiter.allow("10.0.0.2".parse().unwrap(), now), "other clients unaffected");
        assert!(limiter.allow(ip, now + Duration::from_millis(100)), "one token after 0.1 s at 10 qps");
        assert!(!limiter.allow(ip, now + Duration::from_millis(100)));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limiter = RateLimiter::new(&limits(1, 1), &[]);
        let now = Instant::now();
        assert!(limiter.allow("2001:db8:1:2::1".parse().unwrap(), now));
        assert!(!limiter.allow("2001:db8:1:2::ffff".parse().unwrap(), now));
        assert!(limiter.allow("2001:db8:1:3::1".parse().unwrap(), now));
    }

    #[test]
    fn relays_get_their_own_rate_and_zero_disables() {
        let config = LimitsConfig {
            client_qps: 1,
            client_burst: 1,
            relay_qps: 100,
            relay_burst: 100,
            ..LimitsConfig::default()
        };
        let limiter = RateLimiter::new(&config, &["10.9.0.0/16".parse().unwrap()]);
        let now = Instant::now();
        assert_eq!((0..50).filter(|_| limiter.allow("10.9.0.1".parse().unwrap(), now)).count(), 50);
        let off = RateLimiter::new(&limits(0, 1), &[]);
        assert!((0..1000).all(|_| off.allow("10.0.0.1".parse().unwrap(), now)));
    }

    #[test]
    fn one_over_limit_record_per_client_domain_and_second() {
        let records = OverLimitRecords::new();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(records.first_in_second(a, "tiktok.com", 100));
        assert!(!records.first_in_second(a, "tiktok.com", 100));
        assert!(records.first_in_second(a, "wechat.com", 100), "another domain");
        assert!(records.first_in_second(b, "tiktok.com", 100), "another client");
        assert!(records.first_in_second(a, "tiktok.com", 101), "the next second");
        assert!(!records.first_in_second(a, "tiktok.com", 101));
    }

    #[test]
    fn connection_caps_total_and_per_client() {
        let config =
            LimitsConfig { tcp_max_connections: 3, tcp_max_connections_per_client: 2, ..LimitsConfig::default() };
        let caps = Arc::new(ConnectionLimits::new(&config));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert!(caps.admit(a).is_none(), "per-client cap");
        let _third = caps.admit(b).unwrap();
        assert!(caps.admit(b).is_none(), "total cap");
        drop(first);
        assert!(caps.admit(b).is_some());
    }
}
