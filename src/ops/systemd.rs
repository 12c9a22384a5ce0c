//! Readiness notifications to systemd (the `sd_notify` protocol, `Type=notify` units).
//!
//! Owns: sending state lines such as `READY=1`, `RELOADING=1` and `STOPPING=1` as one datagram
//! to the unix socket named by `NOTIFY_SOCKET` (a path, or an abstract socket written with a
//! leading `@`). Without that variable (not started by systemd) nothing is sent. Does not own:
//! when to send them (`nxguard serve` and `server::reload`).

use std::{io, os::unix::net::UnixDatagram};

/// The variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (newline-separated `KEY=value` lines) to systemd. Returns whether there was a
/// socket to send to.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let target = target.to_string_lossy();
    match target.strip_prefix('@') {
        Some(name) => send_abstract(&socket, name, state)?,
        None => {
            socket.send_to(state.as_bytes(), target.as_ref())?;
        }
    }
    Ok(true)
}

/// Tells systemd (`Type=notify`) about a state change; a failure is logged, never fatal.
pub fn notify_or_warn(state: &str) {
    if let Err(error) = notify(state) {
        tracing::warn!(%error, state, "cannot notify systemd");
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &str, state: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    socket.send_to_addr(state.as_bytes(), &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, name: &str, _: &str) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, format!("abstract socket @{name} exists only on Linux")))
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_sockets_receive_the_state() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("nxguard-test-{}-{}", std::process::id(), rand::random::<u32>());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = super::UnixDatagram::bind_addr(&addr).unwrap();
        let sender = super::UnixDatagram::unbound().unwrap();
        super::send_abstract(&sender, &name, "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
