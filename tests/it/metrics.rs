//! The Prometheus endpoint, scraped over HTTP: counters match the queries sent.

use crate::common::*;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

fn value(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn scraped_counters_match_the_queries_sent() {
    let upstream = FakeUpstream::start().await;
    let mut server = start_server(&config_for(upstream.addr, "[metrics]\nlisten = \"127.0.0.1:0\"\n"));
    let addr = server.running.metrics_addr.unwrap();
    for name in ["tiktok.com.", "temu.com.", "www.example.org.", "www.example.org.", "silent.example.org."] {
        udp_ask(server.udp, &query(name, RecordType::A, false)).await;
    }
    tcp_ask(server.tcp, &query("x.tiktokv.com.", RecordType::A, false)).await;
    for _ in 0..3 {
        server.attempts.recv().await.unwrap();
    }

    let response = get(addr, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(value(body, "nxguard_queries_received_total{transport=\"udp\"}"), 5);
    assert_eq!(value(body, "nxguard_queries_received_total{transport=\"tcp\"}"), 1);
    assert_eq!(value(body, "nxguard_queries_total{transport=\"udp\",outcome=\"blocked\"}"), 2);
    assert_eq!(value(body, "nxguard_queries_total{transport=\"tcp\",outcome=\"blocked\"}"), 1);
    assert_eq!(value(body, "nxguard_queries_total{transport=\"udp\",outcome=\"cached\"}"), 1);
    assert_eq!(value(body, "nxguard_queries_total{transport=\"udp\",outcome=\"forwarded\"}"), 1);
    assert_eq!(value(body, "nxguard_queries_total{transport=\"udp\",outcome=\"upstream_failed\"}"), 1);
    let outcomes: u64 = body
        .lines()
        .filter(|l| l.starts_with("nxguard_queries_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(outcomes, 6, "per-outcome counters add up to the queries received");
    assert_eq!(value(body, "nxguard_blocked_total{app=\"tiktok\"}"), 2);
    assert_eq!(value(body, "nxguard_blocked_total{app=\"temu\"}"), 1);
    assert_eq!(value(body, "nxguard_cache_hits_total"), 1);
    assert_eq!(value(body, "nxguard_cache_misses_total"), 2);
    assert_eq!(value(body, "nxguard_cache_entries"), 1);
    assert_eq!(value(body, "nxguard_attempts_dropped_total"), 0);
    let upstream_label = format!("upstream=\"{}\"", upstream.addr);
    assert_eq!(value(body, &format!("nxguard_upstream_latency_seconds_count{{{upstream_label}}}")), 1);
    assert_eq!(value(body, &format!("nxguard_upstream_errors_total{{{upstream_label}}}")), 1);
    assert_eq!(value(body, &format!("nxguard_upstream_udp_unmatched_total{{{upstream_label}}}")), 0);
    assert_eq!(value(body, &format!("nxguard_upstream_udp_case_mismatch_total{{{upstream_label}}}")), 0);
    // Two queries went to the upstream over its pooled UDP sockets, so at least one was opened.
    assert!(value(body, &format!("nxguard_upstream_udp_sockets_opened_total{{{upstream_label}}}")) >= 1);
    let version = server.running.resolver.live().policy.version();
    assert!(body.contains(&format!("nxguard_policy_info{{version=\"{version}\"}} 1")));

    assert!(get(addr, "/health").await.ends_with("\r\n\r\nok\n"));
    assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
}

/// What a scrape exposes, for comparing two renderings: every series as
/// `name{label="value",...}` (labels sorted; an upstream's address and the policy version, which
/// change from run to run, as `*`; `le` as a number) and every HELP text.
fn exposed(body: &str) -> String {
    let mut lines = std::collections::BTreeSet::new();
    for line in body.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            lines.insert(format!("help: {}", help.split_once(' ').map_or("", |(_, text)| text)));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let series = line.rsplit_once(' ').map_or(line, |(series, _)| series);
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        let mut labels: Vec<String> = labels
            .trim_end_matches('}')
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|label| {
                let (key, value) = label.split_once('=').unwrap();
                let value = value.trim_matches('"');
                let value = match key {
                    "upstream" | "version" => "*".to_string(),
                    "le" if value != "+Inf" => value.parse::<f64>().unwrap().to_string(),
                    _ => value.to_string(),
                };
                format!("{key}={value:?}")
            })
            .collect();
        labels.sort();
        lines.insert(format!("{name}{{{}}}", labels.join(",")));
    }
    lines.into_iter().map(|l| l + "\n").collect()
}

/// The whole `/metrics` page of a server running every part that has counters (store, SIEM
/// stream, feeds, RPZ, dnstap ingest, DoQ/DoH3 counters) keeps its series, labels and HELP texts:
/// the Grafana dashboard and operators' alerts depend on them. Regenerate the list with
/// `UPDATE_GOLDEN=1 cargo test --test it metrics::` only for an intended change.
#[tokio::test]
async fn a_full_scrape_keeps_every_series_label_set_and_help_text() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let extra = format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{d}/attempts.sqlite\"\n\
         [siem]\npath = \"{d}/siem.jsonl\"\n\
         [rpz]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\n\
         [ingest]\ndnstap = [\"unix:{d}/dnstap.sock\"]\n"
    );
    let mut server = start_server(&config_for(upstream.addr, &extra));
    let status = nxguard::policy::feeds::FeedStatus { entries: 3, ..Default::default() };
    server.running.feeds.set([("extra-tiktok".to_string(), status)].into());
    udp_ask(server.udp, &query("tiktok.com.", RecordType::A, false)).await;
    udp_ask(server.udp, &query("www.example.org.", RecordType::A, false)).await;
    server.attempts.recv().await.unwrap();

    let response = get(server.running.metrics_addr.unwrap(), "/metrics").await;
    assert!(response.contains("Content-Type: application/openmetrics-text; version=1.0.0"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    assert!(body.ends_with("\n# EOF\n"), "an OpenMetrics page ends in # EOF: {body}");
    let actual = exposed(body);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics-series.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).expect("metrics-series.txt missing; run with UPDATE_GOLDEN=1");
    assert_eq!(actual, expected, "the /metrics series changed; if intended, run with UPDATE_GOLDEN=1");
}
