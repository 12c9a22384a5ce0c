//! Rollups against a recount of the raw rows, on SQLite and on PostgreSQL (a throwaway cluster):
//! random records (a seeded loop, so a failure repeats) written in random batches must leave
//! rollups that equal a GROUP BY over the raw rows. And older stores are migrated: a version 1
//! SQLite store gets its rollups, a version 2 store on either backend loses the two indexes no
//! reader uses and keeps every row.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::pg::PgCluster;
use nxguard::{
    config::{StoreConfig, StoreTls},
    evidence::store::{
        self, DAY_MS, Record,
        read::{Cell, Limits, Reader},
        rollup::KINDS,
    },
};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn random_records(rng: &mut StdRng, n: usize) -> Vec<Record> {
    let pick = |rng: &mut StdRng, from: &[&str]| from[rng.random_range(0..from.len())].to_string();
    (0..n)
        .map(|_| Record {
            ts_ms: 1_795_132_800_000 + rng.random_range(0..5 * DAY_MS),
            node: pick(rng, &["ns1", "ns2"]),
            device_key: pick(rng, &["LT-1", "LT-2", "10.0.0.9", "p-00ff"]),
            owner: if rng.random_bool(0.3) { None } else { Some(pick(rng, &["Burgerzaken", "ICT"])) },
            transport: "udp".into(),
            identity_source: "unknown".into(),
            qname: format!("q{}.example", rng.random_range(0..50)),
            qtype: "A".into(),
            app: pick(rng, &["tiktok", "temu", "wechat"]),
            app_name: pick(rng, &["TikTok", "Temu"]),
            vendor: "v".into(),
            domain: pick(rng, &["a.com", "b.com", "c.net", "d.org"]),
            kind: pick(rng, &KINDS),
            matched_on: "query".into(),
            mode: pick(rng, &["enforce", "log-only"]),
            policy_version: "p1".into(),
            rule: "r".into(),
            ..Record::default()
        })
        .collect()
}

/// One query on the reader (async), from this synchronous test.
fn rows(db: &Reader, sql: &str) -> Vec<Vec<Cell>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(db.rows(sql, &[])).unwrap()
}

type Row = (i64, i64, [i64; 6], i64, i64, String, String, BTreeSet<String>);

/// The rollups as stored, keyed by (device_key, app, day, node, mode).
fn stored(db: &mut Reader) -> BTreeMap<(String, String, i64, String, String), Row> {
    let sql = "SELECT device_key, app, day, node, mode, attempts, api, telemetry, cdn, web, alias, unspecified, \
               first_ms, last_ms, COALESCE(owner, ''), app_name, domains FROM rollups";
    rows(db, sql)
        .into_iter()
        .map(|r| {
            let key = (r[0].string(), r[1].string(), r[2].int(), r[3].string(), r[4].string());
            let kinds = [r[6].int(), r[7].int(), r[8].int(), r[9].int(), r[10].int(), r[11].int()];
            let domains = r[16].string().split(' ').map(String::from).collect();
            (key, (r[5].int(), 0, kinds, r[12].int(), r[13].int(), r[14].string(), r[15].string(), domains))
        })
        .collect()
}

/// The same, recounted from the raw rows with GROUP BY.
fn recount(db: &mut Reader) -> BTreeMap<(String, String, i64, String, String), Row> {
    let kinds: Vec<String> =
        KINDS.iter().map(|k| format!("CAST(SUM(CASE WHEN kind = '{k}' THEN 1 ELSE 0 END) AS BIGINT)")).collect();
    let sql = format!(
        "SELECT device_key, app, ts_ms / 86400000, node, mode, COUNT(*), {}, MIN(ts_ms), MAX(ts_ms), \
         COALESCE(MAX(owner), ''), MAX(app_name) FROM attempts GROUP BY device_key, app, ts_ms / 86400000, node, mode",
        kinds.join(", ")
    );
    let mut out: BTreeMap<_, Row> = rows(db, &sql)
        .into_iter()
        .map(|r| {
            let key = (r[0].string(), r[1].string(), r[2].int(), r[3].string(), r[4].string());
            let kinds = [r[6].int(), r[7].int(), r[8].int(), r[9].int(), r[10].int(), r[11].int()];
            (key, (r[5].int(), 0, kinds, r[12].int(), r[13].int(), r[14].string(), r[15].string(), BTreeSet::new()))
        })
        .collect();
    let sql = "SELECT DISTINCT device_key, app, ts_ms / 86400000, node, mode, domain FROM attempts";
    for r in rows(db, sql) {
        let key = (r[0].string(), r[1].string(), r[2].int(), r[3].string(), r[4].string());
        out.get_mut(&key).unwrap().7.insert(r[5].string());
    }
    out
}

#[test]
fn rollups_equal_a_recount_of_the_raw_rows_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = PgCluster::start();
    let config = StoreConfig {
        url: Some(cluster.url()),
        password_file: Some(cluster.password_file(dir.path())),
        tls: StoreTls::Disable,
        ..StoreConfig::default()
    };
    let mut pg = store::postgres::connect(&config).unwrap();
    store::postgres::migrate(&mut pg, &config).unwrap();
    let path = dir.path().join("attempts.sqlite");
    let mut sqlite = store::sqlite::open_writable(&path, "ns1").unwrap();
    for seed in 0..20u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(1..400);
        let records = random_records(&mut rng, n);
        let mut at = 0;
        while at < records.len() {
            let end = (at + rng.random_range(1..120)).min(records.len());
            store::sqlite::insert(&mut sqlite, &records[at..end]).unwrap();
            store::postgres::insert(&mut pg, &records[at..end]).unwrap();
            at = end;
        }
        for source in [path.display().to_string(), cluster.url()] {
            let mut db = Reader::open(&source, &config, Limits::COMMAND_LINE).unwrap();
            let (stored, recount) = (stored(&mut db), recount(&mut db));
            assert!(!stored.is_empty());
            assert_eq!(stored, recount, "seed {seed} on {source}");
        }
    }
}

#[test]
fn a_version_1_sqlite_store_is_migrated_with_its_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE attempts (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, device_key TEXT NOT NULL, \
             client_ip TEXT, client_port INTEGER, transport TEXT NOT NULL, device_ip TEXT, mac TEXT, hostname TEXT, \
             device TEXT, owner TEXT, identity_source TEXT NOT NULL, qname TEXT NOT NULL, qtype TEXT NOT NULL, \
             app TEXT NOT NULL, app_name TEXT NOT NULL, vendor TEXT NOT NULL, domain TEXT NOT NULL, kind TEXT NOT NULL, \
             matched_on TEXT NOT NULL, cname_alias TEXT);
             INSERT INTO attempts (ts_ms, device_key, transport, identity_source, qname, qtype, app, app_name, vendor, \
             domain, kind, matched_on) VALUES
             (1795132800000, 'LT-1', 'udp', 'unknown', 'api.tiktokv.com', 'A', 'tiktok', 'TikTok', 'B', 'tiktokv.com', 'api', 'query'),
             (1795219200000, 'LT-1', 'udp', 'unknown', 'api.tiktokv.com', 'A', 'tiktok', 'TikTok', 'B', 'tiktokv.com', 'api', 'query');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let db = store::sqlite::open_writable(&path, "old-node").unwrap();
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, store::SCHEMA_VERSION);
    let nodes: String = db.query_row("SELECT group_concat(DISTINCT node) FROM attempts", [], |r| r.get(0)).unwrap();
    assert_eq!(nodes, "old-node");
    let rollups: (i64, i64) =
        db.query_row("SELECT COUNT(*), SUM(api) FROM rollups", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(rollups, (2, 2));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["report", "--db", path.to_str().unwrap(), "--now", "2026-11-23T00:00:00Z", "--format", "csv"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.lines().any(|l| l.starts_with("LT-1,,") && l.contains(",TikTok,2,1,2,2,")), "{out}");
}

/// The version 2 indexes that version 4 drops.
const OLD_INDEXES: &str = "CREATE INDEX IF NOT EXISTS attempts_app ON attempts (app, ts_ms); \
     CREATE INDEX IF NOT EXISTS attempts_owner ON attempts (owner, ts_ms);";

#[test]
fn a_version_2_sqlite_store_drops_the_unused_indexes_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.sqlite");
    let records = random_records(&mut StdRng::seed_from_u64(7), 50);
    {
        let mut db = store::sqlite::open_writable(&path, "ns1").unwrap();
        store::sqlite::insert(&mut db, &records).unwrap();
        db.execute_batch(&format!("{OLD_INDEXES} PRAGMA user_version = 2;")).unwrap();
    }
    let db = store::sqlite::open_writable(&path, "ns1").unwrap();
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, store::SCHEMA_VERSION);
    let mut list = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'attempts' ORDER BY name")
        .unwrap();
    let indexes: Vec<String> = list.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(indexes, ["attempts_device", "attempts_ts"]);
    let kept: i64 = db.query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, 50);
    let counted: i64 = db.query_row("SELECT SUM(attempts) FROM rollups", [], |r| r.get(0)).unwrap();
    assert_eq!(counted, 50);
    drop(list);
    drop(db);
    let config = StoreConfig::default();
    let mut reader = Reader::open(&path.display().to_string(), &config, Limits::COMMAND_LINE).unwrap();
    assert_eq!(stored(&mut reader), recount(&mut reader), "the migrated store reads as before");
}

#[test]
fn a_version_2_postgres_store_drops_the_unused_indexes_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = PgCluster::start();
    let config = StoreConfig {
        url: Some(cluster.url()),
        password_file: Some(cluster.password_file(dir.path())),
        tls: StoreTls::Disable,
        ..StoreConfig::default()
    };
    let records = random_records(&mut StdRng::seed_from_u64(7), 50);
    let mut pg = store::postgres::connect(&config).unwrap();
    store::postgres::migrate(&mut pg, &config).unwrap();
    store::postgres::insert(&mut pg, &records).unwrap();
    pg.batch_execute(&format!("{OLD_INDEXES} UPDATE nxguard_schema SET version = 2;")).unwrap();
    store::postgres::migrate(&mut pg, &config).unwrap();
    let version: i32 = pg.query_one("SELECT version FROM nxguard_schema", &[]).unwrap().get(0);
    assert_eq!(i64::from(version), store::SCHEMA_VERSION);
    let indexes: Vec<String> = pg
        .query("SELECT indexname::text FROM pg_indexes WHERE tablename = 'attempts' ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(indexes, ["attempts_device", "attempts_pkey", "attempts_ts"]);
    let kept: i64 = pg.query_one("SELECT COUNT(*) FROM attempts", &[]).unwrap().get(0);
    assert_eq!(kept, 50);
    let mut reader = Reader::open(&cluster.url(), &config, Limits::COMMAND_LINE).unwrap();
    assert_eq!(stored(&mut reader), recount(&mut reader), "the migrated store reads as before");
}
