//! The Prometheus endpoint.
//!
//! Owns: rendering all of nxguard's metrics in the Prometheus text format from read-only views
//! of the running resolver (its `resolve::Stats` counters, cache, recorder and upstreams) and of
//! the feeds' statuses (`policy::feeds::Board`) and of the QUIC listeners' connection attempts
//! (`listen::quic::HandshakeStats`), and
//! the small HTTP listener serving `GET /metrics` and `GET /health`. The listener is
//! hand-written: two fixed routes over HTTP/1.0-style close-after-response need no framework.
//! Must not touch: the counters themselves; it reads, the pipeline counts.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{
    config::Protocol,
    listen::quic::{Admission, HandshakeStats},
    policy::feeds::{Board, FeedStatus},
    resolve::Transport,
    resolve::{Outcome, Resolver},
    upstream::{LATENCY_BUCKETS_MS, UdpPool},
};

/// All metrics in the Prometheus text exposition format (version 0.0.4).
#[allow(clippy::too_many_lines)]
pub fn render(resolver: &Resolver) -> String {
    let mut out = String::with_capacity(4096);
    let stats = &resolver.stats;
    let mut metric = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    metric("nxguard_queries_received_total", "counter", "Queries received, by transport.");
    let mut lines = String::new();
    for t in Transport::ALL {
        let n = stats.received_on(t);
        let _ = writeln!(lines, "nxguard_queries_received_total{{transport=\"{}\"}} {n}", t.as_str());
    }
    out.push_str(&lines);
    let _ = writeln!(
        out,
        "# HELP nxguard_queries_total Queries by transport and outcome; the outcomes add up to the queries received.\n# TYPE nxguard_queries_total counter"
    );
    for t in Transport::ALL {
        for o in Outcome::ALL {
            let _ = writeln!(
                out,
                "nxguard_queries_total{{transport=\"{}\",outcome=\"{}\"}} {}",
                t.as_str(),
                o.as_str(),
                stats.outcome_on(t, o)
            );
        }
    }
    let recorder = resolver.recorder();
    let _ = writeln!(
        out,
        "# HELP nxguard_blocked_total Blocked queries recorded, by app.\n# TYPE nxguard_blocked_total counter"
    );
    for (app, n) in recorder.by_app() {
        let _ = writeln!(out, "nxguard_blocked_total{{app=\"{app}\"}} {n}");
    }
    let live = resolver.live();
    let gauge = |out: &mut String, name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    gauge(
        &mut out,
        "nxguard_cache_hits_total",
        "counter",
        "Answers served from the cache.",
        stats.outcome(Outcome::Cached).to_string(),
    );
    gauge(
        &mut out,
        "nxguard_cache_misses_total",
        "counter",
        "Queries that had to ask an upstream.",
        stats.cache_misses().to_string(),
    );
    gauge(
        &mut out,
        "nxguard_prefetches_total",
        "counter",
        "Popular cache entries refreshed in the background near their expiry.",
        stats.prefetches().to_string(),
    );
    gauge(&mut out, "nxguard_cache_entries", "gauge", "Answers in the cache.", resolver.cache().len().to_string());
    gauge(
        &mut out,
        "nxguard_cache_bytes",
        "gauge",
        "Memory the cached answers take, as cache.max_bytes counts it.",
        resolver.cache().bytes().to_string(),
    );
    gauge(
        &mut out,
        "nxguard_attempts_queue_depth",
        "gauge",
        "Attempt records waiting for the dispatcher.",
        recorder.queued().to_string(),
    );
    gauge(
        &mut out,
        "nxguard_attempts_dropped_total",
        "counter",
        "Attempt records lost because the queue was full.",
        recorder.dropped().to_string(),
    );
    if let Some(store) = &recorder.store {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        gauge(
            &mut out,
            "nxguard_store_written_total",
            "counter",
            "Attempts committed to the store.",
            load(&store.written),
        );
        gauge(
            &mut out,
            "nxguard_store_dropped_total",
            "counter",
            "Attempts the store lost (queue or retry buffer full).",
            load(&store.dropped),
        );
        gauge(
            &mut out,
            "nxguard_store_errors_total",
            "counter",
            "Failed store writes (kept and retried).",
            load(&store.errors),
        );
        gauge(
            &mut out,
            "nxguard_store_reopened_total",
            "counter",
            "Times the store file was found deleted or replaced at a flush, and reopened.",
            load(&store.reopened),
        );
        gauge(
            &mut out,
            "nxguard_store_pending",
            "gauge",
            "Attempts held by the store writer, not yet committed.",
            load(&store.pending),
        );
        gauge(
            &mut out,
            "nxguard_store_purged_total",
            "counter",
            "Raw attempts and rollups deleted by the retention purge.",
            load(&store.purged),
        );
        gauge(
            &mut out,
            "nxguard_store_spooled_total",
            "counter",
            "Attempts appended to the local spool (PostgreSQL backend).",
            load(&store.spooled),
        );
        gauge(
            &mut out,
            "nxguard_store_spool_bytes",
            "gauge",
            "Spool bytes not yet shipped to PostgreSQL (the spool depth).",
            load(&store.spool_bytes),
        );
        gauge(
            &mut out,
            "nxguard_store_spool_oldest_seconds",
            "gauge",
            "Age of the oldest record waiting in the spool; 0 when none waits.",
            format!("{:.3}", store.spool_oldest_age_secs()),
        );
    }
    if let Some(siem) = &recorder.siem {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        gauge(
            &mut out,
            "nxguard_siem_written_total",
            "counter",
            "Attempt lines written to the SIEM stream.",
            load(&siem.written),
        );
        gauge(
            &mut out,
            "nxguard_siem_dropped_total",
            "counter",
            "Attempt lines dropped (queue full).",
            load(&siem.dropped),
        );
        gauge(
            &mut out,
            "nxguard_siem_errors_total",
            "counter",
            "Attempt lines that failed to write.",
            load(&siem.errors),
        );
    }
    gauge(&mut out, "nxguard_policy_domains", "gauge", "Domains in the loaded policy.", live.policy.len().to_string());
    let _ = writeln!(
        out,
        "# HELP nxguard_policy_info The loaded policy; version is a hash of the domain data.\n# TYPE nxguard_policy_info gauge\nnxguard_policy_info{{version=\"{}\"}} 1",
        live.policy.version()
    );
    let (recorded, skipped) = stats.over_limit_attempts();
    let _ = writeln!(
        out,
        "# HELP nxguard_rate_limited_attempts_total Banned queries over the client's rate: recorded as attempts (one per client, listed domain and second), or skipped as repeats.\n# TYPE nxguard_rate_limited_attempts_total counter\nnxguard_rate_limited_attempts_total{{result=\"recorded\"}} {recorded}\nnxguard_rate_limited_attempts_total{{result=\"skipped\"}} {skipped}"
    );
    let (ok, failed) = stats.reloads();
    let _ = writeln!(
        out,
        "# HELP nxguard_reloads_total Configuration reloads, by result.\n# TYPE nxguard_reloads_total counter\nnxguard_reloads_total{{result=\"ok\"}} {ok}\nnxguard_reloads_total{{result=\"failed\"}} {failed}"
    );
    let _ = writeln!(
        out,
        "# HELP nxguard_upstream_latency_seconds Time to an upstream answer.\n# TYPE nxguard_upstream_latency_seconds histogram"
    );
    let mut errors = String::new();
    for (addr, server) in live.upstreams.servers() {
        let (buckets, count, sum) = server.histogram();
        for (le, n) in LATENCY_BUCKETS_MS.iter().zip(buckets) {
            let _ = writeln!(
                out,
                "nxguard_upstream_latency_seconds_bucket{{upstream=\"{addr}\",le=\"{}\"}} {n}",
                *le as f64 / 1000.0
            );
        }
        let _ = writeln!(out, "nxguard_upstream_latency_seconds_bucket{{upstream=\"{addr}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "nxguard_upstream_latency_seconds_sum{{upstream=\"{addr}\"}} {sum}");
        let _ = writeln!(out, "nxguard_upstream_latency_seconds_count{{upstream=\"{addr}\"}} {count}");
        let _ = writeln!(errors, "nxguard_upstream_errors_total{{upstream=\"{addr}\"}} {}", server.errors());
    }
    let _ = writeln!(
        out,
        "# HELP nxguard_upstream_errors_total Failed or timed-out upstream exchanges.\n# TYPE nxguard_upstream_errors_total counter"
    );
    out.push_str(&errors);
    let _ = writeln!(
        out,
        "# HELP nxguard_upstream_error_rcodes_total Upstream answers with an error rcode (SERVFAIL, REFUSED, NOTIMP, FORMERR after the retry without EDNS), counted as that upstream failing the query; the next upstream is asked.\n# TYPE nxguard_upstream_error_rcodes_total counter"
    );
    for upstream in live.upstreams.upstreams() {
        for (rcode, n) in upstream.stats.fallbacks.rcodes() {
            let _ = writeln!(
                out,
                "nxguard_upstream_error_rcodes_total{{upstream=\"{}\",rcode=\"{rcode}\"}} {n}",
                upstream.address()
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP nxguard_upstream_fallbacks_total Fallbacks taken for a misbehaving upstream: edns_plain (answered only without EDNS), case_tcp (answer in another letter case settled over TCP), case_double_query (accepted because a second UDP query agreed), case_rejected (the second query disagreed).\n# TYPE nxguard_upstream_fallbacks_total counter"
    );
    for upstream in live.upstreams.upstreams() {
        for (kind, n) in upstream.stats.fallbacks.kinds() {
            let _ = writeln!(
                out,
                "nxguard_upstream_fallbacks_total{{upstream=\"{}\",kind=\"{kind}\"}} {n}",
                upstream.address()
            );
        }
    }
    let udp = [
        (
            "nxguard_upstream_udp_unmatched_total",
            "UDP datagrams from an upstream dropped because they answer no query waiting on that socket (unknown ID or another question): late duplicates, or spoofing attempts.",
            UdpPool::unmatched as fn(&UdpPool) -> u64,
        ),
        (
            "nxguard_upstream_udp_case_mismatch_total",
            "UDP answers whose question differed from the query only in letter case (0x20), settled over TCP or by a second query (see nxguard_upstream_fallbacks_total): spoofing attempts, or an upstream that does not echo the case.",
            UdpPool::case_mismatches,
        ),
        (
            "nxguard_upstream_udp_sockets_opened_total",
            "UDP sockets opened to an upstream (each is replaced after 2000 queries or 10 s, so the source ports keep changing).",
            UdpPool::sockets_opened,
        ),
    ];
    for (name, help, counter) in udp {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for upstream in live.upstreams.upstreams().filter(|u| u.protocol() == Protocol::Udp) {
            let _ = writeln!(out, "{name}{{upstream=\"{}\"}} {}", upstream.address(), counter(&upstream.udp()));
        }
    }
    out
}

/// The feeds' metrics: last success, entries in force and failures, per feed.
pub fn render_feeds(feeds: &Board) -> String {
    let statuses = feeds.snapshot();
    let mut out = String::new();
    type Family = (&'static str, &'static str, &'static str, fn(&FeedStatus) -> String);
    let families: [Family; 3] = [
        (
            "nxguard_feed_last_success_timestamp_seconds",
            "gauge",
            "When the feed last confirmed or replaced its copy (Unix time; 0 = never).",
            |s| s.last_success.unwrap_or(0).to_string(),
        ),
        ("nxguard_feed_entries", "gauge", "Entries in the feed's copy in force.", |s| s.entries.to_string()),
        (
            "nxguard_feed_failures_total",
            "counter",
            "Feed downloads that failed or were refused (HTML, binary, too large, shrunk).",
            |s| s.failures.to_string(),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (feed, status) in &statuses {
            let _ = writeln!(out, "{name}{{feed=\"{feed}\"}} {}", value(status));
        }
    }
    out
}

/// The counters of the services beside the resolver: the Response Policy Zone, dnstap ingest,
/// and the DoQ/DoH3 listeners' connection attempts.
#[derive(Clone, Default)]
pub struct Services {
    pub rpz: Option<Arc<crate::zone::Zone>>,
    pub ingest: Option<Arc<crate::ingest::IngestStats>>,
    pub handshakes: Arc<HandshakeStats>,
}

/// The RPZ and ingest counters, for the services that run.
pub fn render_services(services: &Services) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::new();
    let mut metric = |kind: &str, name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    let mut counter = |name: &str, help: &str, value: u64| metric("counter", name, help, value);
    if let Some(zone) = &services.rpz {
        let s = &zone.stats;
        counter("nxguard_rpz_transfers_total", "Zone transfers served (AXFR and IXFR).", s.transfers.load(Relaxed));
        counter(
            "nxguard_rpz_incremental_transfers_total",
            "IXFRs answered with the differences from the secondary's serial.",
            s.incremental_transfers.load(Relaxed),
        );
        counter("nxguard_rpz_signed_transfers_total", "Transfers with a valid TSIG.", s.signed_transfers.load(Relaxed));
        counter(
            "nxguard_rpz_refused_total",
            "Requests refused: source outside rpz.allow, unsigned transfer outside rpz.allow_unsigned, bad TSIG.",
            s.refused.load(Relaxed),
        );
        counter("nxguard_rpz_notifies_sent_total", "NOTIFYs a secondary answered.", s.notifies_sent.load(Relaxed));
        counter("nxguard_rpz_notifies_failed_total", "NOTIFYs never answered.", s.notifies_failed.load(Relaxed));
        counter(
            "nxguard_rpz_serial",
            "The zone's serial (a counter: it only rises).",
            u64::from(zone.snapshot().serial),
        );
    }
    if let Some(s) = &services.ingest {
        counter("nxguard_ingest_messages_total", "dnstap messages received.", s.messages.load(Relaxed));
        counter(
            "nxguard_ingest_recorded_total",
            "dnstap client messages for a listed name, recorded.",
            s.recorded.load(Relaxed),
        );
        counter(
            "nxguard_ingest_malformed_total",
            "dnstap senders closed for a malformed frame.",
            s.malformed.load(Relaxed),
        );
        counter("nxguard_ingest_refused_total", "dnstap TCP senders outside ingest.allow.", s.refused.load(Relaxed));
    }
    out
}

/// The DoQ and DoH3 listeners' connection attempts, by transport and what became of them.
pub fn render_handshakes(handshakes: &HandshakeStats) -> String {
    let mut out = String::from(
        "# HELP nxguard_quic_connection_attempts_total DoQ and DoH3 connection attempts by what became of them: outside_allow (ignored), retry (address validation asked), refused (over the connection caps), timed_out, failed, established.\n# TYPE nxguard_quic_connection_attempts_total counter\n",
    );
    for transport in [Transport::Quic, Transport::H3] {
        for admission in Admission::ALL {
            let _ = writeln!(
                out,
                "nxguard_quic_connection_attempts_total{{transport=\"{}\",result=\"{}\"}} {}",
                transport.as_str(),
                admission.as_str(),
                handshakes.get(transport, admission)
            );
        }
    }
    out
}

/// Serves `GET /metrics` and `GET /health` on `listener` until the task is dropped.
pub async fn serve(resolver: Arc<Resolver>, feeds: Arc<Board>, services: Services, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let resolver = Arc::clone(&resolver);
        let feeds = Arc::clone(&feeds);
        let services = services.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), respond(&resolver, &feeds, &services, stream)).await;
        });
    }
}

async fn respond(
    resolver: &Resolver,
    feeds: &Board,
    services: &Services,
    mut stream: TcpStream,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, content_type, body) = match line {
        b"GET /metrics HTTP/1.1" | b"GET /metrics HTTP/1.0" => {
            let body = render(resolver)
                + &render_feeds(feeds)
                + &render_services(services)
                + &render_handshakes(&services.handshakes);
            ("200 OK", "text/plain; version=0.0.4", body)
        }
        b"GET /health HTTP/1.1" | b"GET /health HTTP/1.0" => ("200 OK", "text/plain", "ok\n".to_string()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Binds the metrics listener if the config asks for one.
pub fn bind(listen: Option<SocketAddr>) -> std::io::Result<Option<std::net::TcpListener>> {
    listen
        .map(|addr| {
            let listener = std::net::TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .transpose()
}
