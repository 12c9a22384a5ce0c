//! nxguard: a DNS forwarding resolver that answers NXDOMAIN for the domains of banned apps and
//! records which device tried which app, when.
//!
//! # How a query flows
//!
//! ```text
//!  UDP / TCP listener (server)
//!        │ packet, client address
//!        ▼
//!  access ── not listed ──────────────────────────────▶ dropped (no reply)
//!        │ listed                └─ refuse list ─────▶ REFUSED
//!        ▼
//!  wire::parse_query ── malformed ─────────────────────▶ FORMERR (or dropped)
//!        ▼
//!  policy.lookup(name) ── banned ──▶ blocked::write ───▶ NXDOMAIN + SOA + EDE 15
//!        │                                 └──────────▶ attempts (queue → tracing, sinks)
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
//! - [`upstream`]: forwarding to upstream resolvers (UDP/TCP/DoT/DoH).
//! - [`access`]: which clients are answered.
//! - [`limits`]: per-client rate limits and TCP connection caps.
//! - [`attempts`]: attempt records, off the query path.
//! - [`metrics`]: outcome counters and the Prometheus/health endpoint.
//! - [`resolver`]: the pipeline.
//! - [`server`]: sockets and loops.

pub mod access;
pub mod attempts;
pub mod blocked;
pub mod cache;
pub mod config;
pub mod domains;
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod resolver;
pub mod server;
pub mod upstream;
pub mod wire;
