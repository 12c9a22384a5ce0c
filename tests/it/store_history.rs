//! The benchmarks' history generator (`common::history`) against the real write path: the same
//! attempts written through the store's writers (raw rows and the rollup upsert, batch by batch)
//! and then purged to `raw_days` must leave exactly the tables the generator writes directly,
//! on SQLite and on PostgreSQL (a throwaway cluster).

use crate::common::{
    history::{self, Shape},
    pg::PgCluster,
};
use nxguard::{
    config::{StoreBackend, StoreConfig, StoreTls},
    evidence::store::{
        self, DAY_MS, Record,
        read::{Limits, Reader},
    },
};

/// Every column but the row id, as text, in one order: the same SQL reads both backends.
const RAW: &str = "SELECT CAST(ts_ms AS TEXT), node, device_key, COALESCE(client_ip, '-'), \
     COALESCE(CAST(client_port AS TEXT), '-'), transport, COALESCE(device_ip, '-'), COALESCE(mac, '-'), \
     COALESCE(hostname, '-'), COALESCE(device, '-'), COALESCE(owner, '-'), identity_source, qname, qtype, app, \
     app_name, vendor, domain, kind, matched_on, COALESCE(cname_alias, '-'), mode, policy_version, rule \
     FROM attempts ORDER BY 1, 2, 3, 13, 5";

const ROLLUPS: &str = "SELECT device_key, app, CAST(day AS TEXT), node, mode, COALESCE(owner, '-'), app_name, \
     CAST(attempts AS TEXT), CAST(api AS TEXT), CAST(telemetry AS TEXT), CAST(cdn AS TEXT), CAST(web AS TEXT), \
     CAST(alias AS TEXT), CAST(unspecified AS TEXT), CAST(first_ms AS TEXT), CAST(last_ms AS TEXT), domains \
     FROM rollups ORDER BY 3, 1, 2, 4, 5";

fn small_shape() -> Shape {
    // 12:34:56 into a day, so the purge's cutoff falls inside a day.
    let now_ms = 20_600 * DAY_MS + 45_296_000;
    Shape { days: 20, raw_days: 5, ..Shape::realistic(40_000, 120, now_ms) }
}

/// Every attempt of the history, in time order per day, as the writer gets them.
fn all_records(shape: &Shape) -> Vec<Record> {
    (shape.first_day()..=shape.today()).flat_map(|day| shape.events(day)).map(|e| shape.record(&e)).collect()
}

fn tables(source: &str, config: &StoreConfig) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let db = Reader::open(source, config, Limits::COMMAND_LINE).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let read = |sql| -> Vec<Vec<String>> {
        let rows = runtime.block_on(db.rows(sql, &[])).unwrap();
        rows.iter().map(|r| r.iter().map(|c| c.string()).collect()).collect()
    };
    (read(RAW), read(ROLLUPS))
}

fn assert_same(direct: &(Vec<Vec<String>>, Vec<Vec<String>>), real: &(Vec<Vec<String>>, Vec<Vec<String>>)) {
    assert_eq!(direct.0.len(), real.0.len(), "raw rows kept");
    assert_eq!(direct.1.len(), real.1.len(), "rollup rows");
    for (a, b) in direct.0.iter().zip(&real.0) {
        assert_eq!(a, b, "a raw row");
    }
    for (a, b) in direct.1.iter().zip(&real.1) {
        assert_eq!(a, b, "a rollup row");
    }
}

#[test]
fn the_generated_history_is_what_writing_and_purging_leave_on_sqlite() {
    let shape = small_shape();
    let dir = tempfile::tempdir().unwrap();
    let direct = dir.path().join("direct.sqlite");
    let written = history::write_sqlite(&direct, &shape);

    let real = dir.path().join("real.sqlite");
    let mut db = store::sqlite::open_writable(&real, "ns1").unwrap();
    for batch in all_records(&shape).chunks(997) {
        store::sqlite::insert(&mut db, batch).unwrap();
    }
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_millis(shape.now_ms as u64);
    store::purge(&db, now, shape.raw_days, 90).unwrap();
    drop(db);

    let config = StoreConfig::default();
    let (direct, real) = (tables(&direct.display().to_string(), &config), tables(&real.display().to_string(), &config));
    assert_same(&direct, &real);
    // The shape is what it says: raw rows only from the cutoff, rollups for every day, some
    // purged, both nodes, an installed app's device among the devices.
    assert!(written.raw_rows > 0 && written.raw_rows < written.attempts, "{written:?}");
    assert_eq!(written.raw_rows as usize, real.0.len());
    let cutoff = shape.raw_from_ms().to_string();
    assert!(real.0.iter().all(|r| r[0].len() == cutoff.len() && r[0] >= cutoff));
    let days: std::collections::BTreeSet<&String> = real.1.iter().map(|r| &r[2]).collect();
    assert_eq!(days.len() as i64, shape.days);
    let nodes: std::collections::BTreeSet<&String> = real.1.iter().map(|r| &r[3]).collect();
    assert_eq!(nodes.len(), 2);
}

#[test]
fn the_generated_history_is_what_writing_and_purging_leave_on_postgres() {
    let shape = small_shape();
    let dir = tempfile::tempdir().unwrap();
    let cluster = PgCluster::start();
    let mut admin = cluster.client("postgres", "postgres");
    admin.batch_execute("CREATE DATABASE direct OWNER nxguard").unwrap();
    let config = |database: &str| StoreConfig {
        backend: StoreBackend::Postgres,
        url: Some(format!("postgres://nxguard@127.0.0.1:{}/{database}", cluster.port)),
        password_file: Some(cluster.password_file(dir.path())),
        tls: StoreTls::Disable,
        ..StoreConfig::default()
    };
    let (direct_config, real_config) = (config("direct"), config("nxguard"));

    let mut client = store::postgres::connect(&direct_config).unwrap();
    store::postgres::migrate(&mut client, &direct_config).unwrap();
    history::write_postgres(&mut client, &shape);

    let mut client = store::postgres::connect(&real_config).unwrap();
    store::postgres::migrate(&mut client, &real_config).unwrap();
    for batch in all_records(&shape).chunks(997) {
        store::postgres::insert(&mut client, batch).unwrap();
    }
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_millis(shape.now_ms as u64);
    let (raw, rollups) = store::cutoffs(now, shape.raw_days, 90);
    while store::postgres::purge_chunk(&mut client, raw, rollups, 5000).unwrap() > 0 {}

    let direct = tables(direct_config.url.as_deref().unwrap(), &direct_config);
    let real = tables(real_config.url.as_deref().unwrap(), &real_config);
    assert!(!real.0.is_empty() && !real.1.is_empty());
    assert_same(&direct, &real);
}
