//! Attempt records for the tests that fill a store or a report by hand: `attempt(...)` builds
//! one with the values most tests share (a UDP query for A from port 40000, asked directly,
//! enforced under policy version "test" and rule "tiktok"), and each test states only what it is
//! about. Also the app entries such records name, and waiting for the next record a running
//! server sends.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use nxguard::{
    evidence::{
        attempt::{Attempt, Stamp, Via},
        devices::{EdnsIdentity, Identity, Source},
    },
    policy::{App, AppEntry, Policy, domains::Kind},
    resolve::Transport,
};
use tokio::sync::mpsc::UnboundedReceiver;

/// An app entry as the policy holds it, with its notice.
pub fn app(id: &str, name: &str, vendor: &str) -> Arc<AppEntry> {
    let app = App::new(id, name, vendor);
    let notice = app.notice();
    Arc::new(AppEntry { app, notice })
}

/// A device the inventory knows by its address.
pub fn inventory_device(ip: IpAddr, name: &str, owner: &str) -> Identity {
    Identity {
        ip,
        mac: None,
        hostname: None,
        device: Some(name.into()),
        owner: Some(owner.into()),
        source: Source::InventoryIp,
    }
}

/// An attempt for `qname` of `app` (domain `qname` itself, at the Unix epoch, from an unknown
/// 127.0.0.1), to be narrowed with the builder's methods.
pub fn attempt(qname: &str, app: &Arc<AppEntry>, kind: Kind) -> AttemptBuilder {
    let ip = IpAddr::from([127, 0, 0, 1]);
    AttemptBuilder(Attempt {
        time: UNIX_EPOCH,
        client: SocketAddr::new(ip, 40000),
        transport: Transport::Udp,
        identity: Identity::unknown(ip),
        edns: EdnsIdentity::default(),
        qname: qname.into(),
        qtype: "A".into(),
        app: Arc::clone(app),
        domain: qname.into(),
        kind,
        via: Via::Query,
        stamp: Stamp::enforced("test", "tiktok"),
        resolver: None,
    })
}

/// The attempt `policy` records for `qname`: its app, listed domain and kind.
pub fn blocked_by(policy: &Policy, qname: &str) -> AttemptBuilder {
    let matched = policy.lookup_text(qname).unwrap_or_else(|| panic!("{qname} is not blocked"));
    attempt(qname, matched.app, matched.kind).domain(matched.domain)
}

/// `attempt(...)` under construction; `build` hands the record over.
pub struct AttemptBuilder(Attempt);

impl AttemptBuilder {
    /// At `secs` seconds after the Unix epoch.
    pub fn at(mut self, secs: u64) -> Self {
        self.0.time = UNIX_EPOCH + Duration::from_secs(secs);
        self
    }

    pub fn time(mut self, time: SystemTime) -> Self {
        self.0.time = time;
        self
    }

    /// From `identity`, over its address (port 40000).
    pub fn from(mut self, identity: Identity) -> Self {
        self.0.client = SocketAddr::new(identity.ip, 40000);
        self.0.identity = identity;
        self
    }

    /// From the inventory device `name` of `owner` at `ip`.
    pub fn device(self, ip: &str, name: &str, owner: &str) -> Self {
        let ip = ip.parse().unwrap();
        self.from(inventory_device(ip, name, owner))
    }

    /// From an address nothing names.
    pub fn unknown(self, ip: &str) -> Self {
        let ip = ip.parse().unwrap();
        self.from(Identity::unknown(ip))
    }

    /// The listed domain that matched (the query name by default).
    pub fn domain(mut self, domain: &str) -> Self {
        self.0.domain = domain.into();
        self
    }

    /// The rule in the evidence stamp.
    pub fn rule(mut self, rule: &str) -> Self {
        self.0.stamp = Stamp::enforced("test", rule);
        self
    }

    pub fn build(self) -> Attempt {
        self.0
    }
}

/// The next attempt record a running server sends (within 5 s).
pub async fn next_attempt(attempts: &mut UnboundedReceiver<Attempt>) -> Attempt {
    tokio::time::timeout(Duration::from_secs(5), attempts.recv()).await.expect("no attempt record").unwrap()
}
