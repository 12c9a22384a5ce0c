//! `nxguard report` against a store with known attempts: golden files for the table, CSV and
//! JSON output, the window and filter flags, and the retention purge with an injected clock.
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test --test report`.

use std::{
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use nxguard::{
    evidence::{
        attempt::{Attempt, Stamp, Transport, Via},
        devices::{EdnsIdentity, Identity, Source},
        store,
    },
    policy::{App, AppEntry, domains::Kind},
};

/// 2026-11-20T00:00:00Z.
const DAY0: u64 = 1_795_132_800;

fn app(id: &str, name: &str, vendor: &str) -> Arc<AppEntry> {
    let app = App::new(id, name, vendor);
    let notice = app.notice();
    Arc::new(AppEntry { app, notice })
}

fn attempt(
    (day, hour): (u64, u64),
    device: Option<(&str, &str)>,
    ip: &str,
    qname: &str,
    app: &Arc<AppEntry>,
    domain: &str,
    kind: Kind,
) -> Attempt {
    let ip = ip.parse().unwrap();
    let identity = match device {
        Some((name, owner)) => Identity {
            ip,
            mac: None,
            hostname: None,
            device: Some(name.into()),
            owner: Some(owner.into()),
            source: Source::InventoryIp,
        },
        None => Identity::unknown(ip),
    };
    Attempt {
        time: UNIX_EPOCH + Duration::from_secs(DAY0 + day * 86_400 + hour * 3600),
        client: std::net::SocketAddr::new(ip, 40000),
        transport: Transport::Udp,
        identity,
        edns: EdnsIdentity::default(),
        qname: qname.into(),
        qtype: "A".into(),
        app: Arc::clone(app),
        domain: domain.into(),
        kind,
        via: Via::Query,
        stamp: Stamp::enforced("test", "tiktok"),
    }
}

/// LT-0001 runs TikTok (API hits on three days); LT-0002 clicked one TikTok link and runs
/// Temu once; an unknown address hit WeChat's API once.
fn fixture(dir: &Path) -> std::path::PathBuf {
    let tiktok = app("tiktok", "TikTok", "ByteDance");
    let temu = app("temu", "Temu", "PDD Holdings");
    let wechat = app("wechat", "WeChat", "Tencent");
    let lt1 = Some(("LT-0001", "Burgerzaken"));
    let lt2 = Some(("LT-0002", "Sociaal Domein"));
    let attempts = vec![
        attempt((0, 9), lt1, "10.20.1.1", "api16-normal-c.tiktokv.com", &tiktok, "tiktokv.com", Kind::Api),
        attempt((0, 9), lt1, "10.20.1.1", "log16-normal-c.tiktokv.com", &tiktok, "tiktokv.com", Kind::Api),
        attempt((1, 10), lt1, "10.20.1.1", "v16.tiktokcdn.com", &tiktok, "tiktokcdn.com", Kind::Cdn),
        attempt((2, 8), lt1, "10.20.1.7", "api16-normal-c.tiktokv.com", &tiktok, "tiktokv.com", Kind::Api),
        attempt((2, 12), lt1, "10.20.1.7", "mon.byteoversea.com", &tiktok, "byteoversea.com", Kind::Telemetry),
        attempt((1, 14), lt2, "10.20.2.2", "www.tiktok.com", &tiktok, "tiktok.com", Kind::Web),
        attempt((2, 15), lt2, "10.20.2.2", "api.temu.com", &temu, "temu.com", Kind::Web),
        attempt((0, 16), None, "10.30.0.9", "long.weixin.qq.com", &wechat, "weixin.qq.com", Kind::Api),
        // Older than the default test window.
        attempt((0, 1), lt2, "10.20.2.2", "www.tiktok.com", &tiktok, "tiktok.com", Kind::Web),
    ];
    let path = dir.join("attempts.sqlite");
    store::insert_all(&path, &attempts, None).unwrap();
    path
}

/// `nxguard report` with a fixed "now" of 2026-11-23T00:00:00Z.
fn report(db: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["report", "--db", db.to_str().unwrap(), "--now", "2026-11-23T00:00:00Z"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{name} missing; run with UPDATE_GOLDEN=1"));
    assert_eq!(actual, expected, "{name} differs; if intended, run with UPDATE_GOLDEN=1");
}

#[test]
fn per_device_and_app_view_in_three_formats() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    golden("summary.txt", &report(&db, &["--since", "2026-11-20T02:00:00Z"]));
    golden("summary.csv", &report(&db, &["--since", "2026-11-20T02:00:00Z", "--format", "csv"]));
    golden("summary.json", &report(&db, &["--since", "2026-11-20T02:00:00Z", "--format", "json"]));
}

#[test]
fn filters_and_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    golden("timeline-lt-0001.txt", &report(&db, &["--device", "LT-0001"]));
    golden("owner-sociaal-domein.txt", &report(&db, &["--owner", "sociaal domein"]));
    golden("app-tiktok-last-2d.csv", &report(&db, &["--app", "TikTok", "--since", "2d", "--format", "csv"]));
    let until = report(&db, &["--until", "2026-11-21", "--format", "csv"]);
    assert!(until.lines().skip(1).all(|l| l.contains("2026-11-20")), "{until}");
    // An address finds the device that used it, and shows that device's whole timeline.
    let by_address = report(&db, &["--device", "10.20.1.7", "--format", "csv"]);
    assert_eq!(by_address.lines().count(), 6, "{by_address}");
    assert!(by_address.lines().skip(1).all(|l| l.contains("LT-0001")));
}

#[test]
fn retention_purge_uses_the_clock_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    let connection = store::open(&db, false).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(DAY0 + 2 * 86_400 + 86_400);
    // Keep one day: everything before 2026-11-22T00:00Z goes.
    let deleted = store::purge(&connection, now, Duration::from_secs(86_400)).unwrap();
    assert_eq!(deleted, 6);
    let left: i64 = connection.query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 3);
    let half_a_year_later = now + Duration::from_secs(183 * 86_400);
    assert_eq!(store::purge(&connection, half_a_year_later, Duration::from_secs(90 * 86_400)).unwrap(), 3);
}

#[test]
fn report_on_a_missing_store_is_a_clear_error() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_nxguard")).args(["report", "--db", "/nonexistent/a.sqlite"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/a.sqlite"));
}
