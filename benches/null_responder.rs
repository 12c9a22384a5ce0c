//! The do-nothing responder: the floor a UDP DNS server cannot go below on this machine.
//!
//! It runs nxguard's own UDP batching (`dns::datagrams`: `recvmmsg` of every queued query, one
//! `sendmmsg` of the answers) on a one-worker tokio runtime, as `nxguard serve` with
//! `workers = 1` does, and answers each query with the query itself turned into an empty
//! NOERROR response (QR and RA set, no records). Nothing is parsed, looked up or recorded, so
//! its CPU per query is the kernel's receive and send plus the runtime's wake-ups: `ab.sh`
//! runs it next to nxguard (`null` among the binaries) for the "cache hit ≤ 1.1 × a do-nothing
//! responder" ratio.
//!
//! `cargo bench --bench null_responder -- --bench PORT` serves 127.0.0.1:PORT until killed.
//! Without `--bench` (under `cargo test --all-targets`) it answers one query on 127.0.0.1:0 and
//! checks the answer, so the smoke run proves it answers.

use std::{net::SocketAddr, sync::Arc};

use nxguard::dns::{datagrams::Batch, wire::flag};
use tokio::net::UdpSocket;

/// The query turned into its own empty answer: QR and RA set, the rcode left NOERROR.
fn answer_into(query: &[u8], out: &mut Vec<u8>) {
    if query.len() < 12 {
        return;
    }
    out.extend_from_slice(query);
    let flags = u16::from_be_bytes([out[2], out[3]]) | flag::QR | flag::RA;
    out[2..4].copy_from_slice(&flags.to_be_bytes());
}

async fn serve(socket: Arc<UdpSocket>) -> std::io::Result<()> {
    let mut batch = Batch::new(4096);
    loop {
        let received = batch.recv(&socket).await?;
        for i in 0..received {
            let (query, _, out) = batch.query(i);
            answer_into(query, out);
        }
        batch.send(&socket).await?;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(at) = args.iter().position(|a| a == "--bench") else {
        return smoke();
    };
    let port: u16 = args.get(at + 1).and_then(|p| p.parse().ok()).unwrap_or(25360);
    runtime().block_on(async {
        let socket = Arc::new(UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap());
        serve(socket).await.unwrap();
    });
}

/// One query, one answer: the same bytes with QR and RA set.
fn smoke() {
    runtime().block_on(async {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        tokio::spawn(serve(socket));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        client.send_to(&query, addr).await.unwrap();
        let mut buf = [0u8; 64];
        let n = client.recv(&mut buf).await.unwrap();
        assert_eq!(n, query.len());
        assert_eq!(&buf[..2], &query[..2]);
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 0x0100 | flag::QR | flag::RA);
    });
}
