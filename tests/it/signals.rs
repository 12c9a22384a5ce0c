//! The `nxguard serve` process: SIGHUP reloads the domain lists, SIGTERM during load lets the
//! answers in flight complete and exits 0.

use std::{net::SocketAddr, time::Duration};

use crate::common::*;
use hickory_proto::{op::ResponseCode, rr::RecordType};

/// Asks until `name` is blocked (a reload is asynchronous), for at most ~5 s.
async fn until_blocked(server: SocketAddr, name: &str) -> bool {
    for _ in 0..50 {
        let reply = udp_ask(server, &query(name, RecordType::A, false)).await;
        if reply.metadata.response_code == ResponseCode::NXDomain {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn watched_list_files_reload_on_change() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("testapp.txt");
    std::fs::write(&list, "@app Test App\n@vendor V\nfirst.example api\n").unwrap();
    let config = dir.path().join("nxguard.toml");
    let policy = format!("[policy]\nwatch_secs = 1\ndomains_dir = {:?}", dir.path());
    std::fs::write(&config, serve_config(0, upstream.addr, &policy)).unwrap();
    let mut child = spawn_serve(&config);
    let server = Ready::wait(&ready_path(&config)).await.addr("udp");
    std::fs::write(&list, "@app Test App\n@vendor V\nfirst.example api\nsecond-longer.example api\n").unwrap();
    assert!(until_blocked(server, "second-longer.example.").await, "the change on disk was not picked up");
    send_signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_stops_cleanly() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("testapp.txt");
    std::fs::write(&list, "@app Test App\n@vendor V\nfirst.example api\n").unwrap();
    let config = dir.path().join("nxguard.toml");
    let policy = format!("[policy]\ndomains_dir = {:?}\n[upstream]\ntimeout_ms = 400", dir.path());
    std::fs::write(&config, serve_config(0, upstream.addr, &policy)).unwrap();
    let mut child = spawn_serve(&config);
    let server = Ready::wait(&ready_path(&config)).await.addr("udp");
    assert_blocked(&udp_ask(server, &query("first.example.", RecordType::A, true)).await, "Test App", 300, true);

    std::fs::write(&list, "@app Test App\n@vendor V\nsecond.example api\n").unwrap();
    send_signal(child.id(), "HUP");
    assert!(until_blocked(server, "second.example.").await, "SIGHUP did not load the new list");
    assert_forwarded(&udp_ask(server, &query("first.example.", RecordType::A, false)).await, RecordType::A);

    // Queries still waiting for a (silent) upstream when SIGTERM arrives get their answer.
    let asked = upstream.calls();
    let in_flight: Vec<_> = (0..5)
        .map(|i| {
            tokio::spawn(async move {
                udp_ask(server, &query(&format!("silent{i}.example.org."), RecordType::A, false)).await
            })
        })
        .collect();
    wait_until("the five queries at the upstream", Duration::from_secs(5), || upstream.calls() >= asked + 5).await;
    send_signal(child.id(), "TERM");
    for task in in_flight {
        assert_eq!(task.await.unwrap().metadata.response_code, ResponseCode::ServFail);
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "exit status {status}");
}
