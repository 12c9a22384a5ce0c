//! Attempt store benchmark: how many attempts per second the writer absorbs (through the same
//! bounded queue and batched transactions the server uses), and how long the report queries
//! take over a large store.
//!
//! `cargo bench --bench store` fills 10 million attempts (set ATTEMPTS to change; the database
//! takes about 2.5 GB in a temporary directory). Under `cargo test` it runs on 20 000.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nxguard::{
    config::StoreConfig,
    evidence::{
        attempt::{Attempt, Stamp, Transport, Via},
        devices::{EdnsIdentity, Identity, Source},
        store::{self, StoreWriter},
    },
    policy::{App, AppEntry, domains::Kind},
    review::report::{self, Filter},
};

fn attempts(n: usize, start: SystemTime) -> impl Iterator<Item = Attempt> {
    let apps: Vec<Arc<AppEntry>> =
        [("tiktok", "TikTok", "ByteDance"), ("temu", "Temu", "PDD Holdings"), ("wechat", "WeChat", "Tencent")]
            .iter()
            .map(|(id, name, vendor)| {
                let app = App::new(id, name, vendor);
                let notice = app.notice();
                Arc::new(AppEntry { app, notice })
            })
            .collect();
    let span_ms = 90 * 86_400_000u64;
    (0..n).map(move |i| {
        let device = i % 5000;
        let ip = std::net::IpAddr::from([10, 20, (device / 250) as u8, (device % 250) as u8]);
        Attempt {
            time: start + Duration::from_millis((i as u64 * 7919) % span_ms),
            client: std::net::SocketAddr::new(ip, 40000),
            transport: Transport::Udp,
            identity: Identity {
                ip,
                mac: None,
                hostname: None,
                device: Some(format!("LT-{device:04}")),
                owner: Some(format!("Afdeling {}", device % 40)),
                source: Source::InventoryIp,
            },
            edns: EdnsIdentity::default(),
            qname: format!("api{}.tiktokv.com", i % 50),
            qtype: "A".into(),
            app: Arc::clone(&apps[i % 3]),
            domain: "tiktokv.com".into(),
            kind: if i % 4 == 0 { Kind::Web } else { Kind::Api },
            via: Via::Query,
            stamp: Stamp::enforced("bench", "tiktok"),
        }
    })
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize =
        std::env::var("ATTEMPTS").ok().and_then(|v| v.parse().ok()).unwrap_or(if bench { 10_000_000 } else { 20_000 });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attempts.sqlite");
    let config = StoreConfig { path: Some(path.clone()), queue: 65_536, ..StoreConfig::default() };
    let start = UNIX_EPOCH + Duration::from_secs(1_790_000_000);

    let (sink, writer) = StoreWriter::start(&path, &config, None);
    let stats = Arc::clone(&writer.stats);
    let began = Instant::now();
    // Offered as fast as the queue takes them: what the writer sustains, not what it drops.
    for attempt in attempts(n, start) {
        sink.send_waiting(attempt);
    }
    drop(sink);
    writer.close();
    assert_eq!(stats.written.load(Ordering::Relaxed), n as u64);
    let took = began.elapsed();
    println!(
        "store write: {n} attempts in {:.1} s = {:.0} attempts/s sustained",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    println!("store size: {:.1} MB", std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6);

    let db = report::open(&path).unwrap();
    let now = start + Duration::from_secs(90 * 86_400);
    let cases = [
        ("summary, all", Filter::default()),
        ("summary, last 7 days", Filter { since: Some(now - Duration::from_secs(7 * 86_400)), ..Filter::default() }),
        ("summary, one app", Filter { app: Some("temu".into()), ..Filter::default() }),
        ("timeline, one device", Filter { device: Some("LT-0042".into()), ..Filter::default() }),
    ];
    for (name, filter) in cases {
        let began = Instant::now();
        let rows = if filter.device.is_some() {
            report::timeline(&db, &filter, None).unwrap().len()
        } else {
            report::summaries(&db, &filter, None).unwrap().len()
        };
        println!("report {name}: {rows} rows in {:.3} s", began.elapsed().as_secs_f64());
    }
    let connection = store::open(&path, false).unwrap();
    let began = Instant::now();
    let deleted = store::purge(&connection, now, Duration::from_secs(30 * 86_400)).unwrap();
    println!("purge of {deleted} attempts older than 30 days: {:.1} s", began.elapsed().as_secs_f64());
}
