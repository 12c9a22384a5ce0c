//! Where attempt records could silently go missing: the store file deleted under a running
//! server (it is reopened, counted and logged), and a store path `nxguard check` passed although
//! nothing can be written there.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
    sync::atomic::Ordering,
    time::Duration,
};

use crate::common::*;
use hickory_proto::rr::RecordType;
use nxguard::{evidence::store, ops::metrics};

/// The query names stored at `path`, once there are `n` (the writer flushes every 50 ms).
fn stored_names(path: &Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        if let Ok(db) = store::open(path, true) {
            let mut statement = db.prepare("SELECT qname FROM attempts ORDER BY id").unwrap();
            let names: Vec<String> = statement.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
            if names.len() >= n {
                return names;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("fewer than {n} rows in {}", path.display());
}

async fn blocked(server: std::net::SocketAddr, name: &str) {
    let packet = query(name, RecordType::A, false).to_vec().unwrap();
    let reply = udp_exchange_raw(server, IpAddr::V4(Ipv4Addr::LOCALHOST), &packet, Duration::from_secs(5)).await;
    assert_eq!(reply.expect("an answer")[3] & 0x0f, 3, "NXDOMAIN");
}

#[tokio::test]
async fn a_store_deleted_while_running_is_reopened_counted_and_logged() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("attempts.sqlite");
    std::fs::create_dir(path.parent().unwrap()).unwrap();
    let config = config_for(upstream.addr, &format!("[store]\npath = {path:?}\nflush_interval_ms = 50\n"));
    let server = start_server(&config);
    blocked(server.udp, "before.tiktok.com.").await;
    assert_eq!(stored_names(&path, 1), ["before.tiktok.com"]);

    // The whole directory goes, as a careless cleanup would remove it.
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    blocked(server.udp, "after.tiktok.com.").await;
    assert_eq!(stored_names(&path, 1), ["after.tiktok.com"], "the row went into the deleted file");
    let stats = server.running.resolver.recorder().store.clone().unwrap();
    assert_eq!(stats.reopened.load(Ordering::Relaxed), 1);
    let text = metrics::render(&server.running.resolver);
    assert!(text.contains("nxguard_store_reopened_total 1"), "{text}");

    // A file replaced by another at the same path is noticed too.
    std::fs::remove_file(&path).unwrap();
    blocked(server.udp, "again.tiktok.com.").await;
    assert_eq!(stored_names(&path, 1), ["again.tiktok.com"]);
    assert_eq!(stats.reopened.load(Ordering::Relaxed), 2);
}

/// `nxguard check` on a config whose store is at `store`, run as `uid` when given.
fn check_with_store(dir: &Path, store: &Path, uid: Option<u32>) -> Output {
    let config = dir.join("nxguard.toml");
    std::fs::write(&config, format!("[store]\npath = {store:?}\n[[upstream.servers]]\naddress = \"192.0.2.1:5353\"\n"))
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_nxguard"));
    command.args(["check", "--config", config.to_str().unwrap()]);
    if let Some(uid) = uid {
        use std::os::unix::{fs::PermissionsExt, process::CommandExt};
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        command.uid(uid).gid(uid);
    }
    command.output().unwrap()
}

fn assert_not_writable(out: &Output, store: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check passed for {}: {stderr}", store.display());
    assert!(stderr.contains("cannot be written") && stderr.contains(&store.display().to_string()), "{stderr}");
}

#[test]
fn check_fails_where_the_store_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    // A writable directory passes, and the probe leaves nothing behind.
    let writable = dir.path().join("data");
    std::fs::create_dir(&writable).unwrap();
    let out = check_with_store(dir.path(), &writable.join("attempts.sqlite"), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(&writable).unwrap().count(), 0);

    // sysfs takes no new files, not even from root: it stands in for a read-only mount.
    let sysfs = Path::new("/sys/nxguard-attempts.sqlite");
    assert_not_writable(&check_with_store(dir.path(), sysfs, None), sysfs);

    // A directory without write permission. Root writes anywhere, so then the check runs as
    // the unprivileged user 65534 (nobody), as the service's own user would.
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let store = locked.join("attempts.sqlite");
    assert_not_writable(&check_with_store(dir.path(), &store, root.then_some(65534)), &store);
}
