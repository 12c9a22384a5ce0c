//! nxguard: a DNS forwarding resolver that answers NXDOMAIN for the domains of banned apps and
//! records which device tried which app, when.
//!
//! # How a query flows
//!
//! ```text
//!  UDP / TCP / DoT / DoH listener (server, tls, https)
//!        │ packet, client address
//!        ▼
//!  access ── not listed ──────────────────────────────▶ dropped (no reply)
//!        │ listed                └─ refuse list ─────▶ REFUSED
//!        ▼
//!  wire::parse_query ── malformed ─────────────────────▶ FORMERR (or dropped)
//!        ▼
//!  policy.lookup(name) ── banned ──▶ blocked::write ───▶ NXDOMAIN + SOA + EDE 15
//!        │                                 └──────────▶ attempts queue ─▶ dispatcher:
//!        │                                     identity (devices) ─▶ log, store, SIEM
//!        ▼
//!  cache.get ── hit ──▶ (policy changed? re-check CNAME chain) ──▶ cached answer, TTLs aged
//!        │ miss
//!        ▼
//!  upstream.exchange ── failed / timed out ────────────▶ SERVFAIL
//!        ▼
//!  cache::CachedAnswer::from_upstream ─▶ CNAME chain banned? ─▶ blocked answer + attempt
//!        ▼
//!  cache.insert, answer written from the stored bytes ──▶ forwarded answer
//! ```
//!
//! Every query ends in one [`metrics::Outcome`]; the reply, the attempt record and the counters
//! all follow from it. The pipeline itself is [`resolver::Resolver`].
//!
//! # Modules
//! - [`config`]: the TOML configuration, defaults and validation.
//! - [`domains`]: the domain list files of the banned apps.
//! - [`policy`]: the compiled matcher (which app a name belongs to).
//! - [`wire`]: DNS wire-format parsing and writing on the hot path.
//! - [`blocked`]: blocked answers.
//! - [`cache`]: the response cache, storing answers ready to serve.
//! - [`upstream`]: one upstream server's transports (UDP/TCP/DoT/DoH).
//! - [`pool`]: which upstream a query goes to: zones, health, probes, strategy.
//! - [`access`]: which clients are answered.
//! - [`limits`]: per-client rate limits and TCP connection caps.
//! - [`attempts`]: attempt records, off the query path.
//! - [`devices`]: who a client is (inventory, DHCP leases, EDNS identity from trusted relays).
//! - [`store`]: the SQLite attempt store, its writer thread, retention and pseudonyms.
//! - [`siem`]: the JSON Lines stream of attempts.
//! - [`report`]: `nxguard report`, read-only over the store.
//! - [`metrics`]: outcome counters and the Prometheus/health endpoint.
//! - [`resolver`]: the pipeline.
//! - [`server`]: sockets and loops.
//! - [`datagrams`]: batched UDP receive and send (recvmmsg/sendmmsg) for the listeners.
//! - [`tls`]: the DoT/DoH certificate and TLS connections from clients.
//! - [`https`]: DNS-over-HTTPS requests from clients.
//! - [`selftest`]: `nxguard selftest`, asking a running instance whether each ban is in force.
//! - [`systemd`]: readiness notifications to systemd.

pub mod access;
pub mod attempts;
pub mod blocked;
pub mod cache;
pub mod config;
pub mod datagrams;
pub mod devices;
pub mod domains;
pub mod https;
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod pool;
pub mod report;
pub mod resolver;
pub mod selftest;
pub mod server;
pub mod siem;
pub mod store;
pub mod systemd;
pub mod tls;
pub mod upstream;
pub mod wire;
