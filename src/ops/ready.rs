//! The ready file: the addresses a started `nxguard serve`, `ingest` or `console` listens on.
//!
//! Owns: writing them as one JSON object (`{"udp": ["127.0.0.1:40123"], "tcp": [...], ...}`)
//! once every listener is bound, so that whoever started nxguard with port 0 in its config (a
//! test, a supervisor) learns the ports the system chose instead of guessing a free one. The
//! file is written to a temporary name and renamed, so a reader never sees half of it.
//! Must not touch: the listeners themselves; it is told their addresses.

use std::{io, net::SocketAddr, path::Path};

/// The listeners by kind, in the order given; kinds without an address are left out.
pub type Bound = Vec<(&'static str, Vec<SocketAddr>)>;

/// Writes `bound` to `path` as JSON, atomically (a temporary file beside it, then a rename).
pub fn write(path: &Path, bound: &Bound) -> io::Result<()> {
    let object: serde_json::Map<String, serde_json::Value> = bound
        .iter()
        .filter(|(_, addrs)| !addrs.is_empty())
        .map(|(kind, addrs)| ((*kind).to_string(), addrs.iter().map(ToString::to_string).collect()))
        .collect();
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let text = serde_json::Value::Object(object).to_string() + "\n";
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_each_kind_with_addresses_and_leaves_out_the_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        let udp: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        write(&path, &vec![("udp", vec![udp]), ("tls", vec![])]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"udp\":[\"127.0.0.1:40123\"]}\n");
        assert!(!dir.path().join("ready.json.partial").exists());
    }
}
