//! pkt-line framing, the packet layer under every smart-protocol exchange.
//!
//! Rules (gitprotocol-common "pkt-line Format", gitprotocol-v2 for `0001`/`0002`):
//!
//! * A packet starts with four hex digits giving its total length,
//!   the four header bytes included, so `0006a\n` carries `a\n`.
//! * `0000` is a flush packet, `0001` a delimiter and `0002` a response end; they carry no
//!   data. `0003` is reserved and lengths 1..=3 never occur in a valid stream.
//! * A packet is at most 65520 bytes (git's `LARGE_PACKET_MAX`), so at most 65516 of data.
//! * Text lines *should* end in `\n`; readers accept either ([`PacketRef::as_text`]).
//!
//! Side-band (gitprotocol-pack "Packfile Data", gitprotocol-capabilities "side-band,
//! side-band-64k") multiplexes a response: the first data byte names the band (1 data,
//! 2 progress shown as `remote: ...`, 3 fatal error), and a packet is at most 1000 bytes
//! for `side-band` or 65520 for `side-band-64k`.
//!
//! Decoding does no I/O: [`decode`] answers "a packet, N bytes used" or "need N more
//! bytes", and [`Reader`] walks a complete buffer, reporting how far it got so a caller
//! can find where a packfile starts after the pkt-line section.
//!
//! ```
//! use portcullis::git::wire::pktline::{self, PacketRef, Reader};
//!
//! let mut buf = Vec::new();
//! pktline::write_data(&mut buf, b"hello\n").expect("short enough for one packet");
//! pktline::write_flush(&mut buf);
//! buf.extend_from_slice(b"PACK");
//!
//! let mut reader = Reader::new(&buf);
//! assert_eq!(reader.read(), Ok(Some(PacketRef::Data(b"hello\n"))));
//! assert_eq!(reader.read(), Ok(Some(PacketRef::Flush)));
//! assert_eq!(reader.rest(), b"PACK");
//! assert_eq!(reader.offset(), 14);
//! ```

/// The largest packet, header included (git's `LARGE_PACKET_MAX`); also the
/// `side-band-64k` limit.
pub const MAX_PACKET_LEN: usize = 65520;
/// The most data one packet carries.
pub const MAX_DATA_LEN: usize = MAX_PACKET_LEN - HEADER_LEN;
/// The `side-band` (not 64k) packet limit, header included (git's `DEFAULT_PACKET_MAX`).
pub const SIDE_BAND_MAX_PACKET: usize = 1000;
/// Length of the hex header.
pub const HEADER_LEN: usize = 4;

/// The flush packet: end of a section.
pub const FLUSH: &[u8; 4] = b"0000";
/// The delimiter packet (protocol v2).
pub const DELIM: &[u8; 4] = b"0001";
/// The response-end packet (protocol v2, stateless connections).
pub const RESPONSE_END: &[u8; 4] = b"0002";

/// Side-band channel carrying the payload (a packfile or a report).
pub const BAND_DATA: u8 = 1;
/// Side-band channel carrying progress text, printed by the client as `remote: ...`.
pub const BAND_PROGRESS: u8 = 2;
/// Side-band channel carrying a fatal error; the client prints it and gives up.
pub const BAND_ERROR: u8 = 3;

/// One packet, borrowed from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketRef<'a> {
    /// A data packet's payload (without the length header).
    Data(&'a [u8]),
    /// `0000`.
    Flush,
    /// `0001`.
    Delim,
    /// `0002`.
    ResponseEnd,
}

impl<'a> PacketRef<'a> {
    /// The payload of a data packet with one trailing `\n` removed, as git's readers do
    /// with `PACKET_READ_CHOMP_NEWLINE`; `None` for the special packets.
    pub fn as_text(&self) -> Option<&'a [u8]> {
        match self {
            PacketRef::Data(data) => Some(data.strip_suffix(b"\n").unwrap_or(data)),
            _ => None,
        }
    }
}

/// A malformed packet. Offsets are bytes from the start of the buffer being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("pkt-line length '{found}' at byte {offset} is not four hex digits")]
    NotHex { offset: usize, found: String },
    #[error("pkt-line length 0003 at byte {offset} is reserved")]
    Reserved { offset: usize },
    #[error("pkt-line length {len} at byte {offset} exceeds the maximum of {MAX_PACKET_LEN}")]
    TooLong { offset: usize, len: usize },
    #[error("pkt-line at byte {offset} needs {needed} bytes but only {available} remain")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("{len} bytes of data do not fit in one pkt-line (at most {MAX_DATA_LEN})")]
    DataTooLong { len: usize },
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole packet that used `len` bytes of the buffer.
    Packet { packet: PacketRef<'a>, len: usize },
    /// The buffer holds the start of a packet; this many more bytes complete it.
    NeedMore(usize),
}

/// Decodes the packet at the start of `buf` without consuming anything.
///
/// An incomplete packet is not an error here, so a streaming caller can read more and
/// retry; [`Reader`], which owns a complete buffer, turns it into [`Error::Truncated`].
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, Error> {
    decode_at(buf, 0)
}

/// [`decode`] of `buf[offset..]`, with errors naming `offset`.
fn decode_at(buf: &[u8], offset: usize) -> Result<Decoded<'_>, Error> {
    let rest = &buf[offset..];
    let Some(header) = rest.first_chunk::<HEADER_LEN>() else {
        return Ok(Decoded::NeedMore(HEADER_LEN - rest.len()));
    };
    let len = parse_header(header).ok_or_else(|| Error::NotHex {
        offset,
        found: header.escape_ascii().to_string(),
    })?;
    let packet = match len {
        0 => PacketRef::Flush,
        1 => PacketRef::Delim,
        2 => PacketRef::ResponseEnd,
        // The only length below the header's own size that is not a special packet.
        3 => return Err(Error::Reserved { offset }),
        _ if len > MAX_PACKET_LEN => return Err(Error::TooLong { offset, len }),
        _ if rest.len() < len => return Ok(Decoded::NeedMore(len - rest.len())),
        _ => PacketRef::Data(&rest[HEADER_LEN..len]),
    };
    let len = len.max(HEADER_LEN);
    Ok(Decoded::Packet { packet, len })
}

/// The length in a header, or `None` if it is not four hex digits.
fn parse_header(header: &[u8; HEADER_LEN]) -> Option<usize> {
    header.iter().try_fold(0usize, |acc, &byte| {
        let digit = (byte as char).to_digit(16)?;
        Some(acc << 4 | digit as usize)
    })
}

/// Walks the packets of a complete buffer, remembering how far it got.
///
/// Also an [`Iterator`] over `Result<PacketRef, Error>` that stops after the first error.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            offset: 0,
            failed: false,
        }
    }

    /// The next packet, or `None` at the end of the buffer. A packet cut short by the end
    /// of the buffer is [`Error::Truncated`]. After an error the offset does not move.
    pub fn read(&mut self) -> Result<Option<PacketRef<'a>>, Error> {
        if self.offset == self.buf.len() {
            return Ok(None);
        }
        match decode_at(self.buf, self.offset)? {
            Decoded::Packet { packet, len } => {
                self.offset += len;
                Ok(Some(packet))
            }
            Decoded::NeedMore(more) => {
                let available = self.buf.len() - self.offset;
                Err(Error::Truncated {
                    offset: self.offset,
                    needed: available + more,
                    available,
                })
            }
        }
    }

    /// Bytes consumed so far: where the next packet (or a packfile) starts.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.offset..]
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<PacketRef<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.read().transpose();
        self.failed = matches!(item, Some(Err(_)));
        item
    }
}

/// Appends one data packet holding `data`; fails if it does not fit in one packet.
pub fn write_data(out: &mut Vec<u8>, data: &[u8]) -> Result<(), Error> {
    write_parts(out, &[data])
}

/// Appends one data packet holding the concatenation of `parts`, so callers can frame a
/// line like `ok <ref>\n` without building it first.
pub fn write_parts(out: &mut Vec<u8>, parts: &[&[u8]]) -> Result<(), Error> {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    if len > MAX_DATA_LEN {
        return Err(Error::DataTooLong { len });
    }
    out.reserve(HEADER_LEN + len);
    write_header(out, HEADER_LEN + len);
    for part in parts {
        out.extend_from_slice(part);
    }
    Ok(())
}

/// Appends a flush packet.
pub fn write_flush(out: &mut Vec<u8>) {
    out.extend_from_slice(FLUSH);
}

/// Appends `data` on side-band `band`, split into packets of at most `max_packet` bytes
/// (header and band byte included), as git's `send_sideband` does. Pass
/// [`MAX_PACKET_LEN`] for `side-band-64k` and [`SIDE_BAND_MAX_PACKET`] for `side-band`;
/// other values are clamped into `6..=65520`. Empty `data` writes nothing.
pub fn sideband(out: &mut Vec<u8>, band: u8, data: &[u8], max_packet: usize) {
    // Header and band byte take 5 bytes; keep at least one byte of payload per packet.
    let chunk = max_packet.clamp(HEADER_LEN + 2, MAX_PACKET_LEN) - HEADER_LEN - 1;
    out.reserve(data.len() + data.len().div_ceil(chunk) * (HEADER_LEN + 1));
    for part in data.chunks(chunk) {
        write_header(out, HEADER_LEN + 1 + part.len());
        out.push(band);
        out.extend_from_slice(part);
    }
}

/// Appends the four-hex-digit header for a packet of `len` bytes (`len` ≤ 65535).
fn write_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in [12, 8, 4, 0] {
        out.push(HEX[(len >> shift) & 0xf]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(buf: &[u8]) -> Result<Vec<PacketRef<'_>>, Error> {
        Reader::new(buf).collect()
    }

    #[test]
    fn reads_data_and_special_packets() {
        let buf = b"0006a\n0000000100020004";
        assert_eq!(
            packets(buf),
            Ok(vec![
                PacketRef::Data(b"a\n"),
                PacketRef::Flush,
                PacketRef::Delim,
                PacketRef::ResponseEnd,
                PacketRef::Data(b""),
            ])
        );
    }

    #[test]
    fn accepts_uppercase_hex() {
        let mut buf = b"000A".to_vec();
        buf.extend_from_slice(b"abcdef");
        assert_eq!(packets(&buf), Ok(vec![PacketRef::Data(b"abcdef")]));
    }

    #[test]
    fn offset_points_past_the_flush() {
        let buf = b"0009hello0000PACK....";
        let mut reader = Reader::new(buf);
        assert_eq!(reader.read(), Ok(Some(PacketRef::Data(b"hello"))));
        assert_eq!(reader.offset(), 9);
        assert_eq!(reader.read(), Ok(Some(PacketRef::Flush)));
        assert_eq!(reader.offset(), 13);
        assert_eq!(reader.rest(), b"PACK....");
    }

    #[test]
    fn as_text_chomps_one_newline() {
        assert_eq!(PacketRef::Data(b"a\n\n").as_text(), Some(&b"a\n"[..]));
        assert_eq!(PacketRef::Data(b"a").as_text(), Some(&b"a"[..]));
        assert_eq!(PacketRef::Flush.as_text(), None);
    }

    #[test]
    fn rejects_non_hex_length() {
        let err = packets(b"0006a\n00g1").unwrap_err();
        assert_eq!(
            err,
            Error::NotHex {
                offset: 6,
                found: "00g1".into()
            }
        );
        // A sign or space is not a hex digit either (unlike some integer parsers allow).
        assert!(matches!(packets(b"+005a"), Err(Error::NotHex { .. })));
        assert!(matches!(packets(b" 005a"), Err(Error::NotHex { .. })));
    }

    #[test]
    fn rejects_reserved_and_short_lengths() {
        assert_eq!(packets(b"0003"), Err(Error::Reserved { offset: 0 }));
        // 0001 and 0002 are specials, leaving 0003 as the one length shorter than a header.
        assert_eq!(
            decode(b"0001"),
            Ok(Decoded::Packet {
                packet: PacketRef::Delim,
                len: 4
            })
        );
    }

    #[test]
    fn rejects_oversize_length() {
        assert_eq!(
            packets(b"fff1"),
            Err(Error::TooLong {
                offset: 0,
                len: 0xfff1
            })
        );
        assert_eq!(
            packets(b"ffff"),
            Err(Error::TooLong {
                offset: 0,
                len: 0xffff
            })
        );
        let mut max = b"fff0".to_vec();
        max.resize(MAX_PACKET_LEN, b'x');
        assert_eq!(packets(&max).map(|p| p.len()), Ok(1));
    }

    #[test]
    fn rejects_truncated_packets() {
        assert_eq!(
            packets(b"0000000a12"),
            Err(Error::Truncated {
                offset: 4,
                needed: 10,
                available: 6
            })
        );
        assert_eq!(
            packets(b"00"),
            Err(Error::Truncated {
                offset: 0,
                needed: 4,
                available: 2
            })
        );
    }

    #[test]
    fn iterator_stops_after_an_error() {
        let mut reader = Reader::new(b"0000zzzz0000");
        assert_eq!(reader.next(), Some(Ok(PacketRef::Flush)));
        assert!(matches!(reader.next(), Some(Err(Error::NotHex { .. }))));
        assert_eq!(reader.next(), None);
        assert_eq!(reader.offset(), 4);
    }

    #[test]
    fn decode_asks_for_more() {
        assert_eq!(decode(b""), Ok(Decoded::NeedMore(4)));
        assert_eq!(decode(b"00"), Ok(Decoded::NeedMore(2)));
        assert_eq!(decode(b"0008ab"), Ok(Decoded::NeedMore(2)));
        assert_eq!(
            decode(b"0008abcdXX"),
            Ok(Decoded::Packet {
                packet: PacketRef::Data(b"abcd"),
                len: 8
            })
        );
    }

    #[test]
    fn writes_and_reads_back() {
        let mut out = Vec::new();
        write_data(&mut out, b"a\n").expect("short");
        write_parts(&mut out, &[b"ok ", b"refs/heads/main", b"\n"]).expect("short");
        write_flush(&mut out);
        assert_eq!(out, b"0006a\n0017ok refs/heads/main\n0000");
    }

    #[test]
    fn write_refuses_data_that_needs_two_packets() {
        let mut out = Vec::new();
        let big = vec![b'x'; MAX_DATA_LEN + 1];
        assert_eq!(
            write_data(&mut out, &big),
            Err(Error::DataTooLong {
                len: MAX_DATA_LEN + 1
            })
        );
        assert!(out.is_empty());
        write_data(&mut out, &big[1..]).expect("exactly the maximum");
        assert_eq!(&out[..4], b"fff0");
    }

    #[test]
    fn sideband_splits_at_the_band_limit() {
        let data = vec![b'x'; 2000];
        let mut out = Vec::new();
        sideband(&mut out, BAND_PROGRESS, &data, SIDE_BAND_MAX_PACKET);
        let packets = packets(&out).expect("well formed");
        // 995 payload bytes per 1000-byte packet.
        let sizes: Vec<usize> = packets
            .iter()
            .map(|p| match p {
                PacketRef::Data(d) => {
                    assert_eq!(d[0], BAND_PROGRESS);
                    d.len() - 1
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(sizes, vec![995, 995, 10]);
    }

    #[test]
    fn sideband_64k_fills_packets_to_the_maximum() {
        let data = vec![b'y'; MAX_PACKET_LEN];
        let mut out = Vec::new();
        sideband(&mut out, BAND_DATA, &data, MAX_PACKET_LEN);
        assert_eq!(&out[..5], b"fff0\x01");
        let packets = packets(&out).expect("well formed");
        assert_eq!(packets.len(), 2);
        let mut empty = Vec::new();
        sideband(&mut empty, BAND_DATA, b"", MAX_PACKET_LEN);
        assert!(empty.is_empty());
    }

    #[test]
    fn sideband_clamps_silly_limits() {
        let mut out = Vec::new();
        sideband(&mut out, BAND_DATA, b"ab", 0);
        assert_eq!(out, b"0006\x01a0006\x01b");
    }
}
