//! Frame Streams (<https://farsightsec.github.io/fstrm/>), the framing dnstap travels in: data
//! frames (a 32-bit length, then the payload) and control frames (a zero length, the control
//! frame's length, its type and fields), with the bidirectional handshake a receiver answers:
//! READY → ACCEPT, START, data…, STOP → FINISH.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The content type dnstap senders offer.
pub const DNSTAP_CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

pub const CONTROL_ACCEPT: u32 = 0x01;
pub const CONTROL_START: u32 = 0x02;
pub const CONTROL_STOP: u32 = 0x03;
pub const CONTROL_READY: u32 = 0x04;
pub const CONTROL_FINISH: u32 = 0x05;
const FIELD_CONTENT_TYPE: u32 = 0x01;
/// A control frame is small: its type and a few content types.
const MAX_CONTROL_BYTES: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data(Bytes),
    Control { kind: u32, content_types: Vec<Bytes> },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over ingest.max_frame_bytes")]
    TooLarge(usize),
    #[error("malformed control frame")]
    Control,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads and writes frames; data frames longer than `max_frame_bytes` are an error (the
/// sender is then closed).
pub struct Codec {
    pub max_frame_bytes: usize,
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(len) = src.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
            return Ok(None);
        };
        if len > 0 {
            if len > self.max_frame_bytes {
                return Err(FrameError::TooLarge(len));
            }
            if src.len() < 4 + len {
                src.reserve(4 + len - src.len());
                return Ok(None);
            }
            src.advance(4);
            return Ok(Some(Frame::Data(src.split_to(len).freeze())));
        }
        let Some(control_len) = src.get(4..8).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
            return Ok(None);
        };
        if !(4..=MAX_CONTROL_BYTES).contains(&control_len) {
            return Err(FrameError::Control);
        }
        if src.len() < 8 + control_len {
            return Ok(None);
        }
        src.advance(8);
        parse_control(src.split_to(control_len).freeze()).map(Some)
    }
}

fn parse_control(mut body: Bytes) -> Result<Frame, FrameError> {
    let kind = body.get_u32();
    let mut content_types = Vec::new();
    while body.remaining() >= 8 {
        let field = body.get_u32();
        let len = body.get_u32() as usize;
        if len > body.remaining() {
            return Err(FrameError::Control);
        }
        let value = body.split_to(len);
        if field == FIELD_CONTENT_TYPE {
            content_types.push(value);
        }
    }
    if body.has_remaining() {
        return Err(FrameError::Control);
    }
    Ok(Frame::Control { kind, content_types })
}

impl Encoder<Frame> for Codec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        match frame {
            Frame::Data(payload) => {
                dst.put_u32(payload.len() as u32);
                dst.put_slice(&payload);
            }
            Frame::Control { kind, content_types } => {
                let fields: usize = content_types.iter().map(|c| 8 + c.len()).sum();
                dst.put_u32(0);
                dst.put_u32((4 + fields) as u32);
                dst.put_u32(kind);
                for content_type in content_types {
                    dst.put_u32(FIELD_CONTENT_TYPE);
                    dst.put_u32(content_type.len() as u32);
                    dst.put_slice(&content_type);
                }
            }
        }
        Ok(())
    }
}

/// A control frame offering or accepting dnstap.
pub fn control(kind: u32) -> Frame {
    let content_types = match kind {
        CONTROL_FINISH => Vec::new(),
        _ => vec![Bytes::from_static(DNSTAP_CONTENT_TYPE)],
    };
    Frame::Control { kind, content_types }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frame: Frame) -> Frame {
        let mut codec = Codec { max_frame_bytes: 1024 };
        let mut buf = BytesMut::new();
        codec.encode(frame, &mut buf).unwrap();
        let whole = buf.clone();
        // Fed a byte at a time, nothing comes out before the frame is complete.
        let mut partial = BytesMut::new();
        for &b in &whole[..whole.len() - 1] {
            partial.put_u8(b);
            assert_eq!(codec.decode(&mut partial).unwrap(), None);
        }
        partial.put_u8(whole[whole.len() - 1]);
        codec.decode(&mut partial).unwrap().unwrap()
    }

    #[test]
    fn data_and_control_frames_round_trip() {
        assert_eq!(roundtrip(Frame::Data(Bytes::from_static(b"abc"))), Frame::Data(Bytes::from_static(b"abc")));
        assert_eq!(roundtrip(control(CONTROL_READY)), control(CONTROL_READY));
        assert_eq!(roundtrip(control(CONTROL_FINISH)), control(CONTROL_FINISH));
    }

    #[test]
    fn oversized_and_broken_frames_are_errors() {
        let mut codec = Codec { max_frame_bytes: 16 };
        let mut big = BytesMut::from(&[0u8, 0, 0, 17][..]);
        assert!(matches!(codec.decode(&mut big), Err(FrameError::TooLarge(17))));
        let mut control = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 9][..]);
        assert!(matches!(codec.decode(&mut control), Err(FrameError::Control)));
    }
}
