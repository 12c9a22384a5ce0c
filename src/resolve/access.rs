//! Access control: which clients are answered, refused, or ignored.
//!
//! Clients outside `access.allow` get no reply at all, so spoofed traffic gets no reflection and
//! nxguard can never become an open resolver by accident. Networks under `access.refuse` are
//! answered REFUSED. Does not own rate limiting.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::AccessConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse,
    Drop,
}

#[derive(Debug, Clone)]
pub struct Access {
    allow: Vec<IpNet>,
    refuse: Vec<IpNet>,
    relays: Vec<IpNet>,
}

impl Access {
    pub fn new(config: &AccessConfig) -> Access {
        Access { allow: config.allow.clone(), refuse: config.refuse.clone(), relays: config.trusted_relays.clone() }
    }

    /// Whether `ip` is a trusted relay, whose EDNS client identity options are believed.
    pub fn is_relay(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.relays.iter().any(|net| net.contains(&ip))
    }

    pub fn check(&self, ip: IpAddr) -> Verdict {
        let ip = canonical(ip);
        if !self.allow.iter().any(|net| net.contains(&ip)) {
            Verdict::Drop
        } else if self.refuse.iter().any(|net| net.contains(&ip)) {
            Verdict::Refuse
        } else {
            Verdict::Allow
        }
    }
}

/// An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d; match it as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_refuse_and_drop() {
        let config = AccessConfig {
            allow: vec!["10.0.0.0/8".parse().unwrap(), "2001:db8::/32".parse().unwrap()],
            refuse: vec!["10.9.0.0/16".parse().unwrap()],
            trusted_relays: Vec::new(),
        };
        let access = Access::new(&config);
        assert_eq!(access.check("10.1.2.3".parse().unwrap()), Verdict::Allow);
        assert_eq!(access.check("::ffff:10.1.2.3".parse().unwrap()), Verdict::Allow);
        assert_eq!(access.check("10.9.2.3".parse().unwrap()), Verdict::Refuse);
        assert_eq!(access.check("192.0.2.1".parse().unwrap()), Verdict::Drop);
        assert_eq!(access.check("2001:db8::1".parse().unwrap()), Verdict::Allow);
    }
}
