//! Client groups and shadow mode over real sockets: clients on different loopback addresses
//! (127.0.0.1, .2, .3) get their group's mode per app, and the attempt records say so.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use crate::common::*;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use nxguard::evidence::attempt::{Mode, Via};

const INVENTORY: &str = "[[device]]\nname = \"comms-phone\"\nowner = \"Communicatie\"\nips = [\"127.0.0.3\"]\n";

async fn ask_from(server: SocketAddr, last_octet: u8, name: &str) -> Message {
    let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet));
    let message = query(name, RecordType::A, true);
    let raw =
        udp_exchange_raw(server, from, &message.to_vec().unwrap(), Duration::from_secs(5)).await.expect("no answer");
    Message::from_vec(&raw).unwrap()
}

#[tokio::test]
async fn enforce_log_only_and_exempt_groups_per_source_address() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("devices.toml");
    std::fs::write(&inventory, INVENTORY).unwrap();
    let extra = format!(
        "[devices]\ninventory = {inventory:?}\n\
         [[policy.groups]]\nname = \"pilot\"\nclients = [\"127.0.0.2/32\"]\nmode = \"log-only\"\n\
         [[policy.groups]]\nname = \"communications\"\nclients = [\"owner:Communicatie\"]\napps = {{ tiktok = \"exempt\" }}\n"
    );
    let config = config_for(upstream.addr, &extra);
    let mut server = start_server(&config);

    // No group: enforced, with the list and its version as the rule.
    let reply = ask_from(server.udp, 1, "www.tiktok.com.").await;
    assert_blocked(&reply, "TikTok", 300, true);
    let a = next_attempt(&mut server.attempts).await;
    assert_eq!((a.stamp.mode, a.client.ip()), (Mode::Enforce, "127.0.0.1".parse::<IpAddr>().unwrap()));
    assert!(a.stamp.rule.starts_with("builtin:tiktok@"), "{}", a.stamp.rule);
    assert_eq!(a.stamp.policy_version, server.running.resolver.live().policy.version());

    // The log-only group: answered normally, recorded as log-only; a CNAME into a banned CDN too.
    let reply = ask_from(server.udp, 2, "www.tiktok.com.").await;
    assert_forwarded(&reply, RecordType::A);
    let a = next_attempt(&mut server.attempts).await;
    assert_eq!((a.stamp.mode, a.qname.as_str()), (Mode::LogOnly, "www.tiktok.com"));
    let reply = ask_from(server.udp, 2, "alias-to-tiktok.example.org.").await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(!reply.answers.is_empty());
    let a = next_attempt(&mut server.attempts).await;
    assert_eq!((a.stamp.mode, matches!(a.via, Via::Cname { .. })), (Mode::LogOnly, true));

    // The communications phone (by its department in the inventory): TikTok exempt and not
    // recorded, every other app enforced.
    let reply = ask_from(server.udp, 3, "www.tiktok.com.").await;
    assert_forwarded(&reply, RecordType::A);
    let reply = ask_from(server.udp, 3, "weixin.qq.com.").await;
    assert_blocked(&reply, "WeChat", 300, true);
    let a = next_attempt(&mut server.attempts).await;
    assert_eq!((a.stamp.mode, a.app_id()), (Mode::Enforce, "wechat"), "the exempt query left no record");

    // Over TCP from 127.0.0.1 the ban stands, whatever other clients were answered (the cache
    // holds www.tiktok.com now).
    let reply = tcp_ask(server.tcp, &query("www.tiktok.com.", RecordType::A, true)).await;
    assert_blocked(&reply, "TikTok", 300, true);
    assert_eq!(next_attempt(&mut server.attempts).await.stamp.mode, Mode::Enforce);
}

#[tokio::test]
async fn shadowed_feed_and_app_resolve_and_are_recorded_log_only() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("trial.txt");
    std::fs::write(&list, "# a list on trial\nshadow-trial.example\n").unwrap();
    let cache = dir.path().join("cache");
    let extra = format!(
        "[policy]\ncache_dir = {cache:?}\napp_modes = {{ temu = \"log-only\" }}\n\
         [[policy.feeds]]\nname = \"trial\"\nurl = \"file://{}\"\ncategory = \"Trial list\"\nmode = \"log-only\"\n",
        list.display()
    );
    let config = config_for(upstream.addr, &extra);
    let mut server = start_server(&config);
    let client = nxguard::policy::fetch::client().unwrap();
    let refreshed =
        nxguard::policy::fetch::refresh(&client, &config.policy.feeds[0], &cache, 50, std::time::SystemTime::now())
            .await;
    assert!(refreshed.changed, "{refreshed:?}");
    server.running.reload(&config).unwrap();

    assert_forwarded(
        &udp_ask(server.udp, &query("www.shadow-trial.example.", RecordType::A, true)).await,
        RecordType::A,
    );
    let a = next_attempt(&mut server.attempts).await;
    assert_eq!((a.stamp.mode, a.app_id(), a.app.app.name.as_str()), (Mode::LogOnly, "trial", "Trial list"));
    assert!(a.stamp.rule.starts_with("feed:trial@"), "{}", a.stamp.rule);

    assert_forwarded(&udp_ask(server.udp, &query("temu.com.", RecordType::A, true)).await, RecordType::A);
    let a = next_attempt(&mut server.attempts).await;
    assert_eq!((a.stamp.mode, a.app_id()), (Mode::LogOnly, "temu"));

    // Everything else stays enforced.
    assert_blocked(&udp_ask(server.udp, &query("tiktok.com.", RecordType::A, true)).await, "TikTok", 300, true);
    assert_eq!(next_attempt(&mut server.attempts).await.stamp.mode, Mode::Enforce);
}

#[tokio::test]
async fn a_cname_match_is_recorded_when_the_query_name_was_exempt() {
    // The query name is a local block the client is exempt from; its CNAME leads into TikTok,
    // which the client's group only logs. The exempt match wrote no record, so the CNAME's
    // log-only record must be written.
    let upstream = FakeUpstream::start().await;
    let extra = "[policy]\nextra = [\"alias-to-tiktok.example.org\"]\n\
         [[policy.groups]]\nname = \"pilot\"\nclients = [\"127.0.0.4/32\"]\n\
         apps = { local = \"exempt\", tiktok = \"log-only\" }\n";
    let mut server = start_server(&config_for(upstream.addr, extra));
    let reply = ask_from(server.udp, 4, "alias-to-tiktok.example.org.").await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(!reply.answers.is_empty());
    let a = next_attempt(&mut server.attempts).await;
    assert_eq!((a.stamp.mode, a.app_id(), matches!(a.via, Via::Cname { .. })), (Mode::LogOnly, "tiktok", true));
}
