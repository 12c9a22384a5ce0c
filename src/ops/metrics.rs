//! The Prometheus endpoint.
//!
//! Owns: exposing all of nxguard's metrics in the OpenMetrics text format through
//! prometheus-client: one collector per source reads, at scrape time, read-only views
//! of the running resolver (its `resolve::Stats` counters, cache, recorder and upstreams) and of
//! the feeds' statuses (`policy::feeds::Board`) and of the QUIC listeners' connection attempts
//! (`listen::quic::HandshakeStats`), and
//! the small HTTP listener serving `GET /metrics` and `GET /health`. The listener is
//! hand-written: two fixed routes over HTTP/1.0-style close-after-response need no framework.
//! Must not touch: the counters themselves; it reads, the pipeline counts.

use std::{
    fmt,
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

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, NoLabelSet, text},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{
    config::Protocol,
    evidence::{siem::SiemStats, store::StoreStats},
    listen::quic::{Admission, HandshakeStats},
    policy::feeds::{Board, FeedStatus},
    resolve::{Outcome, Resolver, Transport},
    upstream::{LATENCY_BUCKETS_MS, UdpPool, pool::Upstreams},
};

/// The content type of the page: OpenMetrics 1.0 text, as prometheus-client writes it.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The name a family is written under: a counter's without its `_total` (OpenMetrics), which
/// prometheus-client adds back to every series.
fn family_name<'a>(name: &'a str, metric_type: &MetricType) -> &'a str {
    match metric_type {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    }
}

/// A family's descriptor, then each of its labelled series.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help): (&str, &str),
    metric_type: MetricType,
    series: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(family_name(name, &metric_type), help, None, metric_type)?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A family of one series without labels.
fn single(encoder: &mut DescriptorEncoder<'_>, (name, help): (&str, &str), metric: &impl EncodeMetric) -> fmt::Result {
    let metric_type = metric.metric_type();
    metric.encode(encoder.encode_descriptor(family_name(name, &metric_type), help, None, metric_type)?)
}

/// A counter family: (labels, value) per series.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    family(encoder, (name, help), MetricType::Counter, series.into_iter().map(|(l, v)| (l, ConstCounter::new(v))))
}

/// A counter without labels.
fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    single(encoder, (name, help), &ConstCounter::new(value))
}

/// A gauge without labels.
fn gauge<N: EncodeGaugeValue>(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: N) -> fmt::Result {
    single(encoder, (name, help), &ConstGauge::new(value))
}

/// The resolver's families, read from its counters when scraped.
struct ResolverMetrics(Arc<Resolver>);

impl fmt::Debug for ResolverMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolverMetrics").finish_non_exhaustive()
    }
}

impl Collector for ResolverMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let resolver = &self.0;
        encode_queries(&mut encoder, resolver)?;
        encode_attempts(&mut encoder, resolver)?;
        let recorder = resolver.recorder();
        if let Some(store) = &recorder.store {
            encode_store(&mut encoder, store)?;
        }
        if let Some(siem) = &recorder.siem {
            encode_siem(&mut encoder, siem)?;
        }
        encode_policy(&mut encoder, resolver)?;
        encode_upstreams(&mut encoder, &resolver.live().upstreams)
    }
}

/// Queries by transport and outcome, blocks by app, the cache.
fn encode_queries(encoder: &mut DescriptorEncoder<'_>, resolver: &Resolver) -> fmt::Result {
    let stats = &resolver.stats;
    let received = Transport::ALL.map(|t| ([("transport", t.as_str())], stats.received_on(t)));
    counters(encoder, "nxguard_queries_received_total", "Queries received, by transport.", received)?;
    let outcomes = Transport::ALL.into_iter().flat_map(|t| {
        Outcome::ALL
            .into_iter()
            .map(move |o| ([("transport", t.as_str()), ("outcome", o.as_str())], stats.outcome_on(t, o)))
    });
    counters(
        encoder,
        "nxguard_queries_total",
        "Queries by transport and outcome; the outcomes add up to the queries received.",
        outcomes,
    )?;
    let by_app = resolver.recorder().by_app().into_iter().map(|(app, n)| ([("app", app)], n));
    counters(encoder, "nxguard_blocked_total", "Blocked queries recorded, by app.", by_app)?;
    counter(encoder, "nxguard_cache_hits_total", "Answers served from the cache.", stats.outcome(Outcome::Cached))?;
    counter(encoder, "nxguard_cache_misses_total", "Queries that had to ask an upstream.", stats.cache_misses())?;
    counter(
        encoder,
        "nxguard_prefetches_total",
        "Popular cache entries refreshed in the background near their expiry.",
        stats.prefetches(),
    )?;
    gauge(encoder, "nxguard_cache_entries", "Answers in the cache.", resolver.cache().len())?;
    gauge(
        encoder,
        "nxguard_cache_bytes",
        "Memory the cached answers take, as cache.max_bytes counts it.",
        resolver.cache().bytes(),
    )
}

/// The attempt queue between the query path and the dispatcher.
fn encode_attempts(encoder: &mut DescriptorEncoder<'_>, resolver: &Resolver) -> fmt::Result {
    let recorder = resolver.recorder();
    gauge(encoder, "nxguard_attempts_queue_depth", "Attempt records waiting for the dispatcher.", recorder.queued())?;
    counter(
        encoder,
        "nxguard_attempts_dropped_total",
        "Attempt records lost because the queue was full.",
        recorder.dropped(),
    )
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The attempt store's writer and (PostgreSQL) spool.
fn encode_store(encoder: &mut DescriptorEncoder<'_>, store: &StoreStats) -> fmt::Result {
    counter(encoder, "nxguard_store_written_total", "Attempts committed to the store.", load(&store.written))?;
    counter(
        encoder,
        "nxguard_store_dropped_total",
        "Attempts the store lost (queue or retry buffer full).",
        load(&store.dropped),
    )?;
    counter(encoder, "nxguard_store_errors_total", "Failed store writes (kept and retried).", load(&store.errors))?;
    counter(
        encoder,
        "nxguard_store_reopened_total",
        "Times the store file was found deleted or replaced at a flush, and reopened.",
        load(&store.reopened),
    )?;
    gauge(
        encoder,
        "nxguard_store_pending",
        "Attempts held by the store writer, not yet committed.",
        load(&store.pending),
    )?;
    counter(
        encoder,
        "nxguard_store_purged_total",
        "Raw attempts and rollups deleted by the retention purge.",
        load(&store.purged),
    )?;
    counter(
        encoder,
        "nxguard_store_spooled_total",
        "Attempts appended to the local spool (PostgreSQL backend).",
        load(&store.spooled),
    )?;
    gauge(
        encoder,
        "nxguard_store_spool_bytes",
        "Spool bytes not yet shipped to PostgreSQL (the spool depth).",
        load(&store.spool_bytes),
    )?;
    gauge(
        encoder,
        "nxguard_store_spool_oldest_seconds",
        "Age of the oldest record waiting in the spool; 0 when none waits.",
        store.spool_oldest_age_secs(),
    )
}

/// The SIEM stream's writer.
fn encode_siem(encoder: &mut DescriptorEncoder<'_>, siem: &SiemStats) -> fmt::Result {
    counter(encoder, "nxguard_siem_written_total", "Attempt lines written to the SIEM stream.", load(&siem.written))?;
    counter(encoder, "nxguard_siem_dropped_total", "Attempt lines dropped (queue full).", load(&siem.dropped))?;
    counter(encoder, "nxguard_siem_errors_total", "Attempt lines that failed to write.", load(&siem.errors))
}

/// The loaded policy, rate-limited attempts and reloads.
fn encode_policy(encoder: &mut DescriptorEncoder<'_>, resolver: &Resolver) -> fmt::Result {
    let live = resolver.live();
    gauge(encoder, "nxguard_policy_domains", "Domains in the loaded policy.", live.policy.len())?;
    // An info family (OpenMetrics): the series is nxguard_policy_info{version="…"} 1.
    encoder
        .encode_descriptor(
            "nxguard_policy",
            "The loaded policy; version is a hash of the domain data.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("version", live.policy.version().to_string())])?;
    let (recorded, skipped) = resolver.stats.over_limit_attempts();
    counters(
        encoder,
        "nxguard_rate_limited_attempts_total",
        "Banned queries over the client's rate: recorded as attempts (one per client, listed domain and second), or skipped as repeats.",
        [([("result", "recorded")], recorded), ([("result", "skipped")], skipped)],
    )?;
    let (ok, failed) = resolver.stats.reloads();
    counters(
        encoder,
        "nxguard_reloads_total",
        "Configuration reloads, by result.",
        [([("result", "ok")], ok), ([("result", "failed")], failed)],
    )
}

/// Per upstream: the latency histogram (`nxguard_upstream_latency_seconds_bucket`, `_sum`,
/// `_count`), errors, error rcodes, fallbacks, and the UDP pool's counters.
fn encode_upstreams(encoder: &mut DescriptorEncoder<'_>, upstreams: &Upstreams) -> fmt::Result {
    let mut latency = encoder.encode_descriptor(
        "nxguard_upstream_latency_seconds",
        "Time to an upstream answer.",
        None,
        MetricType::Histogram,
    )?;
    for (addr, server) in upstreams.servers() {
        let (cumulative, count, sum) = server.histogram();
        let buckets = bucket_counts(&cumulative, count);
        latency
            .encode_family(&[("upstream", addr.to_string())])?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    let errors = upstreams.servers().map(|(addr, server)| ([("upstream", addr.to_string())], server.errors()));
    counters(encoder, "nxguard_upstream_errors_total", "Failed or timed-out upstream exchanges.", errors)?;
    encode_fallbacks(encoder, upstreams)?;
    encode_udp_pools(encoder, upstreams)
}

/// Each bucket's own count (prometheus-client sums them up again for `le`), from the
/// cumulative counts the upstream keeps; the last is the `+Inf` bucket.
fn bucket_counts(cumulative: &[u64], count: u64) -> Vec<(f64, u64)> {
    let mut below = 0;
    let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_MS
        .iter()
        .zip(cumulative)
        .map(|(le_ms, &n)| {
            let own = n.saturating_sub(below);
            below = below.max(n);
            (*le_ms as f64 / 1000.0, own)
        })
        .collect();
    buckets.push((f64::INFINITY, count.saturating_sub(below)));
    buckets
}

/// Error rcodes and the fallbacks taken, per upstream.
fn encode_fallbacks(encoder: &mut DescriptorEncoder<'_>, upstreams: &Upstreams) -> fmt::Result {
    let rcodes = upstreams.upstreams().flat_map(|upstream| {
        let address = upstream.address().to_string();
        upstream
            .stats
            .fallbacks
            .rcodes()
            .map(|(rcode, n)| ([("upstream", address.clone()), ("rcode", rcode.into())], n))
    });
    counters(
        encoder,
        "nxguard_upstream_error_rcodes_total",
        "Upstream answers with an error rcode (SERVFAIL, REFUSED, NOTIMP, FORMERR after the retry without EDNS), counted as that upstream failing the query; the next upstream is asked.",
        rcodes,
    )?;
    let kinds = upstreams.upstreams().flat_map(|upstream| {
        let address = upstream.address().to_string();
        upstream.stats.fallbacks.kinds().map(|(kind, n)| ([("upstream", address.clone()), ("kind", kind.into())], n))
    });
    counters(
        encoder,
        "nxguard_upstream_fallbacks_total",
        "Fallbacks taken for a misbehaving upstream: edns_plain (answered only without EDNS), case_tcp (answer in another letter case settled over TCP), case_double_query (accepted because a second UDP query agreed), case_rejected (the second query disagreed).",
        kinds,
    )
}

/// The UDP socket pools' counters, per UDP upstream.
fn encode_udp_pools(encoder: &mut DescriptorEncoder<'_>, upstreams: &Upstreams) -> fmt::Result {
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
    for (name, help, value) in udp {
        let series = upstreams
            .upstreams()
            .filter(|u| u.protocol() == Protocol::Udp)
            .map(|u| ([("upstream", u.address().to_string())], value(&u.udp())));
        counters(encoder, name, help, series)?;
    }
    Ok(())
}

/// The feeds' families: last success, entries in force and failures, per feed.
struct FeedMetrics(Arc<Board>);

impl fmt::Debug for FeedMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedMetrics").finish_non_exhaustive()
    }
}

impl Collector for FeedMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let statuses = self.0.snapshot();
        let per_feed = |value: fn(&FeedStatus) -> u64| {
            statuses.iter().map(move |(feed, status)| ([("feed", feed.as_str())], ConstGauge::new(value(status))))
        };
        family(
            &mut encoder,
            (
                "nxguard_feed_last_success_timestamp_seconds",
                "When the feed last confirmed or replaced its copy (Unix time; 0 = never).",
            ),
            MetricType::Gauge,
            per_feed(|s| s.last_success.unwrap_or(0)),
        )?;
        family(
            &mut encoder,
            ("nxguard_feed_entries", "Entries in the feed's copy in force."),
            MetricType::Gauge,
            per_feed(|s| s.entries as u64),
        )?;
        let failures = statuses.iter().map(|(feed, status)| ([("feed", feed.as_str())], status.failures));
        counters(
            &mut encoder,
            "nxguard_feed_failures_total",
            "Feed downloads that failed or were refused (HTML, binary, too large, shrunk).",
            failures,
        )
    }
}

/// The counters of the services beside the resolver: the Response Policy Zone, dnstap ingest,
/// and the DoQ/DoH3 listeners' connection attempts.
#[derive(Clone, Default)]
pub struct Services {
    pub rpz: Option<Arc<crate::zone::Zone>>,
    pub ingest: Option<Arc<crate::ingest::IngestStats>>,
    pub handshakes: Arc<HandshakeStats>,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services").field("rpz", &self.rpz.is_some()).field("ingest", &self.ingest.is_some()).finish()
    }
}

impl Collector for Services {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        if let Some(zone) = &self.rpz {
            encode_rpz(&mut encoder, zone)?;
        }
        if let Some(ingest) = &self.ingest {
            encode_ingest(&mut encoder, ingest)?;
        }
        Ok(())
    }
}

/// The Response Policy Zone's transfers, refusals, NOTIFYs and serial.
fn encode_rpz(encoder: &mut DescriptorEncoder<'_>, zone: &crate::zone::Zone) -> fmt::Result {
    let s = &zone.stats;
    counter(encoder, "nxguard_rpz_transfers_total", "Zone transfers served (AXFR and IXFR).", load(&s.transfers))?;
    counter(
        encoder,
        "nxguard_rpz_incremental_transfers_total",
        "IXFRs answered with the differences from the secondary's serial.",
        load(&s.incremental_transfers),
    )?;
    counter(encoder, "nxguard_rpz_signed_transfers_total", "Transfers with a valid TSIG.", load(&s.signed_transfers))?;
    counter(
        encoder,
        "nxguard_rpz_refused_total",
        "Requests refused: source outside rpz.allow, unsigned transfer outside rpz.allow_unsigned, bad TSIG.",
        load(&s.refused),
    )?;
    counter(encoder, "nxguard_rpz_notifies_sent_total", "NOTIFYs a secondary answered.", load(&s.notifies_sent))?;
    counter(encoder, "nxguard_rpz_notifies_failed_total", "NOTIFYs never answered.", load(&s.notifies_failed))?;
    // A gauge: an OpenMetrics counter's series must end in _total, and this series is named
    // nxguard_rpz_serial (an SOA serial is a value that rises, not a count of events).
    gauge(encoder, "nxguard_rpz_serial", "The zone's serial (a gauge that only rises).", zone.snapshot().serial)
}

/// The dnstap receivers' messages and refusals.
fn encode_ingest(encoder: &mut DescriptorEncoder<'_>, s: &crate::ingest::IngestStats) -> fmt::Result {
    counter(encoder, "nxguard_ingest_messages_total", "dnstap messages received.", load(&s.messages))?;
    counter(
        encoder,
        "nxguard_ingest_recorded_total",
        "dnstap client messages for a listed name, recorded.",
        load(&s.recorded),
    )?;
    counter(
        encoder,
        "nxguard_ingest_malformed_total",
        "dnstap senders closed for a malformed frame.",
        load(&s.malformed),
    )?;
    counter(encoder, "nxguard_ingest_refused_total", "dnstap TCP senders outside ingest.allow.", load(&s.refused))
}

/// The DoQ and DoH3 listeners' connection attempts, by transport and what became of them.
struct HandshakeMetrics(Arc<HandshakeStats>);

impl fmt::Debug for HandshakeMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeMetrics").finish_non_exhaustive()
    }
}

impl Collector for HandshakeMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let handshakes = &self.0;
        let series = [Transport::Quic, Transport::H3].into_iter().flat_map(|transport| {
            Admission::ALL.into_iter().map(move |admission| {
                let labels = [("transport", transport.as_str()), ("result", admission.as_str())];
                (labels, handshakes.get(transport, admission))
            })
        });
        counters(
            &mut encoder,
            "nxguard_quic_connection_attempts_total",
            "DoQ and DoH3 connection attempts by what became of them: outside_allow (ignored), retry (address validation asked), refused (over the connection caps), timed_out, failed, established.",
            series,
        )
    }
}

/// The families of `collectors` in the OpenMetrics text format, without the closing `# EOF`.
fn encode(collectors: Vec<Box<dyn Collector>>) -> String {
    let mut registry = Registry::default();
    for collector in collectors {
        registry.register_collector(collector);
    }
    let mut out = String::with_capacity(8192);
    // Writing into a String cannot fail.
    let _ = text::encode_registry(&mut out, &registry);
    out
}

/// The resolver's metrics (queries, cache, evidence outputs, policy, upstreams).
pub fn render(resolver: &Arc<Resolver>) -> String {
    encode(vec![Box::new(ResolverMetrics(Arc::clone(resolver)))])
}

/// The feeds' metrics: last success, entries in force and failures, per feed.
pub fn render_feeds(feeds: &Arc<Board>) -> String {
    encode(vec![Box::new(FeedMetrics(Arc::clone(feeds)))])
}

/// The RPZ and ingest counters, for the services that run.
pub fn render_services(services: &Services) -> String {
    encode(vec![Box::new(services.clone())])
}

/// The DoQ and DoH3 listeners' connection attempts, by transport and what became of them.
pub fn render_handshakes(handshakes: &Arc<HandshakeStats>) -> String {
    encode(vec![Box::new(HandshakeMetrics(Arc::clone(handshakes)))])
}

/// The whole `/metrics` page: every family, then `# EOF` (OpenMetrics 1.0).
pub fn page(resolver: &Arc<Resolver>, feeds: &Arc<Board>, services: &Services) -> String {
    let mut page = encode(vec![
        Box::new(ResolverMetrics(Arc::clone(resolver))),
        Box::new(FeedMetrics(Arc::clone(feeds))),
        Box::new(services.clone()),
        Box::new(HandshakeMetrics(Arc::clone(&services.handshakes))),
    ]);
    page.push_str("# EOF\n");
    page
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
    resolver: &Arc<Resolver>,
    feeds: &Arc<Board>,
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
        b"GET /metrics HTTP/1.1" | b"GET /metrics HTTP/1.0" => ("200 OK", OPENMETRICS, page(resolver, feeds, services)),
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
