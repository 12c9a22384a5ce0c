//! Live reload: the new policy is validated before it replaces the old one, the swap is atomic,
//! and the cache never serves a name that the new policy bans.

use std::path::Path;

use crate::common::*;
use hickory_proto::rr::RecordType;
use nxguard::config::Config;

fn write_list(dir: &Path, file: &str, domains: &[&str]) {
    let body: String = domains.iter().map(|d| format!("{d} api\n")).collect();
    std::fs::write(dir.join(file), format!("@app Test App\n@vendor Test Vendor\n{body}")).unwrap();
}

fn config_with_dir(upstream: std::net::SocketAddr, dir: &Path) -> Config {
    config_for(upstream, &format!("[policy]\ndomains_dir = {dir:?}\n"))
}

#[tokio::test]
async fn broken_list_keeps_the_old_policy_and_a_good_one_applies_at_once() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_list(dir.path(), "testapp.txt", &["old-banned.example"]);
    let config = config_with_dir(upstream.addr, dir.path());
    let server = start_server(&config);
    let ask = |name: &'static str| {
        let udp = server.udp;
        async move { udp_ask(udp, &query(name, RecordType::A, true)).await }
    };
    assert_blocked(&ask("x.old-banned.example.").await, "Test App", 300, true);
    let version = server.running.resolver.live().policy.version();

    std::fs::write(dir.path().join("testapp.txt"), "@app Test App\n@vendor V\nnot a domain!\n").unwrap();
    let error = server.running.reload(&config).unwrap_err().to_string();
    assert!(error.contains("testapp.txt:3"), "{error}");
    assert_blocked(&ask("x.old-banned.example.").await, "Test App", 300, true);
    assert_eq!(server.running.resolver.live().policy.version(), version);

    write_list(dir.path(), "testapp.txt", &["new-banned.example"]);
    server.running.reload(&config).unwrap();
    assert_blocked(&ask("new-banned.example.").await, "Test App", 300, true);
    assert_forwarded(&ask("x.old-banned.example.").await, RecordType::A);
    assert_ne!(server.running.resolver.live().policy.version(), version);
    assert_eq!(server.running.resolver.stats.reloads(), (1, 1));
}

#[tokio::test]
async fn cache_never_serves_a_newly_banned_name() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_list(dir.path(), "testapp.txt", &["unrelated.example"]);
    // Only the test list: tiktokcdn.com (the alias target) is not banned yet.
    let config = config_with_dir(upstream.addr, dir.path());
    let server = start_server(&config);
    let alias = query("alias-to-tiktok.example.net.", RecordType::A, true);
    let plain = query("www.example.org.", RecordType::A, true);
    assert_eq!(udp_ask(server.udp, &alias).await.answers.len(), 2, "CNAME + A forwarded");
    assert_forwarded(&udp_ask(server.udp, &plain).await, RecordType::A);
    assert_eq!(upstream.calls(), 2);

    write_list(dir.path(), "testapp.txt", &["example.org", "tiktokcdn.com"]);
    server.running.reload(&config).unwrap();
    assert_blocked(&udp_ask(server.udp, &plain).await, "Test App", 300, true);
    assert_blocked(&udp_ask(server.udp, &alias).await, "Test App", 300, true);
    assert_eq!(upstream.calls(), 2, "both decided without the upstream, from the cached chain");
}

#[tokio::test]
async fn repeated_reloads_of_the_shipped_policy_keep_blocking() {
    let upstream = FakeUpstream::start().await;
    let config = config_for(upstream.addr, "");
    let server = start_server(&config);
    for _ in 0..10 {
        server.running.reload(&config).unwrap();
    }
    assert_eq!(server.running.resolver.stats.reloads(), (10, 0));
    assert_blocked(&udp_ask(server.udp, &query("tiktok.com.", RecordType::A, true)).await, "TikTok", 300, true);
}
