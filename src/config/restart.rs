//! Which changes of a config a reload cannot apply: the keys that take effect only after a
//! restart (sockets, cache and limit sizes, the watcher, reverse DNS, attempts, metrics, logs).

use super::{Config, ServerConfig};

impl Config {
    /// The keys (or tables) that differ from `old`, the config the server started with, and
    /// that a reload leaves as they were until the next restart.
    pub fn restart_only_changes(&self, old: &Config) -> Vec<&'static str> {
        let changed = [
            ("server", server_needs_restart(&self.server, &old.server)),
            ("cache.max_entries", self.cache.max_entries != old.cache.max_entries),
            ("cache.max_bytes", self.cache.max_bytes != old.cache.max_bytes),
            ("limits.max_in_flight", self.limits.max_in_flight != old.limits.max_in_flight),
            ("limits.tcp_max_connections", self.limits.tcp_max_connections != old.limits.tcp_max_connections),
            (
                "limits.tcp_max_connections_per_client",
                self.limits.tcp_max_connections_per_client != old.limits.tcp_max_connections_per_client,
            ),
            ("limits.handshake_timeout_ms", self.limits.handshake_timeout_ms != old.limits.handshake_timeout_ms),
            ("policy.watch_secs", self.policy.watch_secs != old.policy.watch_secs),
            (
                "devices.reverse_dns",
                (&self.devices.reverse_dns, self.devices.reverse_dns_timeout_ms)
                    != (&old.devices.reverse_dns, old.devices.reverse_dns_timeout_ms),
            ),
            ("attempts", self.attempts != old.attempts),
            ("metrics", self.metrics != old.metrics),
            ("log", self.log != old.log),
        ];
        changed.into_iter().filter(|(_, changed)| *changed).map(|(key, _)| key).collect()
    }
}

/// Whether a `[server]` change needs a restart: everything but the certificate files, which a
/// reload re-reads.
fn server_needs_restart(new: &ServerConfig, old: &ServerConfig) -> bool {
    let mut new = new.clone();
    new.tls_cert_file.clone_from(&old.tls_cert_file);
    new.tls_key_file.clone_from(&old.tls_key_file);
    new != *old
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn names_the_keys_only_a_restart_applies() {
        let old = Config::embedded();
        let mut new = old.clone();
        assert!(new.restart_only_changes(&old).is_empty());
        new.cache.max_entries += 1;
        new.server.tls_cert_file = Some("/elsewhere/cert.pem".into());
        assert_eq!(new.restart_only_changes(&old), ["cache.max_entries"]);
        new.server.workers += 1;
        assert_eq!(new.restart_only_changes(&old), ["server", "cache.max_entries"]);
    }
}
