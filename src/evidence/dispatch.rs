//! Moving attempt records off the query path.
//!
//! Owns: the bounded queue the query path hands records to (it never waits; when the queue is
//! full the record is dropped and counted), and the dispatcher task that resolves the device
//! identity, builds the one record every output takes (pseudonymised once, when configured),
//! emits it as one `tracing` event on the target `nxguard::attempt` and passes it to the
//! durable store and the SIEM stream (and the identified attempt to taps: tests).
//! Does not own: the record type (`attempt`), deciding what is blocked (`policy`) or storing
//! records durably (`store`, `siem`).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::evidence::{
    attempt::{Attempt, Sighting, TARGET},
    devices::{Devices, Snapshot},
    rdns::ReverseNames,
    siem::{SiemSink, SiemStats},
    store::{Pseudonymizer, Record, StoreSink, StoreStats},
};

/// The query path's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Sighting>,
    dropped: Arc<AtomicU64>,
    by_app: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Counters of the store and SIEM writers, when configured.
    pub store: Option<Arc<StoreStats>>,
    pub siem: Option<Arc<SiemStats>>,
}

impl Recorder {
    pub fn record(&self, sighting: Sighting) {
        if self.queue.try_send(sighting).is_err() {
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

/// Where the dispatcher delivers identified attempts besides the outputs (tests read from these).
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
    /// PTR names for devices the inventory and leases do not name (read from a cache, never
    /// waited for).
    pub reverse: Option<Arc<ReverseNames>>,
    /// The node records name as their source (`store.node`).
    pub node: String,
    pub taps: Vec<Sink>,
}

/// Takes records off the queue, emits them and hands them to the outputs.
pub struct Dispatcher {
    queue: mpsc::Receiver<Sighting>,
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
                sighting = self.queue.recv() => match sighting {
                    Some(sighting) => self.deliver(sighting),
                    None => return,
                },
                () = stop.cancelled() => break,
            }
        }
        self.queue.close();
        while let Some(sighting) = self.queue.recv().await {
            self.deliver(sighting);
        }
    }

    fn deliver(&mut self, sighting: Sighting) {
        self.log_drops();
        let attempt = self.identify(sighting);
        let logged = tracing::enabled!(target: TARGET, tracing::Level::INFO);
        // The record is built once, for every output that takes it, and only if one does.
        if logged || self.outputs.siem.is_some() || self.outputs.store.is_some() {
            let record = Record::of(&attempt, self.outputs.pseudonymizer.as_deref(), &self.outputs.node);
            if logged {
                emit(&record);
            }
            if let Some(siem) = &self.outputs.siem {
                siem.send(&record);
            }
            if let Some(store) = &self.outputs.store {
                store.send(record);
            }
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
    }

    /// Says so in the log when the query path dropped records since the last time.
    fn log_drops(&mut self) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > self.dropped_logged {
            tracing::warn!(
                lost = dropped - self.dropped_logged,
                total = dropped,
                "attempt queue full; records dropped"
            );
            self.dropped_logged = dropped;
        }
    }

    /// The attempt, with the device named from the EDNS identity, the inventory, the leases and
    /// any PTR name.
    fn identify(&self, sighting: Sighting) -> Attempt {
        let (ip, edns) = (sighting.client.ip(), sighting.edns);
        let mut identity = match &self.outputs.devices {
            Some(devices) => devices.identify(ip, edns),
            None => Snapshot::default().identify(ip, edns),
        };
        if let Some(reverse) = &self.outputs.reverse {
            reverse.name_identity(&mut identity, edns);
        }
        sighting.identified(identity)
    }
}

/// The record's `tracing` event on the target `nxguard::attempt` (the fields of the SIEM line).
fn emit(r: &Record) {
    fn text(v: &Option<String>) -> &str {
        v.as_deref().unwrap_or("")
    }
    tracing::info!(
        target: TARGET,
        time = %r.time_text(),
        device = r.device_key,
        client = text(&r.client_ip),
        client_port = r.client_port.unwrap_or(0),
        transport = r.transport,
        device_ip = text(&r.device_ip),
        mac = text(&r.mac),
        hostname = text(&r.hostname),
        device_name = text(&r.device),
        owner = text(&r.owner),
        identity_source = r.identity_source,
        qname = %r.qname,
        qtype = %r.qtype,
        app = %r.app,
        app_name = %r.app_name,
        vendor = %r.vendor,
        domain = %r.domain,
        kind = r.kind,
        matched_on = r.matched_on,
        cname_alias = text(&r.cname_alias),
        mode = r.mode,
        policy_version = r.policy_version,
        rule = %r.rule,
        resolver = r.resolver.as_deref().unwrap_or(""),
        "blocked"
    );
}

/// Creates the queue, its query-path handle and its dispatcher.
pub fn channel(capacity: usize, outputs: Outputs) -> (Recorder, Dispatcher) {
    let (queue, rx) = mpsc::channel::<Sighting>(capacity);
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
    use std::time::SystemTime;

    use super::*;
    use crate::{
        dns::client::Transport,
        evidence::{
            attempt::{Stamp, Via},
            devices::EdnsIdentity,
        },
        policy::{App, AppEntry, domains::Kind},
    };

    fn attempt(qname: &str) -> Sighting {
        let app = App::new("tiktok", "TikTok", "ByteDance");
        let notice = app.notice();
        Sighting {
            time: SystemTime::UNIX_EPOCH,
            client: "127.0.0.2:5000".parse().unwrap(),
            transport: Transport::Udp,
            edns: EdnsIdentity::default(),
            qname: qname.into(),
            qtype: "A".into(),
            app: Arc::new(AppEntry { app, notice }),
            domain: "tiktok.com".into(),
            kind: Kind::Web,
            via: Via::Cname { alias: "x.tiktok.com".into() },
            stamp: Stamp::enforced("test", "tiktok"),
            resolver: None,
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
}
