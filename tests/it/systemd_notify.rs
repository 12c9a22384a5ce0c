//! `nxguard serve` under systemd's `Type=notify`: READY=1 once the sockets are bound,
//! RELOADING=1 and READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM. systemd is played by
//! a unix datagram socket in a temporary directory, named in NOTIFY_SOCKET.

use std::{
    net::{Ipv4Addr, SocketAddr},
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::*;
use hickory_proto::rr::RecordType;

/// The next notification; on a timeout, fails with what nxguard logged.
fn receive(socket: &UnixDatagram, log: &Path) -> String {
    let mut buf = [0u8; 256];
    match socket.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(error) => panic!("no notification within 10 s ({error}); nxguard logged:\n{}", read_log(log)),
    }
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

#[tokio::test]
async fn serve_notifies_systemd_of_readiness_reloads_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&notify).unwrap();
    systemd.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("nxguard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nudp = [\"127.0.0.1:{port}\"]\ntcp = [\"127.0.0.1:0\"]\nworkers = 1\n\
             [[upstream.servers]]\naddress = \"127.0.0.1:9\"\n[log]\nlevel = \"warn\"\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &notify)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    assert_eq!(receive(&systemd, &log), "READY=1");
    // Ready means answering: the first query gets its answer, without retries.
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let reply = udp_ask(server, &query("tiktok.com.", RecordType::A, true)).await;
    assert_blocked(&reply, "TikTok", 300, true);

    send_signal(child.id(), "HUP");
    assert_eq!(receive(&systemd, &log), "RELOADING=1");
    assert_eq!(receive(&systemd, &log), "READY=1");

    send_signal(child.id(), "TERM");
    assert_eq!(receive(&systemd, &log), "STOPPING=1");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {}", read_log(&log));
}

#[test]
fn without_notify_socket_nothing_is_sent() {
    // The test process has no NOTIFY_SOCKET unless systemd runs the tests.
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        assert!(!nxguard::ops::systemd::notify("READY=1").unwrap());
    }
}
