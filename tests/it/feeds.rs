//! Feeds against a test HTTP server on 127.0.0.1:0 that plays each case: versions, 304, 500,
//! an HTML error page, a list shrunk by 80 %, a slow body and an oversized body. After each
//! refresh the server reloads (as `serve` does when a copy changed) and the test asks what is
//! blocked now.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use crate::common::*;
use hickory_proto::rr::RecordType;
use nxguard::{
    config::Config,
    policy::{
        feeds,
        fetch::{self, Refreshed},
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// What the feed server answers next.
#[derive(Clone)]
pub(crate) enum Play {
    /// 200 with this ETag and body; 304 when the request carries the ETag.
    List {
        etag: &'static str,
        body: String,
    },
    Status(u16),
    Html,
    /// Headers and a first line, then nothing for longer than the feed's timeout.
    Slow,
    /// A body larger than the feed's max_bytes (no Content-Length: the size shows while reading).
    Oversized,
}

pub(crate) struct FeedServer {
    pub(crate) url: String,
    play: Arc<Mutex<Play>>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FeedServer {
    pub(crate) async fn start(play: Play) -> FeedServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let play = Arc::new(Mutex::new(play));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (p, r) = (Arc::clone(&play), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (play, requests) = (p.lock().unwrap().clone(), Arc::clone(&r));
                tokio::spawn(answer_feed_request(stream, play, requests));
            }
        });
        FeedServer { url: format!("http://{addr}/lists/test.txt"), play, requests, task }
    }

    pub(crate) fn play(&self, play: Play) {
        *self.play.lock().unwrap() = play;
    }

    fn last_request(&self) -> String {
        self.requests.lock().unwrap().last().cloned().unwrap_or_default()
    }
}

/// Reads one request's head, notes it in `requests`, and answers as `play` says.
async fn answer_feed_request(mut stream: TcpStream, play: Play, requests: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    requests.lock().unwrap().push(head.clone());
    let reply = |status: &str, extra: &str, body: &str| {
        format!("HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    };
    let text = match play {
        Play::List { etag, .. } if head.contains(&format!("if-none-match: \"{etag}\"")) => {
            reply("304 Not Modified", &format!("ETag: \"{etag}\"\r\n"), "")
        }
        Play::List { etag, body } => {
            reply("200 OK", &format!("ETag: \"{etag}\"\r\nContent-Type: text/plain\r\n"), &body)
        }
        Play::Status(code) => reply(&format!("{code} Oops"), "", "server error\n"),
        Play::Html => reply(
            "200 OK",
            "Content-Type: text/html\r\n",
            "<!DOCTYPE html><html><body>Service unavailable</body></html>\n",
        ),
        Play::Slow => {
            let start = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nslow-1.feed.example\n";
            let _ = stream.write_all(start.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        Play::Oversized => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").await;
            for i in 0..2000 {
                let _ = stream.write_all(format!("big-{i}.feed.example\n").as_bytes()).await;
            }
            return;
        }
    };
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn list(names: &[&str]) -> String {
    let mut body = "# test feed\n".to_string();
    for name in names {
        body.push_str(&format!("{name}.feed.example\n"));
    }
    body.push_str("not a domain at all\n");
    body
}

fn feed_config(upstream: SocketAddr, cache: &std::path::Path, url: &str) -> Config {
    config_for(
        upstream,
        &format!(
            "[policy]\ncache_dir = {cache:?}\n[[policy.feeds]]\nname = \"test\"\nurl = \"{url}\"\n\
             category = \"Test feed\"\nkind = \"api\"\nmax_bytes = 4096\ntimeout_secs = 2\n"
        ),
    )
}

// One feed's life as one scenario: each step starts from the state the one before left.
#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn each_feed_answer_and_what_is_blocked_afterwards() {
    let upstream = FakeUpstream::start().await;
    let cache = tempfile::tempdir().unwrap();
    let feed_server = FeedServer::start(Play::List { etag: "v1", body: list(&["a", "b", "c", "d", "e"]) }).await;
    let config = feed_config(upstream.addr, cache.path(), &feed_server.url);
    let mut server = start_server(&config);
    let client = fetch::client().unwrap();
    // Each refresh happens a minute after the one before (time is passed in).
    let start = SystemTime::now();
    let step = std::cell::Cell::new(0u64);
    let refresh = || async {
        step.set(step.get() + 1);
        let at = start + Duration::from_secs(60 * step.get());
        let r = fetch::refresh(&client, &config.policy.feeds[0], cache.path(), 50, at).await;
        server.running.reload(&config).unwrap();
        r
    };
    let blocked = |name: &'static str| {
        let udp = server.udp;
        async move {
            let reply = udp_ask(udp, &query(&format!("{name}.feed.example."), RecordType::A, true)).await;
            reply.metadata.response_code == hickory_proto::op::ResponseCode::NXDomain
        }
    };

    // No copy yet: the server started without the feed.
    assert!(!blocked("a").await);

    // Version 1: five entries, one invalid line counted; blocked at once after the reload.
    let Refreshed { changed, status } = refresh().await;
    assert!(changed && status.last_error.is_none(), "{status:?}");
    assert_eq!((status.entries, status.invalid, status.etag.as_deref()), (5, 1, Some("\"v1\"")));
    assert!(blocked("a").await && blocked("x.e").await && !blocked("f").await);
    let attempt = tokio::time::timeout(Duration::from_secs(5), server.attempts.recv()).await.unwrap().unwrap();
    assert_eq!(&*attempt.stamp.rule, "feed:test@v1");
    assert_eq!(attempt.app.app.name, "Test feed");

    // Unchanged: a conditional GET answered 304; a success, nothing rebuilt.
    let Refreshed { changed, status } = refresh().await;
    assert!(feed_server.last_request().contains("if-none-match: \"v1\""), "{}", feed_server.last_request());
    assert!(!changed && status.last_error.is_none() && status.entries == 5, "{status:?}");
    assert!(blocked("a").await);

    // Version 2: a removed, f added.
    feed_server.play(Play::List { etag: "v2", body: list(&["b", "c", "d", "e", "f"]) });
    let Refreshed { changed, status } = refresh().await;
    assert!(changed && status.etag.as_deref() == Some("\"v2\""), "{status:?}");
    assert!(!blocked("a").await && blocked("f").await);

    // HTTP 500, an HTML error page, a slow body and an oversized body: each is a failure that
    // leaves version 2 in force.
    let cases: [(Play, &str); 4] = [
        (Play::Status(500), "HTTP 500"),
        (Play::Html, "HTML"),
        (Play::Slow, "timed out"),
        (Play::Oversized, "max_bytes"),
    ];
    let mut failures = 0;
    let succeeded = status.last_success;
    for (play, expected) in cases {
        feed_server.play(play);
        let Refreshed { changed, status } = refresh().await;
        failures += 1;
        let error = status.last_error.clone().unwrap_or_default();
        assert!(!changed && error.contains(expected), "{expected}: {status:?}");
        assert_eq!((status.entries, status.failures), (5, failures), "{status:?}");
        assert_eq!(status.last_success, succeeded, "a failure is an attempt, not a success");
        assert!(status.last_attempt > succeeded);
        assert!(blocked("f").await && blocked("b").await && !blocked("a").await, "{expected}");
        assert!(!blocked("slow-1").await && !blocked("big-1").await);
    }

    // Shrunk by 80 %: refused and reported until an operator accepts it.
    feed_server.play(Play::List { etag: "v3", body: list(&["b"]) });
    let Refreshed { changed, status } = refresh().await;
    assert!(!changed, "{status:?}");
    assert!(status.last_error.as_deref().unwrap_or_default().contains("nxguard lists accept test"), "{status:?}");
    assert_eq!((status.entries, status.pending_entries), (5, Some(1)));
    assert!(blocked("f").await && blocked("c").await);
    let accepted = feeds::accept(cache.path(), "test", SystemTime::now()).unwrap();
    assert_eq!((accepted.entries, accepted.pending_entries, accepted.last_error), (1, None, None));
    server.running.reload(&config).unwrap();
    assert!(blocked("b").await && !blocked("f").await && !blocked("c").await);

    // What the metrics endpoint shows.
    server.running.feeds.set(nxguard::server::feed_statuses(&config.policy));
    let metrics = nxguard::ops::metrics::render_feeds(&server.running.feeds);
    assert!(metrics.contains("nxguard_feed_entries{feed=\"test\"} 1"), "{metrics}");
    assert!(metrics.contains(&format!("nxguard_feed_failures_total{{feed=\"test\"}} {}", failures + 1)), "{metrics}");
    assert!(metrics.contains("nxguard_feed_last_success_timestamp_seconds{feed=\"test\"} 1"), "{metrics}");
    feed_server.task.abort();
}

fn spawn_logged(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    let _ = std::fs::remove_file(ready_path(config));
    std::process::Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["serve", "--config", config.to_str().unwrap(), "--ready-file", ready_path(config).to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn nxguard(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nxguard")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn stop(mut child: std::process::Child) {
    send_signal(child.id(), "TERM");
    child.wait().unwrap();
}

#[tokio::test]
async fn start_up_never_waits_for_the_network_and_restarts_from_the_cache() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let feed_server = FeedServer::start(Play::List { etag: "v1", body: list(&["boot", "second"]) }).await;
    let cache = dir.path().join("cache");
    let extra = format!(
        "[policy]\ncache_dir = {cache:?}\n[[policy.feeds]]\nname = \"test\"\nurl = \"{}\"\ncategory = \"Test feed\"\n",
        feed_server.url
    );
    let config = dir.path().join("nxguard.toml");
    std::fs::write(&config, serve_config(0, upstream.addr, &extra)).unwrap();
    let blocked = |server: SocketAddr| async move {
        let reply = udp_ask(server, &query("boot.feed.example.", RecordType::A, false)).await;
        reply.metadata.response_code == hickory_proto::op::ResponseCode::NXDomain
    };

    // No cache at all: it starts and warns; the first download runs in the background and the
    // policy is rebuilt when it lands.
    let log = dir.path().join("first.log");
    let child = spawn_logged(&config, &log);
    let server = Ready::wait(&ready_path(&config)).await.addr("udp");
    let mut in_force = false;
    for _ in 0..100 {
        if blocked(server).await {
            in_force = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(in_force, "the feed never applied:\n{text}");
    assert!(text.contains("no cached copy"), "{text}");
    assert!(text.contains("a feed changed; reloading"), "{text}");
    let lists = nxguard(&["lists", "--config", config.to_str().unwrap()]);
    assert!(lists.contains("test: 2 entries") && lists.contains("etag \"v1\""), "{lists}");

    // The feed server is gone: a restart blocks the feed's names from the cache at once.
    feed_server.task.abort();
    let child = spawn_logged(&config, &dir.path().join("second.log"));
    let server = Ready::wait(&ready_path(&config)).await.addr("udp");
    let at_once = blocked(server).await;
    stop(child);
    assert!(at_once, "the cached copy was not in force at start-up");
    let check = nxguard(&["check", "--config", config.to_str().unwrap()]);
    assert!(check.contains("feed test: 2 entries"), "{check}");
}

#[test]
fn check_warns_when_a_feed_would_block_a_name_that_must_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(feeds::copy_path(&cache, "wide"), "office.com\nnew-app.example\n").unwrap();
    let config = dir.path().join("nxguard.toml");
    let text = format!(
        "[[upstream.servers]]\naddress = \"127.0.0.1:9\"\n[policy]\ncache_dir = {cache:?}\n\
         [[policy.feeds]]\nname = \"wide\"\nurl = \"https://lists.example/wide.txt\"\ncategory = \"Too wide\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let out = nxguard(&["check", "--config", config.to_str().unwrap()]);
    assert!(out.contains("www.office.com must keep resolving"), "{out}");
    assert!(out.contains("feed:wide@"), "{out}");
    assert!(!out.contains("login.microsoftonline.com must"), "{out}");
}

#[test]
fn readme_feed_and_group_examples_parse() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operator/blocking.md")).unwrap();
    let mut seen = 0;
    for block in readme.split("```text\n").skip(1).filter_map(|b| b.split("```").next()) {
        if block.starts_with("[policy]") || block.starts_with("[[policy.") {
            let text = format!("[[upstream.servers]]\naddress = \"127.0.0.1:53\"\n{block}");
            Config::from_toml(&text).unwrap_or_else(|e| panic!("{block}: {e}"));
            seen += 1;
        }
    }
    assert_eq!(seen, 2, "the Feeds and the Client groups examples");
}
