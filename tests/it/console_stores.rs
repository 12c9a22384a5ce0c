//! The console over each store backend, in-process (tower `oneshot`) on a multi-threaded
//! runtime: every page that reads evidence on a real PostgreSQL (it used to panic there:
//! "Cannot start a runtime from within a runtime"), a down or locked database answering 503
//! "evidence store unreachable" while other pages go on, recovery once it is back, and several
//! users at once on both backends.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::common;
use crate::common::pg::PgCluster;
use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Request, StatusCode, header},
};
use nxguard::{
    config::{ConsoleConfig, PolicyConfig, StoreConfig, StoreTls},
    evidence::{
        attempt::Attempt,
        store::{self, Record},
    },
    policy::{AppEntry, domains::Kind},
    review::console::{
        self, Console,
        auth::{self, Peer, Role},
    },
};
use tower::ServiceExt;

/// 2026-11-20T00:00:00Z.
const DAY0: u64 = 1_795_132_800;
const DAY: u64 = 86_400;
const PASSWORD: &str = "correct horse battery staple";

fn tiktok() -> Arc<AppEntry> {
    common::app("tiktok", "TikTok", "ByteDance")
}

/// LT-0001 runs TikTok (API hits on three days), LT-0002 followed a link.
fn attempts() -> Vec<Attempt> {
    let app = tiktok();
    let hit = |at: u64, device: &str, ip: &str, qname: &str, kind: Kind| {
        common::attempt(qname, &app, kind)
            .domain(qname.split_once('.').map_or(qname, |(_, d)| d))
            .device(ip, device, "Burgerzaken")
            .at(at)
            .build()
    };
    vec![
        hit(DAY0 + 9 * 3600, "LT-0001", "10.20.1.1", "api16.tiktokv.com", Kind::Api),
        hit(DAY0 + DAY + 10 * 3600, "LT-0001", "10.20.1.1", "api16.tiktokv.com", Kind::Api),
        hit(DAY0 + 2 * DAY + 8 * 3600, "LT-0001", "10.20.1.1", "mon.byteoversea.com", Kind::Telemetry),
        hit(DAY0 + DAY + 14 * 3600, "LT-0002", "10.20.2.2", "www.tiktok.com", Kind::Web),
    ]
}

fn pg_config(cluster: &PgCluster, dir: &Path) -> StoreConfig {
    StoreConfig {
        url: Some(cluster.url()),
        password_file: Some(cluster.password_file(dir)),
        tls: StoreTls::Disable,
        ..StoreConfig::default()
    }
}

/// A cluster holding the attempts, written by two nodes (blocking client: on its own thread).
async fn postgres_store(dir: &Path) -> (PgCluster, StoreConfig) {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let cluster = PgCluster::start();
        let config = pg_config(&cluster, &dir);
        let mut client = store::postgres::connect(&config).unwrap();
        store::postgres::migrate(&mut client, &config).unwrap();
        let records: Vec<Record> =
            attempts().iter().enumerate().map(|(i, a)| Record::of(a, None, ["ns1", "ns2"][i % 2])).collect();
        store::postgres::insert(&mut client, &records).unwrap();
        (cluster, config)
    })
    .await
    .unwrap()
}

/// A console at 2026-11-23T00:00:00Z reading `source`, with an officer signed in: its router
/// and the session cookie.
async fn console_on(dir: &Path, source: &str, store: StoreConfig, timeout_ms: u64) -> (Router, String) {
    let config = ConsoleConfig {
        state_path: Some(dir.join("console.sqlite")),
        store_timeout_ms: timeout_ms,
        ..ConsoleConfig::default()
    };
    console_with(config, source, store).await
}

async fn console_with(config: ConsoleConfig, source: &str, store: StoreConfig) -> (Router, String) {
    let dir = config.state_path.clone().unwrap().parent().unwrap().to_path_buf();
    let now = UNIX_EPOCH + Duration::from_secs(DAY0 + 3 * DAY);
    let mut console = Console::open(config, dir.join("unused.sqlite"), None, Arc::new(move || now)).unwrap();
    console.read_store(source, store).unwrap();
    console.policy = Some(PolicyConfig::default());
    auth::add_user(&console.db().unwrap(), "officer", Role::Officer, PASSWORD, SystemTime::now()).unwrap();
    let app = console::router(Arc::new(console));
    let reply = crate::console::post_login(&app, "officer", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let cookie = reply.cookie.split(';').next().unwrap().to_string();
    (app, cookie)
}

/// Status, Set-Cookie and body of one request.
async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    if form.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let mut request = request.body(Body::from(form.unwrap_or("").to_string())).unwrap();
    request.extensions_mut().insert(ConnectInfo(Peer("127.0.0.9:41000".parse().unwrap())));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let cookie = response.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_string());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, cookie.unwrap_or_default(), String::from_utf8_lossy(&body).into_owned())
}

async fn get(app: &Router, cookie: &str, uri: &str) -> (StatusCode, String) {
    let (status, _, body) = send(app, "GET", uri, Some(cookie), None).await;
    (status, body)
}

/// Every page that reads the evidence, and what each must show.
const PAGES: [(&str, &str); 7] = [
    ("/?since=7d", "LT-0001"),
    ("/devices?since=7d", "LT-0002"),
    ("/device?device=LT-0001&since=7d", "api16.tiktokv.com"),
    ("/app?app=TikTok&since=7d", "tiktokv.com"),
    ("/cases", "id=\"cases\""),
    ("/export/summary.csv?since=7d", "LT-0001,Burgerzaken"),
    ("/api/v1/summary?since=7d", "\"app likely installed\""),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_evidence_page_works_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, config) = postgres_store(dir.path()).await;
    let (app, cookie) = console_on(dir.path(), &cluster.url(), config, 10_000).await;
    for (uri, wanted) in PAGES {
        let (status, body) = get(&app, &cookie, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert!(body.contains(wanted), "{uri} lacks {wanted:?}: {body}");
    }
    // Hits of both nodes on the device page: the store's two writers.
    let (_, device) = get(&app, &cookie, "/device?device=LT-0001&since=7d").await;
    assert_eq!(device.matches("api16.tiktokv.com").count(), 2, "{device}");
    let (_, csv) = get(&app, &cookie, "/export/summary.csv?since=7d").await;
    assert!(csv.lines().next().unwrap().ends_with(",nodes"), "two nodes wrote the rows: {csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_database_answers_503_other_pages_go_on_and_the_pages_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, config) = postgres_store(dir.path()).await;
    let (app, cookie) = console_on(dir.path(), &cluster.url(), config, 2_000).await;
    assert_eq!(get(&app, &cookie, "/devices?since=7d").await.0, StatusCode::OK);
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .unwrap();
    // The case list reads the store only for removed cases (there are none here).
    for (uri, _) in PAGES.iter().filter(|(uri, _)| *uri != "/cases") {
        let (status, body) = get(&app, &cookie, uri).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {body}");
        assert!(body.contains("evidence store unreachable: PostgreSQL store postgres://"), "{uri}: {body}");
    }
    for uri in ["/lists", "/cases"] {
        assert_eq!(get(&app, &cookie, uri).await.0, StatusCode::OK, "{uri} needs no store and goes on");
    }
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_server();
        cluster
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(&app, &cookie, "/devices?since=7d").await;
        if status == StatusCode::OK {
            assert!(body.contains("LT-0001"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the console did not reach the restarted database: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_stuck_on_a_locked_table_do_not_hold_up_the_others_and_end_in_503() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, config) = postgres_store(dir.path()).await;
    let (app, cookie) = console_on(dir.path(), &cluster.url(), config, 3_000).await;
    // A transaction holding an exclusive lock on the rollups: every summary waits for it.
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let (mut client, cluster) = tokio::task::spawn_blocking(move || (cluster.nxguard(), cluster)).await.unwrap();
    let holder = std::thread::spawn(move || {
        let mut tx = client.transaction().unwrap();
        tx.batch_execute("LOCK TABLE rollups IN ACCESS EXCLUSIVE MODE").unwrap();
        locked_tx.send(()).unwrap();
        let _ = release.recv();
        tx.rollback().unwrap();
    });
    locked.recv().unwrap();
    // More stuck pages than the runtime has workers: blocking calls would stall every page.
    let stuck: Vec<_> = (0..4)
        .map(|_| {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move { get(&app, &cookie, "/devices?since=7d").await })
        })
        .collect();
    for uri in ["/lists", "/login"] {
        let (status, _, _) = send(&app, "GET", uri, Some(&cookie), None).await;
        assert_eq!(status, StatusCode::OK, "{uri} while the store is locked");
    }
    for page in stuck {
        let (status, body) = page.await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("evidence store unreachable"), "{body}");
    }
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(get(&app, &cookie, "/devices?since=7d").await.0, StatusCode::OK);
    drop(cluster);
}

/// Every page twice, all at once: all answered, with their evidence.
async fn several_users_at_once(app: &Router, cookie: &str) {
    let together: Vec<_> = PAGES
        .iter()
        .cycle()
        .take(2 * PAGES.len())
        .map(|(uri, _)| {
            let (app, cookie, uri) = (app.clone(), cookie.to_string(), uri.to_string());
            tokio::spawn(async move { get(&app, &cookie, &uri).await })
        })
        .collect();
    for (i, page) in together.into_iter().enumerate() {
        let (status, body) = page.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{}: {body}", PAGES[i % PAGES.len()].0);
        assert!(body.contains(PAGES[i % PAGES.len()].1), "{}", PAGES[i % PAGES.len()].0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_users_at_once_on_sqlite_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attempts.sqlite");
    store::insert_all(&path, &attempts(), None, "ns1").unwrap();
    let sqlite_dir = dir.path().join("sqlite");
    std::fs::create_dir(&sqlite_dir).unwrap();
    let (app, cookie) = console_on(&sqlite_dir, &path.display().to_string(), StoreConfig::default(), 10_000).await;
    several_users_at_once(&app, &cookie).await;
    let (cluster, config) = postgres_store(dir.path()).await;
    let (app, cookie) = console_on(dir.path(), &cluster.url(), config, 10_000).await;
    several_users_at_once(&app, &cookie).await;
}

/// LT-0001's last hit, 2026-11-22T08:00:00Z, as each reader sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_the_board_show_local_times_exports_and_the_api_keep_utc() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attempts.sqlite");
    store::insert_all(&path, &attempts(), None, "ns1").unwrap();
    let source = path.display().to_string();
    let state = |name: &str| Some(dir.path().join(name));
    // The default: Europe/Amsterdam (UTC+1 in November), in Dutch.
    let config = ConsoleConfig { state_path: state("nl.sqlite"), ..ConsoleConfig::default() };
    let (app, cookie) = console_with(config, &source, StoreConfig::default()).await;
    let (_, devices) = get(&app, &cookie, "/devices?since=7d").await;
    assert!(devices.contains("22 nov 2026 09:00") && !devices.contains("2026-11-22T08:00:00Z"), "{devices}");
    let (_, device) = get(&app, &cookie, "/device?device=LT-0001&since=7d").await;
    assert!(device.contains("<td>22 nov 2026 09:00</td>"), "the hit's time: {device}");
    let (_, csv) = get(&app, &cookie, "/export/summary.csv?since=7d").await;
    assert!(csv.contains("2026-11-22T08:00:00Z") && !csv.contains("nov 2026"), "{csv}");
    let (_, json) = get(&app, &cookie, "/api/v1/summary?since=7d").await;
    assert!(json.contains("\"last_seen\":\"2026-11-22T08:00:00Z\""), "{json}");
    // Another zone and language.
    let config = ConsoleConfig {
        state_path: state("en.sqlite"),
        language: nxguard::config::Language::En,
        time_zone: "America/New_York".into(),
        ..ConsoleConfig::default()
    };
    let (app, cookie) = console_with(config, &source, StoreConfig::default()).await;
    let (_, devices) = get(&app, &cookie, "/devices?since=7d").await;
    assert!(devices.contains("22 Nov 2026 03:00"), "{devices}");
    // The board report, from the command line on the same store.
    let toml = dir.path().join("board.toml");
    let text = format!(
        "[[upstream.servers]]\naddress = \"127.0.0.1:9\"\n[store]\npath = {source:?}\n[console]\ntime_zone = \"Asia/Tokyo\"\n"
    );
    std::fs::write(&toml, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["report", "--format", "html", "--with-identities", "--now", "2026-11-23T00:00:00Z", "--since", "7d"])
        .arg("--config")
        .arg(&toml)
        .output()
        .unwrap();
    let board = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && board.contains("<td>22 nov 2026 17:00</td>"), "{board}");
    assert!(board.contains("23 nov 2026 09:00."), "written at, local: {board}");
}

#[test]
fn an_unknown_time_zone_is_a_config_problem() {
    let config = ConsoleConfig { time_zone: "Europe/Atlantis".into(), ..ConsoleConfig::default() };
    let problems = config.problems();
    assert!(problems.iter().any(|p| p.starts_with("console.time_zone: \"Europe/Atlantis\"")), "{problems:?}");
    assert!(ConsoleConfig::default().problems().is_empty());
}

/// Officers asking for the same summary share one computation, keyed by the store's newest
/// attempt: rollups deleted without a new attempt (as a purge does) are not seen while the shared
/// summary lives; a new attempt is seen at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_summary_is_shared_until_a_new_attempt_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attempts.sqlite");
    store::insert_all(&path, &attempts(), None, "ns1").unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(DAY0 + 3 * DAY);
    let config = ConsoleConfig { state_path: Some(dir.path().join("console.sqlite")), ..ConsoleConfig::default() };
    let mut console = Console::open(config, path.clone(), None, Arc::new(move || now)).unwrap();
    console.share_summaries(Some(Duration::from_secs(3600)));
    auth::add_user(&console.db().unwrap(), "officer", Role::Officer, PASSWORD, SystemTime::now()).unwrap();
    let app = console::router(Arc::new(console));
    let reply = crate::console::post_login(&app, "officer", PASSWORD).await;
    let cookie = reply.cookie.split(';').next().unwrap().to_string();
    let (status, before) = get(&app, &cookie, "/devices?since=7d").await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert!(before.contains("LT-0002"), "{before}");
    let db = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(db.execute("DELETE FROM rollups WHERE device_key = 'LT-0002'", []).unwrap(), 1);
    let (_, shared) = get(&app, &cookie, "/devices?since=7d").await;
    assert!(shared.contains("LT-0002"), "the shared summary: {shared}");
    let mut later = attempts().remove(3);
    later.identity.device = Some("LT-0003".into());
    later.time = UNIX_EPOCH + Duration::from_secs(DAY0 + 2 * DAY + 12 * 3600);
    store::insert_all(&path, &[later], None, "ns1").unwrap();
    let (_, fresh) = get(&app, &cookie, "/devices?since=7d").await;
    assert!(fresh.contains("LT-0003") && !fresh.contains("LT-0002"), "computed again: {fresh}");
}
