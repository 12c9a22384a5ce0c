//! Removal cases in the console (issue 24): the removal is a moment, so that morning's attempts
//! are no recurrence and future moments are refused; any case takes its device × app off "to
//! act on"; a case closes as a false positive with a reason, audited.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, UNIX_EPOCH},
};

use axum::http::StatusCode;
use nxguard::{
    evidence::store,
    policy::domains::Kind,
    review::console::{
        self,
        cases::{self, CaseState, Change},
    },
};

use super::console::{DAY, DAY0, app, attempt, login, send, setup};

/// The state text of case `id` on its page.
async fn case_state(app: &axum::Router, cookie: &str, id: i64) -> String {
    let page = send(app, "GET", &format!("/cases/{id}"), Some(cookie), None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let cell = page.body.split("id=\"case-state\"").nth(1).unwrap();
    cell.split('>').nth(1).unwrap().split('<').next().unwrap().to_string()
}

#[tokio::test]
async fn removed_today_is_now_so_that_mornings_attempts_are_no_recurrence() {
    let s = setup();
    // LT-0002 hits the TikTok API at 09:00 on 2026-11-23; the officer records the removal at noon.
    let tiktok = app("tiktok", "TikTok");
    let morning = attempt(
        DAY0 + 3 * DAY + 9 * 3600,
        Some(("LT-0002", "Sociaal Domein")),
        "10.20.2.2",
        "api16-normal-c.tiktokv.com",
        &tiktok,
        Kind::Api,
    );
    store::insert_all(&s.store, &[morning], None, "ns1").unwrap();
    s.clock.store(DAY0 + 3 * DAY + 12 * 3600, Ordering::SeqCst);
    let app = console::router(Arc::clone(&s.console));
    let (cookie, csrf) = login(&app, "officer").await;
    for _ in 0..2 {
        let open = format!("csrf={csrf}&device=LT-0002&app=TikTok");
        assert_eq!(send(&app, "POST", "/cases", Some(&cookie), Some(&open)).await.status, StatusCode::SEE_OTHER);
    }
    // The form's own field: now, to the second.
    let page = send(&app, "GET", "/cases/1", Some(&cookie), None).await;
    assert!(page.body.contains("value=\"2026-11-23T12:00:00\" max=\"2026-11-23T12:00:00\""), "{}", page.body);
    // A future moment is refused, and the case stays as it was.
    for future in ["2026-11-24", "2026-11-23T12:00:01"] {
        let form = format!("csrf={csrf}&action=removed&removed={future}");
        assert_eq!(send(&app, "POST", "/cases/1", Some(&cookie), Some(&form)).await.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(case_state(&app, &cookie, 1).await, "open");
    // Today's date means now: the 09:00 attempt came before the removal.
    let today = format!("csrf={csrf}&action=removed&removed=2026-11-23");
    assert_eq!(send(&app, "POST", "/cases/1", Some(&cookie), Some(&today)).await.status, StatusCode::SEE_OTHER);
    assert_eq!(case_state(&app, &cookie, 1).await, "verwijderd");
    assert_eq!(cases::get(&s.console.db().unwrap(), 1).unwrap().removed.as_deref(), Some("2026-11-23T12:00:00Z"));
    // A removal stated at 08:00 that day did come before the attempt: that is a recurrence.
    let early = format!("csrf={csrf}&action=removed&removed=2026-11-23T08:00");
    assert_eq!(send(&app, "POST", "/cases/2", Some(&cookie), Some(&early)).await.status, StatusCode::SEE_OTHER);
    assert_eq!(case_state(&app, &cookie, 2).await, "teruggekeerd");
}

#[tokio::test]
async fn a_verified_case_takes_its_device_off_to_act_on() {
    let s = setup();
    {
        let db = s.console.db().unwrap();
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        // LT-0001 × TikTok (likely installed): removed after its last hit, quiet since: verified.
        let id = cases::open(&db, "LT-0001", "TikTok", "Burgerzaken", "INC-1", "", at(DAY0 + 2 * DAY)).unwrap();
        cases::update(&db, id, &Change::Removed(at(DAY0 + 2 * DAY + 12 * 3600)), at(DAY0 + 3 * DAY)).unwrap();
    }
    s.clock.store(DAY0 + 10 * DAY, Ordering::SeqCst);
    let app = console::router(Arc::clone(&s.console));
    let (cookie, _) = login(&app, "officer").await;
    let overview = send(&app, "GET", "/?since=30d", Some(&cookie), None).await;
    assert_eq!(cases::get(&s.console.db().unwrap(), 1).unwrap().state, CaseState::Verified);
    let to_act = overview.body.split("to-act").nth(1).unwrap_or("").split("</table>").next().unwrap_or("");
    assert!(!to_act.contains("LT-0001"), "a verified device is still to act on: {to_act}");
    // The devices table links its case instead of offering a new one.
    let devices = send(&app, "GET", "/devices?since=30d&app=TikTok", Some(&cookie), None).await;
    let row = devices.body.split("<tr>").find(|r| r.contains(">LT-0001<")).unwrap();
    assert!(row.contains("href=\"/cases/1\"") && !row.contains("/cases/new"), "{row}");
}

#[tokio::test]
async fn a_case_closes_as_a_false_positive_with_a_reason_that_is_audited() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let (cookie, csrf) = login(&app, "officer").await;
    let open = format!("csrf={csrf}&device=LT-0001&app=TikTok");
    send(&app, "POST", "/cases", Some(&cookie), Some(&open)).await;
    let page = send(&app, "GET", "/cases/1", Some(&cookie), None).await;
    assert!(page.body.contains("id=\"false-positive\""), "no way to close it: {}", page.body);
    let bare = format!("csrf={csrf}&action=false_positive&reason=+");
    assert_eq!(send(&app, "POST", "/cases/1", Some(&cookie), Some(&bare)).await.status, StatusCode::BAD_REQUEST);
    let reasoned = format!("csrf={csrf}&action=false_positive&reason=helpdesk+test+phone");
    assert_eq!(send(&app, "POST", "/cases/1", Some(&cookie), Some(&reasoned)).await.status, StatusCode::SEE_OTHER);
    assert_eq!(case_state(&app, &cookie, 1).await, "vals positief");
    let page = send(&app, "GET", "/cases/1", Some(&cookie), None).await;
    assert!(page.body.contains("helpdesk test phone") && !page.body.contains("id=\"false-positive\""));
    // Final: no removal after it.
    let removal = format!("csrf={csrf}&action=request_removal");
    assert_eq!(send(&app, "POST", "/cases/1", Some(&cookie), Some(&removal)).await.status, StatusCode::BAD_REQUEST);
    let detail: String = s
        .console
        .db()
        .unwrap()
        .query_row("SELECT detail FROM audit WHERE action = 'case update' ORDER BY id DESC LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(detail, "open -> false_positive; false_positive: helpdesk test phone");
}
