//! The evidence: which device tried which banned app, when.
//!
//! Owns: the attempt record (`attempt`, imported by every sink; it names the client's identity from
//! `devices` and the app entry from `policy`), moving
//! records off the query path (`dispatch`), who a client is (`devices`; PTR names by reverse DNS
//! in `rdns`), the durable store
//! (`store`), the SIEM stream (`siem`), and opening and closing those outputs for a running
//! server (`outputs`).
//! Must not touch: the query path beyond the non-blocking `Recorder::record`; nothing here waits
//! on the pipeline, and nothing here imports `resolve`, `listen` or `review`.

pub mod attempt;
pub mod devices;
pub mod dispatch;
pub mod outputs;
pub mod rdns;
pub mod siem;
pub mod store;
