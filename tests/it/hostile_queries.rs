//! Queries as an attacker sends them: names with control bytes and forged log text, odd
//! classes, a compression pointer for a question name, and a flood of banned names over the
//! client's rate. Each over real sockets, against the server or the `nxguard serve` binary.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, SystemTime},
};

use crate::common::*;
use hickory_proto::rr::RecordType;
use nxguard::{ops::metrics, resolve::Outcome};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Labels that try to break a log line, paint the terminal, cut a C string and forge a field.
const HOSTILE: [&[u8]; 4] = [b"x\nfake log line", b"evil\x1b[2J", b"nul\0byte", b"\",\"client\":\"10.6.6.6"];
/// The same labels in presentation form (RFC 1035 §5.1), lowercased; a dot inside a label is
/// escaped too.
const PRESENTED: [&str; 4] =
    [r"x\010fake\032log\032line", r"evil\027[2j", r"nul\000byte", r#"\",\"client\":\"10\.6\.6\.6"#];

/// Runs `nxguard serve` with the log in `format`, sends each hostile label once in a blocked
/// name and once in a name the upstream never answers, and returns the log file's bytes.
async fn log_of_hostile_queries(format: &str) -> Vec<u8> {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nxguard.toml");
    let extra = format!("[log]\nformat = \"{format}\"\n[upstream]\ntimeout_ms = 300");
    std::fs::write(&config, serve_config(0, upstream.addr, &extra)).unwrap();
    let log = dir.path().join("nxguard.log");
    let mut child = spawn_serve_logging(&config, &log);
    let server = Ready::wait(&ready_path(&config)).await.addr("udp");
    for label in HOSTILE {
        let blocked = raw_labels_query(&[label, b"tiktok", b"com"], 1, 1);
        let reply = udp_exchange_raw(server, LOCALHOST, &blocked, Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(reply[3] & 0x0f, 3, "NXDOMAIN");
        let silent = [b"silent", label].concat();
        let unanswered = raw_labels_query(&[&silent, b"example", b"org"], 1, 1);
        let reply = udp_exchange_raw(server, LOCALHOST, &unanswered, Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(reply[3] & 0x0f, 2, "SERVFAIL");
    }
    // Attempt lines are written by the dispatcher, after the answer: wait for the last one.
    for _ in 0..100 {
        let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
        if text.lines().any(|l| l.contains("6.tiktok.com")) && text.matches("no upstream answer").count() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send_signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
    std::fs::read(&log).unwrap()
}

/// What holds for the log in either format: no ESC anywhere (no colour in a file either), no
/// control byte in any line, no line that starts with the forged text.
fn assert_clean(bytes: &[u8]) {
    assert!(!bytes.contains(&0x1b), "ESC in the log file");
    for line in bytes.split(|&b| b == b'\n') {
        let shown = String::from_utf8_lossy(line);
        assert!(!line.iter().any(|&b| b < 0x20 || b == 0x7f), "control byte in log line: {shown:?}");
        assert!(!line.starts_with(b"fake log line"), "forged log line: {shown}");
    }
}

#[tokio::test]
async fn hostile_names_cannot_forge_or_paint_the_text_log() {
    let bytes = log_of_hostile_queries("text").await;
    assert_clean(&bytes);
    let text = String::from_utf8(bytes).unwrap();
    for presented in PRESENTED {
        let blocked = format!("qname={presented}.tiktok.com ");
        let line =
            text.lines().find(|l| l.contains(&blocked)).unwrap_or_else(|| panic!("no attempt line {blocked}\n{text}"));
        assert_eq!(line.matches(" client=").count(), 1, "{line}");
        assert!(line.contains(" client=\"127.0.0.1\""), "{line}");
        let warned = format!("qname=silent{presented}.example.org");
        assert!(text.lines().any(|l| l.contains("no upstream answer") && l.contains(&warned)), "{warned}\n{text}");
    }
}

#[tokio::test]
async fn hostile_names_stay_inside_their_json_field() {
    let bytes = log_of_hostile_queries("json").await;
    assert_clean(&bytes);
    let events: Vec<serde_json::Value> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    for presented in PRESENTED {
        let blocked = format!("{presented}.tiktok.com");
        let attempt = events.iter().find(|e| e["qname"] == blocked.as_str()).unwrap_or_else(|| panic!("{blocked}"));
        assert_eq!(attempt["client"], "127.0.0.1");
        let warned = format!("silent{presented}.example.org");
        assert!(
            events.iter().any(|e| e["qname"] == warned.as_str() && e["message"] == "no upstream answer"),
            "{warned}"
        );
    }
}

#[tokio::test]
async fn odd_classes_are_refused_here_and_never_forwarded() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    // 0 (reserved), CHAOS, HS and NONE: REFUSED with the question echoed, as Unbound answers.
    for class in [0u16, 3, 4, 254] {
        let query = raw_labels_query(&[b"www", b"example", b"org"], 1, class);
        let reply = udp_exchange_raw(server.udp, LOCALHOST, &query, Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(reply[..2], query[..2], "same ID");
        assert_eq!(reply[3] & 0x0f, 5, "class {class}: REFUSED");
        assert_eq!(reply[12..query.len()], query[12..], "class {class}: question echoed");
    }
    assert_eq!(upstream.calls(), 0, "never forwarded");
    assert_eq!(server.running.resolver.stats.outcome(Outcome::Unsupported), 4);
    // The upstream's health is untouched: class IN is forwarded and answered.
    assert_forwarded(&udp_ask(server.udp, &query("www.example.org.", RecordType::A, false)).await, RecordType::A);
    for (addr, stats) in server.running.resolver.live().upstreams.servers() {
        assert_eq!(stats.errors(), 0, "{addr}");
    }
}

#[tokio::test]
async fn a_compression_pointer_as_question_name_is_formerr_at_once() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    // The whole name a pointer into the header, and a label followed by one.
    for name in [&[0xc0, 0x00][..], &[3, b'w', b'w', b'w', 0xc0, 0x02]] {
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend_from_slice(name);
        query.extend_from_slice(&[0, 1, 0, 1]);
        let reply = udp_exchange_raw(server.udp, LOCALHOST, &query, Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(reply[..2], [0x12, 0x34]);
        assert_eq!(reply[3] & 0x0f, 1, "FORMERR");
    }
    assert_eq!(upstream.calls(), 0, "never forwarded");
    assert_eq!(server.running.resolver.stats.outcome(Outcome::Malformed), 2);
}

fn unix_second() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn banned_queries_over_the_rate_leave_one_record_per_client_domain_and_second() {
    let upstream = FakeUpstream::start().await;
    let mut server = start_server(&config_for(upstream.addr, "[limits]\nclient_qps = 1\nclient_burst = 1\n"));
    let first_second = unix_second();
    // The same banned name again and again, and random names under the banned domain.
    for i in 0..60 {
        let name = if i % 2 == 0 { "a.tiktok.com.".to_string() } else { format!("n{i}.tiktok.com.") };
        let packet = query(&name, RecordType::A, false).to_vec().unwrap();
        udp_exchange_raw(server.udp, LOCALHOST, &packet, Duration::from_secs(5)).await.expect("an answer (TC)");
    }
    let seconds = unix_second() - first_second + 1;
    let stats = &server.running.resolver.stats;
    let (recorded, skipped) = stats.over_limit_attempts();
    assert!(recorded >= 1, "no record for banned queries over the rate");
    assert!(recorded <= seconds, "{recorded} records in {seconds} s: more than one per second");
    assert!(skipped >= 1);
    assert_eq!(recorded + skipped, stats.outcome(Outcome::RateLimited), "every one counted");
    let expected = stats.outcome(Outcome::Blocked) + recorded;
    for _ in 0..expected {
        let attempt =
            tokio::time::timeout(Duration::from_secs(5), server.attempts.recv()).await.expect("a record").unwrap();
        assert_eq!(attempt.domain, "tiktok.com");
        assert_eq!(attempt.client.ip(), LOCALHOST);
    }
    assert!(server.attempts.try_recv().is_err(), "more records than counted");
    let text = metrics::render(&server.running.resolver);
    assert!(text.contains(&format!("nxguard_rate_limited_attempts_total{{result=\"recorded\"}} {recorded}")), "{text}");
    assert!(text.contains(&format!("nxguard_rate_limited_attempts_total{{result=\"skipped\"}} {skipped}")), "{text}");
}
