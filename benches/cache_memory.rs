//! Memory per cached answer: what the response cache holds for each forwarded name.
//!
//! `cargo bench --bench cache_memory [-- ENTRIES]` fills a `resolve::Cache` (moka, the default
//! `[cache]` settings with the entry and byte bounds raised so nothing is evicted) with ENTRIES
//! (default 200 000) distinct answers shaped like the `miss` scenario's (`m<hex>.miss.bench.test
//! A`, one A record, TTL 3600, asked with EDNS), each built from the upstream's bytes as the
//! pipeline builds it, and prints the live heap (a counting global allocator) and VmRSS per
//! entry, split into the answer's own bytes (`CachedAnswer::heap_bytes` and the key) and
//! the rest: moka's entry, its timer-wheel and frequency-sketch slots, the table and allocator
//! rounding, and what `cache.max_bytes` counts for it (the weigher). Under `cargo test --benches` it runs on 2 000 entries.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Arc,
        atomic::{AtomicIsize, Ordering},
    },
    time::Instant,
};

use nxguard::{
    config::CacheConfig,
    dns::wire,
    resolve::cache::{self, Cache, CachedAnswer},
};

/// The system allocator, counting the bytes it has handed out and not yet taken back.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap_or(0)
}

/// The query a client sends for `name` (type A, with an OPT record).
fn query_packet(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    wire::push_header(&mut out, 0x1234, wire::flag::RD, [1, 0, 0, 1]);
    wire::push_name(&mut out, name);
    out.extend_from_slice(&[0, 1, 0, 1]);
    wire::push_opt(&mut out, false, 0, &[]);
    out
}

/// The local authoritative upstream's answer to it: one A record, TTL 3600, and its OPT.
fn answer_packet(query: &[u8]) -> Vec<u8> {
    let mut out = query[..query.len() - 11].to_vec();
    out[2] = 0x85;
    out[3] = 0x80;
    out[7] = 1;
    out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1]);
    wire::push_opt(&mut out, false, 0, &[]);
    out
}

fn main() {
    let entries: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200_000);
    let entries = if std::env::args().any(|a| a == "--bench") { entries } else { 2_000 };
    // Bounds far above what is inserted (nothing evicted), with a byte floor per entry (bytes
    // over entries) below any real entry's weight, so `cache.bytes()` is the weigher's own sum.
    let entries_u64 = entries as u64;
    let limits = CacheConfig { max_entries: 4 * entries_u64, max_bytes: 1024 * entries_u64, ..CacheConfig::default() };
    let cache = Cache::new(&limits);
    let now = Instant::now();
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss_kib());
    let mut own = 0usize;
    let mut key = [0u8; cache::MAX_KEY];
    for i in 0..entries {
        let packet = query_packet(&format!("m{i:x}-1-nxg.miss.bench.test"));
        let query = wire::parse_query(&packet).expect("a well-formed query");
        let inspected = CachedAnswer::from_upstream(&query, &answer_packet(&packet), &limits, now, 1)
            .expect("a well-formed answer");
        let key = cache::key(&query, &mut key);
        own += inspected.answer.heap_bytes() + key.len();
        cache.insert(key, Arc::new(inspected.answer));
    }
    let held = cache.len();
    let (heap, rss) = (LIVE.load(Ordering::Relaxed) - heap0, (rss_kib() - rss0) * 1024);
    let per = |bytes: i64| bytes as f64 / held.max(1) as f64;
    println!(
        "cache_memory: {held} entries; heap {:.0} B/entry ({:.0} the answer and its key, {:.0} the rest); \
         VmRSS {:.0} B/entry; the weigher counts {:.0} B/entry",
        per(heap as i64),
        per(own as i64),
        per(heap as i64 - own as i64),
        per(rss),
        per(cache.bytes() as i64),
    );
}
