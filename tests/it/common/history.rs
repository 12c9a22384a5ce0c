//! A realistic 90-day attempt history, and writing it straight into a store as the real write
//! path and the purge would leave it: the raw rows of the last `raw_days` days (from `now -
//! raw_days`, to the millisecond, as the purge cuts), and the daily rollups of every day.
//!
//! The shape (`Shape::realistic`): of `devices` devices, 2 % have an app installed that calls
//! home all day (a few thousand API and telemetry attempts a day, split over the office Wi-Fi
//! node by day and the VPN node by night); the rest make occasional web and CDN hits (on about
//! half the days, one to four visits of a few attempts each, to any app), on their own node.
//! Three quarters of the attempts come from the installed apps. Everything follows from a
//! seeded hash of (day, device), so the same shape gives the same rows, day by day, without
//! holding the history in memory.
//!
//! Pushing 50 M attempts through the shipper would take hours; `write_sqlite` (one transaction
//! of prepared statements) and `write_postgres` (binary COPY) take minutes.
//! `tests/it/store_history.rs` proves that they leave the same tables as the real write path
//! and purge. Self-contained: benches/store.rs and benches/console.rs include it too.

use std::{collections::HashMap, path::Path};

use nxguard::evidence::store::{
    self, DAY_MS, Record,
    rollup::{Counts, KINDS, Key, Rollups},
};

/// An app: id, name, vendor, its backend domains (API, telemetry) and front domains (web, CDN).
pub struct AppSpec {
    pub id: &'static str,
    pub name: &'static str,
    pub vendor: &'static str,
    pub api: &'static str,
    pub telemetry: &'static str,
    pub web: &'static str,
    pub cdn: &'static str,
}

const fn app(id: &'static str, name: &'static str, vendor: &'static str, domains: [&'static str; 4]) -> AppSpec {
    AppSpec { id, name, vendor, api: domains[0], telemetry: domains[1], web: domains[2], cdn: domains[3] }
}

pub const APPS: [AppSpec; 11] = [
    app("tiktok", "TikTok", "ByteDance", ["tiktokv.com", "byteoversea.com", "tiktok.com", "tiktokcdn.com"]),
    app("temu", "Temu", "PDD Holdings", ["temu.com", "kwcdn.com", "temu.nl", "temucdn.com"]),
    app("wechat", "WeChat", "Tencent", ["weixin.qq.com", "wechat.com", "wechat.nl", "wxs.qq.com"]),
    app("capcut", "CapCut", "ByteDance", ["capcutapi.com", "capcut-log.com", "capcut.com", "capcutcdn.com"]),
    app("shein", "Shein", "Shein", ["shein.com", "ltwebstatic.com", "shein.nl", "sheincdn.com"]),
    app("lemon8", "Lemon8", "ByteDance", ["lemon8-app.com", "lemon8-log.com", "lemon8.com", "lemon8cdn.com"]),
    app("pinduoduo", "Pinduoduo", "PDD Holdings", ["pinduoduo.com", "yangkeduo.com", "pdd.com", "pddpic.com"]),
    app("camscanner", "CamScanner", "Intsig", ["camscanner.com", "intsig.net", "camscanner.nl", "cs-cdn.com"]),
    app(
        "turbovpn",
        "TurboVPN",
        "Innovative Connecting",
        ["turbovpn.com", "tvpn-log.com", "turbovpn.co", "tvpncdn.com"],
    ),
    app("ucbrowser", "UC Browser", "Alibaba", ["ucweb.com", "uc.cn", "ucbrowser.com", "uccdn.com"]),
    app("shareit", "SHAREit", "Smart Media4U", ["shareitgames.com", "ushareit.com", "shareit.one", "sharecdn.com"]),
];

/// The apps installed apps are (the first five, the most common).
const INSTALLED_APPS: usize = 5;
/// Share of attempts from installed apps.
const INSTALLED_SHARE: f64 = 0.75;
/// An occasional device makes hits on this share of days, 1 to 4 visits (2.5 on average).
const ACTIVE_DAYS: f64 = 0.5;
const VISITS_MEAN: f64 = 2.5;

/// The history: its size and the time it ends at.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Attempts over the whole history, about (the hash varies the days).
    pub attempts: u64,
    pub devices: usize,
    /// Every `installed_every`-th device has an app installed.
    pub installed_every: usize,
    pub days: i64,
    /// The history ends here (the last day is partial, up to now).
    pub now_ms: i64,
    pub raw_days: u32,
    pub nodes: [&'static str; 2],
}

/// One attempt of the history, before it is a `Record`.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub ts_ms: i64,
    pub device: u32,
    pub node: usize,
    pub app: usize,
    /// Index into `KINDS`.
    pub kind: usize,
    pub n: u32,
}

/// splitmix64: a seeded, well-mixed hash (the history's only randomness).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Shape {
    /// 2 % of `devices` with an installed app, 90 days, raw rows for 14, nodes ns1 and ns2.
    pub fn realistic(attempts: u64, devices: usize, now_ms: i64) -> Shape {
        Shape { attempts, devices, installed_every: 50, days: 90, now_ms, raw_days: 14, nodes: ["ns1", "ns2"] }
    }

    pub fn today(&self) -> i64 {
        self.now_ms.div_euclid(DAY_MS)
    }

    pub fn first_day(&self) -> i64 {
        self.today() - (self.days - 1)
    }

    /// Raw rows are kept from here (the purge's cutoff).
    pub fn raw_from_ms(&self) -> i64 {
        self.now_ms - i64::from(self.raw_days) * DAY_MS
    }

    pub fn installed(&self, device: usize) -> Option<usize> {
        (device % self.installed_every == self.installed_every / 2)
            .then_some((device / self.installed_every) % INSTALLED_APPS)
    }

    fn installed_count(&self) -> usize {
        (0..self.devices).filter(|d| self.installed(*d).is_some()).count().max(1)
    }

    /// The device name of device `d` (its device key: inventory names are the key).
    pub fn device_name(d: u32) -> String {
        format!("LT-{d:04}")
    }

    /// Mean attempts per day of one installed app, and per visit of an occasional device.
    fn rates(&self) -> (f64, f64) {
        let installed = self.installed_count() as f64;
        let occasional = (self.devices as f64 - installed).max(1.0);
        let days = self.days as f64;
        let per_day = self.attempts as f64 * INSTALLED_SHARE / (installed * days);
        let per_visit =
            self.attempts as f64 * (1.0 - INSTALLED_SHARE) / (occasional * days * ACTIVE_DAYS * VISITS_MEAN);
        (per_day, per_visit.max(1.0))
    }

    /// Every attempt of `day`, device by device (up to `now_ms` on the last day).
    pub fn events(&self, day: i64) -> Vec<Event> {
        let (per_day, per_visit) = self.rates();
        let mut out = Vec::new();
        for device in 0..self.devices {
            let mut rng = Rng(mix(day as u64 ^ (device as u64) << 32));
            match self.installed(device) {
                Some(app) => installed_day(&mut rng, day, device, app, per_day, &mut out),
                None => occasional_day(&mut rng, day, device, per_visit, &mut out),
            }
        }
        out.retain(|e| e.ts_ms < self.now_ms);
        out
    }

    /// The stored row of an event.
    pub fn record(&self, e: &Event) -> Record {
        let spec = &APPS[e.app];
        let domain = match e.kind {
            0 => spec.api,
            1 => spec.telemetry,
            2 => spec.cdn,
            _ => spec.web,
        };
        let d = e.device;
        let ip = format!("10.20.{}.{}", d / 250, d % 250 + 1);
        let qname = match e.kind {
            0 | 1 => format!("api{}-normal.{domain}", e.n % 16),
            2 => format!("p{}-sign.{domain}", e.n % 9),
            _ => format!("www.{domain}"),
        };
        Record {
            ts_ms: e.ts_ms,
            node: self.nodes[e.node].to_string(),
            device_key: Shape::device_name(d),
            client_ip: Some(ip.clone()),
            client_port: Some(1024 + (e.n % 60_000) as i32),
            transport: if e.n.is_multiple_of(7) { "https" } else { "udp" }.into(),
            device_ip: Some(ip),
            mac: Some(format!("02:00:00:{:02x}:{:02x}:{:02x}", d >> 16 & 0xff, d >> 8 & 0xff, d & 0xff)),
            hostname: Some(format!("lt-{d:04}.gemeente.local")),
            device: Some(Shape::device_name(d)),
            owner: Some(format!("Afdeling {}", d % 40)),
            identity_source: "inventory-mac".into(),
            qname,
            qtype: ["A", "AAAA", "HTTPS"][(e.n % 3) as usize].into(),
            app: spec.id.into(),
            app_name: spec.name.into(),
            vendor: spec.vendor.into(),
            domain: domain.into(),
            kind: KINDS[e.kind].into(),
            matched_on: "query".into(),
            cname_alias: None,
            mode: "enforce".into(),
            policy_version: "2026-12-01".into(),
            rule: format!("app:{}", spec.id),
            resolver: None,
        }
    }

    /// The rollups of one day's events, as the writer would add them up.
    pub fn rollups(&self, events: &[Event]) -> Rollups {
        let mut rows: HashMap<Key, Counts> = HashMap::new();
        for e in events {
            let r = self.record(e);
            let key = Key {
                device_key: r.device_key,
                app: r.app,
                day: r.ts_ms.div_euclid(DAY_MS),
                node: r.node,
                mode: r.mode,
            };
            let counts = rows.entry(key).or_insert_with(|| Counts {
                owner: r.owner.clone(),
                app_name: r.app_name.clone(),
                first_ms: r.ts_ms,
                last_ms: r.ts_ms,
                ..Counts::default()
            });
            counts.owner = counts.owner.clone().max(r.owner);
            counts.attempts += 1;
            counts.kinds[e.kind] += 1;
            counts.first_ms = counts.first_ms.min(r.ts_ms);
            counts.last_ms = counts.last_ms.max(r.ts_ms);
            counts.domains.insert(r.domain);
        }
        Rollups { rows }
    }
}

/// An installed app: all day, more by day on the Wi-Fi node (ns1), less by night on the VPN
/// (ns2); mostly API, some telemetry, a few CDN hits.
fn installed_day(rng: &mut Rng, day: i64, device: usize, app: usize, per_day: f64, out: &mut Vec<Event>) {
    let device_factor = 0.5 + (mix(device as u64) % 1000) as f64 / 1000.0;
    let n = (per_day * device_factor * (0.8 + 0.4 * rng.unit())) as u64;
    for i in 0..n {
        let ms = rng.below(DAY_MS as u64) as i64;
        let hour = ms / 3_600_000;
        let kind = match rng.below(10) {
            0..=6 => 0,
            7 | 8 => 1,
            _ => 2,
        };
        let node = usize::from(!(7..18).contains(&hour));
        out.push(Event { ts_ms: day * DAY_MS + ms, device: device as u32, node, app, kind, n: i as u32 });
    }
}

/// An occasional device: on about half the days one to four visits to any app's web pages and
/// CDN, a few attempts each, on its own node.
fn occasional_day(rng: &mut Rng, day: i64, device: usize, per_visit: f64, out: &mut Vec<Event>) {
    if rng.unit() >= ACTIVE_DAYS {
        return;
    }
    let node = device % 2;
    for _ in 0..1 + rng.below(4) {
        let app = rng.below(APPS.len() as u64) as usize;
        let start = 8 * 3_600_000 + rng.below(14 * 3_600_000) as i64;
        let n = 1 + rng.below((2.0 * per_visit) as u64);
        for i in 0..n {
            let kind = if rng.below(10) < 6 { 3 } else { 2 };
            let ts_ms = day * DAY_MS + start + rng.below(120_000) as i64;
            out.push(Event { ts_ms, device: device as u32, node, app, kind, n: i as u32 });
        }
    }
}

/// What a written history holds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub attempts: u64,
    pub raw_rows: u64,
    pub rollup_rows: u64,
}

/// Visits the history day by day: each day's raw rows to keep (ts_ms ≥ the purge cutoff) and
/// its rollups.
fn each_day(shape: &Shape, mut day_done: impl FnMut(Vec<Record>, Rollups)) -> Written {
    let mut written = Written::default();
    for day in shape.first_day()..=shape.today() {
        let events = shape.events(day);
        written.attempts += events.len() as u64;
        let raw: Vec<Record> =
            events.iter().filter(|e| e.ts_ms >= shape.raw_from_ms()).map(|e| shape.record(e)).collect();
        let rollups = shape.rollups(&events);
        written.raw_rows += raw.len() as u64;
        written.rollup_rows += rollups.rows.len() as u64;
        day_done(raw, rollups);
    }
    written
}

const SQLITE_ATTEMPT: &str = "INSERT INTO attempts (ts_ms, node, device_key, client_ip, client_port, transport, \
     device_ip, mac, hostname, device, owner, identity_source, qname, qtype, app, app_name, vendor, domain, kind, \
     matched_on, cname_alias, mode, policy_version, rule) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)";

const SQLITE_ROLLUP: &str = "INSERT INTO rollups (device_key, app, day, node, mode, owner, app_name, attempts, api, \
     telemetry, cdn, web, alias, unspecified, first_ms, last_ms, domains) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

/// Writes the history into a new SQLite store at `path`, in one transaction.
// Long only for its 24 + 17 column lists (test-side code, as the tests' crate allows).
#[allow(clippy::too_many_lines)]
pub fn write_sqlite(path: &Path, shape: &Shape) -> Written {
    let mut db = store::sqlite::open_writable(path, shape.nodes[0]).unwrap();
    let tx = db.transaction().unwrap();
    let written = {
        let mut raw = tx.prepare(SQLITE_ATTEMPT).unwrap();
        let mut rollup = tx.prepare(SQLITE_ROLLUP).unwrap();
        each_day(shape, |records, rollups| {
            for r in &records {
                raw.execute(rusqlite::params![
                    r.ts_ms,
                    r.node,
                    r.device_key,
                    r.client_ip,
                    r.client_port,
                    r.transport,
                    r.device_ip,
                    r.mac,
                    r.hostname,
                    r.device,
                    r.owner,
                    r.identity_source,
                    r.qname,
                    r.qtype,
                    r.app,
                    r.app_name,
                    r.vendor,
                    r.domain,
                    r.kind,
                    r.matched_on,
                    r.cname_alias,
                    r.mode,
                    r.policy_version,
                    r.rule
                ])
                .unwrap();
            }
            for (k, c) in rollups.sorted() {
                let n = c.kinds;
                rollup
                    .execute(rusqlite::params![
                        k.device_key,
                        k.app,
                        k.day,
                        k.node,
                        k.mode,
                        c.owner,
                        c.app_name,
                        c.attempts,
                        n[0],
                        n[1],
                        n[2],
                        n[3],
                        n[4],
                        n[5],
                        c.first_ms,
                        c.last_ms,
                        c.domains_text()
                    ])
                    .unwrap();
            }
        })
    };
    tx.commit().unwrap();
    db.execute_batch("ANALYZE").unwrap();
    written
}

const PG_ATTEMPTS: &str = "COPY attempts (ts_ms, node, device_key, client_ip, client_port, transport, device_ip, \
     mac, hostname, device, owner, identity_source, qname, qtype, app, app_name, vendor, domain, kind, matched_on, \
     cname_alias, mode, policy_version, rule) FROM STDIN BINARY";

const PG_ROLLUPS: &str = "COPY rollups (device_key, app, day, node, mode, owner, app_name, attempts, api, \
     telemetry, cdn, web, alias, unspecified, first_ms, last_ms, domains) FROM STDIN BINARY";

/// Writes the history into an empty PostgreSQL store (schema made by `migrate`), by binary
/// COPY, a day per transaction.
#[allow(clippy::too_many_lines)]
pub fn write_postgres(client: &mut postgres::Client, shape: &Shape) -> Written {
    use postgres::{binary_copy::BinaryCopyInWriter, types::Type};
    let text = Type::TEXT;
    let attempt_types: Vec<Type> = (0..24)
        .map(|i| {
            if i == 0 {
                Type::INT8
            } else if i == 4 {
                Type::INT4
            } else {
                text.clone()
            }
        })
        .collect();
    let rollup_types: Vec<Type> =
        (0..17).map(|i| if i == 2 || (7..16).contains(&i) { Type::INT8 } else { text.clone() }).collect();
    let written = each_day(shape, |records, rollups| {
        let mut tx = client.transaction().unwrap();
        let mut raw = BinaryCopyInWriter::new(tx.copy_in(PG_ATTEMPTS).unwrap(), &attempt_types);
        for r in &records {
            raw.write(&[
                &r.ts_ms,
                &r.node,
                &r.device_key,
                &r.client_ip,
                &r.client_port,
                &r.transport,
                &r.device_ip,
                &r.mac,
                &r.hostname,
                &r.device,
                &r.owner,
                &r.identity_source,
                &r.qname,
                &r.qtype,
                &r.app,
                &r.app_name,
                &r.vendor,
                &r.domain,
                &r.kind,
                &r.matched_on,
                &r.cname_alias,
                &r.mode,
                &r.policy_version,
                &r.rule,
            ])
            .unwrap();
        }
        raw.finish().unwrap();
        let mut rows = BinaryCopyInWriter::new(tx.copy_in(PG_ROLLUPS).unwrap(), &rollup_types);
        for (k, c) in rollups.sorted() {
            let n = c.kinds;
            rows.write(&[
                &k.device_key,
                &k.app,
                &k.day,
                &k.node,
                &k.mode,
                &c.owner,
                &c.app_name,
                &c.attempts,
                &n[0],
                &n[1],
                &n[2],
                &n[3],
                &n[4],
                &n[5],
                &c.first_ms,
                &c.last_ms,
                &c.domains_text(),
            ])
            .unwrap();
        }
        rows.finish().unwrap();
        tx.commit().unwrap();
    });
    client.batch_execute("VACUUM ANALYZE").unwrap();
    written
}
