//! The attempt record as a tracing event: exactly one JSON line per blocked query, on the
//! `nxguard::attempt` target, with every field. (Own test binary: it installs a global
//! subscriber.)

#[path = "it/common/mod.rs"]
mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use hickory_proto::rr::RecordType;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_blocked_query_emits_one_attempt_event_with_all_fields() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter("nxguard::attempt=info")
        .with_writer(move || writer.clone())
        .init();

    let upstream = FakeUpstream::start().await;
    let mut server = start_server(&config_for(upstream.addr, ""));
    udp_ask(server.udp, &query("Log.TikTokV.com.", RecordType::HTTPS, true)).await;
    tcp_ask(server.tcp, &query("alias-to-tiktok.example.net.", RecordType::A, false)).await;
    udp_ask(server.udp, &query("www.example.org.", RecordType::A, false)).await;
    // The sink sees a record after the tracing event was written.
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), server.attempts.recv()).await.unwrap();
    }

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 2, "{text}");
    let first = &events[0];
    assert_eq!(first["target"], "nxguard::attempt");
    assert_eq!(first["message"], "blocked");
    assert_eq!(first["client"], "127.0.0.1");
    assert!(first["client_port"].as_u64().unwrap() > 0);
    assert_eq!(first["transport"], "udp");
    assert_eq!(first["qname"], "log.tiktokv.com");
    assert_eq!(first["qtype"], "HTTPS");
    assert_eq!(first["app"], "tiktok");
    assert_eq!(first["app_name"], "TikTok");
    assert_eq!(first["vendor"], "ByteDance");
    assert_eq!(first["domain"], "tiktokv.com");
    assert_eq!(first["kind"], "api");
    assert_eq!(first["matched_on"], "query");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let second = &events[1];
    assert_eq!(second["transport"], "tcp");
    assert_eq!(second["matched_on"], "cname");
    assert_eq!(second["cname_alias"], "v16.tiktokcdn.com");
}
