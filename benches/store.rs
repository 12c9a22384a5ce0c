//! Attempt store benchmark, on SQLite and on PostgreSQL (a throwaway cluster, as in the tests):
//! - how many attempts per second each writer sustains, through the same bounded queue the
//!   server uses (PostgreSQL: through the spool, binary COPY and the rollup upsert);
//! - the store's size per million attempts, with raw rows and with rollups only;
//! - `report` over a long history: the rollups of DAYS days × DEVICES devices × 11 apps plus the
//!   raw rows written above, on both backends (summary, a week, one app, one device's timeline).
//!
//! `cargo bench --bench store` writes 1 000 000 attempts and a 90 × 500 × 11 history (set
//! ATTEMPTS, DEVICES, DAYS to change). Under `cargo test` it runs once on small sizes.

#[path = "../tests/it/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nxguard::{
    config::{StoreBackend, StoreConfig, StoreTls},
    evidence::{
        attempt::{Attempt, Stamp, Via},
        devices::{EdnsIdentity, Identity, Source},
        store::{
            self, DAY_MS, Record, StoreWriter, millis,
            read::{Limits, Reader},
            rollup::{Counts, Key, Rollups},
        },
    },
    policy::{App, AppEntry, domains::Kind},
    resolve::Transport,
    review::report::{self, Filter},
};

const APPS: [(&str, &str, &str); 11] = [
    ("tiktok", "TikTok", "ByteDance"),
    ("capcut", "CapCut", "ByteDance"),
    ("temu", "Temu", "PDD Holdings"),
    ("wechat", "WeChat", "Tencent"),
    ("shein", "Shein", "Shein"),
    ("aliexpress", "AliExpress", "Alibaba"),
    ("ucbrowser", "UC Browser", "Alibaba"),
    ("weibo", "Weibo", "Sina"),
    ("douyin", "Douyin", "ByteDance"),
    ("kwai", "Kwai", "Kuaishou"),
    ("likee", "Likee", "JOYY"),
];

fn env(name: &str, bench: usize, test: usize, big: bool) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(if big { bench } else { test })
}

fn attempts(n: usize, devices: usize, start: SystemTime) -> impl Iterator<Item = Attempt> {
    let apps: Vec<Arc<AppEntry>> = APPS
        .iter()
        .map(|(id, name, vendor)| {
            let app = App::new(id, name, vendor);
            let notice = app.notice();
            Arc::new(AppEntry { app, notice })
        })
        .collect();
    // In time order, as a server records them, spread over 90 days.
    let step_ms = (90 * 86_400_000 / n.max(1)) as u64;
    (0..n).map(move |i| {
        let device = i % devices;
        let ip = std::net::IpAddr::from([10, 20, (device / 250) as u8, (device % 250) as u8]);
        Attempt {
            time: start + Duration::from_millis(i as u64 * step_ms),
            client: std::net::SocketAddr::new(ip, 40000),
            transport: Transport::Udp,
            identity: Identity {
                ip,
                mac: None,
                hostname: None,
                device: Some(format!("LT-{device:04}")),
                owner: Some(format!("Afdeling {}", device % 40)),
                source: Source::InventoryIp,
            },
            edns: EdnsIdentity::default(),
            qname: format!("api{}.tiktokv.com", i % 50),
            qtype: "A".into(),
            app: Arc::clone(&apps[i % apps.len()]),
            domain: "tiktokv.com".into(),
            kind: if i % 4 == 0 { Kind::Web } else { Kind::Api },
            via: Via::Query,
            stamp: Stamp::enforced("bench", "tiktok"),
            resolver: None,
        }
    })
}

/// Offers `n` attempts as fast as the writer's queue takes them; attempts per second.
fn write(config: &StoreConfig, n: usize, devices: usize, start: SystemTime) -> f64 {
    let (sink, writer) = StoreWriter::start(config).unwrap().expect("a store");
    let stats = Arc::clone(&writer.stats);
    let node = config.node_name();
    let began = Instant::now();
    for attempt in attempts(n, devices, start) {
        sink.send_waiting(Record::of(&attempt, None, &node));
    }
    // Until the database holds them all (PostgreSQL: the spool drained).
    let mut last = (0, Instant::now());
    while stats.written.load(Ordering::Relaxed) < n as u64 {
        let written = stats.written.load(Ordering::Relaxed);
        if written > last.0 {
            last = (written, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(60),
            "no progress; {} failed writes",
            stats.errors.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = began.elapsed();
    drop(sink);
    writer.close();
    assert_eq!(stats.written.load(Ordering::Relaxed), n as u64, "every attempt written");
    n as f64 / took.as_secs_f64()
}

/// The physical limit the shipper is compared with: the same rows by plain binary COPY, in
/// batches of the shipper's size, into a table like `attempts` (its indexes too); rows/s.
fn plain_copy(client: &mut postgres::Client, n: usize, devices: usize, start: SystemTime) -> f64 {
    use postgres::{binary_copy::BinaryCopyInWriter, types::Type};
    client.batch_execute("CREATE TABLE attempts_copy (LIKE attempts INCLUDING ALL)").unwrap();
    let records: Vec<store::Record> = attempts(n, devices, start).map(|a| store::Record::of(&a, None, "ns1")).collect();
    let types: Vec<Type> = (0..24)
        .map(|i| match i {
            0 => Type::INT8,
            4 => Type::INT4,
            _ => Type::TEXT,
        })
        .collect();
    let sql = "COPY attempts_copy (ts_ms, node, device_key, client_ip, client_port, transport, device_ip, mac, \
               hostname, device, owner, identity_source, qname, qtype, app, app_name, vendor, domain, kind, \
               matched_on, cname_alias, mode, policy_version, rule) FROM STDIN BINARY";
    let began = Instant::now();
    for batch in records.chunks(50_000) {
        let mut tx = client.transaction().unwrap();
        let mut writer = BinaryCopyInWriter::new(tx.copy_in(sql).unwrap(), &types);
        for r in batch {
            writer
                .write(&[
                    &r.ts_ms,
                    &r.node,
                    &r.device_key,
                    &r.client_ip,
                    &r.client_port,
                    &r.transport,
                    &r.device_ip,
                    &r.mac,
                    &r.hostname,
                    &r.device,
                    &r.owner,
                    &r.identity_source,
                    &r.qname,
                    &r.qtype,
                    &r.app,
                    &r.app_name,
                    &r.vendor,
                    &r.domain,
                    &r.kind,
                    &r.matched_on,
                    &r.cname_alias,
                    &r.mode,
                    &r.policy_version,
                    &r.rule,
                ])
                .unwrap();
        }
        writer.finish().unwrap();
        tx.commit().unwrap();
    }
    let rate = n as f64 / began.elapsed().as_secs_f64();
    client.batch_execute("DROP TABLE attempts_copy").unwrap();
    rate
}

/// The rollups of a history: every device uses every app on every day.
fn history(days: usize, devices: usize, end_day: i64) -> Vec<Rollups> {
    let mut batches = Vec::new();
    let mut rollups = Rollups::default();
    for day in end_day - days as i64..end_day {
        for device in 0..devices {
            for (app, name, _) in APPS {
                let key = Key {
                    device_key: format!("LT-{device:04}"),
                    app: app.into(),
                    day,
                    node: "ns1".into(),
                    mode: "enforce".into(),
                };
                let counts = Counts {
                    owner: Some(format!("Afdeling {}", device % 40)),
                    app_name: name.into(),
                    attempts: 1000,
                    kinds: [700, 100, 100, 100, 0, 0],
                    first_ms: day * DAY_MS + 3_600_000,
                    last_ms: day * DAY_MS + 80_000_000,
                    domains: [format!("{app}.com"), format!("api.{app}.com"), format!("cdn-{app}.net")].into(),
                };
                rollups.rows.insert(key, counts);
                if rollups.rows.len() >= 50_000 {
                    batches.push(std::mem::take(&mut rollups));
                }
            }
        }
    }
    batches.push(rollups);
    batches
}

fn time_reports(source: &str, config: &StoreConfig, now: SystemTime) {
    let mut dbs = [Reader::open(source, config, Limits::COMMAND_LINE).unwrap()];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let base = Filter { now: Some(now), until: Some(now), raw_days: 14, ..Filter::default() };
    let cases = [
        ("summary, everything", base.clone()),
        ("summary, last 7 days", Filter { since: Some(now - Duration::from_secs(7 * 86_400)), ..base.clone() }),
        ("summary, one app", Filter { app: Some("temu".into()), ..base.clone() }),
        ("timeline, one device", Filter { device: Some("LT-0042".into()), ..base.clone() }),
    ];
    let backend = if source.starts_with("postgres") { "postgres" } else { "sqlite" };
    for (name, filter) in cases {
        // The best of three: the machine is shared, and a slow run measures the neighbours.
        let mut best = (Duration::MAX, Duration::MAX, 0);
        for _ in 0..3 {
            let (began, cpu) = (Instant::now(), cpu_time());
            let rows = if filter.device.is_some() {
                runtime.block_on(report::timeline(&mut dbs, &filter, None)).unwrap().events.len()
            } else {
                runtime.block_on(report::summaries(&mut dbs, &filter, None)).unwrap().len()
            };
            best = best.min((began.elapsed(), cpu_time() - cpu, rows));
        }
        println!(
            "report {backend} {name}: {} rows in {:.3} s (this process on a core {:.3} s)",
            best.2,
            best.0.as_secs_f64(),
            best.1.as_secs_f64()
        );
    }
}

/// User and system time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[allow(clippy::too_many_lines)]
fn main() {
    let big = std::env::args().any(|a| a == "--bench");
    let n = env("ATTEMPTS", 1_000_000, 20_000, big);
    let devices = env("DEVICES", 500, 50, big);
    let days = env("DAYS", 90, 3, big);
    let dir = tempfile::tempdir().unwrap();
    let start = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let now = start + Duration::from_secs(90 * 86_400);
    let today = millis(now).div_euclid(DAY_MS);

    // SQLite.
    let path = dir.path().join("attempts.sqlite");
    // Nothing purged while writing: the generated times lie months back.
    let keep = StoreConfig { raw_days: 183, retention_days: 183, node: Some("ns1".into()), ..StoreConfig::default() };
    let sqlite = StoreConfig { path: Some(path.clone()), ..keep.clone() };
    let rate = write(&sqlite, n, devices, start);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "sqlite write: {n} attempts, {rate:.0} attempts/s sustained; {:.1} MB per million",
        mb(size) * 1e6 / n as f64
    );

    // PostgreSQL, through the spool.
    let cluster = pg::PgCluster::start();
    let postgres = StoreConfig {
        backend: StoreBackend::Postgres,
        url: Some(cluster.url()),
        password_file: Some(cluster.password_file(dir.path())),
        tls: StoreTls::Disable,
        spool_dir: Some(dir.path().join("spool")),
        ..keep.clone()
    };
    let rate = write(&postgres, n, devices, start);
    let mut client = cluster.nxguard();
    let copy_rate = plain_copy(&mut client, n, devices, start);
    println!(
        "postgres: shipper {rate:.0} attempts/s, plain binary COPY of the same rows into a copy of the table \
         (same indexes, same database, this run) {copy_rate:.0} rows/s; shipper / COPY = {:.2}",
        rate / copy_rate
    );
    let relation = |client: &mut postgres::Client, table: &str| -> u64 {
        let sql = format!("SELECT pg_total_relation_size('{table}')");
        client.query_one(sql.as_str(), &[]).unwrap().get::<_, i64>(0) as u64
    };
    let (raw, rolled) = (relation(&mut client, "attempts"), relation(&mut client, "rollups"));
    println!(
        "postgres write: {n} attempts, {rate:.0} attempts/s sustained; {:.1} MB per million raw, {:.2} MB per million as rollups",
        mb(raw + rolled) * 1e6 / n as f64,
        mb(rolled) * 1e6 / n as f64
    );

    // SQLite with rollups only: the raw rows purged (as after raw_days), then VACUUM.
    let copy = dir.path().join("rollups-only.sqlite");
    std::fs::copy(&path, &copy).unwrap();
    let connection = store::open(&copy, false).unwrap();
    let purged = store::purge(&connection, now + Duration::from_secs(86_400), 1, 183).unwrap();
    connection.execute_batch("VACUUM").unwrap();
    drop(connection);
    println!(
        "sqlite after the purge of {purged} raw rows: {:.2} MB per million attempts as rollups",
        mb(std::fs::metadata(&copy).unwrap().len()) * 1e6 / n as f64
    );

    // A long history of rollups on both backends, then the reports.
    let began = Instant::now();
    let mut sqlite_db = store::sqlite::open_writable(&path, "ns1").unwrap();
    let mut pg_client = store::postgres::connect(&postgres).unwrap();
    for batch in history(days, devices, today) {
        store::sqlite::insert_rollups(&mut sqlite_db, &batch).unwrap();
        store::postgres::add_rollups(&mut pg_client, &batch).unwrap();
    }
    pg_client.batch_execute("ANALYZE").unwrap();
    println!(
        "history: rollups of {days} days x {devices} devices x {} apps on both backends in {:.1} s",
        APPS.len(),
        began.elapsed().as_secs_f64()
    );
    time_reports(&path.display().to_string(), &sqlite, now);
    time_reports(&cluster.url(), &postgres, now);
}
