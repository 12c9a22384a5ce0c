//! Console page latency at scale, on SQLite and on PostgreSQL (a throwaway cluster): every page
//! the officer reads, served in-process by the console's router (the HTTP server's own cost is
//! not in it), asked by `USERS` signed-in officers at once, `ROUNDS` times each; p50, p95 and
//! max per page. Then the board report and the 90-day summary, one at a time.
//!
//! The store is the realistic 90-day history of `tests/it/common/history.rs` (`ATTEMPTS`
//! attempts from `DEVICES` devices, 2 % with an installed app; raw rows for the last 14 days,
//! rollups for all 90), written straight into each backend; its generation time and size on
//! disk are printed. `WORST` attempts (0: none) of the rollups' worst case follow: spread evenly
//! over `DEVICES` devices × 3 apps × 90 days, fewer than one per device, app and day, so nothing
//! folds; written through the store's own writer (`insert`: raw rows and the rollup upsert).
//!
//! `cargo bench --bench console`: 50 M attempts, 5 000 devices, 5 users × 20 rounds, WORST 1 M,
//! BACKENDS `sqlite,postgres`. Under `cargo test` it runs once on 10 000 attempts from 50 devices, and a worst case of 2 000.

#[path = "../tests/it/common/history.rs"]
#[allow(dead_code)]
mod history;
#[path = "../tests/it/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use history::Shape;
use nxguard::{
    config::{ConsoleConfig, StoreBackend, StoreConfig, StoreTls},
    evidence::store::{self, DAY_MS, Record},
    review::{
        board,
        console::{self, Console, auth, cases},
        report::{self, Filter},
    },
};
use tower::ServiceExt;

fn env(name: &str, bench: usize, test: usize, big: bool) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(if big { bench } else { test })
}

/// Wall-clock seconds and load average, for the figures' conditions.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ")
}

/// The rollups' worst case: `n` attempts evenly over 90 days, `devices` devices and 3 apps.
fn worst_records(n: usize, devices: usize, now_ms: i64) -> impl Iterator<Item = Record> {
    let shape = Shape::realistic(0, devices, now_ms);
    let start = now_ms - 90 * DAY_MS;
    (0..n).map(move |i| {
        let e = history::Event {
            ts_ms: start + (i as i64 * 90 * DAY_MS) / n.max(1) as i64,
            device: (i % devices) as u32,
            node: 0,
            app: i % 3,
            kind: if i % 4 == 0 { 3 } else { 0 },
            n: i as u32,
        };
        shape.record(&e)
    })
}

fn postgres_config(cluster: &pg::PgCluster, dir: &Path, database: &str) -> StoreConfig {
    StoreConfig {
        backend: StoreBackend::Postgres,
        url: Some(format!("postgres://{}@127.0.0.1:{}/{database}", pg::ROLE, cluster.port)),
        password_file: Some(cluster.password_file(dir)),
        tls: StoreTls::Disable,
        ..StoreConfig::default()
    }
}

/// A store to measure: its source (path or URL) and settings.
struct Store {
    name: String,
    source: String,
    config: StoreConfig,
}

fn generated_sqlite(dir: &Path, shape: &Shape) -> Store {
    let path = dir.join(format!("history-{}-{}.sqlite", shape.attempts, shape.devices));
    let config = StoreConfig { path: Some(path.clone()), ..StoreConfig::default() };
    if path.exists() {
        println!("sqlite history: reusing {} (load {})", path.display(), load());
        return Store { name: "sqlite".into(), source: path.display().to_string(), config };
    }
    let began = Instant::now();
    let written = history::write_sqlite(&path, shape);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "sqlite history: {} attempts ({} raw rows, {} rollup rows) written in {:.0} s; {:.2} GB on disk, \
         {:.2} GB per 50 M attempts (load {})",
        written.attempts,
        written.raw_rows,
        written.rollup_rows,
        began.elapsed().as_secs_f64(),
        size as f64 / 1e9,
        size as f64 / 1e9 * 50e6 / written.attempts.max(1) as f64,
        load()
    );
    Store { name: "sqlite".into(), source: path.display().to_string(), config }
}

fn generated_postgres(cluster: &pg::PgCluster, dir: &Path, shape: &Shape) -> Store {
    let config = postgres_config(cluster, dir, pg::ROLE);
    let mut client = store::postgres::connect(&config).unwrap();
    store::postgres::migrate(&mut client, &config).unwrap();
    // A day's COPY of 50 M attempts' history outlasts the store's statement timeout.
    client.batch_execute("SET statement_timeout = 0").unwrap();
    let began = Instant::now();
    let written = history::write_postgres(&mut client, shape);
    let size: i64 = client.query_one("SELECT pg_database_size(current_database())", &[]).unwrap().get(0);
    println!(
        "postgres history: {} attempts ({} raw rows, {} rollup rows) written in {:.0} s; {:.2} GB on disk, \
         {:.2} GB per 50 M attempts (load {})",
        written.attempts,
        written.raw_rows,
        written.rollup_rows,
        began.elapsed().as_secs_f64(),
        size as f64 / 1e9,
        size as f64 / 1e9 * 50e6 / written.attempts.max(1) as f64,
        load()
    );
    Store { name: "postgres".into(), source: config.url.clone().unwrap(), config }
}

fn worst_sqlite(dir: &Path, n: usize, devices: usize, now_ms: i64) -> Store {
    let path = dir.join(format!("worst-{n}-{devices}.sqlite"));
    let config = StoreConfig { path: Some(path.clone()), raw_days: 90, ..StoreConfig::default() };
    if !path.exists() {
        let mut db = store::sqlite::open_writable(&path, "ns1").unwrap();
        let records: Vec<Record> = worst_records(n, devices, now_ms).collect();
        for batch in records.chunks(50_000) {
            store::sqlite::insert(&mut db, batch).unwrap();
        }
    }
    Store { name: format!("sqlite, worst case {n}"), source: path.display().to_string(), config }
}

fn worst_postgres(cluster: &pg::PgCluster, dir: &Path, n: usize, devices: usize, now_ms: i64) -> Store {
    let mut admin = cluster.client("postgres", "postgres");
    admin.batch_execute(&format!("CREATE DATABASE worst OWNER {}", pg::ROLE)).unwrap();
    let config = StoreConfig { raw_days: 90, ..postgres_config(cluster, dir, "worst") };
    let mut client = store::postgres::connect(&config).unwrap();
    store::postgres::migrate(&mut client, &config).unwrap();
    let records: Vec<Record> = worst_records(n, devices, now_ms).collect();
    for batch in records.chunks(50_000) {
        store::postgres::insert(&mut client, batch).unwrap();
    }
    client.batch_execute("VACUUM ANALYZE").unwrap();
    Store { name: format!("postgres, worst case {n}"), source: config.url.clone().unwrap(), config }
}

async fn get(app: &axum::Router, uri: &str, cookie: &str) -> (StatusCode, usize) {
    let request = Request::builder().uri(uri).header(header::COOKIE, cookie).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, body.len())
}

/// A console on `store` with a signed-in officer and cases: open ones on installed devices,
/// removals (some recur, some are verified by now) on occasional ones.
fn console_on(store: &Store, dir: &Path, now: SystemTime) -> (Arc<Console>, String) {
    let state_path = dir.join(format!("console-{}.sqlite", store.name.replace([' ', ','], "-")));
    for stale in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{stale}", state_path.display()));
    }
    let config = ConsoleConfig { state_path: Some(state_path), ..ConsoleConfig::default() };
    let sqlite_path = store.config.path.clone().unwrap_or_else(|| dir.join("none.sqlite"));
    let mut console = Console::open(config, sqlite_path, None, Arc::new(move || now)).unwrap();
    console.read_store(&store.source, store.config.clone()).unwrap();
    // SHARE=0: every request computes its own summary (the cost without the shared summaries).
    if std::env::var("SHARE").is_ok_and(|v| v == "0") {
        console.share_summaries(None);
    }
    let db = console.db().unwrap();
    auth::add_user(&db, "bench", auth::Role::Officer, "benchmark password", now).unwrap();
    let (id, _) = auth::start_session(&db, "bench", now).unwrap();
    for i in 0..30u32 {
        let device = Shape::device_name(if i < 10 { 25 + 50 * i } else { 3 + 7 * i });
        let app = history::APPS[(i % 5) as usize].name;
        let case = cases::open(&db, &device, app, "Afdeling", "", "", now - Duration::from_secs(25 * 86_400)).unwrap();
        if i >= 10 {
            let removed = now - Duration::from_secs(u64::from(i) * 86_400);
            cases::update(&db, case, &cases::Change::Removed(removed), now).unwrap();
        }
    }
    (Arc::new(console), format!("{}={id}", auth::COOKIE))
}

/// The pages, each asked by `users` officers at once, `rounds` times each.
fn pages(console: &Arc<Console>, cookie: &str, users: usize, rounds: usize, runtime: &tokio::runtime::Runtime) {
    let app = console::router(Arc::clone(console));
    let installed = Shape::device_name(25);
    let device_30 = format!("/device?device={installed}&since=30d");
    let device_90 = format!("/device?device={installed}&since=90d");
    let list = [
        ("overview (default, 30 days)", "/"),
        ("overview, 7 days", "/?since=7d"),
        ("overview, 90 days", "/?since=90d"),
        ("devices (30 days)", "/devices"),
        ("devices, 90 days", "/devices?since=90d"),
        ("device page, installed, 30 days", device_30.as_str()),
        ("device page, installed, 90 days", device_90.as_str()),
        ("cases", "/cases"),
        ("export summary CSV (30 days)", "/export/summary.csv"),
    ];
    for (name, uri) in list {
        let began = Instant::now();
        let (status, bytes) = runtime.block_on(get(&app, uri, cookie));
        let alone = began.elapsed();
        assert_eq!(status, StatusCode::OK, "{uri}");
        let mut times: Vec<Duration> = runtime.block_on(async {
            let tasks: Vec<_> = (0..users)
                .map(|_| {
                    let (app, uri, cookie) = (app.clone(), uri.to_string(), cookie.to_string());
                    tokio::spawn(async move {
                        let mut times = Vec::new();
                        for _ in 0..rounds {
                            let began = Instant::now();
                            assert_eq!(get(&app, &uri, &cookie).await.0, StatusCode::OK, "{uri}");
                            times.push(began.elapsed());
                        }
                        times
                    })
                })
                .collect();
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.unwrap());
            }
            all
        });
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "  {name:34} alone {:7.1} ms  p50 {:7.1} ms  p95 {:7.1} ms  max {:7.1} ms  ({bytes} bytes)",
            alone.as_secs_f64() * 1e3,
            at(0.5).as_secs_f64() * 1e3,
            at(0.95).as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3
        );
    }
}

/// The board report (30 and 90 days) and the 90-day summary, one at a time, best of three.
fn reports(store: &Store, console: &Console, now: SystemTime, runtime: &tokio::runtime::Runtime) {
    let limits = store::read::Limits::COMMAND_LINE;
    let mut dbs = [store::read::Reader::open(&store.source, &store.config, limits).unwrap()];
    let all_cases = cases::list(&console.db().unwrap(), None).unwrap();
    let base = Filter { until: Some(now), now: Some(now), raw_days: store.config.raw_days, ..Filter::default() };
    let back = |days: u64| Some(now - Duration::from_secs(days * 86_400));
    let config = ConsoleConfig::default();
    for (name, days) in [("board report, 30 days", 30), ("board report, 90 days", 90), ("summary, 90 days", 90)] {
        let filter = Filter { since: back(days), ..base.clone() };
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let began = Instant::now();
            if name.starts_with("board") {
                runtime.block_on(board::render(&mut dbs, &all_cases, &filter, None, false, now, &config)).unwrap();
            } else {
                runtime.block_on(report::summaries(&mut dbs, &filter, None)).unwrap();
            }
            best = best.min(began.elapsed());
        }
        println!("  {name:34} {:7.1} ms (best of 3)", best.as_secs_f64() * 1e3);
    }
}

fn measure(store: &Store, dir: &Path, now: SystemTime, users: usize, rounds: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (console, cookie) = console_on(store, dir, now);
    println!("{}: {users} officers at once, {rounds} requests each per page (load {}):", store.name, load());
    pages(&console, &cookie, users, rounds, &runtime);
    reports(store, &console, now, &runtime);
}

fn main() {
    let big = std::env::args().any(|a| a == "--bench");
    let attempts = env("ATTEMPTS", 50_000_000, 10_000, big) as u64;
    let devices = env("DEVICES", 5000, 50, big);
    let users = env("USERS", 5, 2, big).max(1);
    let rounds = env("ROUNDS", 20, 1, big).max(1);
    let worst = env("WORST", 1_000_000, 2_000, big);
    let backends = std::env::var("BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    if std::env::var_os("PROFILE").is_some() {
        tracing_subscriber::fmt().with_env_filter("nxguard::evidence::store::read=debug").init();
    }
    let temporary = tempfile::tempdir().unwrap();
    // STORE_DIR keeps the SQLite stores (and reuses them when present), for profiling them.
    let kept = std::env::var_os("STORE_DIR").map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(temporary.path());
    // 10:07 UTC: the last day is partial, and the purge's cutoff falls inside a day.
    let now_ms = 20_790 * DAY_MS + 36_420_000;
    let now = UNIX_EPOCH + Duration::from_millis(now_ms as u64);
    let shape = Shape::realistic(attempts, devices, now_ms);
    let mut stores = Vec::new();
    if backends.contains("sqlite") {
        stores.push(generated_sqlite(dir, &shape));
        if worst > 0 {
            stores.push(worst_sqlite(dir, worst, devices, now_ms));
        }
    }
    let cluster = backends.contains("postgres").then(pg::PgCluster::start);
    if let Some(cluster) = &cluster {
        stores.push(generated_postgres(cluster, dir, &shape));
        if worst > 0 {
            stores.push(worst_postgres(cluster, dir, worst, devices, now_ms));
        }
    }
    for store in &stores {
        measure(store, dir, now, users, rounds);
    }
    hold(cluster.as_ref(), dir);
}

/// `HOLD_SECS`: keeps the throwaway PostgreSQL up this long after the run, for `psql` and
/// `EXPLAIN (ANALYZE, BUFFERS)` on its stores.
fn hold(cluster: Option<&pg::PgCluster>, dir: &Path) {
    let secs = env("HOLD_SECS", 0, 0, true) as u64;
    if let (Some(cluster), true) = (cluster, secs > 0) {
        println!(
            "holding PostgreSQL {secs} s: psql -h 127.0.0.1 -p {} -U {} (password file {})",
            cluster.port,
            pg::ROLE,
            cluster.password_file(dir).display()
        );
        std::thread::sleep(Duration::from_secs(secs));
    }
}
