//! The console in a real browser: Debian's chromium, headless, driven over WebDriver
//! (chromedriver + fantoccini), on both backends. On SQLite one `nxguard serve` records real
//! blocked queries from 127.0.0.1 and 127.0.0.2; in the production shape a throwaway PostgreSQL
//! is written by two `nxguard serve` processes (store.node ns1 and ns2) asked from 127.0.0.1-3.
//! `nxguard console` serves the store of the same config; the browser signs in, sees the
//! devices on the overview, opens a device page (on PostgreSQL with hits from both nodes),
//! opens a case and requests removal, exports CSV and signs out; then `nxguard report --format
//! html` writes the board report from the same store.
//! Screenshots go to target/console-screenshots/; the overview and device page are copied to
//! tests/screenshots/ for docs/security-officer/ (when missing, or with `UPDATE_SCREENSHOTS=1`).
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). Without them the test fails, never skips.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::common::{pg::PgCluster, *};
use fantoccini::{ClientBuilder, Locator};
use hickory_proto::rr::RecordType;
use nxguard::{
    config::StoreConfig,
    evidence::store::read::{Limits, Reader},
    review::report,
};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PASSWORD: &str = "browser test password";

/// Processes this test started, stopped by PID when it ends (also on failure).
struct Started(Vec<Child>);

impl Drop for Started {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The TCP port process `pid` (started with port 0, which it does not report) listens on on
/// 127.0.0.1: its socket inodes (/proc/PID/fd) looked up among the listening sockets
/// (/proc/net/tcp, state 0A). Polled for up to 10 s.
fn listening_port(pid: u32, what: &str) -> u16 {
    let find = || -> Option<u16> {
        let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()?
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter_map(|link| link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(String::from))
            .collect();
        let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let (address, port) = local.split_once(':')?;
            let listening = *state == "0A" && address == "0100007F" && inodes.iter().any(|i| i == inode);
            listening.then(|| u16::from_str_radix(port, 16).ok()).flatten()
        })
    };
    let mut port = None;
    wait_until_blocking(&format!("{what} listening"), Duration::from_secs(10), || {
        port = find();
        port.is_some()
    });
    port.unwrap_or_default()
}

/// A GET with the browser's session cookie, over plain HTTP/1.1: the body.
fn http_get(port: u16, path: &str, cookie: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

fn save(path: &Path, png: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, png).unwrap();
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The console docs' screenshot under tests/screenshots/: written when missing or with `UPDATE_SCREENSHOTS=1`,
/// so that a test run does not rewrite committed images.
fn save_for_readme(name: &str, png: &[u8]) {
    let path = repo(&format!("tests/screenshots/{name}"));
    if !path.exists() || std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        save(&path, png);
    }
}

/// Fails, never skips, without the browser parts.
fn require_browser() {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(Path::new(tool).exists(), "{tool} is missing: apt-get install chromium chromium-driver");
    }
}

/// Real blocked queries over UDP: (source address, node index, name).
async fn ask(nodes: &[SocketAddr], asks: &[(u8, usize, &str)]) {
    for (host, node, name) in asks {
        let bytes = query(name, RecordType::A, true).to_vec().unwrap();
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, *host));
        let reply = udp_exchange_raw(nodes[*node], from, &bytes, Duration::from_secs(2)).await;
        assert!(reply.is_some(), "no answer to {name} from {from}");
    }
}

/// Polls the store until it holds `devices` devices (the writers flush every 50 ms).
async fn wait_for_devices(source: &str, config: &StoreConfig, devices: usize) {
    let limits = Limits::COMMAND_LINE;
    let mut found = 0;
    for _ in 0..100 {
        if let Ok(db) = Reader::open(source, config, limits) {
            let rows = report::summaries(&mut [db], &report::Filter::default(), None).await.unwrap_or_default();
            found = rows.iter().map(|r| r.device.as_str()).collect::<std::collections::BTreeSet<_>>().len();
        }
        if found == devices {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the store holds {found} devices, not {devices}");
}

fn nxguard(config: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_nxguard")).args(args).arg("--config").arg(config).output().unwrap();
    assert!(out.status.success(), "nxguard {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn officer_signs_in_sees_both_devices_opens_a_case_exports_and_signs_out() {
    require_browser();
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let store = dir.path().join("attempts.sqlite");
    let extra = format!(
        "[store]\npath = \"{}\"\nflush_interval_ms = 50\n[console]\nlisten = \"127.0.0.1:0\"\n\
         state_path = \"{}\"\n",
        store.display(),
        dir.path().join("console.sqlite").display()
    );
    let config = dir.path().join("nxguard.toml");
    std::fs::write(&config, serve_config(0, upstream.addr, &extra)).unwrap();
    let started = Started(vec![spawn_serve(&config)]);
    let dns = Ready::wait(&ready_path(&config)).await.addr("udp");
    let asks =
        [(1, 0, "api.byteintlapi.com."), (1, 0, "www.tiktok.com."), (2, 0, "temu.com."), (2, 0, "www.tiktok.com.")];
    ask(&[dns], &asks).await;
    wait_for_devices(&store.display().to_string(), &StoreConfig::default(), 2).await;
    browse(dir.path(), &config, started, false).await;
}

/// The production shape: one PostgreSQL, two `nxguard serve` nodes (ns1, ns2) writing it,
/// blocked queries from three addresses to both, and `nxguard console` on the same config.
#[tokio::test(flavor = "multi_thread")]
async fn the_production_shape_two_nodes_one_postgresql_and_the_console() {
    require_browser();
    let dir = tempfile::tempdir().unwrap();
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let upstream = FakeUpstream::start().await;
    let console = format!(
        "[console]\nlisten = \"127.0.0.1:0\"\nstate_path = \"{}\"\n",
        dir.path().join("console.sqlite").display()
    );
    let mut started = Started(Vec::new());
    let (mut nodes, mut configs) = (Vec::new(), Vec::new());
    for node in ["ns1", "ns2"] {
        let extra = format!("{}{console}", cluster.store_toml(dir.path(), node));
        let config = dir.path().join(format!("{node}.toml"));
        std::fs::write(&config, serve_config(0, upstream.addr, &extra)).unwrap();
        started.0.push(spawn_serve(&config));
        configs.push(config);
    }
    for config in &configs {
        nodes.push(Ready::wait(&ready_path(config)).await.addr("udp"));
    }
    // 127.0.0.1 asks both nodes: its device page holds hits written by ns1 and by ns2.
    let asks = [
        (1, 0, "api.byteintlapi.com."),
        (1, 1, "www.tiktok.com."),
        (2, 1, "temu.com."),
        (2, 0, "www.tiktok.com."),
        (3, 1, "www.tiktok.com."),
    ];
    ask(&nodes, &asks).await;
    let store = StoreConfig {
        password_file: Some(cluster.password_file(dir.path())),
        tls: nxguard::config::StoreTls::Disable,
        ..StoreConfig::default()
    };
    wait_for_devices(&cluster.url(), &store, 3).await;
    browse(dir.path(), &configs[0], started, true).await;
    drop(cluster);
}

/// Adds the officer, starts `nxguard console` and chromedriver, walks the console in the
/// browser, then checks the board report on the same config.
async fn browse(dir: &Path, config: &Path, mut started: Started, two_nodes: bool) {
    let mut add = Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["console", "user", "add", "ciso", "--role", "officer", "--password-stdin", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    assert!(add.wait().unwrap().success(), "console user add failed");
    let quiet = |command: &mut Command| command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let ready = dir.join("console.ready.json");
    let mut console = Command::new(env!("CARGO_BIN_EXE_nxguard"));
    console.args(["console", "--config"]).arg(config).arg("--ready-file").arg(&ready);
    started.0.push(quiet(&mut console));
    let console_port = Ready::wait(&ready).await.addr("console").port();
    let driver = quiet(Command::new(CHROMEDRIVER).arg("--port=0"));
    let driver_port = listening_port(driver.id(), "chromedriver");
    started.0.push(driver);
    let browser = chromium(dir, driver_port).await;
    let base = format!("http://127.0.0.1:{console_port}");
    let result = drive(&browser, &base, console_port, two_nodes).await;
    let _ = browser.close().await;
    drop(started);
    result.unwrap();
    // The board report on the same store.
    let board = String::from_utf8(nxguard(config, &["report", "--format", "html", "--since", "7d"]).stdout).unwrap();
    assert!(board.starts_with("<!DOCTYPE html>") && board.contains("TikTok"), "{board}");
}

async fn chromium(dir: &Path, driver_port: u16) -> fantoccini::Client {
    let profile = dir.join("chromium-profile");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000", format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("chromedriver session")
}

/// The text of element `id` once it reads `expected`, or its last text after 10 s. A click that
/// loads a new page leaves the old page's element in the browser for a moment; reading it then
/// gives the old text, or fails as stale, so both are read again.
async fn text_once(
    browser: &fantoccini::Client,
    id: &str,
    expected: &str,
) -> Result<String, fantoccini::error::CmdError> {
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(element) = browser.find(Locator::Id(id)).await
            && let Ok(text) = element.text().await
        {
            if text == expected {
                return Ok(text);
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(last)
}

async fn drive(
    browser: &fantoccini::Client,
    base: &str,
    console_port: u16,
    two_nodes: bool,
) -> Result<(), fantoccini::error::CmdError> {
    let shots = repo("target/console-screenshots");
    // Any page without a session lands on the sign-in form.
    browser.goto(&format!("{base}/devices")).await?;
    assert!(browser.current_url().await?.path().ends_with("/login"));
    browser.find(Locator::Id("user")).await?.send_keys("ciso").await?;
    browser.find(Locator::Id("password")).await?.send_keys(PASSWORD).await?;
    browser.find(Locator::Id("login")).await?.click().await?;
    browser.wait().for_element(Locator::Id("recent")).await?;
    assert_eq!(browser.current_url().await?.path(), "/");
    let overview = browser.find(Locator::Id("recent")).await?.text().await?;
    assert!(overview.contains("127.0.0.1") && overview.contains("127.0.0.2"), "{overview}");
    let png = browser.screenshot().await?;
    save(&shots.join("overview.png"), &png);
    save_for_readme("console-overview.png", &png);

    browser.find(Locator::Css("#recent a[href^='/device?device=127.0.0.1&']")).await?.click().await?;
    browser.wait().for_element(Locator::Id("hits")).await?;
    let hits = browser.find(Locator::Id("hits")).await?.text().await?;
    assert!(hits.contains("api.byteintlapi.com") && hits.contains("www.tiktok.com"), "{hits}");
    assert!(!hits.contains("temu.com"), "another device's hit on this device's page: {hits}");
    let png = browser.screenshot().await?;
    save(&shots.join("device.png"), &png);
    save_for_readme("console-device.png", &png);

    run_a_case(browser, &shots).await?;

    // The export link of the devices page, fetched with the browser's own session.
    browser.goto(&format!("{base}/devices?since=7d")).await?;
    let href = browser.find(Locator::Id("export")).await?.attr("href").await?.expect("export link");
    let cookie = browser.get_named_cookie("nxguard_session").await?;
    let (head, csv) = http_get(console_port, &href, &format!("nxguard_session={}", cookie.value()));
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/csv"), "{head}");
    assert!(csv.starts_with("device,owner,source,app,attempts,"), "{csv}");
    assert!(
        csv.lines().any(|l| l.starts_with("127.0.0.1,")) && csv.lines().any(|l| l.starts_with("127.0.0.2,")),
        "{csv}"
    );
    if two_nodes {
        // Both nodes' attempts of one device in one row, the nodes named.
        assert!(csv.lines().next().is_some_and(|h| h.ends_with(",nodes")), "{csv}");
        assert!(csv.lines().any(|l| l.starts_with("127.0.0.1,") && l.ends_with(",ns1 ns2")), "{csv}");
    }

    browser.find(Locator::Id("logout")).await?.click().await?;
    browser.wait().for_element(Locator::Id("login")).await?;
    assert!(browser.current_url().await?.path().ends_with("/login"));
    // Back, after sign-out, must not show the devices page (with its owners) from the cache.
    browser.back().await?;
    browser.wait().for_element(Locator::Id("login")).await?;
    assert!(browser.find(Locator::Id("devices")).await.is_err(), "Back showed a signed-in page from the cache");
    browser.goto(&format!("{base}/")).await?;
    assert!(browser.current_url().await?.path().ends_with("/login"), "the session survived sign-out");
    Ok(())
}

/// From the device page: open a case, request the removal, record it as removed now.
async fn run_a_case(browser: &fantoccini::Client, shots: &Path) -> Result<(), fantoccini::error::CmdError> {
    browser.find(Locator::Css("a.open-case")).await?.click().await?;
    browser.wait().for_element(Locator::Id("ticket")).await?.send_keys("INC-4711").await?;
    browser.find(Locator::Id("note")).await?.send_keys("Asked the owner to remove TikTok").await?;
    browser.find(Locator::Id("open-case")).await?.click().await?;
    let state = browser.wait().for_element(Locator::Id("case-state")).await?.text().await?;
    assert_eq!(state, "open");
    browser.find(Locator::Id("request-removal")).await?.click().await?;
    // The page before the click has a case state too: wait for the new page's.
    let state = text_once(browser, "case-state", "verwijdering aangevraagd").await?;
    assert_eq!(state, "verwijdering aangevraagd");
    // Recorded as removed now (the form's default moment): the attempts of a few seconds ago
    // came before it, so the case is removed, not recurred.
    browser.find(Locator::Id("mark-removed")).await?.click().await?;
    let state = text_once(browser, "case-state", "verwijderd").await?;
    assert_eq!(state, "verwijderd");
    save(&shots.join("case.png"), &browser.screenshot().await?);
    Ok(())
}
