//! One TCP connection as an attacker and as a busy client use it: sources outside
//! `access.allow` are closed at accept and take no connection slot, queries that get no real
//! answer don't keep a connection open, and pipelined queries are answered as each is ready
//! (RFC 7766 §6.2.1.1) up to the per-connection cap.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use crate::common::*;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use nxguard::config::Config;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// A TCP connection to `server` from `from` (an address on loopback).
async fn connect_from(server: SocketAddr, from: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

async fn send(stream: &mut TcpStream, message: &Message) {
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.unwrap();
}

/// The next answer on `stream`, or None when the server closed the connection.
async fn receive(stream: &mut TcpStream) -> Option<Message> {
    let len = tokio::time::timeout(Duration::from_secs(10), stream.read_u16()).await.expect("no answer").ok()?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.ok()?;
    Some(Message::from_vec(&buf).unwrap())
}

/// Waits (at most 10 s) for the server to close `stream`.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn denied_sources_are_closed_at_accept_and_hold_no_slot() {
    let upstream = FakeUpstream::start().await;
    // Four connection slots in all; 127.0.0.2 is outside access.allow.
    let config = config_for(
        upstream.addr,
        "[server]\ntcp_idle_timeout_ms = 60000\n[access]\nallow = [\"127.0.0.1/32\"]\n\
         [limits]\ntcp_max_connections = 4\ntcp_max_connections_per_client = 64\n",
    );
    let server = start_server(&config);
    let mut denied = Vec::new();
    for _ in 0..40 {
        let mut stream = connect_from(server.tcp, Ipv4Addr::new(127, 0, 0, 2)).await;
        send(&mut stream, &query("denied.example.org.", RecordType::A, false)).await;
        denied.push(stream);
    }
    for stream in &mut denied {
        assert!(closed_by_server(stream).await, "a denied source's connection stayed open");
    }
    // The denied connections are still open on the client side; the allowed client is served.
    let reply = tcp_ask(server.tcp, &query("allowed.example.org.", RecordType::A, false)).await;
    assert_forwarded(&reply, RecordType::A);
    assert_eq!(server.running.resolver.stats.total_received(), 1, "no query of a denied source was read");
    drop(denied);
}

#[tokio::test]
async fn refused_queries_do_not_keep_a_connection_open() {
    let upstream = FakeUpstream::start().await;
    let config = config_for(
        upstream.addr,
        "[server]\ntcp_idle_timeout_ms = 1000\n[access]\nallow = [\"127.0.0.0/8\"]\nrefuse = [\"127.0.0.3/32\"]\n",
    );
    let server = start_server(&config);

    // An allowed client asking every 100 ms stays connected well past the idle timeout.
    let mut allowed = connect_from(server.tcp, Ipv4Addr::LOCALHOST).await;
    for _ in 0..25 {
        send(&mut allowed, &query("a.tiktok.com.", RecordType::A, false)).await;
        let reply = receive(&mut allowed).await.expect("an answered client was disconnected");
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A refused source asking just as often is closed after one idle period all the same.
    let mut refused = connect_from(server.tcp, Ipv4Addr::new(127, 0, 0, 3)).await;
    let mut closed = false;
    for _ in 0..100 {
        send(&mut refused, &query("a.tiktok.com.", RecordType::A, false)).await;
        match receive(&mut refused).await {
            Some(reply) => assert_eq!(reply.metadata.response_code, ResponseCode::Refused),
            None => {
                closed = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "refused queries kept renewing the idle timeout");
}

/// A server whose upstream answers every UDP query after `delay`.
async fn slow_upstream_server(delay: Duration, server_extra: &str) -> (FakeUpstream, TestServer) {
    let upstream = FakeUpstream::start_with_delay(delay).await;
    let text = format!(
        "[server]\n{server_extra}\n[upstream]\ntimeout_ms = 5000\n[[upstream.servers]]\naddress = \"{}\"\nprotocol = \"udp\"\n",
        upstream.addr
    );
    let server = start_server(&Config::from_toml(&text).unwrap());
    (upstream, server)
}

/// The pipelined exchange of `common::pipelined_order` over a plain TCP connection.
async fn pipelined_order_over_tcp(server: &TestServer) -> (Vec<u16>, [u16; 3]) {
    tcp_ask(server.tcp, &query("cached.example.org.", RecordType::A, false)).await;
    let mut stream = TcpStream::connect(server.tcp).await.unwrap();
    pipelined_order(&mut stream).await
}

#[tokio::test]
async fn pipelined_queries_are_answered_as_each_is_ready() {
    let (_upstream, server) = slow_upstream_server(Duration::from_millis(600), "").await;
    let (order, [slow, cached, blocked]) = pipelined_order_over_tcp(&server).await;
    assert_eq!(order, vec![cached, blocked, slow], "the cached and blocked answers waited for the slow one");
}

#[tokio::test]
async fn the_per_connection_cap_holds_later_queries_back() {
    let (_upstream, server) =
        slow_upstream_server(Duration::from_millis(300), "tcp_max_in_flight_per_connection = 1").await;
    let (order, [slow, cached, blocked]) = pipelined_order_over_tcp(&server).await;
    assert_eq!(order, vec![slow, cached, blocked], "with one query in flight the connection waits for it");
}
