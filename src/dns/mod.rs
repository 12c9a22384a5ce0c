//! The DNS wire format as the hot path needs it.
//!
//! Owns: parsing a query's header, question and OPT record without allocating (`wire`), the
//! blocked answers written by hand (`blocked`), and batched UDP receive and send with
//! recvmmsg/sendmmsg (`datagrams`), query names in presentation form for logs and records
//! (`presentation`), who asked over which transport (`client`: `Client`, `Transport`, re-exported
//! by `resolve`), and hickory-resolver set up for nxguard's own lookups (PTR names of
//! clients, upstream host names; `lookup`), never used on the query path.
//! Must not touch: policy, the cache, upstreams or attempt records. This room imports only
//! `config` (the shape of a blocked answer); every other room may import it.

pub mod blocked;
pub mod client;
pub mod datagrams;
pub mod lookup;
pub mod presentation;
pub mod wire;
