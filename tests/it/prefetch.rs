//! Prefetch: a popular entry hit in the last tenth of its TTL is refreshed once in the
//! background and never expires for clients; a name the current policy bans is never
//! prefetched. Time is passed in (`answer_locally(.., now)`), so nothing sleeps out a TTL.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::common::*;
use hickory_proto::rr::RecordType;
use nxguard::{
    resolve::Transport,
    resolve::{Client, Outcome, Resolver, Step},
};

fn client() -> Client {
    Client { addr: SocketAddr::from(([127, 0, 0, 1], 40000)), transport: Transport::Udp }
}

/// The outcome of a query answered at `now` (cached or blocked; anything else panics).
fn local(resolver: &Resolver, packet: &[u8], now: Instant) -> Outcome {
    let mut out = Vec::new();
    match resolver.answer_locally(packet, client(), &mut out, now) {
        Step::Done(outcome) => outcome,
        Step::Upstream(_) => panic!("expected a local answer at {now:?}"),
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen");
}

#[tokio::test]
async fn a_hot_entry_is_refreshed_once_and_never_expires_for_clients() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let resolver = &server.running.resolver;
    let packet = query("hot.example.org.", RecordType::A, true).to_vec().unwrap();
    let mut out = Vec::new();
    let t0 = Instant::now();
    assert_eq!(resolver.answer(&packet, client(), &mut out).await, Outcome::Forwarded);
    assert_eq!(upstream.calls(), 1);

    // TTL 300: the last tenth starts at 270 s.
    assert_eq!(local(resolver, &packet, t0 + Duration::from_secs(100)), Outcome::Cached);
    assert_eq!(resolver.stats.prefetches(), 0, "not near expiry yet");
    assert_eq!(local(resolver, &packet, t0 + Duration::from_secs(280)), Outcome::Cached);
    assert_eq!(resolver.stats.prefetches(), 1);
    // More hits in the window while (or after) the refresh runs start no second one.
    assert_eq!(local(resolver, &packet, t0 + Duration::from_secs(285)), Outcome::Cached);
    assert_eq!(local(resolver, &packet, t0 + Duration::from_secs(290)), Outcome::Cached);
    until("the refresh", || upstream.calls() == 2).await;
    // The refreshed entry is stored: past the old expiry (300 s) it is still a hit.
    until("the refreshed entry", || {
        let mut out = Vec::new();
        matches!(resolver.answer_locally(&packet, client(), &mut out, t0 + Duration::from_secs(310)), Step::Done(_))
    })
    .await;
    for at in [320, 400, 500] {
        assert_eq!(local(resolver, &packet, t0 + Duration::from_secs(at)), Outcome::Cached, "at {at} s");
    }
    assert_eq!(upstream.calls(), 2, "refreshed exactly once");
    assert_eq!(resolver.stats.prefetches(), 1);
    assert_eq!(resolver.stats.outcome(Outcome::Forwarded), 1, "clients never waited for the upstream again");
    let metrics = nxguard::ops::metrics::render(resolver);
    assert!(metrics.contains("nxguard_prefetches_total 1"), "{metrics}");
}

#[tokio::test]
async fn a_name_the_current_policy_bans_is_never_prefetched() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let resolver = &server.running.resolver;
    let t0 = Instant::now();
    let mut out = Vec::new();
    // Banned after it was cached: the policy answers before the cache is asked.
    let later_banned = query("www.example.net.", RecordType::A, true).to_vec().unwrap();
    assert_eq!(resolver.answer(&later_banned, client(), &mut out).await, Outcome::Forwarded);
    // Its CNAME chain leads into TikTok: blocked from the cache, never refreshed.
    let alias = query("alias-to-tiktok.example.org.", RecordType::A, true).to_vec().unwrap();
    assert_eq!(resolver.answer(&alias, client(), &mut out).await, Outcome::Blocked);
    assert_eq!(upstream.calls(), 2);
    assert_eq!(local(resolver, &later_banned, t0 + Duration::from_secs(10)), Outcome::Cached);

    let banned = config_for(upstream.addr, "[policy]\nextra = [\"example.net\"]\n");
    server.running.reload(&banned).unwrap();
    for at in [280, 285, 290] {
        assert_eq!(local(resolver, &later_banned, t0 + Duration::from_secs(at)), Outcome::Blocked);
        assert_eq!(local(resolver, &alias, t0 + Duration::from_secs(at)), Outcome::Blocked);
    }
    // Give a (wrongly) spawned refresh time to reach the upstream.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(resolver.stats.prefetches(), 0);
    assert_eq!(upstream.calls(), 2, "no prefetch reached the upstream");
}
