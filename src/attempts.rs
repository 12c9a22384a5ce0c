//! Attempt records: which device tried which banned app, when.
//!
//! Owns: the record type, and moving records off the query path. The query path hands a record
//! to a bounded queue and never waits; when the queue is full the record is dropped and counted.
//! A dispatcher task turns each record into one `tracing` event on the target
//! `nxguard::attempt` and passes it to any further sinks (a durable store, a SIEM stream, tests).
//! Does not own: deciding what is blocked (`policy`) or storing records durably.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    devices::{Devices, EdnsIdentity, Identity, Snapshot},
    domains::Kind,
    policy::AppEntry,
    siem::{SiemSink, SiemStats},
    store::{Pseudonymizer, StoreSink, StoreStats},
};

/// The tracing target of attempt events: filter or route on it.
pub const TARGET: &str = "nxguard::attempt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    /// DNS-over-TLS (RFC 7858).
    Tls,
    /// DNS-over-HTTPS (RFC 8484).
    Https,
}

impl Transport {
    pub const ALL: [Transport; 4] = [Transport::Udp, Transport::Tcp, Transport::Tls, Transport::Https];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Https => "https",
        }
    }
}

/// How the banned domain was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "matched_on", rename_all = "lowercase")]
pub enum Via {
    /// The query name itself is under a banned domain.
    Query,
    /// The upstream answer's CNAME chain led into a banned domain through `alias`.
    Cname { alias: String },
}

/// One blocked query, with who asked as far as it was known at that moment.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub time: SystemTime,
    pub client: SocketAddr,
    pub transport: Transport,
    /// Resolved by the dispatcher from `edns`, the inventory and the DHCP leases.
    pub identity: Identity,
    /// What a trusted relay said about the device (empty for other clients).
    pub edns: EdnsIdentity,
    pub qname: String,
    pub qtype: String,
    pub app: Arc<AppEntry>,
    /// The listed domain that matched.
    pub domain: String,
    pub kind: Kind,
    pub via: Via,
}

/// The flat form of a record, as one JSON object (SIEM stream) — every field escaped by the
/// JSON encoder, so no query name can forge a line or smuggle control characters.
#[derive(Debug, Serialize)]
pub struct Flat<'a> {
    pub time: String,
    pub device: &'a str,
    pub client: Option<String>,
    pub client_port: Option<u16>,
    pub transport: &'static str,
    pub device_ip: Option<String>,
    pub mac: Option<&'a str>,
    pub hostname: Option<&'a str>,
    pub device_name: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub identity_source: &'static str,
    pub qname: &'a str,
    pub qtype: &'a str,
    pub app: &'a str,
    pub app_name: &'a str,
    pub vendor: &'a str,
    pub domain: &'a str,
    pub kind: &'static str,
    pub matched_on: &'static str,
    pub cname_alias: Option<&'a str>,
}

impl Attempt {
    pub fn app_id(&self) -> &str {
        &self.app.app.id
    }

    /// The flat record; with a pseudonym, everything that identifies the device is left out
    /// and `device` is the pseudonym.
    pub fn flat<'a>(&'a self, device: &'a str, identifying: bool) -> Flat<'a> {
        let id = &self.identity;
        let keep = |v: Option<&'a String>| if identifying { v.map(String::as_str) } else { None };
        let (matched_on, cname_alias) = match &self.via {
            Via::Query => ("query", None),
            Via::Cname { alias } => ("cname", Some(alias.as_str())),
        };
        Flat {
            time: humantime::format_rfc3339_millis(self.time).to_string(),
            device,
            client: identifying.then(|| self.client.ip().to_string()),
            client_port: identifying.then_some(self.client.port()),
            transport: self.transport.as_str(),
            device_ip: identifying.then(|| id.ip.to_string()),
            mac: keep(id.mac.as_ref()),
            hostname: keep(id.hostname.as_ref()),
            device_name: keep(id.device.as_ref()),
            owner: keep(id.owner.as_ref()),
            identity_source: id.source.as_str(),
            qname: &self.qname,
            qtype: &self.qtype,
            app: &self.app.app.id,
            app_name: &self.app.app.name,
            vendor: &self.app.app.vendor,
            domain: &self.domain,
            kind: self.kind.as_str(),
            matched_on,
            cname_alias,
        }
    }

    fn emit(&self, device: &str, identifying: bool) {
        // The flat form formats the time and addresses: skip it when nobody listens (a blocked
        // query on a loaded server spent a fifth of its user time here with the log at warn).
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return;
        }
        let f = self.flat(device, identifying);
        tracing::info!(
            target: TARGET,
            time = %f.time,
            device = f.device,
            client = f.client.as_deref().unwrap_or(""),
            client_port = f.client_port.unwrap_or(0),
            transport = f.transport,
            device_ip = f.device_ip.as_deref().unwrap_or(""),
            mac = f.mac.unwrap_or(""),
            hostname = f.hostname.unwrap_or(""),
            device_name = f.device_name.unwrap_or(""),
            owner = f.owner.unwrap_or(""),
            identity_source = f.identity_source,
            qname = %f.qname,
            qtype = %f.qtype,
            app = %f.app,
            app_name = %f.app_name,
            vendor = %f.vendor,
            domain = %f.domain,
            kind = f.kind,
            matched_on = f.matched_on,
            cname_alias = f.cname_alias.unwrap_or(""),
            "blocked"
        );
    }
}

/// The query path's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Attempt>,
    dropped: Arc<AtomicU64>,
    by_app: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Counters of the store and SIEM writers, when configured.
    pub store: Option<Arc<StoreStats>>,
    pub siem: Option<Arc<SiemStats>>,
}

impl Recorder {
    pub fn record(&self, attempt: Attempt) {
        if self.queue.try_send(attempt).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records lost because the queue was full (or the dispatcher gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Records dispatched so far, per app id.
    pub fn by_app(&self) -> BTreeMap<String, u64> {
        self.by_app.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Where the dispatcher delivers records besides the tracing event (tests read from these).
pub type Sink = mpsc::UnboundedSender<Attempt>;

/// Where records go after the queue.
#[derive(Default)]
pub struct Outputs {
    pub store: Option<StoreSink>,
    pub siem: Option<SiemSink>,
    /// Replaces the device identity with a keyed pseudonym everywhere records go.
    pub pseudonymizer: Option<Arc<Pseudonymizer>>,
    /// Inventory and leases; without them only the address and any EDNS identity are known.
    pub devices: Option<Arc<Devices>>,
    pub taps: Vec<Sink>,
}

/// Takes records off the queue, emits them and hands them to the outputs.
pub struct Dispatcher {
    queue: mpsc::Receiver<Attempt>,
    outputs: Outputs,
    by_app: Arc<Mutex<BTreeMap<String, u64>>>,
    /// The query path's drop counter, and how much of it the log has been told about.
    dropped: Arc<AtomicU64>,
    dropped_logged: u64,
}

impl Dispatcher {
    /// Runs until `stop` is cancelled, then delivers what is still queued and returns (dropping
    /// the store and SIEM senders, which lets their writers flush and end).
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                attempt = self.queue.recv() => match attempt {
                    Some(attempt) => self.deliver(attempt),
                    None => return,
                },
                _ = stop.cancelled() => break,
            }
        }
        self.queue.close();
        while let Some(attempt) = self.queue.recv().await {
            self.deliver(attempt);
        }
    }

    fn deliver(&mut self, mut attempt: Attempt) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > self.dropped_logged {
            tracing::warn!(
                lost = dropped - self.dropped_logged,
                total = dropped,
                "attempt queue full; records dropped"
            );
            self.dropped_logged = dropped;
        }
        attempt.identity = match &self.outputs.devices {
            Some(devices) => devices.identify(attempt.client.ip(), attempt.edns),
            None => Snapshot::default().identify(attempt.client.ip(), attempt.edns),
        };
        let key = attempt.identity.key();
        let (device, identifying) = match &self.outputs.pseudonymizer {
            Some(p) => (p.pseudonym(&key), false),
            None => (key, true),
        };
        attempt.emit(&device, identifying);
        if let Some(siem) = &self.outputs.siem {
            siem.send(&attempt.flat(&device, identifying));
        }
        if let Ok(mut counts) = self.by_app.lock() {
            // No new key (and no allocation) unless this is the app's first attempt.
            match counts.get_mut(&attempt.app.app.id) {
                Some(count) => *count += 1,
                None => {
                    counts.insert(attempt.app.app.id.clone(), 1);
                }
            }
        }
        for tap in &self.outputs.taps {
            let _ = tap.send(attempt.clone());
        }
        if let Some(store) = &self.outputs.store {
            store.send(attempt);
        }
    }
}

/// Creates the queue, its query-path handle and its dispatcher.
pub fn channel(capacity: usize, outputs: Outputs) -> (Recorder, Dispatcher) {
    let (queue, rx) = mpsc::channel::<Attempt>(capacity);
    let by_app = Arc::new(Mutex::new(BTreeMap::new()));
    let dropped = Arc::new(AtomicU64::new(0));
    let recorder = Recorder {
        queue,
        dropped: Arc::clone(&dropped),
        by_app: Arc::clone(&by_app),
        store: outputs.store.as_ref().map(StoreSink::stats),
        siem: outputs.siem.as_ref().map(SiemSink::stats),
    };
    (recorder, Dispatcher { queue: rx, outputs, by_app, dropped, dropped_logged: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::App;

    fn attempt(qname: &str) -> Attempt {
        let app = App::new("tiktok", "TikTok", "ByteDance");
        let notice = app.notice();
        Attempt {
            time: SystemTime::UNIX_EPOCH,
            client: "127.0.0.2:5000".parse().unwrap(),
            transport: Transport::Udp,
            identity: Identity::unknown("127.0.0.2".parse().unwrap()),
            edns: EdnsIdentity::default(),
            qname: qname.into(),
            qtype: "A".into(),
            app: Arc::new(AppEntry { app, notice }),
            domain: "tiktok.com".into(),
            kind: Kind::Web,
            via: Via::Cname { alias: "x.tiktok.com".into() },
        }
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts_instead_of_waiting() {
        let (recorder, _dispatcher) = channel(2, Outputs::default());
        for _ in 0..5 {
            recorder.record(attempt("a.tiktok.com"));
        }
        assert_eq!(recorder.dropped(), 3);
        assert_eq!(recorder.queued(), 2);
    }

    #[tokio::test]
    async fn dispatcher_delivers_to_sinks() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (recorder, dispatcher) = channel(8, Outputs { taps: vec![tx], ..Outputs::default() });
        tokio::spawn(dispatcher.run(CancellationToken::new()));
        recorder.record(attempt("a.tiktok.com"));
        let got = rx.recv().await.unwrap();
        assert_eq!(got.qname, "a.tiktok.com");
        assert_eq!(got.app_id(), "tiktok");
        assert_eq!(recorder.by_app().get("tiktok"), Some(&1));
    }

    #[tokio::test]
    async fn stopping_delivers_what_is_queued() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (recorder, dispatcher) = channel(8, Outputs { taps: vec![tx], ..Outputs::default() });
        for _ in 0..3 {
            recorder.record(attempt("a.tiktok.com"));
        }
        let stop = CancellationToken::new();
        stop.cancel();
        dispatcher.run(stop).await;
        for _ in 0..3 {
            assert!(rx.try_recv().is_ok());
        }
    }

    #[test]
    fn serializes_as_one_json_object() {
        let record = attempt("evil\n\"x\u{1b}[31m.tiktok.com");
        let json = serde_json::to_string(&record.flat("dev", true)).unwrap();
        assert!(!json.contains('\n') && !json.contains('\u{1b}'), "{json}");
        assert!(json.contains(r#""qname":"evil\n\"x\u001b[31m.tiktok.com""#), "{json}");
        assert!(json.contains(r#""matched_on":"cname""#), "{json}");
        assert!(json.contains(r#""time":"1970-01-01T00:00:00.000Z""#), "{json}");
        let hidden = serde_json::to_string(&record.flat("p-1234", false)).unwrap();
        assert!(!hidden.contains("127.0.0.2"), "{hidden}");
    }
}
