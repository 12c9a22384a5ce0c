//! `nxguard selftest`, run as an operator would: the real binary against a server started
//! in-process on 127.0.0.1:0.

use std::{net::SocketAddr, process::Output};

use crate::common::*;

async fn selftest(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_nxguard")).arg("selftest").args(args).output().await.unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn every_app_is_reported_enforced() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let out = selftest(&["--server", &server.udp.to_string()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for app in ["tiktok", "wechat", "temu", "ucbrowser", "camscanner"] {
        let line =
            stdout.lines().find(|l| l.split_whitespace().nth(1) == Some(app)).unwrap_or_else(|| panic!("{stdout}"));
        assert!(line.trim_start().starts_with("enforced"), "{line}");
    }
    assert!(stdout.contains("summary: all 14 apps enforced"), "{stdout}");
    assert_eq!(upstream.calls(), 0, "every sample name was answered by the ban, none forwarded");
    // Three names per app, over UDP and TCP.
    // Three names per app list; the bypass categories have 1 + 2 + 1 names.
    assert_eq!(server.running.resolver.stats.total_received(), 1 + (11 * 3 + 4) * 2);
}

#[tokio::test]
async fn apps_the_server_does_not_enforce_are_named_and_fail_the_run() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, "[policy]\napps = [\"tiktok\", \"wechat\"]\n"));
    let out = selftest(&["--server", &server.udp.to_string()]).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("summary: 5 of 14 apps enforced; not enforced: "), "{stdout}");
    for app in ["temu", "shein", "capcut"] {
        let line =
            stdout.lines().find(|l| l.split_whitespace().nth(2) == Some(app)).unwrap_or_else(|| panic!("{stdout}"));
        assert!(line.trim_start().starts_with("NOT ENFORCED"), "{line}");
    }
    assert!(stdout.contains("over udp and tcp: NOERROR with 1 answer record(s), expected NXDOMAIN"), "{stdout}");
    assert!(stderr.contains("the ban is not in force for: ") && stderr.contains("temu"), "{stderr}");
}

#[tokio::test]
async fn a_different_block_response_is_reported() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, "[block]\nresponse = \"refused\"\n"));
    let out = selftest(&["--server", &server.udp.to_string()]).await;
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.contains("REFUSED with 0 answer record(s), expected NXDOMAIN"), "{stdout}");

    // With the server's own config, the same answers are the expected ones.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nxguard.toml");
    std::fs::write(
        &config,
        format!("[block]\nresponse = \"refused\"\n[[upstream.servers]]\naddress = \"{}\"\n", upstream.addr),
    )
    .unwrap();
    let out = selftest(&["--server", &server.udp.to_string(), "--config", config.to_str().unwrap()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
}

#[tokio::test]
async fn a_server_that_does_not_answer_fails_with_a_clear_message() {
    // A bound socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = silent.local_addr().unwrap();
    let started = std::time::Instant::now();
    let out = selftest(&["--server", &addr.to_string(), "--timeout-ms", "300"]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("no answer from {addr}")), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "bounded waits");
}
