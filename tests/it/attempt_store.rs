//! The attempt store end to end: device identity at query time (inventory, DHCP leases, EDNS
//! from trusted relays only), durability across kill -9, a failing store path, hostile query
//! names, the SIEM stream and pseudonymisation.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::common::*;
use hickory_proto::{op::ResponseCode, rr::RecordType};
use nxguard::{config::Config, evidence::store};

const INVENTORY: &str = r#"
[[device]]
name = "LT-0001"
owner = "Burgerzaken"
ips = ["127.0.0.2"]

[[device]]
name = "LT-0002"
owner = "Sociaal Domein"
ips = ["127.0.0.3"]
macs = ["02:00:00:00:00:02"]
"#;

/// (device_key, identity_source, mac, hostname, qname) of a stored row.
type StoredRow = (String, String, Option<String>, Option<String>, String);

/// Every stored row, oldest first, once at least `n` are there (the writer flushes every 50 ms
/// in these tests).
fn rows(path: &Path, n: usize) -> Vec<StoredRow> {
    for _ in 0..100 {
        if let Ok(db) = store::open(path, true) {
            let mut statement = db
                .prepare("SELECT device_key, identity_source, mac, hostname, qname FROM attempts ORDER BY id")
                .unwrap();
            let found: Vec<_> = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            if found.len() >= n {
                return found;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("fewer than {n} rows in {}", path.display());
}

fn store_config(upstream: SocketAddr, dir: &Path, extra: &str) -> Config {
    let inventory = dir.join("devices.toml");
    std::fs::write(&inventory, INVENTORY).unwrap();
    config_for(
        upstream,
        &format!(
            "[store]\npath = {:?}\nflush_interval_ms = 50\n[devices]\ninventory = {inventory:?}\nreread_secs = 1\n{extra}",
            dir.join("attempts.sqlite")
        ),
    )
}

async fn blocked_from(server: SocketAddr, from: [u8; 4], packet: &[u8]) {
    let reply = udp_exchange_raw(server, IpAddr::from(from), packet, Duration::from_secs(5)).await.unwrap();
    assert_eq!(hickory_proto::op::Message::from_vec(&reply).unwrap().metadata.response_code, ResponseCode::NXDomain);
}

/// A query for `name` whose OPT record carries `options` (code, data) pairs.
fn query_with_options(name: &str, options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut packet = raw_query(name, 1, false, false);
    packet[11] = 1;
    let mut data = Vec::new();
    for (code, value) in options {
        data.extend_from_slice(&code.to_be_bytes());
        data.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(value);
    }
    nxguard::dns::wire::push_opt(&mut packet, false, 0, &data);
    packet
}

#[tokio::test]
async fn rows_carry_the_device_known_at_query_time() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("dnsmasq.leases");
    std::fs::write(&leases, "1999999999 02:00:00:00:00:05 127.0.0.5 phone-anna *\n").unwrap();
    let config = store_config(
        upstream.addr,
        dir.path(),
        &format!("dnsmasq_leases = [{leases:?}]\n[access]\ntrusted_relays = [\"127.0.0.6/32\"]\n"),
    );
    let server = start_server(&config);
    let tiktok = raw_query("api.tiktokv.com", 1, false, false);
    blocked_from(server.udp, [127, 0, 0, 2], &tiktok).await;
    blocked_from(server.udp, [127, 0, 0, 3], &tiktok).await;
    blocked_from(server.udp, [127, 0, 0, 4], &tiktok).await;
    blocked_from(server.udp, [127, 0, 0, 5], &tiktok).await;
    // The relay reports the device's MAC: LT-0002's, so the row names LT-0002.
    let mac = [0x02, 0, 0, 0, 0, 0x02];
    blocked_from(server.udp, [127, 0, 0, 6], &query_with_options("temu.com", &[(65001, &mac)])).await;
    // The same option from a client that is not a trusted relay is ignored.
    blocked_from(server.udp, [127, 0, 0, 7], &query_with_options("temu.com", &[(65001, &mac)])).await;
    // A relay's Client Subnet with a full-length prefix names the device behind it.
    let subnet = [0, 1, 32, 0, 127, 0, 0, 2];
    blocked_from(server.udp, [127, 0, 0, 6], &query_with_options("shein.com", &[(8, &subnet)])).await;

    let db = dir.path().join("attempts.sqlite");
    let found = rows(&db, 7);
    let summary: Vec<(&str, &str)> = found.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            ("LT-0001", "inventory-ip"),
            ("LT-0002", "inventory-ip"),
            ("127.0.0.4", "unknown"),
            ("02:00:00:00:00:05", "dhcp"),
            ("LT-0002", "inventory-mac"),
            ("127.0.0.7", "unknown"),
            ("LT-0001", "inventory-ip"),
        ]
    );
    // A DHCP hostname is the device's claim: stored, never its key.
    assert_eq!((found[3].2.as_deref(), found[3].3.as_deref()), (Some("02:00:00:00:00:05"), Some("phone-anna")));

    // The DHCP server hands 127.0.0.5 to another device: picked up without a restart.
    std::fs::write(&leases, "1999999999 02:00:00:00:00:09 127.0.0.5 laptop-bob *\n").unwrap();
    let mut picked_up = false;
    for i in 0..40 {
        blocked_from(server.udp, [127, 0, 0, 5], &tiktok).await;
        let found = rows(&db, 8 + i);
        if found.last().unwrap().3.as_deref() == Some("laptop-bob") {
            assert_eq!(found.last().unwrap().0, "02:00:00:00:00:09");
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(picked_up, "the lease change was not picked up");
}

#[tokio::test]
async fn a_failing_store_never_stops_dns_and_resumes_when_the_path_recovers() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-yet");
    let config = config_for(
        upstream.addr,
        &format!("[store]\npath = {:?}\nflush_interval_ms = 50\n", missing.join("attempts.sqlite")),
    );
    let server = start_server(&config);
    for _ in 0..5 {
        assert_blocked(&udp_ask(server.udp, &query("tiktok.com.", RecordType::A, false)).await, "TikTok", 300, false);
    }
    let stats = server.running.records.store.as_ref().unwrap().stats.clone();
    for _ in 0..100 {
        if stats.errors.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stats.errors.load(std::sync::atomic::Ordering::Relaxed) > 0, "write errors are counted");
    assert_eq!(stats.pending.load(std::sync::atomic::Ordering::Relaxed), 5, "records kept for the retry");

    std::fs::create_dir(&missing).unwrap();
    let found = rows(&missing.join("attempts.sqlite"), 5);
    assert_eq!(found.len(), 5, "nothing recorded was lost");
}

#[tokio::test]
async fn hostile_query_names_cannot_break_the_siem_stream_or_the_report() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let siem = dir.path().join("attempts.jsonl");
    let config = store_config(upstream.addr, dir.path(), &format!("[siem]\npath = {:?}\n", siem.to_str().unwrap()));
    let mut server = start_server(&config);
    // Labels with a newline, a quote, a backslash and an escape sequence.
    let mut packet = Vec::new();
    nxguard::dns::wire::push_header(&mut packet, 7, nxguard::dns::wire::flag::RD, [1, 0, 0, 0]);
    for label in [&b"x\n{\"app\":\"fake\"}"[..], b"\\\x1b[2J", b"tiktok", b"com"] {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label);
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    blocked_from(server.udp, [127, 0, 0, 2], &packet).await;
    blocked_from(server.udp, [127, 0, 0, 2], &raw_query("tiktok.com", 1, false, false)).await;
    for _ in 0..2 {
        server.attempts.recv().await.unwrap();
    }
    rows(&dir.path().join("attempts.sqlite"), 2);
    let running = server.running;
    running.shutdown(Duration::from_secs(1)).await;

    let text = std::fs::read_to_string(&siem).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    // The name in presentation form (RFC 1035 §5.1), as in the log, and then JSON-escaped.
    assert_eq!(lines[0]["qname"], r#"x\010{\"app\":\"fake\"}.\\\027[2j.tiktok.com"#);
    assert_eq!(lines[0]["app"], "tiktok");
    assert!(!text.contains('\u{1b}'));

    let out = Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["report", "--db", dir.path().join("attempts.sqlite").to_str().unwrap(), "--device", "LT-0001"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table.lines().count(), 3, "header and two rows:\n{table}");
    assert!(!table.contains('\u{1b}'));
}

#[tokio::test]
async fn pseudonymised_store_holds_no_identity_and_the_officer_can_find_one_device() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("pseudonym.key");
    let nxguard = env!("CARGO_BIN_EXE_nxguard");
    assert!(
        Command::new(nxguard)
            .args(["pseudonym", "--new-key", key.to_str().unwrap()])
            .output()
            .unwrap()
            .status
            .success()
    );
    let extra = format!("[privacy]\npseudonymize = true\nkey_file = {key:?}\n");
    let config = store_config(upstream.addr, dir.path(), &extra);
    let config_file = dir.path().join("nxguard.toml");
    std::fs::write(
        &config_file,
        format!(
            "[store]\npath = {:?}\n{extra}[[upstream.servers]]\naddress = \"127.0.0.1:53\"\n",
            dir.path().join("attempts.sqlite")
        ),
    )
    .unwrap();
    let server = start_server(&config);
    blocked_from(server.udp, [127, 0, 0, 2], &raw_query("tiktok.com", 1, false, false)).await;
    blocked_from(server.udp, [127, 0, 0, 3], &raw_query("temu.com", 1, false, false)).await;
    let db_path = dir.path().join("attempts.sqlite");
    let found = rows(&db_path, 2);
    assert!(found.iter().all(|r| r.0.starts_with("p-") && r.2.is_none() && r.3.is_none()), "{found:?}");
    let db = store::open(&db_path, true).unwrap();
    let identifying: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM attempts WHERE client_ip IS NOT NULL OR device_ip IS NOT NULL OR device IS NOT NULL OR owner IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(identifying, 0);
    let bytes = std::fs::read(&db_path).unwrap();
    assert!(!bytes.windows(7).any(|w| w == b"LT-0001"), "no device name anywhere in the file");

    let pseudonym = Command::new(nxguard)
        .args(["pseudonym", "--config", config_file.to_str().unwrap(), "LT-0001"])
        .output()
        .unwrap();
    let pseudonym = String::from_utf8(pseudonym.stdout).unwrap().trim().to_string();
    assert_eq!(pseudonym, found[0].0);
    let report = Command::new(nxguard)
        .args(["report", "--config", config_file.to_str().unwrap(), "--device", "LT-0001", "--format", "csv"])
        .output()
        .unwrap();
    let report = String::from_utf8(report.stdout).unwrap();
    assert_eq!(report.lines().count(), 2, "{report}");
    assert!(report.contains("tiktok.com") && !report.contains("temu.com"));
}

#[tokio::test]
async fn kill_9_keeps_every_committed_record_and_the_store_reopens_cleanly() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db: PathBuf = dir.path().join("attempts.sqlite");
    let config = dir.path().join("nxguard.toml");
    let store = format!("[store]\npath = {db:?}\nflush_interval_ms = 100");
    std::fs::write(&config, serve_config(0, upstream.addr, &store)).unwrap();
    let mut child = spawn_serve(&config);
    let server = Ready::wait(&ready_path(&config)).await.addr("udp");
    let probe = raw_query("tiktok.com", 1, false, false);
    let mut answered = 0;
    for _ in 0..100 {
        if udp_exchange_raw(server, IpAddr::from([127, 0, 0, 1]), &probe, Duration::from_millis(100)).await.is_some() {
            answered += 1;
            if answered == 20 {
                break;
            }
        }
    }
    assert_eq!(answered, 20, "the server answered 20 blocked queries");
    let committed = rows(&db, 20).len();
    send_signal(child.id(), "9");
    child.wait().unwrap();

    let mut child = spawn_serve(&config);
    // Serving means the store was opened again (and recovered) at start-up.
    Ready::wait(&ready_path(&config)).await;
    assert_eq!(rows(&db, 20).len(), committed, "every committed record survived");
    let report =
        Command::new(env!("CARGO_BIN_EXE_nxguard")).args(["report", "--db", db.to_str().unwrap()]).output().unwrap();
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    assert!(String::from_utf8_lossy(&report.stdout).contains("127.0.0.1"));
    send_signal(child.id(), "TERM");
    child.wait().unwrap();
}
