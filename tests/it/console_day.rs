//! The officer's day in the console (issue 24): headline figures that link to their lists,
//! recurrences near the top and "to act on" paged; the owner filter finding a department inside
//! the owner text; device totals that agree with the devices table; a first run without a store;
//! the resolvers' last attempts; Dutch pages with no English left; the board report's
//! comparison with the previous period.

use std::sync::{Arc, atomic::Ordering};

use axum::http::StatusCode;
use nxguard::{
    config::ConsoleConfig,
    evidence::store,
    policy::domains::Kind,
    review::console::{self, Console, auth, cases},
};

use super::console::{DAY, DAY0, PASSWORD, app, attempt, login, report_html, send, setup};

/// The part of `body` from `id="{id}"` to the end of its table (or paragraph).
fn section<'a>(body: &'a str, id: &str) -> &'a str {
    let from = body.split(&format!("id=\"{id}\"")).nth(1).unwrap_or_else(|| panic!("no #{id} in {body}"));
    from.split("</table>").next().unwrap()
}

#[tokio::test]
async fn the_overview_opens_with_figures_that_link_to_their_lists_and_pages_to_act_on() {
    let s = setup();
    // 30 more devices with TikTok's API on two days: likely installed, no case.
    let tiktok = app("tiktok", "TikTok");
    let mut more = Vec::new();
    for i in 0..30 {
        let name = format!("LT-1{i:03}");
        for day in [1, 2] {
            let at = DAY0 + day * DAY + 3600;
            let ip = format!("10.50.0.{}", i + 1);
            more.push(attempt(at, Some((&name, "Ruimte")), &ip, "api16-normal-c.tiktokv.com", &tiktok, Kind::Api));
        }
    }
    store::insert_all(&s.store, &more, None, "ns1").unwrap();
    let app = console::router(Arc::clone(&s.console));
    let (cookie, csrf) = login(&app, "officer").await;
    send(&app, "POST", "/cases", Some(&cookie), Some(&format!("csrf={csrf}&device=LT-1000&app=TikTok"))).await;
    let page = send(&app, "GET", "/?since=7d", Some(&cookie), None).await;
    let figures = page.body.split("id=\"figures\"").nth(1).unwrap().split("</ul>").next().unwrap();
    // LT-0001 and the 30: 31 likely (Temu's one day is "possibly"); one open case; nothing
    // recurred; all new this week.
    for (id, count, href) in [
        ("fig_likely", 31, "/devices?since=7d&amp;assessment=likely"),
        ("fig_open_cases", 1, "/cases?state=active"),
        ("fig_recurred", 0, "/cases?state=recurred"),
        ("fig_new", 31, "/devices?since=7d&amp;assessment=likely&amp;new=7d"),
    ] {
        let item = figures.split(&format!("id=\"{id}\"")).nth(1).unwrap().split("</li>").next().unwrap();
        assert!(
            item.contains(&format!("href=\"{href}\"")) && item.contains(&format!("<strong>{count}</strong>")),
            "{item}"
        );
    }
    let new = send(&app, "GET", "/devices?since=7d&assessment=likely&new=7d", Some(&cookie), None).await;
    assert_eq!(section(&new.body, "devices").matches("<tr>").count(), 1 + 31);
    let active = send(&app, "GET", "/cases?state=active", Some(&cookie), None).await;
    assert!(section(&active.body, "cases").contains("LT-1000"));
    // Recurrences come before "to act on", which holds 30 rows (LT-1000 has a case) on two pages.
    assert!(page.body.find("id=\"recurred\"").unwrap_or(0) < page.body.find("id=\"to-act\"").unwrap());
    let first = section(&page.body, "to-act");
    assert_eq!(first.matches("<tr>").count(), 1 + console::overview::ACT_ROWS);
    assert!(page.body.contains("act_page=1") && !first.contains(">LT-1000<"));
    let second = send(&app, "GET", "/?since=7d&act_page=1", Some(&cookie), None).await;
    assert_eq!(section(&second.body, "to-act").matches("<tr>").count(), 1 + 30 - console::overview::ACT_ROWS);
}

#[tokio::test]
async fn the_owner_filter_finds_a_department_inside_the_owner_and_totals_agree() {
    let s = setup();
    let tiktok = app("tiktok", "TikTok");
    let jansen = Some(("LT-0009", "J. Jansen, Burgerzaken"));
    let hit = attempt(DAY0 + DAY, jansen, "10.20.9.9", "api16-normal-c.tiktokv.com", &tiktok, Kind::Api);
    store::insert_all(&s.store, &[hit], None, "ns1").unwrap();
    let app = console::router(Arc::clone(&s.console));
    let (cookie, _) = login(&app, "officer").await;
    let devices = send(&app, "GET", "/devices?since=7d&owner=burgerzaken", Some(&cookie), None).await;
    let table = section(&devices.body, "devices");
    assert!(table.contains(">LT-0001<") && table.contains(">LT-0009<"), "{table}");
    assert!(!table.contains("LT-0002"));
    // The device page's totals are the devices table's row; its sources add up to them.
    let device = send(&app, "GET", "/device?device=LT-0001&since=7d", Some(&cookie), None).await;
    let totals = section(&device.body, "totals");
    assert!(totals.contains("<td>TikTok</td><td class=\"num\">3</td>"), "{totals}");
    assert!(!device.body.contains("totals-differ"), "the sources and totals differ: {}", device.body);
    let row = devices.body.split("<tr>").find(|r| r.contains(">LT-0001<")).unwrap();
    assert!(row.contains("<td>TikTok</td><td class=\"num\">3</td>"), "{row}");
}

#[tokio::test]
async fn before_the_store_exists_the_console_says_so_and_then_shows_the_resolvers() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConsoleConfig { state_path: Some(dir.path().join("console.sqlite")), ..ConsoleConfig::default() };
    let missing = dir.path().join("attempts.sqlite");
    let clock = || std::time::UNIX_EPOCH + std::time::Duration::from_secs(DAY0 + 3 * DAY);
    let c = Console::open(config, missing.clone(), None, Arc::new(clock)).unwrap();
    auth::add_user(&c.db().unwrap(), "officer", auth::Role::Officer, PASSWORD, std::time::SystemTime::now()).unwrap();
    let app = console::router(Arc::new(c));
    let (cookie, _) = login(&app, "officer").await;
    for uri in ["/", "/devices", "/cases"] {
        let page = send(&app, "GET", uri, Some(&cookie), None).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(page.body.contains("nog geen pogingenopslag"), "{uri}: {}", page.body);
    }
    assert!(!missing.exists(), "the console created the attempt store");
    // Once a resolver writes, the overview shows each node's last attempt.
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let (cookie, _) = login(&app, "officer").await;
    let page = send(&app, "GET", "/", Some(&cookie), None).await;
    let nodes = section(&page.body, "resolvers");
    // In the console's time zone (Europe/Amsterdam), as every time a person reads.
    assert!(nodes.contains("<td>ns1</td><td>22 nov 2026 09:00</td>"), "{nodes}");
    assert!(!nodes.contains("T08:00:00Z"), "{nodes}");
    s.clock.fetch_add(30 * DAY, Ordering::SeqCst);
    let (cookie, _) = login(&app, "officer").await;
    let page = send(&app, "GET", "/", Some(&cookie), None).await;
    assert!(section(&page.body, "resolvers").contains("Geen enkele resolver"), "{}", page.body);
}

#[tokio::test]
async fn dutch_pages_have_action_buttons_and_no_english_left() {
    let s = setup();
    let app = console::router(Arc::clone(&s.console));
    let login_page = send(&app, "GET", "/login", None, None).await;
    assert!(login_page.body.contains("Gebruikersnaam"));
    let (cookie, csrf) = login(&app, "admin").await;
    send(&app, "POST", "/cases", Some(&cookie), Some(&format!("csrf={csrf}&device=LT-0001&app=TikTok"))).await;
    let case = send(&app, "GET", "/cases/1", Some(&cookie), None).await;
    for dutch in ["Verwijdering aanvragen", "Als verwijderd vastleggen", "Aangemaakt", "Sluiten als vals positief"] {
        assert!(case.body.contains(dutch), "{dutch} missing: {}", case.body);
    }
    assert!(!case.body.contains("Geopend"));
    send(&app, "POST", "/cases/1", Some(&cookie), Some(&format!("csrf={csrf}&action=request_removal"))).await;
    send(&app, "GET", "/device?device=LT-0001&since=7d", Some(&cookie), None).await;
    let pages = [
        "/audit",
        "/app?app=TikTok&since=7d",
        "/device?device=LT-0001&since=7d",
        "/devices?since=7d",
        "/",
        "/users",
        "/cases",
    ];
    for uri in pages {
        let page = send(&app, "GET", uri, Some(&cookie), None).await;
        let text = page.body.split("<main>").nth(1).unwrap();
        for english in [
            ">Domain<",
            ">Type<",
            "YYYY",
            "case update",
            "request_removal",
            "removal_requested",
            "view device",
            ">case 1<",
            "(admin)",
            "since 7d",
        ] {
            assert!(!text.contains(english), "{uri}: {english:?} in {text}");
        }
    }
    let audit = send(&app, "GET", "/audit", Some(&cookie), None).await;
    assert!(audit.body.contains("zaak gewijzigd") && audit.body.contains("open → verwijdering aangevraagd"));
    assert!(audit.body.contains("apparaat bekeken") && audit.body.contains("vanaf 7d"), "{}", audit.body);
}

#[test]
fn the_board_report_aligns_figures_with_headers_and_compares_with_the_previous_period() {
    let s = setup();
    // The week before the report's: one TikTok link click.
    let tiktok = app("tiktok", "TikTok");
    let before =
        attempt(DAY0 - 5 * DAY, Some(("LT-0003", "Ruimte")), "10.20.3.3", "www.tiktok.com", &tiktok, Kind::Web);
    store::insert_all(&s.store, &[before], None, "ns1").unwrap();
    let html = report_html(&s.store, &[]);
    let tiktok = html.split("<h2>TikTok</h2>").nth(1).unwrap().split("</section>").next().unwrap();
    let figures = tiktok.split("<table class=\"figures\">").nth(1).unwrap().split("</table>").next().unwrap();
    let header = figures.split("</tr>").next().unwrap();
    assert_eq!(header.matches("<th class=\"num\">").count(), 4, "{header}");
    // LT-0001 likely, LT-0002 a link: 4 attempts; the week before, LT-0003's one link.
    let num = |n: u64| format!("<td class=\"num\">{n}</td>");
    let this = format!("<tr><th>deze periode</th>{}{}{}{}</tr>", num(1), num(0), num(1), num(4));
    let previous = format!("<tr><th>vorige periode</th>{}{}{}{}</tr>", num(0), num(0), num(1), num(1));
    assert!(figures.contains(&this) && figures.contains(&previous), "{figures}");
}

#[tokio::test]
async fn the_device_page_shows_app_and_case_times_in_the_console_time_zone() {
    let s = setup();
    {
        let db = s.console.db().unwrap();
        let opened = std::time::UNIX_EPOCH + std::time::Duration::from_secs(DAY0 + DAY);
        let id = cases::open(&db, "LT-0001", "TikTok", "", "", "", opened).unwrap();
        // Removed at 13:00 UTC on 2026-11-21: 14:00 in Amsterdam.
        let removed = std::time::UNIX_EPOCH + std::time::Duration::from_secs(DAY0 + DAY + 13 * 3600);
        cases::update(&db, id, &cases::Change::Removed(removed), opened).unwrap();
    }
    let app = console::router(Arc::clone(&s.console));
    let (cookie, _) = login(&app, "officer").await;
    let device = send(&app, "GET", "/device?device=LT-0001&since=7d", Some(&cookie), None).await;
    assert_eq!(device.status, StatusCode::OK);
    let device_cases = section(&device.body, "device-cases");
    assert!(device_cases.contains("21 nov 2026 14:00"), "{device_cases}");
    let totals = section(&device.body, "totals");
    assert!(totals.contains(" nov 2026 ") && !totals.contains(":00Z"), "{totals}");
}
