//! The attempt: one blocked query, with who asked as far as it was known at that moment.
//!
//! Owns: what the query path hands over (`Sighting`: everything but the device's identity), the
//! identified attempt the dispatcher makes of it (`Attempt`, with how the banned domain was
//! reached and the evidence stamp), and the tracing target of its log event. Nothing here
//! imports a sink: the store, the SIEM stream and the dispatcher import this file, never the
//! other way round.
//! Does not own: moving records off the query path (`dispatch`), the one record every output
//! takes (`store::record::Record`, built by the dispatcher), or keeping it (`store`, `siem`).

use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use serde::Serialize;

use crate::{
    dns::client::Transport,
    evidence::devices::{EdnsIdentity, Identity},
    policy::{AppEntry, domains::Kind},
};

/// The tracing target of attempt events: filter or route on it.
pub const TARGET: &str = "nxguard::attempt";

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
    /// Lowercased, in presentation form (`dns::presentation::name_text`): no control byte, space or
    /// quote, so it cannot break a log line whatever the client put in a label.
    pub qname: String,
    pub qtype: String,
    pub app: Arc<AppEntry>,
    /// The listed domain that matched.
    pub domain: String,
    pub kind: Kind,
    pub via: Via,
    /// What was in force when the name matched.
    pub stamp: Stamp,
    /// The resolver that reported the query over dnstap (its dnstap identity); None when
    /// nxguard answered it itself.
    pub resolver: Option<Arc<str>>,
}

/// Whether a matched query was blocked or only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Blocked answer, attempt recorded.
    Enforce,
    /// Answered normally, recorded as an attempt with `enforced = false` (shadow lists, log-only
    /// groups).
    LogOnly,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::LogOnly => "log-only",
        }
    }

    pub fn enforced(self) -> bool {
        self == Mode::Enforce
    }
}

/// The evidence stamp: which policy and which rule decided, so a report can prove which rule
/// blocked what and two nodes can be checked for drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub mode: Mode,
    /// `Policy::version` of the policy in force.
    pub policy_version: Arc<str>,
    /// The list or feed whose entry matched (its name, and its version where it has one).
    pub rule: Arc<str>,
}

impl Stamp {
    /// An enforced match of `rule` under policy `policy_version`.
    pub fn enforced(policy_version: &str, rule: &str) -> Stamp {
        Stamp { mode: Mode::Enforce, policy_version: policy_version.into(), rule: rule.into() }
    }
}

impl Attempt {
    pub fn app_id(&self) -> &str {
        &self.app.app.id
    }
}

/// What the query path knows of a matched query: everything in an `Attempt` but who the device
/// is, which the dispatcher works out off the query path (`Sighting::identified`).
#[derive(Debug, Clone)]
pub struct Sighting {
    pub time: SystemTime,
    pub client: SocketAddr,
    pub transport: Transport,
    /// What a trusted relay said about the device (empty for other clients).
    pub edns: EdnsIdentity,
    /// As `Attempt::qname`.
    pub qname: String,
    pub qtype: String,
    pub app: Arc<AppEntry>,
    pub domain: String,
    pub kind: Kind,
    pub via: Via,
    pub stamp: Stamp,
    pub resolver: Option<Arc<str>>,
}

impl Sighting {
    /// The attempt, with the device's identity as the dispatcher resolved it.
    pub fn identified(self, identity: Identity) -> Attempt {
        Attempt {
            time: self.time,
            client: self.client,
            transport: self.transport,
            identity,
            edns: self.edns,
            qname: self.qname,
            qtype: self.qtype,
            app: self.app,
            domain: self.domain,
            kind: self.kind,
            via: self.via,
            stamp: self.stamp,
            resolver: self.resolver,
        }
    }
}
