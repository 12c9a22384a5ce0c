//! The Response Policy Zone server on its own (`[rpz]` on 127.0.0.1:0), read by a framing
//! client and by `dig` (Debian package bind9-dnsutils; `.ci/run` installs it): a large transfer
//! streams at the reader's pace and arrives whole.

use std::{
    net::SocketAddr,
    process::Command,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RecordType},
};
use nxguard::{
    config::RpzConfig,
    policy::{App, PolicyBuilder, domains::Kind},
    zone::{PolicySource, serve::RpzServer},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ZONE: &str = "rpz.nxguard.invalid.";

/// A policy of `entries` feed names (each a name and its wildcard in the zone).
fn large_policy(entries: usize) -> Arc<dyn PolicySource> {
    let mut builder = PolicyBuilder::new();
    let app = builder.app(App::new("feed", "Test feed", "feed"));
    for i in 0..entries {
        builder.block(&format!("host-{i}.tracker{}.example", i % 97), app, Kind::Unspecified, false);
    }
    Arc::new(builder.build())
}

fn rpz_config() -> RpzConfig {
    RpzConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        ..RpzConfig::default()
    }
}

fn transfer_request(qtype: RecordType) -> Vec<u8> {
    let mut query = Message::query();
    query.add_query(Query::query(Name::from_ascii(ZONE).unwrap(), qtype));
    let bytes = query.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    framed
}

/// One transfer message off the stream.
async fn read_message(stream: &mut tokio::net::TcpStream) -> Message {
    let len = tokio::time::timeout(Duration::from_secs(30), stream.read_u16()).await.expect("stalled").unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.expect("transfer broke off mid-message");
    Message::from_vec(&buf).unwrap()
}

/// Polls `counter` until it stops rising (unchanged for 300 ms), for at most 30 s.
async fn until_settled(counter: &std::sync::atomic::AtomicU64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = counter.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = counter.load(Ordering::Relaxed);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// The most Linux lets a TCP send buffer grow to (the third figure of tcp_wmem).
fn send_buffer_max_bytes() -> usize {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").expect("Linux: /proc/sys/net/ipv4/tcp_wmem");
    text.split_whitespace().nth(2).and_then(|v| v.parse().ok()).expect("tcp_wmem has three figures")
}

/// `dig AXFR`'s own count of what it received: (records, messages).
fn dig_axfr(server: SocketAddr) -> (usize, usize) {
    let out = Command::new("dig")
        .args(["+tcp", "+noall", "+stats", "-p", &server.port().to_string()])
        .arg(format!("@{}", server.ip()))
        .args([ZONE, "AXFR"])
        .output()
        .expect("dig is missing: install Debian package bind9-dnsutils (.ci/run does)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with(";; XFR size:")).unwrap_or_else(|| {
        panic!("dig reported no complete transfer: {}", text.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
    });
    // ";; XFR size: 120005 records (messages 331, bytes 5601234)"
    let numbers: Vec<usize> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    (numbers[0], numbers[1])
}

/// The old limit: a transfer was built whole into hickory-server's answer queue before any of
/// it was written, and cut 30 s after the request. Now the server writes no further ahead of
/// a paused reader than the socket buffers hold, and the whole zone arrives once it reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transfer_streams_at_the_readers_pace_and_arrives_whole() {
    let entries = 100_000;
    let rpz = RpzServer::start(&rpz_config(), large_policy(entries)).expect("rpz starts");
    let server = rpz.addrs[0];
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    stream.write_all(&transfer_request(RecordType::AXFR)).await.unwrap();
    let first = read_message(&mut stream).await;
    assert_eq!(first.answers[0].record_type(), RecordType::SOA, "the transfer opens with the SOA");

    // The reader pauses: the server stops once the socket buffers are full.
    let stats = &rpz.zone.stats;
    let written = until_settled(&stats.transfer_messages).await;
    let mut sizes = vec![first.to_vec().unwrap().len()];
    let mut records = first.answers.len();
    let mut last = first;
    while !(sizes.len() > 1 && last.answers.last().is_some_and(|r| r.record_type() == RecordType::SOA)) {
        last = read_message(&mut stream).await;
        records += last.answers.len();
        sizes.push(last.to_vec().unwrap().len());
    }
    let messages = sizes.len();
    assert_eq!(records, entries * 2 + 5, "every entry twice, SOA twice, NS, two TXT");
    // What was written while the reader paused fits in the socket buffers: the sender's, which
    // Linux grows up to tcp_wmem's maximum, and the reader's 16 KiB (doubled by the kernel).
    let ahead: usize = sizes.iter().take(usize::try_from(written).unwrap()).sum();
    let buffers = send_buffer_max_bytes() + 64 * 1024;
    assert!(
        ahead <= buffers && ahead < sizes.iter().sum::<usize>() / 2,
        "{written} of {messages} messages ({ahead} bytes) were written while the reader paused \
         (socket buffers {buffers} bytes): the server ran ahead of its reader"
    );

    // dig reads the same zone whole.
    let dig = tokio::task::spawn_blocking(move || dig_axfr(server)).await.unwrap();
    assert_eq!(dig, (records, messages), "dig's XFR size");
    assert_eq!(stats.transfers.load(Ordering::Relaxed), 2);
    rpz.shutdown().await;
}

const KEY: &str =
    "key \"nxguard-xfr\" { algorithm hmac-sha256; secret \"bnhndWFyZC10ZXN0LWtleS1ueGd1YXJkLXRlc3Qta2V5\"; };";

/// A secondary on loopback that hears NOTIFYs: it answers FORMERR to a signed one when
/// `takes_tsig` is false (as Unbound does), NOERROR otherwise, and reports for each NOTIFY
/// whether it carried a TSIG that verifies with `key` (None: unsigned).
async fn fake_secondary(
    key: hickory_proto::rr::TSigner,
    takes_tsig: bool,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Option<bool>>) {
    use hickory_proto::op::{MessageType, OpCode, ResponseCode};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let notify = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(notify.metadata.op_code, OpCode::Notify);
            let signed = notify.signature().map(|_| key.verify_message_byte(&buf[..n], None, true).is_ok());
            let _ = tx.send(signed);
            let mut answer = Message::new(notify.metadata.id, MessageType::Response, OpCode::Notify);
            answer.metadata.response_code =
                if signed.is_some() && !takes_tsig { ResponseCode::FormErr } else { ResponseCode::NoError };
            socket.send_to(&answer.to_vec().unwrap(), from).await.unwrap();
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn a_notify_is_signed_with_the_key_and_sent_unsigned_to_a_secondary_without_tsig() {
    use nxguard::zone::{Zone, notify::notify, tsig::parse_key};
    let key = parse_key(KEY).unwrap();
    let zone = Zone::new(&rpz_config(), large_policy(3)).unwrap();
    let serial = zone.snapshot().serial;

    // BIND and other TSIG secondaries: one NOTIFY, signed with the key.
    let (bind, mut heard) = fake_secondary(key.clone(), true).await;
    assert!(notify(&zone, bind, serial, Some(&key)).await, "the signed NOTIFY is answered");
    assert_eq!(heard.recv().await.unwrap(), Some(true), "the NOTIFY carries a TSIG that verifies with the key");
    assert!(heard.try_recv().is_err(), "one NOTIFY was enough");

    // Unbound answers FORMERR to a signed NOTIFY: the same NOTIFY again, unsigned.
    let (unbound, mut heard) = fake_secondary(key.clone(), false).await;
    assert!(notify(&zone, unbound, serial, Some(&key)).await, "the unsigned NOTIFY is answered");
    assert_eq!(heard.recv().await.unwrap(), Some(true));
    assert_eq!(heard.recv().await.unwrap(), None, "then unsigned");

    // Without a key nothing is signed.
    let (plain, mut heard) = fake_secondary(key, true).await;
    assert!(notify(&zone, plain, serial, None).await);
    assert_eq!(heard.recv().await.unwrap(), None);
}

/// `dig IXFR=serial`'s answer records, as text lines.
fn dig_ixfr(server: SocketAddr, serial: u32) -> Vec<String> {
    let out = Command::new("dig")
        .args(["+tcp", "+noall", "+answer", "+onesoa", "-p", &server.port().to_string()])
        .arg(format!("@{}", server.ip()))
        .args([ZONE.to_string(), format!("IXFR={serial}")])
        .output()
        .expect("dig is missing: install Debian package bind9-dnsutils (.ci/run does)");
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

fn feed_policy(names: &[String]) -> Arc<dyn PolicySource> {
    let mut builder = PolicyBuilder::new();
    let app = builder.app(App::new("feed", "Test feed", "feed"));
    for name in names {
        builder.block(name, app, Kind::Unspecified, false);
    }
    Arc::new(builder.build())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ixfr_gets_the_differences_from_its_serial_or_the_whole_zone_when_too_old() {
    let mut names: Vec<String> = (0..1000).map(|i| format!("h{i}.feed.example")).collect();
    let rpz = RpzServer::start(&rpz_config(), feed_policy(&names)).expect("rpz starts");
    let server = rpz.addrs[0];
    let first = rpz.zone.snapshot().serial;
    names.retain(|n| n != "h7.feed.example");
    names.push("late.feed.example".into());
    let second = rpz.zone.publish(feed_policy(&names));
    names.push("later.feed.example".into());
    let third = rpz.zone.publish(feed_policy(&names));
    assert!(first < second && second < third);

    // From the first serial: both changes, not the zone (RFC 1995 §4: current SOA, then per
    // change the old SOA, deletions, the new SOA, additions, and the current SOA last).
    let lines = tokio::task::spawn_blocking(move || dig_ixfr(server, first)).await.unwrap();
    let soa_serial = |line: &String| line.contains(" SOA ").then(|| line.split(' ').nth(6).unwrap().to_string());
    let serials: Vec<String> = lines.iter().filter_map(soa_serial).collect();
    let expected: Vec<String> = [third, first, second, second, third, third].iter().map(u32::to_string).collect();
    assert_eq!(serials, expected, "{lines:#?}");
    let has = |text: &str| lines.iter().any(|l| l.starts_with(text));
    assert!(has("h7.feed.example.rpz.nxguard.invalid. 300 IN CNAME ."), "the deletion: {lines:#?}");
    assert!(has("late.feed.example.rpz.nxguard.invalid. 300 IN CNAME ."), "{lines:#?}");
    assert!(has("*.later.feed.example.rpz.nxguard.invalid. 300 IN CNAME ."), "{lines:#?}");
    assert!(!has("h8.feed.example"), "unchanged entries are not sent: {lines:#?}");
    assert_eq!(rpz.zone.stats.incremental_transfers.load(Ordering::Relaxed), 1);

    // Up to date: the current SOA alone. Unknown (older than kept): the whole zone.
    let lines = tokio::task::spawn_blocking(move || dig_ixfr(server, third)).await.unwrap();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(&format!(" SOA localhost. hostmaster.localhost. {third} ")), "{lines:#?}");
    let lines = tokio::task::spawn_blocking(move || dig_ixfr(server, first - 100)).await.unwrap();
    assert!(lines.iter().any(|l| l.starts_with("h8.feed.example")), "the whole zone: {} lines", lines.len());
    assert_eq!(lines.iter().filter(|l| l.contains(" CNAME ")).count(), names.len() * 2);
    assert_eq!(rpz.zone.stats.incremental_transfers.load(Ordering::Relaxed), 1);
    rpz.shutdown().await;
}
