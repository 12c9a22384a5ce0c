//! DNS-over-QUIC streams (RFC 9250 §4.2): one query per client-opened bidirectional stream,
//! with the 2-byte length prefix, answered on the same stream, which is then finished.
//!
//! Owns: serving the streams of one established DoQ connection (each in a task of its own, as
//! many at once as quinn's stream limit lets the client open: `server.tcp_max_in_flight_per_connection`),
//! reading a query (the whole stream up to its FIN, within `server.tcp_idle_timeout_ms`), and
//! the protocol errors of §4.3.3, which close the connection with DOQ_PROTOCOL_ERROR: a length
//! prefix that does not match the stream, more than one message on a stream, a Message ID other
//! than 0 (§4.2.1), an edns-tcp-keepalive option (§5.5.2), and a message the pipeline would not
//! answer (a response sent as a query, a header cut short).
//! Does not own: the QUIC endpoint and admission (`quic`), or the answer (`resolve`).

use std::sync::Arc;

use quinn::{Connection, RecvStream, SendStream, VarInt};
use thiserror::Error;
use tracing::debug;

use crate::{
    dns::wire::{self, HEADER_LEN},
    listen::quic::Shared,
    resolve::Client,
};

/// RFC 9250 §4.3: DOQ_PROTOCOL_ERROR.
pub const PROTOCOL_ERROR: VarInt = VarInt::from_u32(0x2);
/// RFC 9250 §4.3: DOQ_EXCESSIVE_LOAD.
pub const EXCESSIVE_LOAD: VarInt = VarInt::from_u32(0x4);
/// The largest stream: the 2-byte length and a DNS message of at most 65,535 bytes.
const MAX_STREAM: usize = 2 + 65_535;
/// EDNS option code of edns-tcp-keepalive (RFC 7828), forbidden over DoQ (RFC 9250 §5.5.2).
const OPTION_TCP_KEEPALIVE: u16 = 11;

/// Why a stream breaks RFC 9250 (§4.3.3): each closes the connection with DOQ_PROTOCOL_ERROR.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("the stream does not hold exactly one length-prefixed message")]
    Framing,
    #[error("the Message ID is not 0")]
    MessageId,
    #[error("the query carries edns-tcp-keepalive")]
    TcpKeepalive,
    #[error("the message is not a query that can be answered")]
    Unanswerable,
    #[error("the stream did not end in time")]
    NoFin,
}

/// Serves the streams of `connection` until it closes.
pub(crate) async fn serve_connection(shared: &Arc<Shared>, connection: Connection, client: Client) {
    loop {
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                let (shared, connection) = (Arc::clone(shared), connection.clone());
                shared.in_flight.clone().spawn(async move {
                    if let Err(error) = serve_stream(&shared, send, recv, client).await {
                        debug!(client = %client.addr.ip(), %error, "doq protocol error");
                        connection.close(PROTOCOL_ERROR, b"protocol error");
                    }
                });
            }
            Err(error) => {
                debug!(client = %client.addr.ip(), %error, "doq connection closed");
                return;
            }
        }
    }
}

/// Reads one query, answers it on the same stream and finishes the stream.
async fn serve_stream(
    shared: &Shared,
    mut send: SendStream,
    mut recv: RecvStream,
    client: Client,
) -> Result<(), ProtocolError> {
    let stream = match tokio::time::timeout(shared.idle, recv.read_to_end(MAX_STREAM)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(quinn::ReadToEndError::TooLong)) => return Err(ProtocolError::Framing),
        // Reset by the client or the connection went away: nothing to answer.
        Ok(Err(quinn::ReadToEndError::Read(_))) => return Ok(()),
        Err(_) => return Err(ProtocolError::NoFin),
    };
    let query = query_of(&stream)?;
    let mut answer = Vec::with_capacity(512);
    shared.resolver.answer(query, client, &mut answer).await;
    if answer.is_empty() {
        return Err(ProtocolError::Unanswerable);
    }
    // The pipeline answers with the query's ID, which is 0 here, as §4.2.1 wants; answers
    // never exceed 65,535 bytes (the pipeline's TCP limit).
    let mut out = Vec::with_capacity(2 + answer.len());
    out.extend_from_slice(&u16::try_from(answer.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&answer);
    if send.write_all(&out).await.is_ok() {
        let _ = send.finish();
    }
    Ok(())
}

/// The DNS message in a whole stream, checked against RFC 9250 §4.2 and §4.3.3.
pub fn query_of(stream: &[u8]) -> Result<&[u8], ProtocolError> {
    let (prefix, message) = stream.split_at_checked(2).ok_or(ProtocolError::Framing)?;
    if usize::from(u16::from_be_bytes([prefix[0], prefix[1]])) != message.len() {
        return Err(ProtocolError::Framing);
    }
    if message.len() < HEADER_LEN {
        return Err(ProtocolError::Unanswerable);
    }
    if message[..2] != [0, 0] {
        return Err(ProtocolError::MessageId);
    }
    if let Ok(query) = wire::parse_query(message)
        && carries_tcp_keepalive(query.edns_options())
    {
        return Err(ProtocolError::TcpKeepalive);
    }
    Ok(message)
}

/// Whether raw EDNS options (code, length, data)* hold edns-tcp-keepalive.
fn carries_tcp_keepalive(mut options: &[u8]) -> bool {
    while let [c0, c1, l0, l1, rest @ ..] = options {
        if u16::from_be_bytes([*c0, *c1]) == OPTION_TCP_KEEPALIVE {
            return true;
        }
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        options = rest.get(len..).unwrap_or_default();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for example.org A with `id`, and an OPT record with `options` when given.
    fn query(id: u16, options: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        wire::push_header(&mut out, id, wire::flag::RD, [1, 0, 0, u16::from(options.is_some())]);
        wire::push_name(&mut out, "example.org");
        out.extend_from_slice(&[0, 1, 0, 1]);
        if let Some(options) = options {
            out.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0]);
            out.extend_from_slice(&(options.len() as u16).to_be_bytes());
            out.extend_from_slice(options);
        }
        out
    }

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = (message.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(message);
        out
    }

    #[test]
    fn one_length_prefixed_message_with_id_zero_is_a_query() {
        let message = query(0, None);
        assert_eq!(query_of(&framed(&message)), Ok(&message[..]));
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        assert!(query_of(&framed(&query(0, Some(&cookie)))).is_ok(), "other options are fine");
    }

    #[test]
    fn streams_that_break_rfc_9250_are_protocol_errors() {
        let message = query(0, None);
        let mut two = framed(&message);
        two.extend_from_slice(&framed(&message));
        assert_eq!(query_of(&two), Err(ProtocolError::Framing), "two messages on one stream");
        let short = framed(&message);
        assert_eq!(query_of(&short[..short.len() - 1]), Err(ProtocolError::Framing), "cut short");
        assert_eq!(query_of(&[0]), Err(ProtocolError::Framing));
        assert_eq!(query_of(&framed(&query(7, None))), Err(ProtocolError::MessageId));
        let keepalive = [0, 11, 0, 2, 0, 100];
        assert_eq!(query_of(&framed(&query(0, Some(&keepalive)))), Err(ProtocolError::TcpKeepalive));
        assert_eq!(query_of(&framed(&[0; 5])), Err(ProtocolError::Unanswerable));
    }
}
