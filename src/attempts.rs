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

use crate::{domains::Kind, policy::AppEntry};

/// The tracing target of attempt events: filter or route on it.
pub const TARGET: &str = "nxguard::attempt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
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

/// One blocked query.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub client: SocketAddr,
    pub transport: Transport,
    pub qname: String,
    pub qtype: String,
    #[serde(skip)]
    pub app: Arc<AppEntry>,
    /// The listed domain that matched.
    pub domain: String,
    pub kind: Kind,
    #[serde(flatten)]
    pub via: Via,
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

impl Attempt {
    pub fn app_id(&self) -> &str {
        &self.app.app.id
    }

    fn emit(&self) {
        let alias = match &self.via {
            Via::Query => "",
            Via::Cname { alias } => alias.as_str(),
        };
        tracing::info!(
            target: TARGET,
            time = %humantime::format_rfc3339_millis(self.time),
            client = %self.client.ip(),
            client_port = self.client.port(),
            transport = self.transport.as_str(),
            qname = %self.qname,
            qtype = %self.qtype,
            app = %self.app.app.id,
            app_name = %self.app.app.name,
            vendor = %self.app.app.vendor,
            domain = %self.domain,
            kind = self.kind.as_str(),
            matched_on = if alias.is_empty() { "query" } else { "cname" },
            cname_alias = alias,
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

/// Where the dispatcher delivers records besides the tracing event.
pub type Sink = mpsc::UnboundedSender<Attempt>;

/// Takes records off the queue, emits them and hands them to the sinks.
pub struct Dispatcher {
    queue: mpsc::Receiver<Attempt>,
    sinks: Vec<Sink>,
    by_app: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Dispatcher {
    /// Runs until `stop` is cancelled, then delivers what is still queued and returns.
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

    fn deliver(&self, attempt: Attempt) {
        attempt.emit();
        if let Ok(mut counts) = self.by_app.lock() {
            *counts.entry(attempt.app.app.id.clone()).or_default() += 1;
        }
        for sink in &self.sinks {
            let _ = sink.send(attempt.clone());
        }
    }
}

/// Creates the queue, its query-path handle and its dispatcher.
pub fn channel(capacity: usize, sinks: Vec<Sink>) -> (Recorder, Dispatcher) {
    let (queue, rx) = mpsc::channel::<Attempt>(capacity);
    let by_app = Arc::new(Mutex::new(BTreeMap::new()));
    let recorder = Recorder { queue, dropped: Arc::new(AtomicU64::new(0)), by_app: Arc::clone(&by_app) };
    (recorder, Dispatcher { queue: rx, sinks, by_app })
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
        let (recorder, _dispatcher) = channel(2, Vec::new());
        for _ in 0..5 {
            recorder.record(attempt("a.tiktok.com"));
        }
        assert_eq!(recorder.dropped(), 3);
        assert_eq!(recorder.queued(), 2);
    }

    #[tokio::test]
    async fn dispatcher_delivers_to_sinks() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (recorder, dispatcher) = channel(8, vec![tx]);
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
        let (recorder, dispatcher) = channel(8, vec![tx]);
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
        let json = serde_json::to_string(&attempt("evil\n\"x.tiktok.com")).unwrap();
        assert!(!json.contains('\n'));
        assert!(json.contains(r#""matched_on":"cname""#), "{json}");
        assert!(json.contains(r#""time":"1970-01-01T00:00:00.000Z""#), "{json}");
    }
}
