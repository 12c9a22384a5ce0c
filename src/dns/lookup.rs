//! nxguard's own lookups: hickory-resolver set up against the servers the operator named.
//!
//! Owns: building a resolver for `devices.reverse_dns` (PTR names of clients) and
//! `upstream.bootstrap` (upstream host names): the listed servers over UDP (TCP on truncation)
//! in the configured order (`UserProvidedOrder`, one at a time), or /etc/resolv.conf, with a
//! short overall timeout and no hosts file. These lookups never go through nxguard itself.
//! Does not own: what is looked up, caching the results for the caller's purpose, or anything on
//! the query path (client queries never wait for these lookups).

use std::time::Duration;

use hickory_resolver::{
    TokioResolver,
    config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts, ServerOrderingStrategy},
    net::{NetError, runtime::TokioRuntimeProvider},
};

use crate::config::{NameServers, NameServersError};

/// Why the resolver for `what` (the config key) could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("cannot set up the resolver for {what}: {source}")]
    Servers { what: &'static str, source: NameServersError },
    /// Boxed: this error travels inside `UpstreamError`, which the query path returns.
    #[error("cannot set up the resolver for {what}: {source}")]
    Resolver { what: &'static str, source: Box<NetError> },
}

/// A resolver asking `servers`, each lookup bounded by `timeout` over all of them; `what`
/// names the purpose in errors.
pub fn resolver(servers: &NameServers, timeout: Duration, what: &'static str) -> Result<TokioResolver, LookupError> {
    let mut builder = match servers {
        NameServers::System => {
            TokioResolver::builder_tokio().map_err(|source| LookupError::Resolver { what, source: Box::new(source) })?
        }
        NameServers::Listed(addresses) => {
            let servers = addresses
                .iter()
                .map(|address| {
                    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                        .into_iter()
                        .map(|mut connection| {
                            connection.port = address.port();
                            connection
                        })
                        .collect();
                    NameServerConfig::new(address.ip(), true, connections)
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        }
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.timeout = timeout;
    options.attempts = 1;
    options.num_concurrent_reqs = 1;
    options.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
    options.use_hosts_file = ResolveHosts::Never;
    // The callers keep their own bounded caches; hickory's stays small.
    options.cache_size = 256;
    builder.build().map_err(|source| LookupError::Resolver { what, source: Box::new(source) })
}
