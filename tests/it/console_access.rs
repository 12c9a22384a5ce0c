//! Who gets into the console, and what every answer carries (issue 24): security headers on
//! every route, error pages in the console's language that echo nothing, API tokens that open
//! only the API and expire or are revoked, disabled and deleted users, resets that end sessions,
//! a trusted reverse proxy's headers, the sign-in form's CSRF token, and the per-address throttle.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::http::{StatusCode, header};
use nxguard::review::console::{
    self,
    auth::{self, Role},
    throttle,
};

use super::console::{DAY, DAY0, PASSWORD, Reply, bearer, login, post_login, post_login_with, send, setup, setup_with};

fn audit_count(s: &super::console::Setup, action: &str) -> i64 {
    s.console.db().unwrap().query_row("SELECT COUNT(*) FROM audit WHERE action = ?1", [action], |r| r.get(0)).unwrap()
}

fn assert_security_headers(reply: &Reply, uri: &str) {
    let get = |name: header::HeaderName| {
        reply.headers.get(&name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    };
    let csp = get(header::CONTENT_SECURITY_POLICY);
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{uri}: CSP {csp:?}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("script-src"), "{uri}: CSP {csp:?}");
    assert_eq!(get(header::X_FRAME_OPTIONS), "DENY", "{uri}");
    assert_eq!(get(header::REFERRER_POLICY), "no-referrer", "{uri}");
    assert_eq!(get(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{uri}");
    let cache = get(header::CACHE_CONTROL);
    if uri == "/static/console.css" {
        assert!(cache.starts_with("max-age"), "{uri}: {cache}");
    } else {
        assert_eq!(cache, "no-store", "{uri}");
    }
}

#[tokio::test]
async fn every_route_sends_the_security_headers_and_personal_pages_are_not_cached() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let (admin, csrf) = login(&app, "admin").await;
    send(&app, "POST", "/cases", Some(&admin), Some(&format!("csrf={csrf}&device=LT-0001&app=TikTok"))).await;
    let routes = [
        "/",
        "/login",
        "/devices",
        "/device?device=LT-0001",
        "/app?app=TikTok",
        "/lists",
        "/audit",
        "/users",
        "/cases",
        "/cases/new",
        "/cases/1",
        "/export/summary.csv",
        "/export/timeline.csv?device=LT-0001",
        "/export/audit.csv",
        "/api/v1/summary",
        "/api/v1/timeline?device=LT-0001",
        "/api/v1/cases",
        "/static/console.css",
        "/no-such-page",
        "/cases/999",
    ];
    for uri in routes {
        for cookie in [Some(admin.as_str()), None] {
            let reply = send(&app, "GET", uri, cookie, None).await;
            assert!(reply.status != StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {}", reply.body);
            assert_security_headers(&reply, uri);
        }
    }
    let form = send(&app, "POST", "/cases/1", Some(&admin), Some("csrf=wrong&action=note")).await;
    assert_eq!(form.status, StatusCode::FORBIDDEN);
    assert_security_headers(&form, "POST /cases/1");
    let (status, _) = bearer(&app, "/api/v1/summary", "nxg_forged").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn error_pages_speak_the_consoles_language_and_echo_no_input() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let (cookie, csrf) = login(&app, "officer").await;
    let probe = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let replies = [
        (send(&app, "GET", &format!("/cases/{probe}"), Some(&cookie), None).await, StatusCode::BAD_REQUEST),
        (send(&app, "GET", &format!("/devices?since={probe}"), Some(&cookie), None).await, StatusCode::BAD_REQUEST),
        (send(&app, "GET", &format!("/{probe}"), Some(&cookie), None).await, StatusCode::NOT_FOUND),
        (
            send(&app, "POST", "/cases", Some(&cookie), Some(&format!("csrf={csrf}&device=&app={probe}"))).await,
            StatusCode::BAD_REQUEST,
        ),
        (send(&app, "GET", "/audit", Some(&cookie), None).await, StatusCode::FORBIDDEN),
    ];
    for (reply, status) in replies {
        assert_eq!(reply.status, status, "{}", reply.body);
        assert!(reply.body.contains("<html lang=\"nl\">") && reply.body.contains("id=\"error\""), "{}", reply.body);
        assert!(reply.body.contains(&format!("Fout {}", status.as_u16())), "{}", reply.body);
        for echoed in ["script", "alert", "Invalid", "invalid", "Failed"] {
            assert!(!reply.body.contains(echoed), "{echoed:?} echoed: {}", reply.body);
        }
    }
}

#[tokio::test]
async fn api_tokens_open_only_the_api_and_expire_or_are_revoked() {
    let s = setup();
    let now = UNIX_EPOCH + Duration::from_secs(DAY0 + 3 * DAY);
    let (forever, monthly) = {
        let db = s.console.db().unwrap();
        let monthly = auth::add_token(&db, "monthly", Role::Officer, Some(now + Duration::from_secs(30 * DAY)), now);
        assert!(auth::add_token(&db, "past", Role::Officer, Some(now - Duration::from_secs(1)), now).is_err());
        (auth::add_token(&db, "siem", Role::Admin, None, now).unwrap(), monthly.unwrap())
    };
    let app = console::router(Arc::clone(&s.console));
    for uri in ["/", "/devices", "/audit", "/users", "/export/summary.csv", "/export/audit.csv"] {
        assert_eq!(bearer(&app, uri, &forever).await.0, StatusCode::UNAUTHORIZED, "a token opened {uri}");
    }
    assert_eq!(bearer(&app, "/api/v1/cases", &forever).await.0, StatusCode::OK);
    assert_eq!(bearer(&app, "/api/v1/cases", &monthly).await.0, StatusCode::OK);
    s.clock.fetch_add(30 * DAY, Ordering::SeqCst);
    assert_eq!(bearer(&app, "/api/v1/cases", &monthly).await.0, StatusCode::UNAUTHORIZED, "expired");
    auth::revoke_token(&s.console.db().unwrap(), "siem").unwrap();
    assert_eq!(bearer(&app, "/api/v1/cases", &forever).await.0, StatusCode::UNAUTHORIZED, "revoked");
    let users = auth::accounts(&s.console.db().unwrap(), true, SystemTime::now()).unwrap();
    assert_eq!(
        users.iter().map(|a| (a.name.as_str(), a.expires.as_str())).collect::<Vec<_>>(),
        [("monthly", "2026-12-23T00:00:00Z")]
    );
}

#[tokio::test]
async fn disabled_and_deleted_users_and_password_resets_end_sessions() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let signed_in = |cookie: String| {
        let app = app.clone();
        async move { send(&app, "GET", "/", Some(&cookie), None).await.status == StatusCode::OK }
    };
    let (officer, _) = login(&app, "officer").await;
    let (viewer, _) = login(&app, "viewer").await;
    let (admin, _) = login(&app, "admin").await;
    auth::add_user(&s.console.db().unwrap(), "officer", Role::Officer, "a new long password", SystemTime::now())
        .unwrap();
    assert!(!signed_in(officer).await, "the session outlived the password reset");
    assert_eq!(post_login(&app, "officer", "a new long password").await.location, "/");
    auth::set_disabled(&s.console.db().unwrap(), "viewer", true).unwrap();
    assert!(!signed_in(viewer).await, "the session outlived disabling");
    assert_eq!(post_login(&app, "viewer", PASSWORD).await.location, "/login?error=1");
    assert_eq!(audit_count(&s, "login disabled"), 1);
    auth::set_disabled(&s.console.db().unwrap(), "viewer", false).unwrap();
    assert_eq!(post_login(&app, "viewer", PASSWORD).await.location, "/");
    auth::delete_user(&s.console.db().unwrap(), "admin").unwrap();
    assert!(!signed_in(admin).await, "the session outlived deletion");
    assert_eq!(post_login(&app, "admin", PASSWORD).await.location, "/login?error=1");
    assert!(auth::delete_user(&s.console.db().unwrap(), "admin").is_err());
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_address_and_https_come_from_its_headers() {
    let forwarded = [("x-forwarded-for", "198.51.100.1, 203.0.113.7"), ("x-forwarded-proto", "https")];
    // The test peer is 127.0.0.9: trusted in one console, not in the other.
    let trusting = setup_with(|c| c.trust_proxy = vec!["127.0.0.0/8".parse().unwrap()]);
    let app = console::router(Arc::clone(&trusting.console));
    let reply = post_login_with(&app, "officer", PASSWORD, &forwarded).await;
    assert!(reply.cookie.starts_with("nxguard_session=") && reply.cookie.contains("; Secure"), "{}", reply.cookie);
    let address: String = trusting
        .console
        .db()
        .unwrap()
        .query_row("SELECT address FROM audit WHERE action = 'login'", [], |r| r.get(0))
        .unwrap();
    // The nearest address the trusted proxy saw; the one before it is the client's own claim.
    assert_eq!(address, "203.0.113.7");
    let plain = setup();
    let app = console::router(Arc::clone(&plain.console));
    let reply = post_login_with(&app, "officer", PASSWORD, &forwarded).await;
    assert!(!reply.cookie.contains("Secure"), "an untrusted peer's header made it Secure: {}", reply.cookie);
    let address: String = plain
        .console
        .db()
        .unwrap()
        .query_row("SELECT address FROM audit WHERE action = 'login'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(address, "127.0.0.9");
}

#[tokio::test]
async fn the_sign_in_form_needs_its_csrf_token() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let body = format!("user=officer&password={}", PASSWORD.replace(' ', "+"));
    let form = send(&app, "GET", "/login", None, None).await;
    let cookie = form.cookie.split(';').next().unwrap().to_string();
    for (cookie, body) in [
        (None, body.clone()),
        (Some(cookie.as_str()), body.clone()),
        (Some(cookie.as_str()), format!("csrf=forged&{body}")),
        (Some("nxguard_login=forged"), format!("csrf=forged&{body}")),
    ] {
        let reply = send(&app, "POST", "/login", cookie, Some(&body)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{cookie:?} {body}");
        assert!(!reply.cookie.contains("nxguard_session"));
    }
    assert_eq!(audit_count(&s, "login"), 0);
    assert_eq!(post_login(&app, "officer", PASSWORD).await.location, "/");
}

#[tokio::test]
async fn failed_sign_ins_from_one_address_are_throttled_before_the_audit_log() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    for i in 0..throttle::FAILURES {
        assert_eq!(post_login(&app, &format!("guess{i}"), "wrong").await.location, "/login?error=1");
    }
    for i in 0..10 {
        let reply = post_login(&app, &format!("more{i}"), "wrong").await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(reply.body.contains("Te veel mislukte inlogpogingen"), "{}", reply.body);
    }
    // Refused without the password being looked at, right or wrong.
    assert_eq!(post_login(&app, "officer", PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(audit_count(&s, "login failed"), i64::from(throttle::FAILURES));
    assert_eq!(audit_count(&s, "login throttled"), 1);
    assert_eq!(audit_count(&s, "login"), 0);
    // After the window, sign-in works again and the refusals are counted in one row.
    s.clock.fetch_add((throttle::WINDOW_MS / 1000) as u64, Ordering::SeqCst);
    assert_eq!(post_login(&app, "officer", PASSWORD).await.location, "/");
    let detail: String = s
        .console
        .db()
        .unwrap()
        .query_row("SELECT detail FROM audit WHERE action = 'login throttle ended'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(detail, "11 sign-ins refused");
}

#[test]
fn tokens_and_users_are_managed_from_the_command_line_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("console.sqlite");
    let config = dir.path().join("nxguard.toml");
    let store = dir.path().join("attempts.sqlite");
    std::fs::write(
        &config,
        format!(
            "[[upstream.servers]]\naddress = \"127.0.0.1:53\"\n[store]\npath = {store:?}\n[console]\nstate_path = {state:?}\n"
        ),
    )
    .unwrap();
    let token =
        super::console::nxguard(&["console", "token", "add", "siem", "--role", "officer", "--expires", "90d"], &config);
    assert!(token.starts_with("nxg_"), "{token}");
    assert_eq!(super::console::nxguard(&["console", "token", "revoke", "siem"], &config), "token siem revoked\n");
    {
        let db = rusqlite::Connection::open(&state).unwrap();
        auth::add_user(&db, "ann", Role::Viewer, PASSWORD, SystemTime::now()).unwrap();
    }
    assert_eq!(super::console::nxguard(&["console", "user", "disable", "ann"], &config), "user ann: disable done\n");
    assert_eq!(super::console::nxguard(&["console", "user", "delete", "ann"], &config), "user ann: delete done\n");
    let db = rusqlite::Connection::open(&state).unwrap();
    let actions: Vec<String> = db
        .prepare("SELECT action FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(actions, ["token add", "token revoke", "user disable", "user delete"]);
    let detail: String = db.query_row("SELECT detail FROM audit WHERE action = 'token add'", [], |r| r.get(0)).unwrap();
    assert!(detail.starts_with("officer; expires 20"), "{detail}");
    let users: i64 = db.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(users, 0);
}
