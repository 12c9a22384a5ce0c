//! Answering one query: the pipeline and what it consults on the way.
//!
//! Owns: the pipeline (`pipeline`: access → parse → policy → cache → upstream → CNAME check →
//! answer → attempt record), the typed `Outcome` every query ends in and its counters
//! (`outcome`), the response cache (`cache`) and refreshing its popular entries before they
//! expire (`prefetch`), which clients are answered (`access`), and rate limits and TCP
//! connection caps (`limits`).
//! Must not touch: sockets (`listen`), upstream transports (`upstream`), or where attempt records
//! go after the queue (`evidence`). Nothing in `dns`, `policy`, `upstream` or `evidence` imports
//! this room.

pub mod access;
pub mod cache;
pub mod limits;
pub mod outcome;
pub mod pipeline;
pub mod prefetch;

pub use crate::dns::client::{Client, Transport};
pub use outcome::{Outcome, Stats};
pub use pipeline::{Forward, Live, Resolver, Step};
