//! The receive-pack wire formats over smart HTTP, I/O-free: [`pktline`] framing, the push
//! [`request`] (C), the ref [`advertisement`] (S), the [`report`] the client reads back
//! (S), and the [`caps`] both sides name.
//!
//! Rules (gitprotocol-pack "Pushing Data To a Server" and "Report Status";
//! gitprotocol-http "Smart Service git-receive-pack"; gitprotocol-capabilities):
//!
//! * `GET info/refs?service=git-receive-pack` answers `# service=git-receive-pack\n`, a
//!   flush, then the advertisement: `<oid> SP <ref>\0<capabilities>\n` for the first ref,
//!   `<oid> SP <ref>\n` for the rest, a flush. An empty repository advertises the zero oid
//!   with the name `capabilities^{}` so the capabilities still have a line to ride on.
//!   `git receive-pack --advertise-refs` prints the same without the service header.
//! * `POST git-receive-pack` sends optional `shallow <oid>` lines, then one
//!   `<old> SP <new> SP <ref>` line per ref update, the first with `\0<capabilities>`,
//!   then a flush. If the client asked for `push-options`, option lines follow until a
//!   second flush. Unless every command is a delete, the packfile runs to the end of
//!   the body. A zero old oid creates a ref, a zero new oid deletes it.
//! * A body that is just a flush is the probe `git` sends before a chunked upload bigger
//!   than `http.postBuffer` (remote-curl's `probe_rpc`); receive-pack answers nothing.
//! * The response, if the client asked for `report-status` (or `-v2`), is `unpack ok` or
//!   `unpack <reason>`, then `ok <ref>` or `ng <ref> <reason>` per command, then a flush.
//!   With `side-band-64k` (or `side-band`) that report travels as band-1 data, progress
//!   text on band 2 shows up as `remote: ...`, and a final flush ends the response.
//!
//! Only SHA-1 repositories and unsigned pushes are supported: we never advertise
//! `push-cert`, and `object-format=sha256` is refused with a clear error.
//!
//! ```
//! use portcullis::git::wire::{pktline, report, request::{self, CommandKind}};
//!
//! let zero = "0".repeat(40);
//! let new = "1".repeat(40);
//! let mut body = Vec::new();
//! let line = format!("{zero} {new} refs/heads/main\0report-status side-band-64k");
//! pktline::write_data(&mut body, line.as_bytes()).expect("a short line");
//! pktline::write_flush(&mut body);
//! body.extend_from_slice(b"PACK\0\0\0\x02\0\0\0\0");
//!
//! let request = request::parse_request(&body).expect("a valid push");
//! assert_eq!(request.commands[0].kind(), CommandKind::Create);
//! assert_eq!(&body[request.pack_offset..][..4], b"PACK");
//!
//! let report = report::encode_report(&request, Ok(()), &[("refs/heads/main", Some("denied"))], &[]);
//! assert!(report.windows(6).any(|w| w == b"ng ref"));

pub mod advertisement;
pub mod caps;
pub mod pktline;
pub mod report;
pub mod request;

const OID_HEX_LEN: usize = 40;
/// `<old> SP <new> SP` before the ref name.
const REFNAME_START: usize = 2 * OID_HEX_LEN + 2;
const ZERO_OID_HEX: &[u8; OID_HEX_LEN] = &[b'0'; OID_HEX_LEN];
const PACK_SIGNATURE: &[u8; 4] = b"PACK";
const SHALLOW_PREFIX: &[u8] = b"shallow ";
const SERVICE_PREFIX: &[u8] = b"# service=";
const VERSION_PREFIX: &[u8] = b"version ";
const PUSH_CERT_LINE: &[u8] = b"push-cert";
/// How much of a bad value an error message quotes.
const QUOTE_LIMIT: usize = 120;

/// The longest ref name accepted: a loose ref is a file, so git cannot store longer
/// (PATH_MAX). With [`MAX_CAPABILITIES_LEN`] it leaves the gateway room to add
/// capabilities when it re-encodes the first command line.
pub const MAX_REFNAME_LEN: usize = 4096;
/// The longest capability list accepted (git sends about a hundred bytes).
pub const MAX_CAPABILITIES_LEN: usize = 8192;

/// Whether capability `cap` (maybe `name=value`) is the capability `name`.
fn cap_is(cap: &str, name: &str) -> bool {
    cap_name(cap) == name
}

fn cap_name(cap: &str) -> &str {
    cap.split_once('=').map_or(cap, |(name, _)| name)
}

fn cap_value<'a>(caps: &'a [String], name: &str) -> Option<&'a str> {
    caps.iter().find_map(|cap| {
        cap.split_once('=')
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
    })
}

fn push_word(out: &mut String, word: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(word);
}

fn split_nul(line: &[u8]) -> (&[u8], Option<&[u8]>) {
    match line.iter().position(|&b| b == 0) {
        Some(at) => (&line[..at], Some(&line[at + 1..])),
        None => (line, None),
    }
}

fn chomp(data: &[u8]) -> &[u8] {
    data.strip_suffix(b"\n").unwrap_or(data)
}

/// A bad value for an error message: escaped and capped, so hostile input stays short.
fn quote(bytes: &[u8]) -> String {
    let mut text = String::new();
    for byte in bytes {
        if text.len() >= QUOTE_LIMIT {
            text.push_str("...");
            break;
        }
        text.extend(byte.escape_ascii().map(char::from));
    }
    text
}

/// Bodies and requests the decoders' tests share.
#[cfg(test)]
mod testkit {
    use gix::ObjectId;

    use super::pktline;
    use super::request::{Request, parse_request};

    pub const A: &str = "1111111111111111111111111111111111111111";
    pub const B: &str = "2222222222222222222222222222222222222222";
    pub const Z: &str = "0000000000000000000000000000000000000000";
    /// An empty version-2 pack: signature, version, zero objects, checksum.
    pub const EMPTY_PACK: &[u8] = b"PACK\0\0\0\x02\0\0\0\0\x02\x9d\x08\x82\x3b\xd8\xa8\xea\xb5\x10\xad\x6a\xc7\x5c\x82\x3c\xfd\x3e\xd3\x1e";

    /// pkt-lines from text: `"0000"` is a flush, anything else a data packet.
    pub fn pkts(items: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for item in items {
            match *item {
                "0000" => pktline::write_flush(&mut out),
                text => pktline::write_data(&mut out, text.as_bytes()).expect("short"),
            }
        }
        out
    }

    pub fn with_pack(items: &[&str]) -> Vec<u8> {
        let mut body = pkts(items);
        body.extend_from_slice(EMPTY_PACK);
        body
    }

    pub fn oid(hex: &str) -> ObjectId {
        ObjectId::from_hex(hex.as_bytes()).expect("test oid")
    }

    pub fn request(caps: &str) -> Request {
        let first = format!("{Z} {A} refs/heads/main\0{caps}");
        parse_request(&with_pack(&[&first, "0000"])).expect("valid")
    }
}
