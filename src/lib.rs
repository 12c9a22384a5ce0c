//! nxguard: a DNS forwarding resolver that answers NXDOMAIN for the domains of banned apps and
//! records which device tried which app, when.
//!
//! # How a query flows
//!
//! ```text
//!  UDP / TCP / DoT / DoH / DoQ / DoH3 listener (listen)
//!        │ packet, client address
//!        ▼
//!  access ── not listed ──────────────────────────────▶ dropped (no reply)
//!        │ listed                └─ refuse list ─────▶ REFUSED
//!        ▼
//!  wire::parse_query ── malformed ─────────────────────▶ FORMERR (or dropped)
//!        │                 └─ class not IN/ANY ────────▶ REFUSED (never forwarded)
//!        ▼
//!  policy.lookup(name) ── banned ──▶ policy.decide(client's group, list's mode):
//!        │    enforce ──▶ blocked::write ───▶ NXDOMAIN + SOA + EDE 15
//!        │                   └──────────▶ attempts queue ─▶ dispatcher:
//!        │                       identity (devices) ─▶ log, store, SIEM
//!        │    log-only ─▶ attempt recorded (mode log-only), answered as below
//!        │    exempt ───▶ answered as below, no record
//!        ▼
//!  cache.get ── hit ──▶ (policy changed? re-check CNAME chain) ──▶ cached answer, TTLs aged
//!        │ miss
//!        ▼
//!  upstream.exchange ── every server silent, failed ───▶ stale answer + EDE 3, or
//!        │              or answered SERVFAIL/REFUSED/…      SERVFAIL + EDE 23 / 22
//!        ▼
//!  cache::CachedAnswer::from_upstream ─▶ CNAME chain banned? ─▶ decided as above
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
//!   (`blocked`), batched UDP receive and send (`datagrams`), hickory-resolver set up for
//!   nxguard's own lookups (`lookup`).
//! - [`policy`]: what is banned: the list files (`domains`), feeds (`feeds`, `fetch`), client
//!   groups (`groups`), building the policy (`load`) and the compiled matcher (`matcher`).
//! - [`resolve`]: answering one query: the pipeline (`pipeline`, owning `Outcome`), the response
//!   cache (`cache`) and its prefetch (`prefetch`), which clients are answered (`access`), rate
//!   limits and caps (`limits`).
//! - [`upstream`]: one upstream server's transports (UDP/TCP/DoT/DoH/DoQ), what is done when one
//!   misbehaves (`fallback`: error rcodes, EDNS fallback, case folding), the addresses of
//!   upstreams named by host (`bootstrap`), and the pool that picks the upstream for a query:
//!   zones, health, probes, strategy (`pool`).
//! - [`listen`]: the UDP, TCP, DoT, DoH, DoQ and DoH3 listeners and binding their sockets.
//! - [`evidence`]: the attempt record (`attempt`), moving it off the query path (`dispatch`), who
//!   a client is (`devices`, with PTR names in `rdns`), the durable store (`store`), the SIEM
//!   stream (`siem`).
//! - [`review`]: reading the evidence for people: `nxguard report`, the HTML board report, and
//!   the security officer's web console (`nxguard console`) with its users, audit log and cases.
//! - [`ops`]: the metrics endpoint, systemd readiness, `nxguard selftest`.
//! - [`server`]: a whole running server assembled from a config: start, reload (`reload`: the
//!   reload policy, watched files, the reload thread's priority), shutdown.
//!
//! The `nxguard` binary (`main.rs`) is a small entry point; its `cli` folder holds one file per
//! subcommand, each with its clap `Args` and `run`.

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
