//! The PostgreSQL store end to end, against a real throwaway cluster (`common::pg`): two nodes
//! writing one database, an outage during a burst, `kill -9` with records in the spool, a
//! wrong password and an unreachable host (DNS keeps answering, `check` names the problem).

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use crate::common::{pg::PgCluster, *};
use hickory_proto::{op::ResponseCode, rr::RecordType};

/// Runs blocking database work off the async runtime (the `postgres` client brings its own).
fn blocking<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(work).join().unwrap())
}

fn count(cluster: &PgCluster, sql: &str) -> i64 {
    blocking(|| cluster.nxguard().query_one(sql, &[]).map_or(-1, |r| r.get(0)))
}

/// Waits (up to a minute) until `sql` counts `expected`; returns what it counted last.
fn wait_for_count(cluster: &PgCluster, sql: &str, expected: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = blocking(|| cluster.nxguard().query_one(sql, &[]).ok().map_or(-1, |r| r.get::<_, i64>(0)));
        if n == expected || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `n` blocked queries (`burst-<tag>-<i>.tiktok.com`); returns how many NXDOMAIN answers
/// came back.
async fn burst(server: SocketAddr, tag: &str, n: usize, pause: Duration) -> i64 {
    let mut blocked = 0;
    for i in 0..n {
        let packet = raw_query(&format!("burst-{tag}-{i}.tiktok.com"), 1, false, false);
        if let Some(reply) =
            udp_exchange_raw(server, IpAddr::from([127, 0, 0, 1]), &packet, Duration::from_secs(2)).await
            && hickory_proto::op::Message::from_vec(&reply).unwrap().metadata.response_code == ResponseCode::NXDomain
        {
            blocked += 1;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    blocked
}

/// One series' value from the metrics endpoint.
async fn metric(addr: SocketAddr, series: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series}"))
        .parse()
        .unwrap()
}

fn report(cluster: &PgCluster, dir: &Path, args: &[&str]) -> String {
    let config = dir.join("report.toml");
    let toml = format!(
        "[[upstream.servers]]\naddress = \"127.0.0.1:9\"\nprotocol = \"udp\"\n[store]\ntls = \"disable\"\n\
         password_file = {:?}\n",
        cluster.password_file(dir)
    );
    std::fs::write(&config, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["report", "--config", config.to_str().unwrap(), "--db", &cluster.url()])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_write_one_database_and_the_report_merges_them() {
    let cluster = blocking(PgCluster::start);
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ns1 = start_server(&config_for(upstream.addr, &cluster.store_toml(dir.path(), "ns1")));
    let ns2 = start_server(&config_for(upstream.addr, &cluster.store_toml(dir.path(), "ns2")));
    let (a, b) = tokio::join!(burst(ns1.udp, "a", 30, Duration::ZERO), burst(ns2.udp, "b", 20, Duration::ZERO));
    assert_eq!((a, b), (30, 20));
    let sql = "SELECT COUNT(*) FROM attempts WHERE qname LIKE 'burst-%'";
    assert_eq!(blocking(|| wait_for_count(&cluster, sql, 50)), 50);
    let nodes = count(&cluster, "SELECT COUNT(DISTINCT node) FROM attempts");
    assert_eq!(nodes, 2);
    let out = blocking(|| report(&cluster, dir.path(), &["--format", "csv"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with(",nodes"), "{out}");
    assert_eq!(lines.len(), 2, "one device, one app, both nodes: {out}");
    assert!(lines[1].starts_with("127.0.0.1,,unknown,TikTok,50,") && lines[1].ends_with(",ns1 ns2"), "{out}");
    let timeline = blocking(|| report(&cluster, dir.path(), &["--device", "127.0.0.1", "--format", "csv"]));
    assert_eq!(timeline.lines().count(), 51);
    assert!(timeline.lines().next().unwrap().ends_with(",node"), "{timeline}");
    ns1.running.shutdown(Duration::from_secs(1)).await;
    ns2.running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_during_a_burst_loses_nothing() {
    let cluster = blocking(PgCluster::start);
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = cluster.store_toml(dir.path(), "ns1") + "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let server = start_server(&config_for(upstream.addr, &store));
    let metrics = server.running.metrics_addr.unwrap();
    let mut sent = burst(server.udp, "before", 40, Duration::ZERO).await;
    cluster.stop();
    // Ten seconds without the database, queries answered all along.
    let began = Instant::now();
    let during = burst(server.udp, "during", 100, Duration::from_millis(100)).await;
    assert_eq!(during, 100, "DNS kept answering while PostgreSQL was down");
    assert!(began.elapsed() >= Duration::from_secs(10));
    sent += during;
    // The spool holds them, and the metrics say so.
    assert!(metric(metrics, "nxguard_store_spool_bytes").await > 0.0);
    assert!(metric(metrics, "nxguard_store_spool_oldest_seconds").await > 0.0);
    assert!(metric(metrics, "nxguard_store_errors_total").await > 0.0);
    cluster.start_server();
    sent += burst(server.udp, "after", 40, Duration::ZERO).await;
    let sql = "SELECT COUNT(*) FROM attempts WHERE qname LIKE 'burst-%'";
    assert_eq!(blocking(|| wait_for_count(&cluster, sql, sent)), sent, "every blocked answer is in the database");
    let distinct = count(&cluster, "SELECT COUNT(DISTINCT qname) FROM attempts WHERE qname LIKE 'burst-%'");
    assert_eq!(distinct, sent, "none written twice");
    let rolled = count(&cluster, "SELECT CAST(SUM(attempts) AS BIGINT) FROM rollups");
    assert_eq!(rolled, count(&cluster, "SELECT COUNT(*) FROM attempts"), "rollups count every row once");
    let rows = count(&cluster, "SELECT COUNT(*) FROM attempts") as f64;
    assert_eq!(metric(metrics, "nxguard_store_written_total").await, rows);
    assert_eq!(metric(metrics, "nxguard_store_dropped_total").await, 0.0);
    server.running.shutdown(Duration::from_secs(1)).await;
}

/// Lines in the spool files that name a burst query.
fn spooled(dir: &Path, tag: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|text| text.lines().filter(|l| l.contains(&format!("burst-{tag}-"))).count())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_keeps_committed_and_spooled_records() {
    let cluster = blocking(PgCluster::start);
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nxguard.toml");
    let store = cluster.store_toml(dir.path(), "ns1");
    std::fs::write(&config, serve_config(0, upstream.addr, &store)).unwrap();
    let mut child = spawn_serve(&config);
    let server = Ready::wait(&ready_path(&config)).await.addr("udp");
    let committed = burst(server, "db", 30, Duration::ZERO).await;
    let sql = "SELECT COUNT(*) FROM attempts WHERE qname LIKE 'burst-%'";
    assert_eq!(blocking(|| wait_for_count(&cluster, sql, committed)), committed);
    // The database goes away; the next records wait in the spool, and nxguard is killed.
    cluster.stop();
    let spooled_n = burst(server, "spool", 30, Duration::ZERO).await;
    let spool = dir.path().join("spool-ns1");
    let all_spooled = || spooled(&spool, "spool") == spooled_n as usize;
    wait_until("the answered records in the spool", Duration::from_secs(5), all_spooled).await;
    send_signal(child.id(), "KILL");
    child.wait().unwrap();

    cluster.start_server();
    let mut child = spawn_serve(&config);
    Ready::wait(&ready_path(&config)).await;
    let total = committed + spooled_n;
    assert_eq!(blocking(|| wait_for_count(&cluster, sql, total)), total, "committed and spooled records survived");
    send_signal(child.id(), "TERM");
    child.wait().unwrap();
}

/// `nxguard check` on a config; (success, stderr).
fn check(config: &Path) -> (bool, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_nxguard")).args(["check", "--config", config.to_str().unwrap()]).output();
    let out = out.unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_or_an_unreachable_host_never_stops_dns() {
    let cluster = blocking(PgCluster::start);
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    // Bound but not listening: connecting to it is refused, and nothing else can take the port.
    let closed_socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    closed_socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let closed = closed_socket.local_addr().unwrap().as_socket().unwrap().port();
    let cases = [
        (
            cluster
                .store_toml(dir.path(), "ns1")
                .replace(&format!("{:?}", cluster.password_file(dir.path())), &format!("{wrong:?}")),
            "password authentication failed",
        ),
        (
            cluster.store_toml(dir.path(), "ns1").replace(&format!(":{}/", cluster.port), &format!(":{closed}/")),
            "Connection refused",
        ),
        (
            cluster
                .store_toml(dir.path(), "ns1")
                .replace("tls = \"disable\"", "tls = \"verify-full\"\nca_file = \"/nonexistent/ca.pem\""),
            "/nonexistent/ca.pem",
        ),
    ];
    for (store, problem) in cases {
        let server = start_server(&config_for(upstream.addr, &store));
        assert_eq!(burst(server.udp, "x", 5, Duration::ZERO).await, 5, "blocked queries answered ({problem})");
        let reply = udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await;
        assert_forwarded(&reply, RecordType::A);
        server.running.shutdown(Duration::from_secs(1)).await;

        let config = dir.path().join("check.toml");
        std::fs::write(&config, serve_config(0, upstream.addr, &store)).unwrap();
        let (ok, stderr) = check(&config);
        assert!(!ok && stderr.contains(problem), "{problem}: {stderr}");
    }
    let config = dir.path().join("good.toml");
    std::fs::write(&config, serve_config(0, upstream.addr, &cluster.store_toml(dir.path(), "ns1"))).unwrap();
    let (ok, stderr) = check(&config);
    assert!(ok, "{stderr}");
}
