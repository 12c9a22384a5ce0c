//! The console's handlers in-process (tower `oneshot`, no socket): sign-in, roles, CSRF,
//! lockout, the audit log, CSV export against `nxguard report`, and removal cases driven by
//! injected attempts and an injected clock.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::common;
use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Request, StatusCode, header},
};
use nxguard::{
    config::{ConsoleConfig, Language, PolicyConfig},
    evidence::{attempt::Attempt, store},
    policy::{AppEntry, domains::Kind},
    review::console::{
        self, Console,
        auth::{self, Peer, Role},
        cases::{self, CaseState, Change},
    },
};
use tower::ServiceExt;

/// 2026-11-20T00:00:00Z.
pub(crate) const DAY0: u64 = 1_795_132_800;
pub(crate) const DAY: u64 = 86_400;
pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) fn app(id: &str, name: &str) -> Arc<AppEntry> {
    common::app(id, name, "vendor")
}

pub(crate) fn attempt(
    at: u64,
    device: Option<(&str, &str)>,
    ip: &str,
    qname: &str,
    app: &Arc<AppEntry>,
    kind: Kind,
) -> Attempt {
    let domain = qname.split('.').rev().take(2).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(".");
    let built = common::attempt(qname, app, kind).domain(&domain).at(at);
    match device {
        Some((name, owner)) => built.device(ip, name, owner),
        None => built.unknown(ip),
    }
    .build()
}

/// LT-0001 runs TikTok (API hits on three days); LT-0002 clicked a TikTok link; an unknown
/// address hit WeChat; a device whose name and owner are spreadsheet formulas hit Temu.
fn fixture(dir: &Path) -> PathBuf {
    let (tiktok, temu, wechat) = (app("tiktok", "TikTok"), app("temu", "Temu"), app("wechat", "WeChat"));
    let lt1 = Some(("LT-0001", "Burgerzaken"));
    let lt2 = Some(("LT-0002", "Sociaal Domein"));
    let attempts = vec![
        attempt(DAY0 + 9 * 3600, lt1, "10.20.1.1", "api16-normal-c.tiktokv.com", &tiktok, Kind::Api),
        attempt(DAY0 + DAY + 10 * 3600, lt1, "10.20.1.1", "api16-normal-c.tiktokv.com", &tiktok, Kind::Api),
        attempt(DAY0 + 2 * DAY + 8 * 3600, lt1, "10.20.1.7", "mon.byteoversea.com", &tiktok, Kind::Telemetry),
        attempt(DAY0 + DAY + 14 * 3600, lt2, "10.20.2.2", "www.tiktok.com", &tiktok, Kind::Web),
        attempt(DAY0 + 16 * 3600, None, "10.30.0.9", "long.weixin.qq.com", &wechat, Kind::Api),
        attempt(
            DAY0 + 2 * DAY,
            Some(("@evil", "=HYPERLINK(\"http://x\")")),
            "10.40.0.1",
            "api.temu.com",
            &temu,
            Kind::Api,
        ),
    ];
    let path = dir.join("attempts.sqlite");
    store::insert_all(&path, &attempts, None, "ns1").unwrap();
    path
}

pub(crate) struct Setup {
    _dir: tempfile::TempDir,
    pub(crate) store: PathBuf,
    pub(crate) console: Arc<Console>,
    /// The console's clock, seconds since 1970.
    pub(crate) clock: Arc<AtomicU64>,
}

/// A console over the fixture at 2026-11-23T00:00:00Z, with users viewer, officer and admin.
pub(crate) fn setup() -> Setup {
    setup_with(|_| {})
}

/// `setup` with the console's config changed by `change`.
pub(crate) fn setup_with(change: impl FnOnce(&mut ConsoleConfig)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path());
    let clock = Arc::new(AtomicU64::new(DAY0 + 3 * DAY));
    let now = Arc::clone(&clock);
    let mut config = ConsoleConfig { state_path: Some(dir.path().join("console.sqlite")), ..ConsoleConfig::default() };
    change(&mut config);
    let mut console = Console::open(
        config,
        store.clone(),
        None,
        Arc::new(move || UNIX_EPOCH + Duration::from_secs(now.load(Ordering::SeqCst))),
    )
    .unwrap();
    console.policy = Some(PolicyConfig::default());
    for (name, role) in [("viewer", Role::Viewer), ("officer", Role::Officer), ("admin", Role::Admin)] {
        auth::add_user(&console.db().unwrap(), name, role, PASSWORD, SystemTime::now()).unwrap();
    }
    Setup { _dir: dir, store, console: Arc::new(console), clock }
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) location: String,
    pub(crate) cookie: String,
    pub(crate) body: String,
    pub(crate) headers: axum::http::HeaderMap,
}

pub(crate) async fn send(app: &Router, method: &str, uri: &str, cookie: Option<&str>, form: Option<&str>) -> Reply {
    send_with(app, method, uri, cookie, form, &[]).await
}

/// `send` with extra request headers.
pub(crate) async fn send_with(
    app: &Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    if form.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let mut request = request.body(Body::from(form.unwrap_or("").to_string())).unwrap();
    request.extensions_mut().insert(ConnectInfo(Peer("127.0.0.9:41000".parse().unwrap())));
    let response = app.clone().oneshot(request).await.unwrap();
    let text = |name| response.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let (status, location, cookie) = (response.status(), text(header::LOCATION), text(header::SET_COOKIE));
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Reply { status, location, cookie, body: String::from_utf8_lossy(&body).into_owned(), headers }
}

/// The value of `name="csrf"` in a page.
pub(crate) fn csrf_of(body: &str) -> String {
    assert!(body.contains("name=\"csrf\" value=\""), "no CSRF field: {body}");
    body.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
}

/// Posts the sign-in form as a browser does: first loads it (its CSRF cookie and field), then
/// sends `user` and `password` with both, with the extra `headers`.
pub(crate) async fn post_login_with(app: &Router, user: &str, password: &str, headers: &[(&str, &str)]) -> Reply {
    let form = send_with(app, "GET", "/login", None, None, headers).await;
    let cookie = form.cookie.split(';').next().unwrap().to_string();
    let body = format!("csrf={}&user={user}&password={}", csrf_of(&form.body), password.replace(' ', "+"));
    send_with(app, "POST", "/login", Some(&cookie), Some(&body), headers).await
}

pub(crate) async fn post_login(app: &Router, user: &str, password: &str) -> Reply {
    post_login_with(app, user, password, &[]).await
}

/// Signs in; returns the cookie header value and the session's CSRF token.
pub(crate) async fn login(app: &Router, user: &str) -> (String, String) {
    let reply = post_login(app, user, PASSWORD).await;
    assert_eq!((reply.status, reply.location.as_str()), (StatusCode::SEE_OTHER, "/"), "{user}: {}", reply.body);
    assert!(reply.cookie.contains("HttpOnly") && reply.cookie.contains("SameSite=Strict"), "{}", reply.cookie);
    let cookie = reply.cookie.split(';').next().unwrap().to_string();
    let page = send(app, "GET", "/", Some(&cookie), None).await;
    (cookie, csrf_of(&page.body))
}

fn report_csv(db: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["report", "--db", db.to_str().unwrap(), "--now", "2026-11-23T00:00:00Z", "--format", "csv"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn without_a_session_every_page_redirects_to_login() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    for uri in
        ["/", "/devices", "/device?device=LT-0001", "/cases", "/cases/new", "/cases/1", "/audit", "/export/summary.csv"]
    {
        let reply = send(&app, "GET", uri, None, None).await;
        assert_eq!((reply.status, reply.location.as_str()), (StatusCode::SEE_OTHER, "/login"), "{uri}");
    }
    let reply = send(&app, "GET", "/", Some("nxguard_session=forged"), None).await;
    assert_eq!(reply.location, "/login");
    assert_eq!(send(&app, "GET", "/login", None, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_viewer_sees_aggregates_with_pseudonymous_keys_only() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let (cookie, csrf) = login(&app, "viewer").await;
    for uri in ["/", "/devices?since=7d", "/devices?since=7d&q=LT"] {
        let page = send(&app, "GET", uri, Some(&cookie), None).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        for identity in ["LT-0001", "LT-0002", "10.30.0.9", "10.20.1.1", "Burgerzaken"] {
            assert!(!page.body.contains(identity), "{uri} shows {identity} to a viewer");
        }
    }
    let devices = send(&app, "GET", "/devices?since=7d", Some(&cookie), None).await;
    assert!(devices.body.contains(&s.console.masked("LT-0001")), "{}", devices.body);
    for uri in [
        "/export/summary.csv",
        "/export/timeline.csv?device=LT-0001",
        "/device?device=LT-0001",
        "/cases",
        "/cases/new",
        "/audit",
        "/api/v1/cases",
    ] {
        assert_eq!(send(&app, "GET", uri, Some(&cookie), None).await.status, StatusCode::FORBIDDEN, "{uri}");
    }
    let open = format!("csrf={csrf}&device=LT-0001&app=TikTok");
    assert_eq!(send(&app, "POST", "/cases", Some(&cookie), Some(&open)).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn state_changes_without_the_csrf_token_are_rejected() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let (cookie, csrf) = login(&app, "officer").await;
    for form in ["device=LT-0001&app=TikTok", "csrf=&device=LT-0001&app=TikTok", "csrf=0000&device=LT-0001&app=TikTok"]
    {
        assert_eq!(
            send(&app, "POST", "/cases", Some(&cookie), Some(form)).await.status,
            StatusCode::FORBIDDEN,
            "{form}"
        );
    }
    assert!(cases::list(&s.console.db().unwrap(), None).unwrap().is_empty());
    assert_eq!(send(&app, "POST", "/logout", Some(&cookie), Some("csrf=nope")).await.status, StatusCode::FORBIDDEN);
    let good =
        send(&app, "POST", "/cases", Some(&cookie), Some(&format!("csrf={csrf}&device=LT-0001&app=TikTok"))).await;
    assert_eq!((good.status, good.location.as_str()), (StatusCode::SEE_OTHER, "/cases/1"));
    let update = send(&app, "POST", "/cases/1", Some(&cookie), Some("action=request_removal")).await;
    assert_eq!(update.status, StatusCode::FORBIDDEN);
    // Sign-out with the token ends the session.
    assert_eq!(send(&app, "POST", "/logout", Some(&cookie), Some(&format!("csrf={csrf}"))).await.location, "/login");
    assert_eq!(send(&app, "GET", "/", Some(&cookie), None).await.location, "/login");
}

#[tokio::test]
async fn five_wrong_passwords_lock_the_account() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    for i in 1..=5 {
        let reply = post_login(&app, "officer", "guess").await;
        // Locked or wrong, the answer is the same: it does not tell which accounts exist.
        assert_eq!(reply.location, "/login?error=1", "attempt {i}");
        assert!(reply.cookie.is_empty(), "{}", reply.cookie);
    }
    assert_eq!(post_login(&app, "officer", PASSWORD).await.location, "/login?error=1");
    // The lock ends after console.lockout_mins (15).
    s.clock.fetch_add(16 * 60, Ordering::SeqCst);
    assert_eq!(post_login(&app, "officer", PASSWORD).await.location, "/");
    let db = s.console.db().unwrap();
    let failed: i64 = db
        .query_row("SELECT COUNT(*) FROM audit WHERE actor = 'officer' AND action = 'login failed'", [], |r| r.get(0))
        .unwrap();
    let locked: i64 = db
        .query_row("SELECT COUNT(*) FROM audit WHERE actor = 'officer' AND action = 'login locked'", [], |r| r.get(0))
        .unwrap();
    assert_eq!((failed, locked), (4, 2));
}

#[tokio::test]
async fn the_audit_log_records_who_when_where_what_and_cannot_be_changed() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let (cookie, csrf) = login(&app, "officer").await;
    assert_eq!(send(&app, "GET", "/device?device=LT-0001&since=7d", Some(&cookie), None).await.status, StatusCode::OK);
    assert_eq!(
        send(&app, "GET", "/export/summary.csv?since=7d&app=TikTok", Some(&cookie), None).await.status,
        StatusCode::OK
    );
    send(&app, "POST", "/cases", Some(&cookie), Some(&format!("csrf={csrf}&device=LT-0001&app=TikTok&ticket=INC-7")))
        .await;
    send(&app, "POST", "/cases/1", Some(&cookie), Some(&format!("csrf={csrf}&action=request_removal"))).await;
    post_login(&app, "admin", "wrong").await;
    {
        let db = s.console.db().unwrap();
        let mut statement =
            db.prepare("SELECT ts_ms, actor, role, address, action, target, detail FROM audit ORDER BY id").unwrap();
        let rows: Vec<(i64, String, String, String, String, String, String)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let actions: Vec<&str> = rows.iter().map(|r| r.4.as_str()).collect();
        assert_eq!(actions, ["login", "view device", "export summary", "case open", "case update", "login failed"]);
        let now_ms = ((DAY0 + 3 * DAY) * 1000) as i64;
        for (ts, actor, role, address, _, _, _) in &rows[..5] {
            assert_eq!(
                (*ts, actor.as_str(), role.as_str(), address.as_str()),
                (now_ms, "officer", "officer", "127.0.0.9")
            );
        }
        assert_eq!(rows[1].5, "LT-0001");
        assert!(rows[2].6.contains("app=TikTok"), "{}", rows[2].6);
        assert_eq!((rows[3].5.as_str(), rows[4].6.as_str()), ("case 1", "open -> removal_requested; request_removal"));
        assert_eq!((rows[5].1.as_str(), rows[5].2.as_str()), ("admin", ""));
        // Append-only: no change, no early delete.
        assert!(db.execute("UPDATE audit SET actor = 'x'", []).is_err());
        assert!(db.execute("DELETE FROM audit", []).is_err());
    }
    // Admins read and export it, and see the users; officers do not.
    assert_eq!(send(&app, "GET", "/audit", Some(&cookie), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(send(&app, "GET", "/users", Some(&cookie), None).await.status, StatusCode::FORBIDDEN);
    let (admin, _) = login(&app, "admin").await;
    let users = send(&app, "GET", "/users", Some(&admin), None).await;
    assert!(users.body.contains("officer") && !users.body.contains("argon2"), "{}", users.body);
    let csv = send(&app, "GET", "/export/audit.csv", Some(&admin), None).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.starts_with("id,time,actor,role,address,action,target,detail\n"), "{}", csv.body);
    assert!(csv.body.contains("officer,officer,127.0.0.9,view device,LT-0001"), "{}", csv.body);
}

#[tokio::test]
async fn csv_export_is_the_report_csv_with_formulas_neutralised() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let (cookie, _) = login(&app, "officer").await;
    for (query, args) in [
        ("since=2026-11-20T02:00:00Z&app=TikTok", vec!["--since", "2026-11-20T02:00:00Z", "--app", "TikTok"]),
        ("since=2d&app=tiktok", vec!["--since", "2d", "--app", "tiktok"]),
        ("since=7d&owner=burgerzaken", vec!["--since", "7d", "--owner", "burgerzaken"]),
    ] {
        let csv = send(&app, "GET", &format!("/export/summary.csv?{query}"), Some(&cookie), None).await;
        assert_eq!(csv.status, StatusCode::OK);
        assert_eq!(csv.body, report_csv(&s.store, &args), "{query}");
    }
    let timeline = send(&app, "GET", "/export/timeline.csv?device=LT-0001&since=7d", Some(&cookie), None).await;
    assert_eq!(timeline.body, report_csv(&s.store, &["--device", "LT-0001", "--since", "7d"]));
    let temu = send(&app, "GET", "/export/summary.csv?since=7d&app=Temu", Some(&cookie), None).await;
    let row = temu.body.lines().nth(1).unwrap();
    assert!(row.starts_with("'@evil,\"'=HYPERLINK(\"\"http://x\"\")\",inventory-ip,Temu,1,"), "{row}");
    assert!(report_csv(&s.store, &["--since", "7d", "--app", "Temu"]).contains("\n@evil,\"=HYPERLINK"));
}

#[tokio::test]
async fn cases_are_verified_or_recur_from_the_attempts_and_the_clock() {
    let s = setup();
    {
        let db = s.console.db().unwrap();
        let mut store = s.console.store().unwrap();
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        // LT-0001 × TikTok: removed on day 3 (after its last hit on day 2).
        let quiet = cases::open(&db, "LT-0001", "TikTok", "Burgerzaken", "INC-1", "", at(DAY0 + 3 * DAY)).unwrap();
        cases::update(&db, quiet, &Change::RequestRemoval, at(DAY0 + 3 * DAY)).unwrap();
        cases::update(&db, quiet, &Change::Removed(at(DAY0 + 3 * DAY)), at(DAY0 + 3 * DAY)).unwrap();
        // LT-0002 × TikTok: "removed" on day 1 at 00:00, but it hit www.tiktok.com at 14:00.
        let back = cases::open(&db, "LT-0002", "TikTok", "Sociaal Domein", "INC-2", "", at(DAY0)).unwrap();
        cases::update(&db, back, &Change::Removed(at(DAY0 + DAY)), at(DAY0 + DAY)).unwrap();
        assert!(cases::update(&db, quiet, &Change::RequestRemoval, at(DAY0 + 3 * DAY)).is_err());

        let state = |id| cases::get(&db, id).unwrap().state;
        let changed = cases::refresh(&s.console, &mut store, at(DAY0 + 5 * DAY)).await.unwrap();
        assert_eq!(changed.iter().map(|c| c.id).collect::<Vec<_>>(), [back]);
        assert_eq!((state(quiet), state(back)), (CaseState::Removed, CaseState::Recurred));
        // Seven quiet days after the removal: verified.
        cases::refresh(&s.console, &mut store, at(DAY0 + 10 * DAY - 1)).await.unwrap();
        assert_eq!(state(quiet), CaseState::Removed);
        cases::refresh(&s.console, &mut store, at(DAY0 + 10 * DAY)).await.unwrap();
        assert_eq!(state(quiet), CaseState::Verified);
        // An attempt after verification: recurred.
        let tiktok = app("tiktok", "TikTok");
        let late = attempt(
            DAY0 + 11 * DAY,
            Some(("LT-0001", "Burgerzaken")),
            "10.20.1.1",
            "api16-normal-c.tiktokv.com",
            &tiktok,
            Kind::Api,
        );
        store::insert_all(&s.store, &[late], None, "ns1").unwrap();
        cases::refresh(&s.console, &mut store, at(DAY0 + 12 * DAY)).await.unwrap();
        assert_eq!(state(quiet), CaseState::Recurred);
        // Each automatic change is audited as nxguard.
        let automatic: i64 = db
            .query_row("SELECT COUNT(*) FROM audit WHERE actor = 'nxguard' AND action = 'case state'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(automatic, 3);
    }
    // The overview flags recurrences.
    s.clock.store(DAY0 + 12 * DAY, Ordering::SeqCst);
    let app = console::router(Arc::clone(&s.console));
    let (cookie, _) = login(&app, "officer").await;
    let overview = send(&app, "GET", "/?since=30d", Some(&cookie), None).await;
    let recurred = overview.body.split("id=\"recurred\"").nth(1).expect("recurrences listed");
    assert!(recurred.contains("LT-0001") && recurred.contains("LT-0002"), "{recurred}");
}

pub(crate) fn report_html(db: &Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["report", "--db", db.to_str().unwrap(), "--now", "2026-11-23T00:00:00Z", "--since", "7d"])
        .args(["--format", "html"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn board_report_is_one_self_contained_file_without_personal_data_unless_asked() {
    let s = setup();
    let html = report_html(&s.store, &[]);
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg") && html.contains("@media print"));
    for app in ["TikTok", "Temu", "WeChat"] {
        assert!(html.contains(&format!("<h2>{app}</h2>")), "{app}");
    }
    assert!(html.contains("<html lang=\"nl\">") && html.contains("Verboden apps op het netwerk"));
    for outside in ["<script", "src=", "<link", "url(", "http://", "https://"] {
        assert!(!html.contains(outside), "{outside} in the board report");
    }
    for identity in ["LT-0001", "10.30.0.9", "Burgerzaken", "@evil"] {
        assert!(!html.contains(identity), "{identity} without --with-identities");
    }
    let named = report_html(&s.store, &["--with-identities"]);
    assert!(named.contains("LT-0001") && named.contains("Burgerzaken"));
}

pub(crate) async fn bearer(app: &Router, uri: &str, token: &str) -> (StatusCode, String) {
    let mut request = Request::builder().uri(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
    request = request.header(header::ACCEPT, "application/json");
    let mut request = request.body(Body::empty()).unwrap();
    request.extensions_mut().insert(ConnectInfo(Peer("127.0.0.9:41000".parse().unwrap())));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn api_tokens_give_json_by_role_and_every_call_is_audited() {
    let s = setup();
    let (viewer, officer) = {
        let db = s.console.db().unwrap();
        let now = SystemTime::now();
        (
            auth::add_token(&db, "dashboard", Role::Viewer, None, now).unwrap(),
            auth::add_token(&db, "siem", Role::Officer, None, now).unwrap(),
        )
    };
    let app = console::router(Arc::clone(&s.console));
    let (status, body) = bearer(&app, "/api/v1/summary?since=7d&app=TikTok", &viewer).await;
    assert_eq!(status, StatusCode::OK);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["device"].as_str().unwrap().starts_with("d-") && r["owner"] == ""), "{body}");
    assert_eq!(bearer(&app, "/api/v1/cases", &viewer).await.0, StatusCode::FORBIDDEN);
    assert_eq!(bearer(&app, "/api/v1/timeline?device=LT-0001&since=7d", &viewer).await.0, StatusCode::FORBIDDEN);
    let (status, body) = bearer(&app, "/api/v1/timeline?device=LT-0001&since=7d", &officer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap().len(), 3);
    assert_eq!(bearer(&app, "/api/v1/cases", &officer).await.0, StatusCode::OK);
    assert_eq!(bearer(&app, "/api/v1/summary", "nxg_forged").await.0, StatusCode::UNAUTHORIZED);
    let db = s.console.db().unwrap();
    let calls: Vec<(String, String)> = db
        .prepare("SELECT actor, action FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [("dashboard", "api summary"), ("siem", "api timeline"), ("siem", "api cases")];
    assert_eq!(calls, expected.map(|(a, b)| (a.to_string(), b.to_string())));
}

#[tokio::test]
async fn app_page_and_lists_health() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let (officer, _) = login(&app, "officer").await;
    let page = send(&app, "GET", "/app?app=TikTok&since=7d", Some(&officer), None).await;
    assert_eq!(page.status, StatusCode::OK);
    let domains = page.body.split("id=\"domains\"").nth(1).unwrap();
    assert!(domains.contains("tiktokv.com") && domains.contains("byteoversea.com"), "{domains}");
    assert!(page.body.contains("telemetry") && page.body.contains("LT-0001"));
    let (viewer, _) = login(&app, "viewer").await;
    let page = send(&app, "GET", "/app?app=TikTok&since=7d", Some(&viewer), None).await;
    assert!(page.status == StatusCode::OK && !page.body.contains("LT-0001"));
    let lists = send(&app, "GET", "/lists", Some(&viewer), None).await;
    let policy = nxguard::policy::load(&PolicyConfig::default()).unwrap();
    assert!(lists.body.contains(&*policy.version()) && lists.body.contains("TikTok"), "{}", lists.body);
}

#[tokio::test]
async fn pages_speak_english_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path());
    let config = ConsoleConfig {
        state_path: Some(dir.path().join("console.sqlite")),
        language: Language::En,
        ..ConsoleConfig::default()
    };
    let console = Console::open(config, store, None, Arc::new(SystemTime::now)).unwrap();
    let app = console::router(Arc::new(console));
    let page = send(&app, "GET", "/login", None, None).await;
    assert!(page.body.contains("<html lang=\"en\">") && page.body.contains("Sign in"), "{}", page.body);
}

pub(crate) fn nxguard(args: &[&str], config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nxguard")).args(args).arg("--config").arg(config).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cases_have_cli_parity_and_every_change_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path());
    let state = dir.path().join("console.sqlite");
    let config = dir.path().join("nxguard.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstream.servers]]\naddress = \"127.0.0.1:53\"\n[store]\npath = {store:?}\n[console]\nstate_path = {state:?}\n"
        ),
    )
    .unwrap();
    assert_eq!(
        nxguard(&["case", "open", "--device", "LT-0001", "--app", "TikTok", "--ticket", "INC-9"], &config),
        "1\n"
    );
    assert_eq!(nxguard(&["case", "update", "1", "--request-removal"], &config), "case 1: removal_requested\n");
    assert_eq!(nxguard(&["case", "update", "1", "--removed", "2026-11-23"], &config), "case 1: removed\n");
    assert_eq!(nxguard(&["case", "update", "1", "--note", "laptop wiped"], &config), "case 1: removed\n");
    // Nothing since 2026-11-23 and more than seven days have passed (the clock is the real one).
    let list: Vec<serde_json::Value> = serde_json::from_str(&nxguard(&["case", "list"], &config)).unwrap();
    assert_eq!(list[0]["state"], "verified");
    assert_eq!((list[0]["ticket"].as_str(), list[0]["note"].as_str()), (Some("INC-9"), Some("laptop wiped")));
    let db = rusqlite::Connection::open(&state).unwrap();
    let rows: Vec<(String, String, String)> = db
        .prepare("SELECT role, action, detail FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let actions: Vec<(&str, &str)> = rows.iter().map(|(r, a, _)| (r.as_str(), a.as_str())).collect();
    assert_eq!(
        actions,
        [
            ("cli", "case open"),
            ("cli", "case update"),
            ("cli", "case update"),
            ("cli", "case update"),
            ("system", "case state")
        ]
    );
    // A date alone is the end of that day (it lies in the past here).
    assert_eq!(rows[2].2, "removal_requested -> removed; removed 2026-11-23T23:59:59Z");
}

#[tokio::test]
async fn lists_health_shows_each_feeds_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path());
    let cache = dir.path().join("feeds");
    std::fs::create_dir_all(&cache).unwrap();
    let policy = nxguard::config::Config::from_toml(&format!(
        "[access]\nallow = [\"127.0.0.0/8\"]\n[[upstream.servers]]\naddress = \"127.0.0.1:9\"\n[policy]\ncache_dir = {cache:?}\n\
         [[policy.feeds]]\nname = \"extra-tiktok\"\nurl = \"http://127.0.0.1:9/list.txt\"\napp = \"tiktok\"\n\
         [[policy.feeds]]\nname = \"shrunk\"\nurl = \"http://127.0.0.1:9/other.txt\"\napp = \"temu\"\n"
    ))
    .unwrap()
    .policy;
    let mut statuses = std::collections::BTreeMap::new();
    statuses.insert(
        "extra-tiktok".to_string(),
        nxguard::policy::feeds::FeedStatus {
            url: "http://127.0.0.1:9/list.txt".into(),
            last_success: Some(DAY0),
            last_attempt: Some(DAY0 + 60),
            entries: 4321,
            last_error: Some("HTTP 500 Internal Server Error".into()),
            ..Default::default()
        },
    );
    statuses.insert(
        "shrunk".to_string(),
        nxguard::policy::feeds::FeedStatus { entries: 1000, pending_entries: Some(10), ..Default::default() },
    );
    nxguard::policy::feeds::write_statuses(&cache, &statuses).unwrap();
    let config = ConsoleConfig { state_path: Some(dir.path().join("console.sqlite")), ..ConsoleConfig::default() };
    let mut console = Console::open(config, store, None, Arc::new(SystemTime::now)).unwrap();
    console.policy = Some(policy);
    auth::add_user(&console.db().unwrap(), "viewer", Role::Viewer, PASSWORD, SystemTime::now()).unwrap();
    let app = console::router(Arc::new(console));
    let (viewer, _) = login(&app, "viewer").await;
    let lists = send(&app, "GET", "/lists", Some(&viewer), None).await;
    assert_eq!(lists.status, StatusCode::OK);
    let feeds = lists.body.split("id=\"feeds\"").nth(1).expect("a feeds table");
    assert!(feeds.contains("extra-tiktok") && feeds.contains("4321"), "{feeds}");
    assert!(feeds.contains("HTTP 500 Internal Server Error"), "the last error shows: {feeds}");
    assert!(feeds.contains(&humantime_text(DAY0)), "last success: {feeds}");
    assert!(feeds.contains("shrunk") && feeds.contains("lists accept"), "a refused shrink waits: {feeds}");
}

fn humantime_text(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}
