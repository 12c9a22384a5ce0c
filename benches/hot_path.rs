//! Hot-path benchmarks: the matcher (shipped list, 100 k and 1 M synthetic domains; deep hit,
//! apex hit, miss), list loading, the cache, answer encoding, and the whole synchronous pipeline
//! (`answer_locally`) for blocked and cached queries, the same with client groups configured
//! (`pipeline_groups`: what the group lookup costs), and whether a decision cache in front of
//! the matcher would pay.
//!
//! `cargo bench --bench hot_path`; under `cargo test` each benchmark runs once on small sizes.

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nxguard::{
    config::{BlockConfig, CacheConfig, Config},
    dns::{blocked, wire},
    evidence::dispatch,
    policy::{
        self, App, Policy, PolicyBuilder,
        domains::{self, Kind},
    },
    resolve::Transport,
    resolve::{
        Client, Resolver, Step,
        cache::{self, Cache, CachedAnswer},
    },
};

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `n` distinct pseudo-random registrable domains, the same on every run.
fn synthetic_domains(n: usize) -> Vec<String> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let tlds = ["com", "net", "org", "nl", "cn", "io"];
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = 6 + (state % 10) as usize;
            let label: String =
                (0..len).map(|k| (b'a' + (state.rotate_right(k as u32 * 5) % 26) as u8) as char).collect();
            format!("{label}{i}.{}", tlds[i % tlds.len()])
        })
        .collect()
}

fn synthetic_policy(domains: &[String]) -> Policy {
    let mut b = PolicyBuilder::new().with_capacity(domains.len(), domains.len() * 16);
    let app = b.app(App::new("bulk", "Bulk", "Test"));
    for d in domains {
        b.block(d, app, Kind::Unspecified, false);
    }
    b.build()
}

fn matcher(c: &mut Criterion) {
    let mut group = c.benchmark_group("matcher");
    let shipped = policy::load(&nxguard::config::PolicyConfig::default()).unwrap();
    let cases =
        [("hit_deep", "a.b.c.v16-webapp.tiktokcdn.com"), ("hit_apex", "tiktok.com"), ("miss", "a.b.www.example.org")];
    for (case, name) in cases {
        group.bench_with_input(BenchmarkId::new("shipped", case), name.as_bytes(), |b, name| {
            b.iter(|| shipped.lookup(black_box(name)).is_some());
        });
    }
    let sizes: &[usize] = if bench_mode() { &[100_000, 1_000_000] } else { &[10_000] };
    for &size in sizes {
        let domains = synthetic_domains(size);
        let policy = synthetic_policy(&domains);
        let deep = format!("a.b.c.{}", domains[size / 2]);
        let apex = domains[size / 3].clone();
        for (case, name) in
            [("hit_deep", deep.as_str()), ("hit_apex", apex.as_str()), ("miss", "a.b.c.www.example.org")]
        {
            group.bench_with_input(BenchmarkId::new(format!("synthetic_{size}"), case), name.as_bytes(), |b, name| {
                b.iter(|| policy.lookup(black_box(name)).is_some());
            });
        }
    }
    group.finish();
}

fn list_load(c: &mut Criterion) {
    let size = if bench_mode() { 1_000_000 } else { 10_000 };
    let text = format!(
        "@app Bulk\n@vendor Test\n{}\n",
        synthetic_domains(size).iter().map(|d| format!("{d} api")).collect::<Vec<_>>().join("\n")
    );
    let mut group = c.benchmark_group("list_load");
    group.sample_size(10).throughput(Throughput::Elements(size as u64));
    group.bench_function(BenchmarkId::new("parse_and_build", size), |b| {
        b.iter(|| {
            let list = domains::parse("bulk", black_box(&text), "bulk.txt").unwrap();
            let mut builder = PolicyBuilder::new().with_capacity(list.entries.len(), text.len());
            let app = builder.app(App::new("bulk", "Bulk", "Test"));
            for e in &list.entries {
                builder.block(&e.domain, app, e.kind, e.exact);
            }
            builder.build().len()
        });
    });
    group.finish();
}

fn query_packet(name: &str, edns: bool) -> Vec<u8> {
    let mut out = Vec::new();
    wire::push_header(&mut out, 0x1234, wire::flag::RD, [1, 0, 0, u16::from(edns)]);
    wire::push_name(&mut out, name);
    out.extend_from_slice(&[0, 1, 0, 1]);
    if edns {
        wire::push_opt(&mut out, false, 0, &[]);
    }
    out
}

/// An upstream answer for `name`: two A records with TTL 300.
fn answer_packet(query: &[u8]) -> Vec<u8> {
    let mut out = query.to_vec();
    out.truncate(query.len() - 11);
    out[2] = 0x81;
    out[3] = 0x80;
    out[7] = 2;
    out[11] = 0;
    for last in [1u8, 2] {
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, last]);
    }
    out
}

fn answers(c: &mut Criterion) {
    let mut group = c.benchmark_group("answers");
    let packet = query_packet("www.example.org", true);
    group.bench_function("parse_query", |b| b.iter(|| wire::parse_query(black_box(&packet)).unwrap().qtype));
    let q = wire::parse_query(&packet).unwrap();
    let now = Instant::now();
    let stored =
        CachedAnswer::from_upstream(&q, &answer_packet(&packet), &CacheConfig::default(), now, 1).unwrap().answer;
    let mut out = Vec::with_capacity(1232);
    group.bench_function("write_cached", |b| {
        b.iter(|| {
            stored.write(black_box(&q), now + Duration::from_secs(5), Some(1232), &mut out);
            out.len()
        });
    });
    let blocked_packet = query_packet("a.b.tiktokv.com", true);
    let bq = wire::parse_query(&blocked_packet).unwrap();
    let config = BlockConfig::default();
    group.bench_function("write_blocked", |b| {
        b.iter(|| {
            blocked::write(
                &mut out,
                black_box(&bq),
                &config,
                None,
                "tiktokv.com",
                1,
                "TikTok (ByteDance) is banned on this network",
            );
            out.len()
        });
    });
    group.finish();
}

fn cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache");
    let entries = if bench_mode() { 100_000 } else { 1_000 };
    let cache = Cache::new(&CacheConfig { max_entries: entries as u64, ..CacheConfig::default() });
    let now = Instant::now();
    let mut keys = Vec::new();
    for i in 0..entries {
        let packet = query_packet(&format!("host{i}.example.org"), false);
        let q = wire::parse_query(&packet).unwrap();
        let stored = CachedAnswer::from_upstream(
            &q,
            &answer_packet(&query_packet(&format!("host{i}.example.org"), true)),
            &CacheConfig::default(),
            now,
            1,
        );
        let mut buf = [0u8; cache::MAX_KEY];
        let key = cache::key(&q, &mut buf).to_vec();
        cache.insert(&key, Arc::new(stored.unwrap().answer));
        keys.push(key);
    }
    let mut i = 0usize;
    group.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            cache.get(black_box(&keys[i]), now).is_some()
        });
    });
    let template = keys[0].clone();
    let stored = cache.get(&template, now).unwrap();
    let mut n = 0u64;
    group.bench_function("insert", |b| {
        b.iter(|| {
            n += 1;
            let mut key = template.clone();
            key.extend_from_slice(&n.to_be_bytes());
            cache.insert(&key, Arc::clone(&stored));
        });
    });
    group.finish();
}

/// The synchronous pipeline as a listener runs it for every packet: access, parse, policy,
/// cache, answer, attempt record.
fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _guard = runtime.enter();
    let config = Config::from_toml("[[upstream.servers]]\naddress = \"127.0.0.1:9\"\n").unwrap();
    let (recorder, dispatcher) = dispatch::channel(1 << 20, dispatch::Outputs::default());
    runtime.spawn(dispatcher.run(tokio_util::sync::CancellationToken::new()));
    let resolver = Resolver::new(&config, policy::load(&config.policy).unwrap(), recorder).unwrap();
    let client = Client { addr: "127.0.0.1:40000".parse().unwrap(), transport: Transport::Udp };
    let cached_query = query_packet("www.example.org", true);
    let q = wire::parse_query(&cached_query).unwrap();
    let stored = CachedAnswer::from_upstream(
        &q,
        &answer_packet(&cached_query),
        &CacheConfig::default(),
        Instant::now(),
        resolver.live().policy.generation(),
    );
    let mut buf = [0u8; cache::MAX_KEY];
    resolver.cache().insert(cache::key(&q, &mut buf), Arc::new(stored.unwrap().answer));
    let blocked_query = query_packet("api16-normal-c-useast1a.tiktokv.com", true);
    let mut out = Vec::with_capacity(1232);
    let mut group = c.benchmark_group("pipeline");
    group.bench_function("cached", |b| {
        b.iter(|| {
            let step = resolver.answer_locally(black_box(&cached_query), client, &mut out, Instant::now());
            assert!(matches!(step, Step::Done(_)));
        });
    });
    group.bench_function("blocked", |b| {
        b.iter(|| resolver.answer_locally(black_box(&blocked_query), client, &mut out, Instant::now()));
    });
    group.finish();
}

/// The pipeline with client groups: as `pipeline` without groups (the fast path: no lookup at
/// all), and with five groups (networks and addresses) for a client in none of them (blocked,
/// the group lookup's full cost), in a log-only group (answered from the cache and recorded) and
/// in an exempt group (answered from the cache). Only matched names reach the group lookup, so a
/// cached query that matches nothing costs the same either way.
fn pipeline_groups(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _guard = runtime.enter();
    // Every address answered and no rate limit, so each case measures its own path.
    let base = "[access]\nallow = [\"0.0.0.0/0\", \"::/0\"]\n[limits]\nclient_qps = 0\n\
                [[upstream.servers]]\naddress = \"127.0.0.1:9\"\n";
    let groups = "[[policy.groups]]\nname = \"pilot\"\nclients = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\nmode = \"log-only\"\n\
                  [[policy.groups]]\nname = \"comms\"\nclients = [\"172.16.0.0/12\", \"100.64.0.1\"]\n\
                  apps = { tiktok = \"exempt\" }\n\
                  [[policy.groups]]\nname = \"a\"\nclients = [\"198.18.0.0/15\"]\nmode = \"exempt\"\n\
                  [[policy.groups]]\nname = \"b\"\nclients = [\"203.0.113.0/24\"]\nmode = \"exempt\"\n\
                  [[policy.groups]]\nname = \"c\"\nclients = [\"fd00::/8\"]\nmode = \"exempt\"\n";
    let blocked_query = query_packet("api16-normal-c-useast1a.tiktokv.com", true);
    let mut out = Vec::with_capacity(1232);
    let mut group = c.benchmark_group("pipeline_groups");
    for (label, text) in [("none", base.to_string()), ("five", format!("{base}{groups}"))] {
        let config = Config::from_toml(&text).unwrap();
        let (recorder, dispatcher) = dispatch::channel(1 << 20, dispatch::Outputs::default());
        runtime.spawn(dispatcher.run(tokio_util::sync::CancellationToken::new()));
        let devices = nxguard::evidence::devices::Devices::load(&config.devices).unwrap();
        let policy = nxguard::server::build_policy(&config, &devices).unwrap();
        let resolver = Resolver::new(&config, policy, recorder).unwrap();
        let q = wire::parse_query(&blocked_query).unwrap();
        let stored = CachedAnswer::from_upstream(
            &q,
            &answer_packet(&blocked_query),
            &CacheConfig::default(),
            Instant::now(),
            resolver.live().policy.generation(),
        );
        let mut buf = [0u8; cache::MAX_KEY];
        resolver.cache().insert(cache::key(&q, &mut buf), Arc::new(stored.unwrap().answer));
        let clients: &[(&str, &str)] = if label == "none" {
            &[("blocked", "127.0.0.1:40000")]
        } else {
            &[("blocked", "127.0.0.1:40000"), ("log_only", "10.9.9.9:40000"), ("exempt", "100.64.0.1:40000")]
        };
        for (case, addr) in clients {
            let client = Client { addr: addr.parse().unwrap(), transport: Transport::Udp };
            group.bench_function(format!("{label}/{case}"), |b| {
                b.iter(|| resolver.answer_locally(black_box(&blocked_query), client, &mut out, Instant::now()));
            });
        }
    }
    group.finish();
    // The decision alone, for a matched name: what the groups add to a blocked query.
    let mut group = c.benchmark_group("decide");
    for (label, text) in [("none", base.to_string()), ("five", format!("{base}{groups}"))] {
        let config = Config::from_toml(&text).unwrap();
        let devices = nxguard::evidence::devices::Devices::load(&config.devices).unwrap();
        let policy = nxguard::server::build_policy(&config, &devices).unwrap();
        let client: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        group.bench_function(format!("{label}/lookup_and_decide"), |b| {
            b.iter(|| {
                let matched = policy.lookup(black_box(b"api16-normal-c-useast1a.tiktokv.com"));
                matched.map(|m| policy.decide(&m, black_box(client)))
            });
        });
    }
    group.finish();
}

/// Whether a cache of decisions in front of the matcher would pay: a hit in a quick_cache
/// (name → blocked or not) against the matcher itself, over 10 k names a busy network asks
/// again and again (half under listed domains, half not), on the 1 M-domain list.
fn decision_cache(c: &mut Criterion) {
    let size = if bench_mode() { 1_000_000 } else { 10_000 };
    let domains = synthetic_domains(size);
    let policy = synthetic_policy(&domains);
    let names: Vec<Vec<u8>> = (0..10_000)
        .map(|i| match i % 2 {
            0 => format!("www.{}", domains[i * 7 % size]),
            _ => format!("host{i}.cdn.example.org"),
        })
        .map(String::into_bytes)
        .collect();
    let decisions: quick_cache::sync::Cache<Vec<u8>, bool> = quick_cache::sync::Cache::new(names.len() * 2);
    for name in &names {
        decisions.insert(name.clone(), policy.lookup(name).is_some());
    }
    let mut group = c.benchmark_group("decision_cache");
    let mut i = 0usize;
    group.bench_function("matcher", |b| {
        b.iter(|| {
            i = (i + 7919) % names.len();
            policy.lookup(black_box(&names[i])).is_some()
        });
    });
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % names.len();
            decisions.get(black_box(names[i].as_slice()))
        });
    });
    group.finish();
}

criterion_group!(benches, matcher, list_load, answers, cache, pipeline, pipeline_groups, decision_cache);
criterion_main!(benches);
