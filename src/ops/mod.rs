//! Running nxguard in production: what the network team watches and the service manager sees.
//!
//! Owns: the Prometheus metrics and health endpoint (`metrics`, which reads the pipeline's
//! counters and never changes them), readiness notifications to systemd (`systemd`), the ready file with the bound addresses
//! (`ready`), and
//! `nxguard selftest` against a running instance (`selftest`).
//! Must not touch: answers or policy; nothing on the query path imports this room.

pub mod metrics;
pub mod ready;
pub mod selftest;
pub mod systemd;
