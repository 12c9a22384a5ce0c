//! The DoQ listener under attack, and the DoT listener for comparison (issue 20):
//! - **flood:** from 50 other loopback addresses (127.0.0.2 to .51) `RATE` datagrams per second
//!   each for `SECONDS`, alternately a replayed real Initial (200 captured ones) and a junk
//!   Initial, while a fresh quinn client (new endpoint, no token) connects every 200 ms and asks
//!   one query: its handshake + answer time, p50/p95/max, next to the same client alone;
//! - **DoT:** 200 stalled TLS handshakes (TCP connected, nothing sent) from the same 50
//!   addresses while a fresh DoT client connects every 200 ms for `SECONDS`;
//! - **half-open:** `HALF_OPEN` captured Initials from the 50 addresses, each accepted (the
//!   Retry threshold and caps raised above it) and never followed up: the heap this process
//!   holds (a counting allocator) and `VmRSS` before sending and once every handshake sent its
//!   first flight.
//!
//! The flood run also prints the CPU time of the runtime's worker threads (the server, and the
//! client's endpoint driver) per flood datagram.
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

/// The system allocator, counting the bytes allocated and not yet freed.
struct Counting;

static LIVE_BYTES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

// SAFETY: every call goes to the system allocator unchanged; only a counter is added.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The name of the main runtime's worker threads, where the server runs.
const WORKER_NAME: &str = "nxg-worker";

/// CPU time (user + system) of this process's tokio worker threads so far, in seconds.
fn worker_cpu_secs() -> f64 {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // "pid (comm) state ..." : utime and stime are the 12th and 13th fields after comm.
        let Some((comm, rest)) = stat.split_once(") ") else { continue };
        if !comm.ends_with(WORKER_NAME) {
            continue;
        }
        let fields: Vec<&str> = rest.split(' ').collect();
        total += fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        total += fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    total as f64 / ticks
}

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
    let (cpu_before, started) = (worker_cpu_secs(), Instant::now());
    let flooding = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(flood(target, initials, rate, seconds))
    });
    let during = doq_clients(&trusted, target, sizes.seconds).await;
    let counts = tokio::task::spawn_blocking(move || flooding.join().unwrap()).await.unwrap();
    let (cpu, wall) = (worker_cpu_secs() - cpu_before, started.elapsed().as_secs_f64());
    report(
        &format!("doq during the flood, {} s at {} datagrams/s from each of 50 addresses", sizes.seconds, sizes.rate),
        during,
    );
    let sent = counts.sent.load(Ordering::Relaxed);
    println!(
        "flood: {sent} datagrams sent, {} replies ({} Retries); attempts: {}",
        counts.replies.load(Ordering::Relaxed),
        counts.retries.load(Ordering::Relaxed),
        attempts(&running)
    );
    println!(
        "flood: worker threads' CPU {:.2} s in {wall:.1} s ({:.0} % of a core), {:.1} µs per flood datagram",
        cpu,
        100.0 * cpu / wall,
        1e6 * cpu / sent.max(1) as f64
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
    // Nor may they time out before they are all counted.
    let limits = format!(
        "tcp_max_connections = {}\ntcp_max_connections_per_client = {}\nhandshake_timeout_ms = 60000",
        n + 1,
        n + 1
    );
    let (running, trusted) = start((&server, &limits), dir.path());
    let target = running.quic_addrs[0];
    let initials = captured_and_settled(n, &trusted).await;
    let mut sockets = Vec::new();
    for from in attacker_addresses() {
        sockets.push(tokio::net::UdpSocket::bind(SocketAddr::new(from, 0)).await.unwrap());
    }
    let (heap_before, rss_before) = (LIVE_BYTES.load(Ordering::Relaxed), rss_kib());
    for (i, initial) in initials.iter().enumerate() {
        sockets[i % sockets.len()].send_to(initial, target).await.unwrap();
        if i % 50 == 49 {
            // Paced like a flood, not one burst into the socket buffer.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let replies = first_flights(&sockets, n).await;
    let (heap, rss) = (LIVE_BYTES.load(Ordering::Relaxed) - heap_before, rss_kib().saturating_sub(rss_before));
    let h = &running.handshakes;
    println!(
        "half-open: {n} Initials sent, {replies} first-flight datagrams back, (retry, refused, timed out) = ({}, {}, {}); heap +{:.1} MiB ({:.1} KiB per half-open handshake); VmRSS {:.1} -> {:.1} MiB (+{:.1} KiB per handshake)",
        h.get(Transport::Quic, Admission::Retry),
        h.get(Transport::Quic, Admission::Refused),
        h.get(Transport::Quic, Admission::TimedOut),
        heap as f64 / (1 << 20) as f64,
        heap as f64 / 1024.0 / n as f64,
        rss_before as f64 / 1024.0,
        (rss_before + rss) as f64 / 1024.0,
        rss as f64 / n as f64
    );
    drop(initials);
    running.shutdown(Duration::from_millis(100)).await;
}

/// `n` captured Initials, once the capturing client's abandoned attempts are gone from the heap.
async fn captured_and_settled(n: usize, trusted: &str) -> Vec<Vec<u8>> {
    let client = quinn_client(trusted, b"doq", IpAddr::V4(Ipv4Addr::LOCALHOST));
    let initials = capture_initials_from(&client, n).await;
    client.close(0u32.into(), b"");
    if tokio::time::timeout(Duration::from_secs(20), client.wait_idle()).await.is_err() {
        println!("half-open: the capturing client did not settle in 20 s; the heap growth includes it");
    }
    drop(client);
    // quinn frees an endpoint's receive buffers (about 2 MiB) in its driver task, after the drop.
    let (mut last, deadline) = (LIVE_BYTES.load(Ordering::Relaxed), Instant::now() + Duration::from_secs(5));
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = LIVE_BYTES.load(Ordering::Relaxed);
        if (now - last).abs() < 64 << 10 {
            break;
        }
        last = now;
    }
    initials
}

/// Waits (at most 10 s) until `sockets` had at least `n` datagrams back and then none for
/// 300 ms: each accepted handshake answers with a first flight of one to three datagrams.
async fn first_flights(sockets: &[tokio::net::UdpSocket], n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut replies, mut last) = (0usize, Instant::now());
    let mut buf = vec![0u8; 2048];
    while Instant::now() < deadline && (replies < n || last.elapsed() < Duration::from_millis(300)) {
        for socket in sockets {
            while socket.try_recv_from(&mut buf).is_ok() {
                (replies, last) = (replies + 1, Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replies
}

fn main() {
    let big = std::env::args().any(|a| a == "--bench");
    let sizes = Sizes {
        seconds: setting("SECONDS", big, 10, 1),
        rate: setting("RATE", big, 100, 5),
        half_open: setting("HALF_OPEN", big, 1_000, 20),
        stalled: setting("STALLED", big, 200, 20),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(WORKER_NAME)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        half_open_run(&sizes).await;
        flood_run(&sizes).await;
        dot_run(&sizes).await;
    });
}
