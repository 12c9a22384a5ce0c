//! nxguard's integration tests as one crate (one link instead of one per file, as cargo and uv
//! do): one module per area, the shared harness in `common`. Each test starts the real server
//! in-process on 127.0.0.1:0, or the `nxguard` binary, next to fake upstreams on loopback.
//! `tests/attempt_events.rs` stays its own binary: it installs a process-wide tracing subscriber.

mod common;

mod app_assessment;
mod attempt_store;
mod bypass;
mod cli;
mod console;
mod console_access;
mod console_browser;
mod console_cases;
mod console_day;
mod console_stores;
mod console_tls;
mod deploy_files;
mod docs;
mod encrypted_listeners;
mod encrypted_upstream;
mod feeds;
mod groups;
mod hostile_queries;
mod identity_spoofing;
mod metrics;
mod prefetch;
mod quic_listeners;
mod quic_upstream;
mod reload;
mod report;
mod resolvers;
mod reverse_dns;
mod rpz;
mod selftest;
mod serve;
mod serve_stale;
mod shipped;
mod signals;
mod store_gaps;
mod store_history;
mod store_postgres;
mod store_rollups;
mod systemd_notify;
mod tcp_streams;
mod upstream_faults;
mod upstream_hostname;
mod upstream_pool;
mod wire_rules;
