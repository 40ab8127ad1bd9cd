//! Message framing (PostgreSQL "Message Formats"): a typed message is one tag byte and an
//! Int32 length that counts itself and the body; the startup-phase packets have no tag.
//! Decoders do no I/O: given a buffer they split off a complete frame or say "need more".

use bytes::{Buf, Bytes, BytesMut};

use super::error::Error;

/// `SSLRequest` code (1234 5679).
pub const SSL_REQUEST: u32 = 80_877_103;
/// `GSSENCRequest` code (1234 5680).
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// `CancelRequest` code (1234 5678).
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// Protocol 3.0.
pub const PROTOCOL_3: u32 = 196_608;
/// Startup packets are small; anything bigger is not a client we can serve.
pub const MAX_STARTUP_BYTES: usize = 10_000;

/// One complete typed message, header included, ready to forward as-is.
#[derive(Debug, Clone)]
pub struct Frame {
    pub tag: u8,
    pub bytes: Bytes,
}

impl Frame {
    /// The body after the tag and length.
    pub fn body(&self) -> &[u8] {
        &self.bytes[5..]
    }
}

/// Splits one typed message off the front of `buf`, or returns `None` when more bytes
/// are needed. A length under 4 or over `max` is an error (the stream cannot be trusted
/// after it).
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, Error> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(Error::Protocol(format!(
            "message {:?} has length {len}",
            tag as char
        )));
    }
    if len > max {
        return Err(Error::TooLarge {
            tag: tag as char,
            len,
            max,
        });
    }
    if buf.len() < len + 1 {
        buf.reserve(len + 1 - buf.len());
        return Ok(None);
    }
    Ok(Some(Frame {
        tag,
        bytes: buf.split_to(len + 1).freeze(),
    }))
}

/// The length of the complete typed message at the front of `buf`, if it is all there.
/// Used by the server-to-client relay, which forwards runs of frames without copying.
pub fn complete_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize + 1;
    (buf.len() >= len && len >= 5).then_some(len)
}

/// A startup-phase packet: `(code, body after the code)`, or `None` for "need more".
pub fn split_startup(buf: &mut BytesMut) -> Result<Option<(u32, Bytes)>, Error> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=MAX_STARTUP_BYTES).contains(&len) {
        return Err(Error::Protocol(format!("startup packet has length {len}")));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    let code = packet.get_u32();
    Ok(Some((code, packet.freeze())))
}

/// Reads a NUL-terminated string from the front of `body`.
pub fn cstr<'a>(body: &mut &'a [u8]) -> Result<&'a str, Error> {
    let end = body
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| Error::Protocol("string without its NUL".into()))?;
    let s = std::str::from_utf8(&body[..end])
        .map_err(|_| Error::Protocol("string is not UTF-8".into()))?;
    *body = &body[end + 1..];
    Ok(s)
}
