//! Console page latency: the overview, devices and device pages over a large attempt store,
//! served in-process by the console's router (the HTTP server's own cost is not in it), each
//! asked `ROUNDS` times by a signed-in officer; p50, p95 and max per page.
//!
//! `cargo bench --bench console` fills 1 million attempts over 90 days from 5 000 devices (set
//! ATTEMPTS to change, ROUNDS for the requests per page). Under `cargo test` it runs on 20 000
//! attempts, as a smoke test.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use nxguard::{
    config::{ConsoleConfig, StoreConfig},
    evidence::{
        attempt::{Attempt, Stamp, Via},
        devices::{EdnsIdentity, Identity, Source},
        store::{Record, StoreWriter},
    },
    policy::{App, AppEntry, domains::Kind},
    resolve::Transport,
    review::console::{self, Console, auth},
};
use tower::ServiceExt;

fn attempts(n: usize, start: SystemTime) -> impl Iterator<Item = Attempt> {
    let apps: Vec<Arc<AppEntry>> = [("tiktok", "TikTok"), ("temu", "Temu"), ("wechat", "WeChat")]
        .iter()
        .map(|(id, name)| {
            let app = App::new(id, name, "vendor");
            let notice = app.notice();
            Arc::new(AppEntry { app, notice })
        })
        .collect();
    let span_ms = 90 * 86_400_000u64;
    (0..n).map(move |i| {
        let device = i % 5000;
        let ip = std::net::IpAddr::from([10, 20, (device / 250) as u8, (device % 250) as u8]);
        Attempt {
            // Spread evenly over the 90 days, devices interleaved.
            time: start + Duration::from_millis(i as u64 * span_ms / n.max(1) as u64),
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
            resolver: None,
        }
    })
}

async fn get(app: &axum::Router, uri: &str, cookie: &str) -> StatusCode {
    let request = Request::builder().uri(uri).header(header::COOKIE, cookie).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    if std::env::var_os("SHOW").is_some() {
        println!("{uri}: {} bytes", body.len());
    }
    status
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize =
        std::env::var("ATTEMPTS").ok().and_then(|v| v.parse().ok()).unwrap_or(if bench { 1_000_000 } else { 20_000 });
    let rounds: usize =
        std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(if bench { 20 } else { 2 }).max(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attempts.sqlite");
    let config = StoreConfig { path: Some(path.clone()), queue: 65_536, ..StoreConfig::default() };
    let start = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let (sink, writer) = StoreWriter::start(&config).unwrap().expect("a store path is set");
    let stats = Arc::clone(&writer.stats);
    let node = config.node_name();
    for attempt in attempts(n, start) {
        sink.send_waiting(Record::of(&attempt, None, &node));
    }
    drop(sink);
    writer.close();
    assert_eq!(stats.written.load(Ordering::Relaxed), n as u64);

    let now = start + Duration::from_secs(90 * 86_400);
    let config = ConsoleConfig { state_path: Some(dir.path().join("console.sqlite")), ..ConsoleConfig::default() };
    let console = Arc::new(Console::open(config, path, None, Arc::new(move || now)).unwrap());
    let (id, _) = {
        let db = console.db().unwrap();
        auth::add_user(&db, "bench", auth::Role::Officer, "benchmark password", now).unwrap();
        auth::start_session(&db, "bench", now).unwrap()
    };
    let cookie = format!("{}={id}", auth::COOKIE);
    let app = console::router(console);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!("console pages over {n} attempts (5000 devices, 90 days), {rounds} requests each:");
    for (name, uri) in [
        ("overview, 30 days", "/?since=30d"),
        ("overview, 7 days", "/?since=7d"),
        ("devices, 30 days", "/devices?since=30d"),
        ("devices, 30 days, one app", "/devices?since=30d&app=temu"),
        ("device page, 30 days", "/device?device=LT-0042&since=30d"),
        ("device page, 90 days", "/device?device=LT-0042&since=90d"),
    ] {
        let mut times: Vec<Duration> = (0..rounds)
            .map(|_| {
                let began = Instant::now();
                assert_eq!(runtime.block_on(get(&app, uri, &cookie)), StatusCode::OK, "{uri}");
                began.elapsed()
            })
            .collect();
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "  {name:28} p50 {:7.1} ms  p95 {:7.1} ms  max {:7.1} ms",
            at(0.5).as_secs_f64() * 1e3,
            at(0.95).as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3
        );
    }
}
