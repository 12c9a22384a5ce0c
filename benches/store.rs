//! Attempt store benchmark, on SQLite and on PostgreSQL (a throwaway cluster, as in the tests):
//! - how many attempts per second each writer sustains, through the same bounded queue the
//!   server uses (PostgreSQL: through the spool, binary COPY and the rollup upsert), and the CPU
//!   per attempt of this process and of the PostgreSQL server; on PostgreSQL for attempts in a
//!   50 k/s stream and spread over 90 days (a rollup row each), each against a plain binary
//!   COPY of the same rows in the same run;
//! - the store's size per million attempts, with raw rows and with rollups only;
//! - `report` over a long history: the rollups of DAYS days × DEVICES devices × 11 apps plus the
//!   raw rows written above, on both backends (summary, a week, one app, one device's timeline).
//!
//! `cargo bench --bench store` writes 1 000 000 attempts and a 90 × 500 × 11 history (set
//! ATTEMPTS, DEVICES, DAYS to change; ONLY=sqlite stops after the SQLite writes, for callgrind).
//! Under `cargo test` it runs once on small sizes.

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

/// How the generated attempts are spaced in time.
#[derive(Clone, Copy)]
enum Spacing {
    /// 20 µs apart, as from a node recording 50 000 attempts a second: a batch's attempts fold
    /// into one rollup row per device, app and day (about one row per 9 attempts here).
    Stream,
    /// Spread over 90 days: fewer than one attempt per device, app and day, so every attempt
    /// gets a rollup row of its own (the rollups' worst case).
    Spread,
}

impl Spacing {
    fn step(self, n: usize) -> Duration {
        match self {
            Spacing::Stream => Duration::from_micros(20),
            Spacing::Spread => Duration::from_millis((90 * 86_400_000 / n.max(1)) as u64),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Spacing::Stream => "a 50 k/s stream",
            Spacing::Spread => "spread over 90 days (a rollup row per attempt)",
        }
    }
}

fn attempts(n: usize, devices: usize, start: SystemTime, spacing: Spacing) -> impl Iterator<Item = Attempt> {
    let apps: Vec<Arc<AppEntry>> = APPS
        .iter()
        .map(|(id, name, vendor)| {
            let app = App::new(id, name, vendor);
            let notice = app.notice();
            Arc::new(AppEntry { app, notice })
        })
        .collect();
    // In time order, as a server records them.
    let step = spacing.step(n);
    (0..n).map(move |i| {
        let device = i % devices;
        let ip = std::net::IpAddr::from([10, 20, (device / 250) as u8, (device % 250) as u8]);
        Attempt {
            time: start + step * i as u32,
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

/// The records of `attempts`, built before any clock starts.
fn records(n: usize, devices: usize, start: SystemTime, spacing: Spacing) -> Vec<Record> {
    attempts(n, devices, start, spacing).map(|a| Record::of(&a, None, "ns1")).collect()
}

/// A write rate and what it cost: CPU of this process (the writer's threads) and, on
/// PostgreSQL, of the server, per attempt.
struct Rate {
    per_second: f64,
    process_us: f64,
    server_us: f64,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} /s, CPU per attempt {:.1} µs here", self.per_second, self.process_us)?;
        if self.server_us > 0.0 {
            write!(f, " + {:.1} µs PostgreSQL", self.server_us)?;
        }
        Ok(())
    }
}

/// Runs `work` on `n` attempts and measures it (`server`: the cluster whose CPU counts too).
fn measure(n: usize, server: Option<&pg::PgCluster>, work: impl FnOnce()) -> Rate {
    let server_cpu = || server.map_or(Duration::ZERO, pg::PgCluster::cpu);
    let (began, cpu, server_began) = (Instant::now(), cpu_time(), server_cpu());
    work();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    Rate {
        per_second: n as f64 / began.elapsed().as_secs_f64(),
        process_us: per(cpu_time() - cpu),
        server_us: per(server_cpu() - server_began),
    }
}

/// Offers the records as fast as the writer's queue takes them, until the database holds them
/// all (PostgreSQL: the spool drained).
fn write(config: &StoreConfig, records: Vec<Record>, server: Option<&pg::PgCluster>) -> Rate {
    let n = records.len();
    let (sink, writer) = StoreWriter::start(config).unwrap().expect("a store");
    let stats = Arc::clone(&writer.stats);
    let rate = measure(n, server, || {
        for record in records {
            sink.send_waiting(record);
        }
        let mut last = (0, Instant::now());
        while stats.written.load(Ordering::Relaxed) < n as u64 {
            let written = stats.written.load(Ordering::Relaxed);
            if written > last.0 {
                last = (written, Instant::now());
            }
            let errors = stats.errors.load(Ordering::Relaxed);
            assert!(last.1.elapsed() < Duration::from_secs(60), "no progress; {errors} failed writes");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    drop(sink);
    writer.close();
    assert_eq!(stats.written.load(Ordering::Relaxed), n as u64, "every attempt written");
    rate
}

/// The physical limit the shipper is compared with: the same rows by plain binary COPY, in
/// batches of the shipper's size, one transaction each, into a copy of `attempts` (its indexes
/// too), nothing else (no spool, no rollups).
fn plain_copy(cluster: &pg::PgCluster, records: &[Record]) -> Rate {
    use postgres::{
        binary_copy::BinaryCopyInWriter,
        types::{ToSql, Type},
    };
    let mut client = cluster.nxguard();
    client.batch_execute("CREATE TABLE attempts_copy (LIKE attempts INCLUDING ALL)").unwrap();
    let types = [Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::INT4]
        .into_iter()
        .chain(std::iter::repeat_n(Type::TEXT, 19))
        .collect::<Vec<_>>();
    let sql = format!("COPY attempts_copy ({}) FROM STDIN BINARY", store::record::column_names().join(", "));
    let rate = measure(records.len(), Some(cluster), || {
        for batch in records.chunks(50_000) {
            let mut tx = client.transaction().unwrap();
            let mut writer = BinaryCopyInWriter::new(tx.copy_in(sql.as_str()).unwrap(), &types);
            for record in batch {
                let columns = record.columns();
                let values = columns.each_ref().map(|(_, value)| value as &(dyn ToSql + Sync));
                writer.write(&values).unwrap();
            }
            writer.finish().unwrap();
            tx.commit().unwrap();
        }
    });
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

/// The sizes of a run (environment, or the smoke sizes under `cargo test`).
struct Sizes {
    n: usize,
    devices: usize,
    days: usize,
}

/// Times of the generated history: it starts `start` and reports run at `now`, 90 days on.
struct Clock {
    start: SystemTime,
    now: SystemTime,
}

/// SQLite: the write rate in both spacings (each into a file of its own) and the size with
/// raw rows; `config.path` holds the spread run's rows afterwards.
fn sqlite_write(config: &StoreConfig, sizes: &Sizes, clock: &Clock) {
    let n = sizes.n;
    let path = config.path.clone().unwrap();
    for spacing in [Spacing::Stream, Spacing::Spread] {
        let file = match spacing {
            Spacing::Stream => path.with_file_name("stream.sqlite"),
            Spacing::Spread => path.clone(),
        };
        let config = StoreConfig { path: Some(file.clone()), ..config.clone() };
        let rate = write(&config, records(n, sizes.devices, clock.start, spacing), None);
        let size = std::fs::metadata(&file).unwrap().len();
        println!(
            "sqlite write: {n} attempts {}: {rate}; {:.1} MB per million",
            spacing.name(),
            mb(size) * 1e6 / n as f64
        );
    }
}

/// PostgreSQL: the shipper against a plain binary COPY of the same rows, in both spacings;
/// the database holds the spread run's rows afterwards (for the sizes and the reports).
fn postgres_write(cluster: &pg::PgCluster, config: &StoreConfig, sizes: &Sizes, clock: &Clock) {
    let n = sizes.n;
    store::postgres::migrate(&mut store::postgres::connect(config).unwrap(), config).unwrap();
    for spacing in [Spacing::Stream, Spacing::Spread] {
        let rows = records(n, sizes.devices, clock.start, spacing);
        let copy = plain_copy(cluster, &rows);
        cluster.nxguard().batch_execute("TRUNCATE attempts, rollups").unwrap();
        cluster.client("postgres", pg::ROLE).batch_execute("CHECKPOINT").unwrap();
        let rate = write(config, rows, Some(cluster));
        println!("postgres write: {n} attempts {}: shipper {rate}", spacing.name());
        println!(
            "postgres write: the same rows by plain binary COPY (same table and indexes, same database, this run): \
             {copy}; shipper / COPY = {:.2}",
            rate.per_second / copy.per_second
        );
    }
    let mut client = cluster.nxguard();
    let mut relation = |table: &str| -> u64 {
        let sql = format!("SELECT pg_total_relation_size('{table}')");
        client.query_one(sql.as_str(), &[]).unwrap().get::<_, i64>(0) as u64
    };
    let (raw, rolled) = (relation("attempts"), relation("rollups"));
    println!(
        "postgres size: {:.1} MB per million attempts raw, {:.2} MB per million as rollups",
        mb(raw + rolled) * 1e6 / n as f64,
        mb(rolled) * 1e6 / n as f64
    );
}

/// SQLite with rollups only: the raw rows purged (as after raw_days), then VACUUM.
fn sqlite_rollups_only(path: &std::path::Path, n: usize, clock: &Clock) {
    let copy = path.with_file_name("rollups-only.sqlite");
    std::fs::copy(path, &copy).unwrap();
    let connection = store::open(&copy, false).unwrap();
    let purged = store::purge(&connection, clock.now + Duration::from_secs(86_400), 1, 183).unwrap();
    connection.execute_batch("VACUUM").unwrap();
    drop(connection);
    println!(
        "sqlite after the purge of {purged} raw rows: {:.2} MB per million attempts as rollups",
        mb(std::fs::metadata(&copy).unwrap().len()) * 1e6 / n as f64
    );
}

/// A long history of rollups on both backends.
fn add_history(sqlite: &StoreConfig, postgres: &StoreConfig, sizes: &Sizes, clock: &Clock) {
    let began = Instant::now();
    let today = millis(clock.now).div_euclid(DAY_MS);
    let mut sqlite_db = store::sqlite::open_writable(sqlite.path.as_ref().unwrap(), "ns1").unwrap();
    let mut pg_client = store::postgres::connect(postgres).unwrap();
    for batch in history(sizes.days, sizes.devices, today) {
        store::sqlite::insert_rollups(&mut sqlite_db, &batch).unwrap();
        store::postgres::add_rollups(&mut pg_client, &batch).unwrap();
    }
    pg_client.batch_execute("ANALYZE").unwrap();
    println!(
        "history: rollups of {} days x {} devices x {} apps on both backends in {:.1} s",
        sizes.days,
        sizes.devices,
        APPS.len(),
        began.elapsed().as_secs_f64()
    );
}

fn main() {
    let big = std::env::args().any(|a| a == "--bench");
    let sizes = Sizes {
        n: env("ATTEMPTS", 1_000_000, 20_000, big),
        devices: env("DEVICES", 500, 50, big),
        days: env("DAYS", 90, 3, big),
    };
    let dir = tempfile::tempdir().unwrap();
    let start = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let clock = Clock { start, now: start + Duration::from_secs(90 * 86_400) };
    // Nothing purged while writing: the generated times lie months back.
    let keep = StoreConfig { raw_days: 183, retention_days: 183, node: Some("ns1".into()), ..StoreConfig::default() };
    let path = dir.path().join("attempts.sqlite");
    let sqlite = StoreConfig { path: Some(path.clone()), ..keep.clone() };
    sqlite_write(&sqlite, &sizes, &clock);
    if std::env::var("ONLY").is_ok_and(|only| only == "sqlite") {
        return;
    }
    let cluster = pg::PgCluster::start();
    let postgres = StoreConfig {
        backend: StoreBackend::Postgres,
        url: Some(cluster.url()),
        password_file: Some(cluster.password_file(dir.path())),
        tls: StoreTls::Disable,
        spool_dir: Some(dir.path().join("spool")),
        ..keep
    };
    postgres_write(&cluster, &postgres, &sizes, &clock);
    sqlite_rollups_only(&path, sizes.n, &clock);
    add_history(&sqlite, &postgres, &sizes, &clock);
    time_reports(&path.display().to_string(), &sqlite, clock.now);
    time_reports(&cluster.url(), &postgres, clock.now);
}
