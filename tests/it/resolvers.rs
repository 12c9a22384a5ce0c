//! Real resolvers as nxguard's secondaries and evidence sources, started by the tests on
//! loopback high ports with their own config files in a temporary directory (Debian packages
//! `unbound` and `bind9`; `.ci/run` installs them). Unbound transfers the Response Policy Zone
//! unsigned (it cannot sign transfers) from an `rpz.allow_unsigned` address and sends dnstap to
//! `[ingest]`; a feed update reaches it by NOTIFY. BIND's named transfers the same zone, large
//! (50 k feed entries), with TSIG, and hears a signed NOTIFY. Daemons are stopped by PID.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use nxguard::policy::fetch;

use crate::{
    common::*,
    feeds::{FeedServer, Play},
};

/// The zone both secondaries load.
const ZONE: &str = "rpz.nxguard.invalid";
/// Unbound's transfers leave from 127.0.0.1 (it has no transfer source setting): the one
/// `rpz.allow_unsigned` address.
const UNBOUND_SOURCE: &str = "127.0.0.1";
/// BIND transfers from here (`transfer-source`), signed; an unsigned transfer from here is refused.
const BIND_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// The client asking Unbound, as the attempt must name it.
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);
const KEY: &str =
    "key \"nxguard-xfr\" {\n\talgorithm hmac-sha256;\n\tsecret \"bnhndWFyZC10ZXN0LWtleS1ueGd1YXJkLXRlc3Qta2V5\";\n};\n";

/// A daemon this test started, stopped by its PID when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(program: &str, args: &[&str], log: PathBuf) -> Daemon {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} ({e}): install Debian packages unbound and bind9"));
        Daemon { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require(tool: &str) {
    let found =
        Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success());
    assert!(found, "{tool} is missing: install Debian packages unbound, bind9 and bind9-dnsutils (.ci/run does)");
}

fn check_tool(tool: &str, args: &[&str]) {
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn unbound_conf(dir: &Path, port: u16, rpz: SocketAddr, upstream: SocketAddr) -> PathBuf {
    let d = dir.display();
    let text = format!(
        "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n\
         \x20 access-control: 127.0.0.0/8 allow\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n\
         \x20 pidfile: \"{d}/unbound.pid\"\n  logfile: \"\"\n  use-syslog: no\n  verbosity: 1\n  num-threads: 1\n\
         \x20 do-not-query-localhost: no\n  module-config: \"respip iterator\"\n  so-reuseport: no\n\
         forward-zone:\n  name: \".\"\n  forward-addr: {}@{}\n\
         rpz:\n  name: \"{ZONE}\"\n  primary: {}@{}\n  allow-notify: 127.0.0.1\n  rpz-log: yes\n  rpz-log-name: \"nxguard\"\n\
         dnstap:\n  dnstap-enable: yes\n  dnstap-socket-path: \"{d}/dnstap.sock\"\n  dnstap-bidirectional: yes\n\
         \x20 dnstap-send-identity: yes\n  dnstap-identity: \"unbound-test\"\n\
         \x20 dnstap-log-client-query-messages: yes\n  dnstap-log-client-response-messages: yes\n\
         remote-control:\n  control-enable: no\n",
        upstream.ip(),
        upstream.port(),
        rpz.ip(),
        rpz.port(),
    );
    let path = dir.join("unbound.conf");
    std::fs::write(&path, text).unwrap();
    path
}

async fn ask(server: SocketAddr, name: &str) -> Option<Message> {
    let bytes = query(name, RecordType::A, false).to_vec().unwrap();
    let reply = udp_exchange_raw(server, IpAddr::V4(CLIENT), &bytes, Duration::from_millis(500)).await?;
    Message::from_vec(&reply).ok()
}

/// Polls until `name` gets NXDOMAIN from `server`, for at most `limit`.
async fn until_nxdomain(server: SocketAddr, name: &str, limit: Duration, daemon: &Daemon) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ask(server, name).await.is_some_and(|m| m.metadata.response_code == ResponseCode::NXDomain) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} never got NXDOMAIN from {server} within {limit:?}; log:\n{}", daemon.log());
}

fn nxguard_config(dir: &Path, upstream: SocketAddr, feed: &str, notify: &[u16]) -> nxguard::config::Config {
    std::fs::write(dir.join("xfr.key"), KEY).unwrap();
    let notify: Vec<String> = notify.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let d = dir.display();
    config_for(
        upstream,
        &format!(
            "[policy]\ncache_dir = \"{d}/feeds\"\n[[policy.feeds]]\nname = \"test\"\nurl = \"{feed}\"\n\
             category = \"Test feed\"\nkind = \"api\"\ntimeout_secs = 2\n\
             [rpz]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\nallow_unsigned = [\"{UNBOUND_SOURCE}/32\"]\n\
             tsig_key_file = \"{d}/xfr.key\"\nnotify = [{}]\nrefresh_secs = 3600\n\
             [ingest]\ndnstap = [\"unix:{d}/dnstap.sock\"]\n\
             [store]\npath = \"{d}/attempts.sqlite\"\n",
            notify.join(", ")
        ),
    )
}

/// One query over TCP from `source` (a loopback address), its answer.
async fn tcp_ask_from(source: Ipv4Addr, server: SocketAddr, message: &Message) -> Message {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let bytes = message.to_vec().unwrap();
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(5), stream.read_u16()).await.expect("no TCP answer").unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn feed_body(names: &[&str]) -> String {
    names.iter().map(|n| format!("{n}.feed.example\n")).collect()
}

/// Polls `nxguard report` over the store until a line names `device` and `app`.
async fn until_reported(store: &Path, device: &str, app: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_nxguard"))
            .args(["report", "--db", store.to_str().unwrap(), "--format", "csv", "--since", "1d"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.lines().any(|l| l.starts_with(device) && l.contains(app)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "report never showed {device} and {app}:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_transfers_the_zone_blocks_and_reports_over_dnstap_and_hears_notify() {
    require("unbound");
    require("unbound-checkconf");
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let feed = FeedServer::start(Play::List { etag: "v1", body: feed_body(&["a"]) }).await;
    let unbound_port = port_for_daemon();
    let config = nxguard_config(dir.path(), upstream.addr, &feed.url, &[unbound_port]);
    let client = fetch::client().unwrap();
    fetch::refresh(&client, &config.policy.feeds[0], &dir.path().join("feeds"), 50, SystemTime::now()).await;
    let mut server = start_server(&config);
    let rpz = server.running.rpz.as_ref().expect("rpz serving").addrs[0];

    // Without a signature, a transfer from outside rpz.allow_unsigned is refused and counted.
    let refused = tcp_ask_from(BIND_SOURCE, rpz, &query(&format!("{ZONE}."), RecordType::AXFR, false)).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    let zone = std::sync::Arc::clone(&server.running.rpz.as_ref().unwrap().zone);
    assert_eq!(zone.stats.refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    let services = nxguard::ops::metrics::Services { rpz: Some(std::sync::Arc::clone(&zone)), ..Default::default() };
    let metrics = nxguard::ops::metrics::render_services(&services);
    assert!(metrics.contains("\nnxguard_rpz_refused_total 1\n"), "{metrics}");

    let conf = unbound_conf(dir.path(), unbound_port, rpz, upstream.addr);
    check_tool("unbound-checkconf", &[conf.to_str().unwrap()]);
    let unbound = Daemon::spawn("unbound", &["-d", "-c", conf.to_str().unwrap()], dir.path().join("unbound.log"));
    let resolver: SocketAddr = ([127, 0, 0, 1], unbound_port).into();

    // The zone arrives; TikTok and the feed's entry are NXDOMAIN, other names resolve.
    until_nxdomain(resolver, "tiktok.com.", Duration::from_secs(20), &unbound).await;
    until_nxdomain(resolver, "deep.a.b.c.d.e.f.tiktok.com.", Duration::from_secs(2), &unbound).await;
    until_nxdomain(resolver, "a.feed.example.", Duration::from_secs(2), &unbound).await;
    let open = ask(resolver, "example.org.").await.expect("unbound answers");
    assert_eq!(open.metadata.response_code, ResponseCode::NoError, "{open:?}");

    // The attempt comes back over dnstap, naming the client and the resolver.
    let deadline = Instant::now() + Duration::from_secs(10);
    let attempt = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt =
            tokio::time::timeout(left, server.attempts.recv()).await.expect("no attempt over dnstap").unwrap();
        if attempt.qname == "tiktok.com" {
            break attempt;
        }
    };
    assert_eq!(attempt.client.ip(), IpAddr::V4(CLIENT));
    assert_eq!(attempt.resolver.as_deref(), Some("unbound-test"));
    assert_eq!(attempt.app.app.id, "tiktok");
    until_reported(&dir.path().join("attempts.sqlite"), &CLIENT.to_string(), "TikTok").await;

    // A feed update: reload, a higher serial, NOTIFY, and Unbound blocks the new entry (its
    // SOA refresh is an hour away, so only the NOTIFY can have told it).
    let serial = zone.snapshot().serial;
    feed.play(Play::List { etag: "v2", body: feed_body(&["a", "b"]) });
    fetch::refresh(&client, &config.policy.feeds[0], &dir.path().join("feeds"), 50, SystemTime::now()).await;
    server.running.reload(&config).unwrap();
    assert!(zone.snapshot().serial > serial);
    until_nxdomain(resolver, "b.feed.example.", Duration::from_secs(5), &unbound).await;
    let incremental = zone.stats.incremental_transfers.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(incremental, 1, "Unbound took the change by IXFR (the differences):\n{}", unbound.log());
    let unsigned = zone.stats.transfers.load(std::sync::atomic::Ordering::Relaxed)
        - zone.stats.signed_transfers.load(std::sync::atomic::Ordering::Relaxed);
    assert!(unsigned >= 2, "Unbound transferred unsigned, twice: {unsigned}");
    assert!(zone.stats.notifies_sent.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    drop(unbound);
    server.running.shutdown(Duration::from_secs(1)).await;
}

fn named_conf(dir: &Path, port: u16, rpz: SocketAddr, upstream: SocketAddr) -> PathBuf {
    let d = dir.display();
    let text = format!(
        "include \"{d}/xfr.key\";\n\
         options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n\
         \x20 listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  recursion yes;\n\
         \x20 allow-query {{ 127.0.0.0/8; }};\n  forwarders {{ {} port {}; }};\n  forward only;\n\
         \x20 dnssec-validation no;\n  notify no;\n  transfer-source {BIND_SOURCE};\n\
         \x20 response-policy {{ zone \"{ZONE}\" log yes min-update-interval 0; }} qname-wait-recurse no;\n}};\n\
         controls {{ }};\n\
         zone \"{ZONE}\" {{\n  type secondary;\n  primaries {{ {} port {} key \"nxguard-xfr\"; }};\n\
         \x20 file \"{d}/rpz.db\";\n}};\n",
        upstream.ip(),
        upstream.port(),
        rpz.ip(),
        rpz.port(),
    );
    let path = dir.join("named.conf");
    std::fs::write(&path, text).unwrap();
    path
}

/// Names for a feed large enough that its transfer crosses the old limit (hickory-server's
/// TCP listener queued a whole transfer and cut it 30 s after the request: ~70 k records).
fn large_feed(names: usize) -> Vec<String> {
    (0..names).map(|i| format!("n{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_transfers_a_large_zone_with_tsig_blocks_and_hears_a_signed_notify() {
    require("named");
    require("named-checkconf");
    require("named-checkzone");
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let names = large_feed(50_000);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let feed = FeedServer::start(Play::List { etag: "v1", body: feed_body(&names) }).await;
    let named_port = port_for_daemon();
    let config = nxguard_config(dir.path(), upstream.addr, &feed.url, &[named_port]);
    let client = fetch::client().unwrap();
    fetch::refresh(&client, &config.policy.feeds[0], &dir.path().join("feeds"), 50, SystemTime::now()).await;
    let server = start_server(&config);
    let rpz = server.running.rpz.as_ref().expect("rpz serving").addrs[0];
    let zone = std::sync::Arc::clone(&server.running.rpz.as_ref().unwrap().zone);

    let conf = named_conf(dir.path(), named_port, rpz, upstream.addr);
    check_tool("named-checkconf", &[conf.to_str().unwrap()]);
    let named = Daemon::spawn("named", &["-g", "-c", conf.to_str().unwrap()], dir.path().join("named.log"));
    let resolver: SocketAddr = ([127, 0, 0, 1], named_port).into();

    until_nxdomain(resolver, "tiktok.com.", Duration::from_secs(30), &named).await;
    until_nxdomain(resolver, "x.y.tiktok.com.", Duration::from_secs(2), &named).await;
    until_nxdomain(resolver, "n49999.feed.example.", Duration::from_secs(2), &named).await;
    let open = ask(resolver, "example.org.").await.expect("named answers");
    assert_eq!(open.metadata.response_code, ResponseCode::NoError, "{open:?}");
    // BIND transferred from transfer-source 127.0.0.3, outside rpz.allow_unsigned: only a valid
    // TSIG let it in, and nothing was refused.
    assert!(zone.stats.signed_transfers.load(std::sync::atomic::Ordering::Relaxed) >= 1, "{}", named.log());
    assert_eq!(zone.stats.refused.load(std::sync::atomic::Ordering::Relaxed), 0, "{}", named.log());
    // The whole zone arrived, as named-checkzone reads the transferred copy (BIND writes it
    // out shortly after the transfer: polled).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("named-checkzone")
            .args(["-f", "raw", ZONE, dir.path().join("rpz.db").to_str().unwrap()])
            .output()
            .unwrap();
        let checked = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && checked.contains("loaded serial") {
            break;
        }
        assert!(Instant::now() < deadline, "BIND's copy of the zone: {checked}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A feed update reaches BIND by a signed NOTIFY (its SOA refresh is an hour away).
    let mut updated = names.clone();
    updated.push("late");
    feed.play(Play::List { etag: "v2", body: feed_body(&updated) });
    fetch::refresh(&client, &config.policy.feeds[0], &dir.path().join("feeds"), 50, SystemTime::now()).await;
    server.running.reload(&config).unwrap();
    until_nxdomain(resolver, "late.feed.example.", Duration::from_secs(5), &named).await;
    let log = named.log();
    assert_eq!(zone.stats.incremental_transfers.load(std::sync::atomic::Ordering::Relaxed), 1, "{log}");
    // BIND's own count: the second transfer held the change, not the 100 k-record zone.
    let last = log.lines().rfind(|l| l.contains("Transfer completed:")).unwrap_or_default();
    assert!(last.contains("Transfer completed: 1 messages, 8 records"), "BIND applied the differences: {last}");
    assert!(
        log.lines().any(|l| l.contains("key nxguard-xfr") && l.contains("received notify")),
        "BIND heard the NOTIFY signed with the key:\n{log}"
    );
    drop(named);
    server.running.shutdown(Duration::from_secs(1)).await;
}

/// One Frame Streams sender on the ingest socket: the handshake, then frames.
async fn dnstap_sender(path: &Path) -> tokio::net::UnixStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    let control = |kind: u32| {
        let ct = b"protobuf:dnstap.Dnstap";
        let mut frame = vec![0, 0, 0, 0];
        frame.extend_from_slice(&(12 + ct.len() as u32).to_be_bytes());
        frame.extend_from_slice(&kind.to_be_bytes());
        frame.extend_from_slice(&1u32.to_be_bytes());
        frame.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        frame.extend_from_slice(ct);
        frame
    };
    stream.write_all(&control(4)).await.unwrap();
    let mut accept = [0u8; 12];
    stream.read_exact(&mut accept).await.unwrap();
    assert_eq!(&accept[8..12], &1u32.to_be_bytes(), "ACCEPT answers READY");
    let mut rest = vec![0u8; u32::from_be_bytes([accept[4], accept[5], accept[6], accept[7]]) as usize - 4];
    stream.read_exact(&mut rest).await.unwrap();
    stream.write_all(&control(2)).await.unwrap();
    stream
}

fn data_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test]
async fn a_malformed_dnstap_frame_closes_that_sender_only() {
    use nxguard::ingest::dnstap::{self, Dnstap};
    use prost::Message as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let socket = dir.path().join("tap.sock");
    let config = config_for(upstream.addr, &format!("[ingest]\ndnstap = [\"unix:{}\"]\n", socket.display()));
    let mut server = start_server(&config);

    let mut broken = dnstap_sender(&socket).await;
    let mut good = dnstap_sender(&socket).await;
    broken.write_all(&data_frame(b"\xff\xff\xff not protobuf")).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), broken.read(&mut byte)).await.expect("not closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "the malformed sender is closed");

    let tap = Dnstap {
        identity: Some(b"resolver-2".to_vec()),
        version: None,
        extra: None,
        r#type: dnstap::TYPE_MESSAGE,
        message: Some(dnstap::Message {
            r#type: dnstap::CLIENT_QUERY,
            socket_family: Some(1),
            socket_protocol: Some(dnstap::PROTOCOL_TCP),
            query_address: Some(vec![10, 1, 2, 3]),
            query_port: Some(5353),
            query_time_sec: Some(1_800_000_000),
            query_message: Some(query("www.tiktok.com.", RecordType::AAAA, false).to_vec().unwrap()),
            ..Default::default()
        }),
    };
    good.write_all(&data_frame(&tap.encode_to_vec())).await.unwrap();
    let attempt =
        tokio::time::timeout(Duration::from_secs(5), server.attempts.recv()).await.expect("no attempt").unwrap();
    assert_eq!((attempt.qname.as_str(), attempt.qtype.as_str()), ("www.tiktok.com", "AAAA"));
    assert_eq!(attempt.client, "10.1.2.3:5353".parse().unwrap());
    assert_eq!(attempt.transport, nxguard::resolve::Transport::Tcp);
    assert_eq!(attempt.resolver.as_deref(), Some("resolver-2"));
    let stats = &server.running.ingest.as_ref().unwrap().stats;
    assert_eq!(stats.malformed.load(std::sync::atomic::Ordering::Relaxed), 1);
    // STOP is answered with FINISH.
    good.write_all(&[0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3]).await.unwrap();
    let mut finish = [0u8; 12];
    good.read_exact(&mut finish).await.unwrap();
    assert_eq!(&finish[8..12], &5u32.to_be_bytes());
}

#[test]
fn exported_files_load_in_unbound_and_bind() {
    require("unbound-checkconf");
    require("named-checkzone");
    let dir = tempfile::tempdir().unwrap();
    let export = |format: &str| {
        let out = dir.path().join(format!("policy.{format}"));
        let status = Command::new(env!("CARGO_BIN_EXE_nxguard"))
            .args(["export", "--format", format, "--out", out.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "export --format {format}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("tiktok.com"), "{format}: {text}");
        out
    };
    let unbound = export("unbound");
    let conf = dir.path().join("unbound.conf");
    let d = dir.path().display();
    std::fs::write(
        &conf,
        format!(
            "server:\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\ninclude: \"{}\"\n",
            unbound.display()
        ),
    )
    .unwrap();
    check_tool("unbound-checkconf", &[conf.to_str().unwrap()]);
    for format in ["rpz", "bind"] {
        let zone = export(format);
        check_tool("named-checkzone", &[ZONE, zone.to_str().unwrap()]);
    }
    for (format, line) in
        [("dnsmasq", "address=/tiktok.com/"), ("hosts", "0.0.0.0 tiktok.com"), ("adblock", "||tiktok.com^")]
    {
        let text = std::fs::read_to_string(export(format)).unwrap();
        assert!(text.lines().any(|l| l == line), "{format} lacks {line}");
    }
}

/// A free loopback port for Unbound or BIND: they take a port number in their config and cannot
/// report one the system chose, and nxguard's `[rpz]` must name it (for NOTIFY) before either
/// starts. The port is bound and released, so another process could take it before the daemon
/// does; the daemon then fails to start and the test says so. nxguard itself is always started
/// on port 0 (`--ready-file`).
fn port_for_daemon() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
