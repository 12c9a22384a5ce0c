//! `nxguard check`: validates a configuration, the domain lists and feeds it loads, the
//! upstreams, certificates and key file it names, and that the attempt store can be written.

use std::path::Path;

use anyhow::Result;
use nxguard::{
    config::{Config, StoreBackend},
    evidence::{devices::Devices, store},
    listen::tls,
    policy::{self, Policy, domains, feeds},
    server,
    upstream::pool,
};

pub fn run(path: Option<&Path>) -> Result<()> {
    let config = super::load_config(path)?;
    let devices = Devices::load(&config.devices)?;
    let (policy, unresolved) = server::build_policy_reporting(&config, &devices)?;
    pool::Upstreams::new(&config.upstream)?;
    let server = &config.server;
    if !server.tls.is_empty() || !server.https.is_empty() || !server.quic.is_empty() || !server.h3.is_empty() {
        tls::ServerTls::load(&config.server)?;
    }
    super::pseudonymizer(&config)?;
    if let (StoreBackend::Sqlite, Some(path)) = (config.store.backend, &config.store.path) {
        // Run as the service's user (the unit's ExecStartPre does): root may write where it can't.
        store::check_writable(path)?;
    }
    // PostgreSQL: connects once, naming a bad URL, password file, CA, password or host.
    store::check(&config.store)?;
    for (group, client) in &unresolved.0 {
        eprintln!("warning: policy.groups {group:?}: {client:?} matches no device in the inventory");
    }
    for line in feeds::status_lines(&config.policy) {
        println!("feed {line}");
    }
    warn_blocked_must_resolve(&config, &policy);
    if let Some(dir) = &config.policy.domains_dir {
        warn_curation(dir)?;
    }
    println!("ok: {} apps, {} domains, policy version {}", policy.apps().len(), policy.len(), policy.version());
    Ok(())
}

/// The names a municipality needs must never be blocked: the shipped lists are tested, so a
/// hit comes from a feed, a local list or policy.extra.
fn warn_blocked_must_resolve(config: &Config, policy: &Policy) {
    let local_names = config
        .policy
        .domains_dir
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join(domains::MUST_RESOLVE_FILE)).ok());
    let names = domains::must_resolve(local_names.as_deref().unwrap_or(domains::MUST_RESOLVE));
    for (name, rule) in policy::load::blocked_must_resolve(policy, &names) {
        eprintln!("warning: {name} must keep resolving (domains/must-resolve.txt) but {rule} blocks it");
    }
}

/// Curation warnings of the list files in `dir` (order, kinds, sources): the first few, then a
/// count.
fn warn_curation(dir: &Path) -> Result<()> {
    let lists = domains::read_dir(dir).map_err(policy::PolicyError::Lists)?;
    let warnings: Vec<_> =
        lists.iter().flat_map(|l| domains::lint(l, &format!("{}/{}.txt", dir.display(), l.id))).collect();
    for warning in warnings.iter().take(10) {
        eprintln!("warning: {warning}");
    }
    if warnings.len() > 10 {
        eprintln!("warning: … and {} more", warnings.len() - 10);
    }
    Ok(())
}
