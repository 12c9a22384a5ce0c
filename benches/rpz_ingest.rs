//! The Response Policy Zone and dnstap ingest on real sockets: the time to transfer a large
//! policy (AXFR over TCP on loopback, read by a client that only frames the messages) with the
//! server's resident memory, and the ingest rate of dnstap client queries over a unix socket
//! with the whole runtime on one thread (one core).
//!
//! `cargo bench --bench rpz_ingest [-- ENTRIES MESSAGES]` (1 M entries, 1 M messages);
//! `cargo test --benches` runs it once on tiny sizes.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::Message,
    rr::{Name, RecordType},
};
use nxguard::{
    config::{Config, RpzConfig},
    ingest::dnstap::{self, Dnstap},
    listen::Listeners,
    policy::{App, PolicyBuilder, domains::Kind},
    server,
    zone::{PolicySource, serve::RpzServer},
};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn transfer(entries: usize) {
    let before = status_kib("VmRSS:");
    let mut builder = PolicyBuilder::new();
    let app = builder.app(App::new("bench", "Bench feed", "bench"));
    for i in 0..entries {
        builder.block(&format!("host-{i:x}.tracker{}.example", i % 97), app, Kind::Unspecified, false);
    }
    let source: Arc<dyn PolicySource> = Arc::new(builder.build());
    let config = RpzConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        ..RpzConfig::default()
    };
    let rpz = RpzServer::start(&config, source).expect("rpz starts");
    let loaded = status_kib("VmRSS:");
    let mut query = Message::query();
    query.add_query(hickory_proto::op::Query::query(
        Name::from_ascii("rpz.nxguard.invalid.").unwrap(),
        RecordType::AXFR,
    ));
    let bytes = query.to_vec().unwrap();
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(rpz.addrs[0]).await.unwrap();
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let expected = entries * 2 + 5;
    let (mut records, mut messages, mut wire) = (0usize, 0usize, 0usize);
    let mut buf = vec![0u8; 65_535];
    while records < expected {
        let len = usize::from(stream.read_u16().await.expect("transfer ended early"));
        stream
            .read_exact(&mut buf[..len])
            .await
            .unwrap_or_else(|e| panic!("after {messages} messages, {records} records: {e}"));
        records += usize::from(u16::from_be_bytes([buf[6], buf[7]]));
        messages += 1;
        wire += len + 2;
    }
    let took = started.elapsed();
    println!(
        "rpz_transfer: {entries} entries, {records} records in {messages} messages ({:.1} MiB) in {:.3} s; \
         VmRSS {:.1} MiB before the policy, {:.1} MiB with it, VmHWM {:.1} MiB",
        wire as f64 / (1 << 20) as f64,
        took.as_secs_f64(),
        mib(before),
        mib(loaded),
        mib(status_kib("VmHWM:")),
    );
    rpz.shutdown().await;
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn control(kind: u32) -> Vec<u8> {
    let ct = b"protobuf:dnstap.Dnstap";
    let mut out = vec![0, 0, 0, 0];
    out.extend_from_slice(&(12 + ct.len() as u32).to_be_bytes());
    for word in [kind, 1, ct.len() as u32] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(ct);
    out
}

/// `messages` client queries, one in ten for a banned name, as one sender's byte stream.
fn dnstap_stream(messages: usize) -> Vec<u8> {
    let mut out = control(2);
    for i in 0..messages {
        let name = if i % 10 == 0 { format!("x{i}.tiktok.com.") } else { format!("host{i}.example.org.") };
        let mut query = Message::query();
        query.add_query(hickory_proto::op::Query::query(Name::from_ascii(&name).unwrap(), RecordType::A));
        let tap = Dnstap {
            identity: Some(b"bench-resolver".to_vec()),
            r#type: dnstap::TYPE_MESSAGE,
            message: Some(dnstap::Message {
                r#type: dnstap::CLIENT_QUERY,
                socket_protocol: Some(dnstap::PROTOCOL_UDP),
                query_address: Some(vec![10, 0, (i >> 8) as u8, i as u8]),
                query_port: Some(40_000),
                query_time_sec: Some(1_800_000_000),
                query_message: Some(query.to_vec().unwrap()),
                ..Default::default()
            }),
            ..Default::default()
        };
        out.extend_from_slice(&frame(&tap.encode_to_vec()));
    }
    out
}

async fn ingest(messages: usize) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tap.sock");
    let toml = format!(
        "[[upstream.servers]]\naddress = \"127.0.0.1:9\"\nprotocol = \"udp\"\n[attempts]\nqueue = 1000000\n\
         [ingest]\ndnstap = [\"unix:{}\"]\n",
        socket.display()
    );
    let config = Config::from_toml(&toml).expect("bench config");
    let listeners = Listeners { udp: vec![], tcp: vec![], tls: vec![], https: vec![], quic: vec![], h3: vec![] };
    let running = server::start(&config, listeners, Vec::new()).expect("server starts");
    let stats = Arc::clone(&running.ingest.as_ref().unwrap().stats);
    let bytes = dnstap_stream(messages);
    let started = Instant::now();
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    while stats.messages.load(Ordering::Relaxed) < messages as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    println!(
        "ingest: {messages} dnstap messages ({:.1} MiB) in {:.3} s on one thread: {:.0} messages/s, {} recorded, {} dropped",
        bytes.len() as f64 / (1 << 20) as f64,
        took.as_secs_f64(),
        messages as f64 / took.as_secs_f64(),
        stats.recorded.load(Ordering::Relaxed),
        running.resolver.recorder().dropped(),
    );
    running.shutdown(Duration::from_secs(1)).await;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (entries, messages) = if bench { (1_000_000, 1_000_000) } else { (2_000, 2_000) };
    let entries = sizes.first().copied().unwrap_or(entries);
    let messages = sizes.get(1).copied().unwrap_or(messages);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(ingest(messages));
    runtime.block_on(transfer(entries));
}
