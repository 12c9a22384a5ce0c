//! The zone over TCP: the accept loop and the connections, so that a transfer streams at the
//! secondary's pace. UDP (SOA queries) stays with hickory-server's `Server`.
//!
//! Why not hickory-server's TCP listener: its `handle_tcp` awaits the request handler inside
//! the one task that also writes the connection (`TcpStream::poll_next` writes queued answers
//! only when polled). Nothing of an answer reaches the socket until the handler returns, so a
//! whole transfer is queued in memory first (a `BufDnsStreamHandle` channel whose `try_send`
//! fails once it is full), and its `TimeoutStream` counts from the request's arrival while the
//! queue is written out: a transfer that takes longer than the timeout to build and send is cut
//! mid-stream (a 1 M-entry AXFR ended in "early eof" after ~70 k records, 30 s in). Here each
//! message is written before the next is built: memory is one message, a slow secondary slows
//! the transfer instead of breaking it, and the timeouts measure idleness between requests and
//! a stalled write, not the length of a transfer.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hickory_proto::{rr::Record, serialize::binary::BinEncoder};
use hickory_server::{
    net::{NetError, runtime::TokioTime, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponse,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{Mutex, Semaphore},
    task::JoinSet,
};
use tracing::debug;

use crate::zone::serve::Handler;

/// How long a connection may sit without a request (RFC 7766 §6.2.3 leaves it to the server;
/// secondaries open a connection per transfer).
const IDLE: Duration = Duration::from_secs(30);

/// How long one message may take to be written: a secondary that stops reading is dropped, one
/// that reads slowly is not.
const STALL: Duration = Duration::from_secs(30);

/// Connections served at once; more wait in the kernel's backlog. Secondaries are few.
const CONNECTIONS_MAX: usize = 64;

/// Accepts connections on `listener` until the task is aborted (which ends its connections).
pub async fn accept(listener: TcpListener, handler: Handler) {
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or a connection reset before accept: pause, don't spin.
                debug!(%error, "rpz accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        connections.spawn(async move {
            serve(stream, peer, &handler).await;
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Answers one connection's requests in turn until it closes, idles or stalls.
async fn serve(stream: TcpStream, peer: SocketAddr, handler: &Handler) {
    let (mut reader, writer) = stream.into_split();
    let response = StreamResponse { writer: Arc::new(Mutex::new(writer)) };
    loop {
        let raw = match tokio::time::timeout(IDLE, read_message(&mut reader)).await {
            Ok(Ok(Some(raw))) => raw,
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                debug!(peer = %peer, %error, "rpz connection read failed");
                return;
            }
            Err(_) => {
                debug!(peer = %peer, "rpz connection idle, closed");
                return;
            }
        };
        let request = match Request::from_bytes(raw.clone(), peer, Protocol::Tcp) {
            Ok(request) => request,
            Err(error) => {
                debug!(peer = %peer, %error, "rpz request malformed");
                let _ = response.write(&formerr(&raw)).await;
                return;
            }
        };
        handler.handle_request::<_, TokioTime>(&request, response.clone()).await;
        if !handler.allows(peer.ip()) {
            return;
        }
    }
}

/// The next length-prefixed message (RFC 1035 §4.2.2); None when the peer closed cleanly.
async fn read_message(reader: &mut OwnedReadHalf) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let mut raw = vec![0u8; usize::from(u16::from_be_bytes(len))];
    reader.read_exact(&mut raw).await?;
    Ok(Some(raw))
}

/// FORMERR for a request that does not parse, when it has a header to answer (RFC 1035 §4.1.1);
/// empty otherwise (nothing is written).
fn formerr(raw: &[u8]) -> Vec<u8> {
    let Some(header) = raw.get(..4) else {
        return Vec::new();
    };
    let opcode = header[2] & 0x78;
    vec![header[0], header[1], 0x80 | opcode, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// Writes each answer message to the connection as it is made.
#[derive(Clone)]
struct StreamResponse {
    writer: Arc<Mutex<OwnedWriteHalf>>,
}

impl StreamResponse {
    async fn write(&self, message: &[u8]) -> Result<(), NetError> {
        if message.is_empty() {
            return Ok(());
        }
        let len = u16::try_from(message.len()).map_err(|_| NetError::from("rpz answer longer than 64 KiB"))?;
        let mut frame = Vec::with_capacity(message.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(message);
        let mut writer = self.writer.lock().await;
        match tokio::time::timeout(STALL, writer.write_all(&frame)).await {
            Ok(written) => Ok(written?),
            Err(_) => Err(NetError::Timeout),
        }
    }
}

#[async_trait::async_trait]
impl ResponseHandler for StreamResponse {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(16 * 1024);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut encoder).map_err(|e| NetError::from(e.to_string()))?;
        self.write(&bytes).await?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formerr_keeps_the_id_and_opcode() {
        // ID 0xabcd, opcode NOTIFY (4), rest garbage.
        let answer = formerr(&[0xab, 0xcd, 0x20, 0x00, 0xff]);
        assert_eq!(&answer[..4], &[0xab, 0xcd, 0xa0, 0x01]);
        assert_eq!(answer.len(), 12);
        assert!(formerr(&[1, 2]).is_empty());
    }
}
