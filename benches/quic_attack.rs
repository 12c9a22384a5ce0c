//! The DoQ listener under attack, and the DoT listener for comparison (issue 20):
//! - **flood:** from 50 other loopback addresses (127.0.0.2 to .51) `RATE` datagrams per second
//!   each for `SECONDS`, alternately a replayed real Initial (200 captured ones) and a junk
//!   Initial, while a fresh quinn client (new endpoint, no token) connects every 200 ms and asks
//!   one query: its handshake + answer time, p50/p95/max, next to the same client alone;
//! - **DoT:** 200 stalled TLS handshakes (TCP connected, nothing sent) from the same 50
//!   addresses while a fresh DoT client connects every 200 ms for `SECONDS`;
//! - **half-open:** `HALF_OPEN` captured Initials from the 50 addresses, each accepted (the
//!   Retry threshold and caps raised above it) and never followed up: resident memory before
//!   and after (`VmRSS`; the before is taken ahead of capturing, so the growth is an upper bound).
//!
//! The queries are for a blocked name, answered by the pipeline without an upstream. Server,
//! attackers and client share this process and the machine's cores.
//! `cargo bench --bench quic_attack` runs 10 s at 100 datagrams/s per address and 1,000
//! half-open handshakes (set SECONDS, RATE, HALF_OPEN); under `cargo test` it runs a smoke pass
//! of 1 s at 5 datagrams/s and 20 half-open.

#[path = "../tests/it/common/quic.rs"]
#[allow(dead_code)]
mod quic;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use nxguard::{
    config::Config,
    listen::{Listeners, quic::Admission},
    resolve::Transport,
    server::{self, Running},
};
use quic::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

const BLOCKED: &str = "www.tiktok.com";

struct Sizes {
    seconds: u64,
    rate: u32,
    half_open: usize,
    stalled: usize,
}

fn setting<T: std::str::FromStr>(name: &str, big: bool, bench: T, test: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(if big { bench } else { test })
}

/// A server with DoQ and DoT on loopback and a fresh certificate; `server` and `limits` are added
/// to those tables.
fn start((server, limits): (&str, &str), dir: &std::path::Path) -> (Running, String) {
    let generated = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let text = format!(
        "[[upstream.servers]]\naddress = \"127.0.0.1:9\"\nprotocol = \"udp\"\n[limits]\nclient_qps = 0\n{limits}\n[server]\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}\n{server}"
    );
    let config = Config::from_toml(&text).unwrap();
    let listeners = Listeners::bind_loopback().unwrap().with_tls_loopback().unwrap().with_quic_loopback().unwrap();
    (server::start(&config, listeners, Vec::new()).unwrap(), generated.cert.pem())
}

fn blocked_query() -> Vec<u8> {
    let mut out = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in BLOCKED.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]);
    out
}

/// p50, p95 and max of `times` in ms.
fn percentiles(times: &mut [Duration]) -> (f64, f64, f64) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(at(0.5)), ms(at(0.95)), ms(times[times.len() - 1]))
}

/// A fresh DoQ client every 200 ms for `seconds`: the handshake + answer time of each.
async fn doq_clients(trusted: &str, target: SocketAddr, seconds: u64) -> (Vec<Duration>, usize) {
    let (mut times, mut failed) = (Vec::new(), 0);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while Instant::now() < end {
        tick.tick().await;
        let client = quinn_client(trusted, b"doq", IpAddr::V4(Ipv4Addr::LOCALHOST));
        let started = Instant::now();
        match tokio::time::timeout(Duration::from_secs(10), doq_ask(&client, target, &blocked_query())).await {
            Ok(Ok(_)) => times.push(started.elapsed()),
            _ => failed += 1,
        }
    }
    (times, failed)
}

/// A fresh DoT client every 200 ms for `seconds`: connect, TLS handshake, one query, its answer.
async fn dot_clients(trusted: &str, target: SocketAddr, seconds: u64) -> (Vec<Duration>, usize) {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(trusted, b"dot")));
    let (mut times, mut failed) = (Vec::new(), 0);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while Instant::now() < end {
        tick.tick().await;
        let started = Instant::now();
        let exchange = async {
            let tcp = TcpStream::connect(target).await?;
            let name = rustls::pki_types::ServerName::try_from(TLS_NAME).map_err(std::io::Error::other)?;
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(&framed(&blocked_query())).await?;
            let len = tls.read_u16().await?;
            let mut answer = vec![0; usize::from(len)];
            tls.read_exact(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(Duration::from_secs(10), exchange).await {
            Ok(Ok(_)) => times.push(started.elapsed()),
            _ => failed += 1,
        }
    }
    (times, failed)
}

fn report(what: &str, (mut times, failed): (Vec<Duration>, usize)) {
    if times.is_empty() {
        println!("{what}: no answer ({failed} failed)");
        return;
    }
    let (p50, p95, max) = percentiles(&mut times);
    println!("{what}: {} answered, {failed} failed; p50 {p50:.1} ms, p95 {p95:.1} ms, max {max:.1} ms", times.len());
}

fn attempts(running: &Running) -> String {
    Admission::ALL
        .iter()
        .map(|a| format!("{} {}", a.as_str(), running.handshakes.get(Transport::Quic, *a)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn flood_run(sizes: &Sizes) {
    let dir = tempfile::tempdir().unwrap();
    let (running, trusted) = start(("", ""), dir.path());
    let target = running.quic_addrs[0];
    report("doq alone, 2 s", doq_clients(&trusted, target, 2).await);
    let initials = Arc::new(capture_initials(200, &trusted, b"doq").await);
    // The attacker runs on a thread and runtime of its own, as another machine would.
    let (rate, seconds) = (sizes.rate, Duration::from_secs(sizes.seconds));
    let flooding = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(flood(target, initials, rate, seconds))
    });
    let during = doq_clients(&trusted, target, sizes.seconds).await;
    let counts = tokio::task::spawn_blocking(move || flooding.join().unwrap()).await.unwrap();
    report(
        &format!("doq during the flood, {} s at {} datagrams/s from each of 50 addresses", sizes.seconds, sizes.rate),
        during,
    );
    println!(
        "flood: {} datagrams sent, {} replies ({} Retries); attempts: {}",
        counts.sent.load(Ordering::Relaxed),
        counts.replies.load(Ordering::Relaxed),
        counts.retries.load(Ordering::Relaxed),
        attempts(&running)
    );
    running.shutdown(Duration::from_millis(100)).await;
}

async fn dot_run(sizes: &Sizes) {
    let dir = tempfile::tempdir().unwrap();
    let (running, trusted) = start(("", ""), dir.path());
    let target = running.tls_addrs[0];
    report("dot alone, 2 s", dot_clients(&trusted, target, 2).await);
    let mut stalled = Vec::new();
    for (n, from) in attacker_addresses().into_iter().cycle().take(sizes.stalled).enumerate() {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        match socket.connect(target).await {
            Ok(stream) => stalled.push(stream),
            Err(error) => println!("stalled handshake {n} not connected: {error}"),
        }
    }
    let during = dot_clients(&trusted, target, sizes.seconds).await;
    report(&format!("dot with {} stalled TLS handshakes, {} s", stalled.len(), sizes.seconds), during);
    drop(stalled);
    running.shutdown(Duration::from_millis(100)).await;
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn half_open_run(sizes: &Sizes) {
    let n = sizes.half_open;
    let dir = tempfile::tempdir().unwrap();
    let server = format!("quic_unvalidated_handshakes_max = {}", n + 1);
    let limits = format!("tcp_max_connections = {}\ntcp_max_connections_per_client = {}", n + 1, n + 1);
    let (running, trusted) = start((&server, &limits), dir.path());
    let target = running.quic_addrs[0];
    let before = rss_kib();
    let initials = capture_initials(n, &trusted, b"doq").await;
    let mut sockets = Vec::new();
    for from in attacker_addresses() {
        sockets.push(tokio::net::UdpSocket::bind(SocketAddr::new(from, 0)).await.unwrap());
    }
    for (i, initial) in initials.iter().enumerate() {
        sockets[i % sockets.len()].send_to(initial, target).await.unwrap();
        if i % 50 == 49 {
            // Paced like a flood, not one burst into the socket buffer.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    drop(initials);
    let deadline = Instant::now() + Duration::from_secs(10);
    let started = |r: &Running| {
        let h = &r.handshakes;
        (h.get(Transport::Quic, Admission::Retry), h.get(Transport::Quic, Admission::Refused))
    };
    // Every accepted handshake answers with its first flight: wait until the sockets had them.
    let mut replies = 0usize;
    let mut buf = vec![0u8; 2048];
    while replies < n && Instant::now() < deadline {
        for socket in &sockets {
            while let Ok((_, _)) = socket.try_recv_from(&mut buf) {
                replies += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = rss_kib();
    let grown = after.saturating_sub(before);
    println!(
        "half-open: {n} Initials sent, {replies} first-flight datagrams back, (retry, refused) = {:?}; VmRSS {:.1} -> {:.1} MiB (+{:.1} MiB, {:.1} KiB per half-open handshake, upper bound)",
        started(&running),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        grown as f64 / 1024.0,
        grown as f64 / n as f64
    );
    running.shutdown(Duration::from_millis(100)).await;
}

fn main() {
    let big = std::env::args().any(|a| a == "--bench");
    let sizes = Sizes {
        seconds: setting("SECONDS", big, 10, 1),
        rate: setting("RATE", big, 100, 5),
        half_open: setting("HALF_OPEN", big, 1_000, 20),
        stalled: setting("STALLED", big, 200, 20),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        half_open_run(&sizes).await;
        flood_run(&sizes).await;
        dot_run(&sizes).await;
    });
}
