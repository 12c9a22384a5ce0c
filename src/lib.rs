//! nxguard: a DNS forwarding resolver that answers NXDOMAIN for the domains of banned apps and
//! records which device tried which app, when.
//!
//! # How a query flows
//!
//! ```text
//!  UDP / TCP / DoT / DoH listener (listen)
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
//! Every query ends in one [`resolve::Outcome`]; the reply, the attempt record and the counters
//! all follow from it. The pipeline itself is [`resolve::Resolver`].
//!
//! # Rooms
//! Each folder owns one concern; its `mod.rs` says what it owns and what it must not touch.
//! Imports go one way, down this list's dependencies: `dns` and `config` import nothing of the
//! others' rooms, `policy` and `upstream` build on `dns`, `evidence` on `policy`, `resolve` on all
//! of those, `listen` on `resolve`, and `server` assembles the lot.
//! - [`config`]: the TOML configuration, defaults and validation, one file per room's tables.
//! - [`dns`]: the wire format on the hot path (`wire`), blocked answers written by hand
//!   (`blocked`), batched UDP receive and send (`datagrams`).
//! - [`policy`]: what is banned: the list files (`domains`) and the compiled matcher (`matcher`).
//! - [`resolve`]: answering one query: the pipeline (`pipeline`, owning `Outcome`), the response
//!   cache (`cache`), which clients are answered (`access`), rate limits and caps (`limits`).
//! - [`upstream`]: one upstream server's transports (UDP/TCP/DoT/DoH) and the pool that picks
//!   the upstream for a query: zones, health, probes, strategy (`pool`).
//! - [`listen`]: the UDP, TCP, DoT and DoH listeners and binding their sockets.
//! - [`evidence`]: the attempt record (`attempt`), moving it off the query path (`dispatch`), who
//!   a client is (`devices`), the durable store (`store`), the SIEM stream (`siem`).
//! - [`review`]: reading the evidence for people: `nxguard report`, the HTML board report, and
//!   the security officer's web console (`nxguard console`) with its users, audit log and cases.
//! - [`ops`]: the metrics endpoint, systemd readiness, `nxguard selftest`.
//! - [`server`]: a whole running server assembled from a config: start, reload, shutdown.

pub mod config;
pub mod dns;
pub mod evidence;
pub mod listen;
pub mod ops;
pub mod policy;
pub mod resolve;
pub mod review;
pub mod server;
pub mod upstream;
