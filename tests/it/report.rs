//! `nxguard report` against a store with known attempts: golden files for the table, CSV and
//! JSON output, the window and filter flags, and the retention purge with an injected clock.
//! Every golden file is checked against the same records in SQLite and in a real PostgreSQL
//! (a throwaway cluster, `common::pg`): the output must be the same byte for byte.
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test --test it report::`.

use std::{
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use crate::common;
use crate::common::{app, pg::PgCluster};
use nxguard::{
    config::{StoreConfig, StoreTls},
    evidence::{
        attempt::{Attempt, Mode, Stamp},
        store::{self, Record},
    },
    policy::{AppEntry, domains::Kind},
};

/// 2026-11-20T00:00:00Z.
const DAY0: u64 = 1_795_132_800;

fn attempt(
    (day, hour): (u64, u64),
    device: Option<(&str, &str)>,
    ip: &str,
    qname: &str,
    app: &Arc<AppEntry>,
    domain: &str,
    kind: Kind,
) -> Attempt {
    let built = common::attempt(qname, app, kind).domain(domain).at(DAY0 + day * 86_400 + hour * 3600);
    match device {
        Some((name, owner)) => built.device(ip, name, owner),
        None => built.unknown(ip),
    }
    .build()
}

/// LT-0001 runs TikTok (API hits on three days); LT-0002 clicked one TikTok link and runs
/// Temu once; an unknown address hit WeChat's API once.
fn fixture_attempts() -> Vec<Attempt> {
    let tiktok = app("tiktok", "TikTok", "ByteDance");
    let temu = app("temu", "Temu", "PDD Holdings");
    let wechat = app("wechat", "WeChat", "Tencent");
    let lt1 = Some(("LT-0001", "Burgerzaken"));
    let lt2 = Some(("LT-0002", "Sociaal Domein"));
    vec![
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
    ]
}

fn fixture(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("attempts.sqlite");
    store::insert_all(&path, &fixture_attempts(), None, "ns1").unwrap();
    path
}

/// A store of each backend holding the same records: the SQLite file and the PostgreSQL URL,
/// with a config naming the password file and plain TCP for the cluster.
struct Stores {
    sqlite: String,
    postgres: String,
    config: std::path::PathBuf,
    _cluster: PgCluster,
}

fn store_config(cluster: &PgCluster, dir: &Path) -> StoreConfig {
    StoreConfig {
        url: Some(cluster.url()),
        password_file: Some(cluster.password_file(dir)),
        tls: StoreTls::Disable,
        ..StoreConfig::default()
    }
}

fn insert_postgres(cluster: &PgCluster, dir: &Path, records: &[Record]) {
    let config = store_config(cluster, dir);
    let mut client = store::postgres::connect(&config).unwrap();
    store::postgres::migrate(&mut client, &config).unwrap();
    store::postgres::insert(&mut client, records).unwrap();
}

fn both_stores(dir: &Path) -> Stores {
    let cluster = PgCluster::start();
    let records: Vec<Record> = fixture_attempts().iter().map(|a| Record::of(a, None, "ns1")).collect();
    insert_postgres(&cluster, dir, &records);
    let config = dir.join("report.toml");
    let toml = format!(
        "[[upstream.servers]]\naddress = \"127.0.0.1:9\"\nprotocol = \"udp\"\n[store]\ntls = \"disable\"\npassword_file = {:?}\n",
        cluster.password_file(dir)
    );
    std::fs::write(&config, toml).unwrap();
    Stores { sqlite: fixture(dir).display().to_string(), postgres: cluster.url(), config, _cluster: cluster }
}

/// `nxguard report` over `dbs` with a fixed "now" of 2026-11-23T00:00:00Z.
fn report_on(dbs: &[&str], config: Option<&Path>, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nxguard"));
    command.args(["report", "--now", "2026-11-23T00:00:00Z"]);
    for db in dbs {
        command.args(["--db", db]);
    }
    if let Some(config) = config {
        command.args(["--config", config.to_str().unwrap()]);
    }
    let out = command.args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn report(db: &Path, args: &[&str]) -> String {
    report_on(&[db.to_str().unwrap()], None, args)
}

/// The report from the SQLite store, after checking that PostgreSQL gives the same bytes.
fn report_both(stores: &Stores, args: &[&str]) -> String {
    let sqlite = report_on(&[&stores.sqlite], Some(&stores.config), args);
    let postgres = report_on(&[&stores.postgres], Some(&stores.config), args);
    assert_eq!(sqlite, postgres, "SQLite and PostgreSQL differ for {args:?}");
    sqlite
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
fn per_device_and_app_view_in_three_formats_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let stores = both_stores(dir.path());
    golden("summary.txt", &report_both(&stores, &["--since", "2026-11-20T02:00:00Z"]));
    golden("summary.csv", &report_both(&stores, &["--since", "2026-11-20T02:00:00Z", "--format", "csv"]));
    golden("summary.json", &report_both(&stores, &["--since", "2026-11-20T02:00:00Z", "--format", "json"]));
}

#[test]
fn filters_and_timeline_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let stores = both_stores(dir.path());
    golden("timeline-lt-0001.txt", &report_both(&stores, &["--device", "LT-0001"]));
    golden("owner-sociaal-domein.txt", &report_both(&stores, &["--owner", "sociaal domein"]));
    golden("app-tiktok-last-2d.csv", &report_both(&stores, &["--app", "TikTok", "--since", "2d", "--format", "csv"]));
    let until = report_both(&stores, &["--until", "2026-11-21", "--format", "csv"]);
    assert!(until.lines().skip(1).all(|l| l.contains("2026-11-20")), "{until}");
    // An address finds the device that used it, and shows that device's whole timeline.
    let by_address = report_both(&stores, &["--device", "10.20.1.7", "--format", "csv"]);
    assert_eq!(by_address.lines().count(), 6, "{by_address}");
    assert!(by_address.lines().skip(1).all(|l| l.contains("LT-0001")));
    for args in [&["--format", "json"][..], &["--device", "LT-0002", "--format", "json"], &["--since", "1d"]] {
        report_both(&stores, args);
    }
}

/// A primary/secondary pair without PostgreSQL: `--db a --db b` gives the same report as one
/// store holding both nodes' records, and a device's days on both nodes count together.
#[test]
fn two_sqlite_stores_merge_like_one() {
    let dir = tempfile::tempdir().unwrap();
    let attempts = fixture_attempts();
    let (a, b, both) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"), dir.path().join("both.sqlite"));
    let (odd, even): (Vec<_>, Vec<_>) = attempts.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 1);
    let odd: Vec<Attempt> = odd.into_iter().map(|(_, a)| a).collect();
    let even: Vec<Attempt> = even.into_iter().map(|(_, a)| a).collect();
    store::insert_all(&a, &odd, None, "ns1").unwrap();
    store::insert_all(&b, &even, None, "ns2").unwrap();
    store::insert_all(&both, &odd, None, "ns1").unwrap();
    store::insert_all(&both, &even, None, "ns2").unwrap();
    let (a, b, both) = (a.to_str().unwrap(), b.to_str().unwrap(), both.to_str().unwrap());
    for args in [&[][..], &["--since", "2026-11-20T02:00:00Z", "--format", "csv"], &["--device", "LT-0001"]] {
        let merged = report_on(&[a, b], None, args);
        let one = report_on(&[both], None, args);
        assert!(merged.lines().next().unwrap().contains("node"), "{merged}");
        // Attempts of the same second on two nodes have no order between them: compare as sets.
        let (mut merged, mut one): (Vec<_>, Vec<_>) = (merged.lines().collect(), one.lines().collect());
        merged.sort_unstable();
        one.sort_unstable();
        assert_eq!(merged, one, "{args:?}");
    }
    // LT-0001's TikTok API hits on three days, split over both nodes, still make three days.
    let merged = report_on(&[a, b], None, &["--app", "tiktok", "--format", "csv"]);
    let lt1 = merged.lines().find(|l| l.starts_with("LT-0001")).unwrap();
    assert!(lt1.contains(",5,3,3,2,") && lt1.contains("app likely installed") && lt1.ends_with("ns1 ns2"), "{lt1}");
}

/// Log-only attempts stay out of the default views, show with --mode, and list in --shadow.
#[test]
fn log_only_attempts_show_in_the_shadow_view_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    let shadowed = app("shein", "Shein", "Shein");
    let mut attempt = attempt(
        (2, 9),
        Some(("LT-0003", "Financien")),
        "10.20.3.3",
        "api.shein.com",
        &shadowed,
        "shein.com",
        Kind::Api,
    );
    attempt.stamp = Stamp { mode: Mode::LogOnly, policy_version: "v2".into(), rule: "shadow:shein".into() };
    store::insert_all(&db, &[attempt], None, "ns1").unwrap();
    let plain = report(&db, &["--since", "2026-11-20T02:00:00Z"]);
    golden("summary.txt", &plain);
    let shadow = report(&db, &["--shadow", "--format", "csv"]);
    assert_eq!(
        shadow.lines().collect::<Vec<_>>(),
        [
            "device,owner,app,attempts,first_seen,last_seen,domains",
            "LT-0003,Financien,Shein,1,2026-11-22T09:00:00Z,2026-11-22T09:00:00Z,shein.com"
        ]
    );
    let all = report(&db, &["--mode", "all", "--format", "csv"]);
    assert!(all.lines().next().unwrap().ends_with(",mode"), "{all}");
    assert!(all.lines().any(|l| l.starts_with("LT-0003") && l.ends_with(",log-only")), "{all}");
    assert!(all.lines().any(|l| l.starts_with("LT-0001") && l.ends_with(",enforce")), "{all}");
}

#[test]
fn retention_purge_uses_the_clock_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    let connection = store::open(&db, false).unwrap();
    let count = |table: &str| -> i64 {
        connection.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    };
    assert_eq!((count("attempts"), count("rollups")), (9, 7));
    let now = UNIX_EPOCH + Duration::from_secs(DAY0 + 2 * 86_400 + 86_400);
    // Keep one day of raw rows (everything before 2026-11-22T00:00Z goes) and 90 of rollups.
    let deleted = store::purge(&connection, now, 1, 90).unwrap();
    assert_eq!(deleted, 6);
    assert_eq!((count("attempts"), count("rollups")), (3, 7));
    // The summary still counts the purged days from the rollups; the timeline says so.
    let summary = report(&db, &["--app", "tiktok", "--format", "csv"]);
    assert!(summary.lines().any(|l| l.starts_with("LT-0001,Burgerzaken,inventory-ip,TikTok,5,3,3,2,")), "{summary}");
    let half_a_year_later = now + Duration::from_secs(183 * 86_400);
    assert_eq!(store::purge(&connection, half_a_year_later, 14, 90).unwrap(), 10);
    assert_eq!((count("attempts"), count("rollups")), (0, 0));
}

#[test]
fn the_timeline_says_when_older_attempts_are_only_in_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    let connection = store::open(&db, false).unwrap();
    store::purge(&connection, UNIX_EPOCH + Duration::from_secs(DAY0 + 3 * 86_400), 1, 90).unwrap();
    let config = dir.path().join("report.toml");
    std::fs::write(
        &config,
        "[[upstream.servers]]\naddress = \"127.0.0.1:9\"\nprotocol = \"udp\"\n[store]\nraw_days = 1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["report", "--db", db.to_str().unwrap(), "--now", "2026-11-23T00:00:00Z", "--device", "LT-0001"])
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("store.raw_days"), "{stderr}");
}

#[test]
fn a_store_with_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    store::open(&db, false).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_nxguard")).args(["report", "--db", db.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("schema version 99") && stderr.contains("newer"), "{stderr}");
    assert!(store::open(&db, false).is_err(), "the writer refuses it too");
}

#[test]
fn report_on_a_missing_store_is_a_clear_error() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_nxguard")).args(["report", "--db", "/nonexistent/a.sqlite"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/a.sqlite"));
}
