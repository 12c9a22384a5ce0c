//! The attempt record: one blocked query, with who asked as far as it was known at that moment.
//!
//! Owns: the record type every sink imports (`Attempt`, its transport and how the banned domain
//! was reached), its flat form (one JSON object for the SIEM stream and the store's columns) and
//! its `tracing` event on the target `nxguard::attempt`. Nothing here imports a sink: the store,
//! the SIEM stream and the dispatcher import this file, never the other way round.
//! Does not own: moving records off the query path (`dispatch`) or keeping them (`store`, `siem`).

use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use serde::Serialize;

use crate::{
    evidence::devices::{EdnsIdentity, Identity},
    policy::{AppEntry, domains::Kind},
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
    /// DNS-over-QUIC (RFC 9250).
    Quic,
    /// DNS-over-HTTPS over HTTP/3 (RFC 8484 on RFC 9114).
    H3,
}

impl Transport {
    pub const ALL: [Transport; 6] =
        [Transport::Udp, Transport::Tcp, Transport::Tls, Transport::Https, Transport::Quic, Transport::H3];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Https => "https",
            Transport::Quic => "quic",
            Transport::H3 => "h3",
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
    pub mode: &'static str,
    pub policy_version: &'a str,
    pub rule: &'a str,
    /// The resolver that reported it over dnstap, when another resolver answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<&'a str>,
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
            mode: self.stamp.mode.as_str(),
            policy_version: &self.stamp.policy_version,
            rule: &self.stamp.rule,
            resolver: self.resolver.as_deref(),
        }
    }

    pub(crate) fn emit(&self, device: &str, identifying: bool) {
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
            mode = f.mode,
            policy_version = f.policy_version,
            rule = %f.rule,
            resolver = f.resolver.unwrap_or(""),
            "blocked"
        );
    }
}
