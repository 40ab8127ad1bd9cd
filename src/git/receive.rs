//! receive-pack over smart HTTP: the push request (C), the ref advertisement (S) and the
//! report the client reads back (S).
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
//! use portcullis::git::pktline;
//! use portcullis::git::receive::{self, CommandKind};
//!
//! let zero = "0".repeat(40);
//! let new = "1".repeat(40);
//! let mut body = Vec::new();
//! let line = format!("{zero} {new} refs/heads/main\0report-status side-band-64k");
//! pktline::write_data(&mut body, line.as_bytes()).expect("a short line");
//! pktline::write_flush(&mut body);
//! body.extend_from_slice(b"PACK\0\0\0\x02\0\0\0\0");
//!
//! let request = receive::parse_request(&body).expect("a valid push");
//! assert_eq!(request.commands[0].kind(), CommandKind::Create);
//! assert_eq!(&body[request.pack_offset..][..4], b"PACK");
//!
//! let report = receive::encode_report(&request, Ok(()), &[("refs/heads/main", Some("denied"))], &[]);
//! assert!(report.windows(6).any(|w| w == b"ng ref"));
//! ```

use std::borrow::Cow;
use std::ops::Range;

use gix::ObjectId;
use gix::bstr::BStr;

use super::pktline::{self, PacketRef, Reader};

/// The service name in URLs and the advertisement header.
pub const SERVICE: &str = "git-receive-pack";

pub const CAP_REPORT_STATUS: &str = "report-status";
pub const CAP_REPORT_STATUS_V2: &str = "report-status-v2";
pub const CAP_SIDE_BAND: &str = "side-band";
pub const CAP_SIDE_BAND_64K: &str = "side-band-64k";
pub const CAP_PUSH_OPTIONS: &str = "push-options";
pub const CAP_PUSH_CERT: &str = "push-cert";
pub const CAP_ATOMIC: &str = "atomic";
pub const CAP_QUIET: &str = "quiet";
pub const CAP_DELETE_REFS: &str = "delete-refs";
pub const CAP_OBJECT_FORMAT: &str = "object-format";
pub const CAP_AGENT: &str = "agent";

/// The name an empty repository advertises its capabilities under.
pub const EMPTY_REPO_REF: &str = "capabilities^{}";
/// The name of an advertised extra object the server has (from alternates), not a ref.
pub const HAVE_REF: &str = ".have";

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

/// A push request that could not be read. The gateway answers with the message and
/// forwards nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed pkt-line: {0}")]
    Pktline(#[from] pktline::Error),
    #[error("the push request ended before its flush packet")]
    Truncated,
    #[error("unexpected {packet} packet in the push request at byte {offset}")]
    UnexpectedPacket { packet: &'static str, offset: usize },
    #[error("expected `<old-oid> <new-oid> <ref>`, got '{line}'")]
    Malformed { line: String },
    #[error("'{value}' is not a 40-digit lowercase hex object id")]
    BadOid { value: String },
    #[error("{0} repositories are not supported")]
    ObjectFormat(String),
    #[error("signed pushes (push-cert) are not supported")]
    PushCert,
    #[error("a capability list of {len} bytes exceeds the limit of {MAX_CAPABILITIES_LEN}")]
    CapabilitiesTooLong { len: usize },
    #[error("capabilities are only allowed on the first command, found on '{name}'")]
    LateCapabilities { name: String },
    #[error("invalid ref name '{name}': {reason}")]
    BadRefname { name: String, reason: String },
    #[error("ref '{name}' is updated twice in one push")]
    DuplicateRef { name: String },
    #[error("ref '{name}': old and new object ids are the same")]
    Unchanged { name: String },
    #[error("ref '{name}': old and new object ids are both zero")]
    BothZero { name: String },
    #[error("push option '{option}' is not UTF-8")]
    BadOption { option: String },
    #[error("the push updates refs but carries no packfile")]
    MissingPack,
    #[error("expected a packfile at byte {offset}, found '{found}'")]
    NotAPack { offset: usize, found: String },
    #[error("{len} unexpected bytes after the push request at byte {offset}")]
    TrailingData { offset: usize, len: usize },
}

/// An upstream ref advertisement that could not be read or rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertisementError {
    #[error("malformed pkt-line: {0}")]
    Pktline(#[from] pktline::Error),
    #[error("the advertisement ended before its flush packet")]
    Truncated,
    #[error("advertisement is for service {found:?}, expected {expected:?}")]
    ServiceMismatch { expected: String, found: String },
    #[error("protocol version {0} advertisements are not supported")]
    Version(String),
    #[error("unexpected advertisement line '{line}'")]
    Malformed { line: String },
    #[error("{len} unexpected bytes after the advertisement at byte {offset}")]
    TrailingData { offset: usize, len: usize },
}

/// One ref update of a push (gitprotocol-pack "command").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub old: ObjectId,
    pub new: ObjectId,
    pub name: String,
}

/// What a [`Command`] does to its ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Create,
    Update,
    Delete,
}

impl CommandKind {
    /// The name rules and the audit store use (`ref.kind`, `ref_updates.kind`).
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::Create => "create",
            CommandKind::Update => "update",
            CommandKind::Delete => "delete",
        }
    }
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        if self.old.is_null() {
            CommandKind::Create
        } else if self.new.is_null() {
            CommandKind::Delete
        } else {
            CommandKind::Update
        }
    }
}

/// Which side-band the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    SideBand,
    SideBand64k,
}

impl Band {
    /// The largest packet on this band, header and band byte included.
    pub fn max_packet(self) -> usize {
        match self {
            Band::SideBand => pktline::SIDE_BAND_MAX_PACKET,
            Band::SideBand64k => pktline::MAX_PACKET_LEN,
        }
    }
}

/// Which report the client asked for. Both use the same `ok`/`ng` lines for what the
/// gateway reports; v2 only adds `option` lines for refs a hook rewrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportStatus {
    V1,
    V2,
}

/// A parsed `POST git-receive-pack` body (everything before the pack).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `shallow` lines: the client's shallow boundary.
    pub shallow: Vec<ObjectId>,
    /// Ref updates in the order the client sent them. Empty for the big-push probe.
    pub commands: Vec<Command>,
    /// Capabilities from the first command, in order (`agent=git/2.47.3` keeps its value).
    pub capabilities: Vec<String>,
    /// Push options (`git push -o`), if the client negotiated `push-options`.
    pub options: Vec<String>,
    /// Where the packfile starts in the body (the body's length when there is none).
    pub pack_offset: usize,
}

impl Request {
    /// Whether the client requested capability `cap` (matched by name, so `agent` matches
    /// `agent=git/2.47.3`).
    pub fn wants(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| cap_is(c, cap))
    }

    /// The value of a `name=value` capability.
    pub fn capability(&self, name: &str) -> Option<&str> {
        cap_value(&self.capabilities, name)
    }

    /// The side-band the response must use; `side-band-64k` wins if both were asked for.
    pub fn sideband(&self) -> Option<Band> {
        if self.wants(CAP_SIDE_BAND_64K) {
            Some(Band::SideBand64k)
        } else if self.wants(CAP_SIDE_BAND) {
            Some(Band::SideBand)
        } else {
            None
        }
    }

    /// The report the client expects; v2 wins if both were asked for, as in receive-pack.
    pub fn report_status(&self) -> Option<ReportStatus> {
        if self.wants(CAP_REPORT_STATUS_V2) {
            Some(ReportStatus::V2)
        } else if self.wants(CAP_REPORT_STATUS) {
            Some(ReportStatus::V1)
        } else {
            None
        }
    }

    /// Whether a packfile follows: some command writes a new object id.
    pub fn needs_pack(&self) -> bool {
        self.commands.iter().any(|c| !c.new.is_null())
    }

    /// The big-push probe (or a push with nothing to do): no commands at all.
    pub fn is_probe(&self) -> bool {
        self.commands.is_empty()
    }

    /// The packfile bytes of `body`, the buffer this request was parsed from.
    pub fn pack<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        body.get(self.pack_offset..).unwrap_or_default()
    }
}

/// Parses the body of `POST .../git-receive-pack` (protocol v0/v1, stateless-rpc).
///
/// Validates everything the gateway relies on before a verdict: SHA-1 object ids,
/// ref names (git's `check-ref-format`, plus receive-pack's `refs/` rule), no duplicate
/// refs, no no-op or zero-to-zero commands, and a packfile exactly when one is needed.
///
/// # Performance
///
/// One pass over the command section; the pack is not touched beyond its signature.
pub fn parse_request(body: &[u8]) -> Result<Request, RequestError> {
    let mut reader = Reader::new(body);
    let mut request = Request::default();
    while let Some(line) = section_line(&mut reader)? {
        if let Some(hex) = line.strip_prefix(SHALLOW_PREFIX) {
            request.shallow.push(parse_oid(hex)?);
            continue;
        }
        let (command, caps) = split_nul(line);
        if command == PUSH_CERT_LINE {
            return Err(RequestError::PushCert);
        }
        if let Some(caps) = caps {
            if !request.commands.is_empty() {
                return Err(RequestError::LateCapabilities {
                    name: quote(command.get(REFNAME_START..).unwrap_or_default()),
                });
            }
            if caps.len() > MAX_CAPABILITIES_LEN {
                return Err(RequestError::CapabilitiesTooLong { len: caps.len() });
            }
            request.capabilities = parse_caps(caps)?;
            check_object_format(&request.capabilities)?;
        }
        request.commands.push(parse_command(command)?);
    }
    // receive-pack reads options only when there are commands to run.
    if !request.commands.is_empty() && request.wants(CAP_PUSH_OPTIONS) {
        while let Some(line) = section_line(&mut reader)? {
            let option = std::str::from_utf8(line).map_err(|_| RequestError::BadOption {
                option: quote(line),
            })?;
            request.options.push(option.to_owned());
        }
    }
    request.pack_offset = reader.offset();
    check_duplicates(&request.commands)?;
    check_pack(&request, reader.rest())?;
    Ok(request)
}

/// The next line of a flush-terminated section, `None` at the flush. Running out of
/// bytes first is [`RequestError::Truncated`], however the last packet was cut.
fn section_line<'a>(reader: &mut Reader<'a>) -> Result<Option<&'a [u8]>, RequestError> {
    let offset = reader.offset();
    match reader.read() {
        Ok(Some(PacketRef::Data(data))) => Ok(Some(chomp(data))),
        Ok(Some(PacketRef::Flush)) => Ok(None),
        Ok(Some(PacketRef::Delim)) => Err(RequestError::UnexpectedPacket {
            packet: "delim",
            offset,
        }),
        Ok(Some(PacketRef::ResponseEnd)) => Err(RequestError::UnexpectedPacket {
            packet: "response-end",
            offset,
        }),
        Ok(None) | Err(pktline::Error::Truncated { .. }) => Err(RequestError::Truncated),
        Err(err) => Err(err.into()),
    }
}

/// `<old> SP <new> SP <ref>`, already split from its capabilities.
fn parse_command(line: &[u8]) -> Result<Command, RequestError> {
    if line.len() <= REFNAME_START || line[OID_HEX_LEN] != b' ' || line[REFNAME_START - 1] != b' ' {
        return Err(RequestError::Malformed { line: quote(line) });
    }
    let old = parse_oid(&line[..OID_HEX_LEN])?;
    let new = parse_oid(&line[OID_HEX_LEN + 1..REFNAME_START - 1])?;
    let raw_name = &line[REFNAME_START..];
    let name = std::str::from_utf8(raw_name).map_err(|_| RequestError::BadRefname {
        name: quote(raw_name),
        reason: "not UTF-8".into(),
    })?;
    check_refname(name, new.is_null())?;
    if old == new {
        let name = name.to_owned();
        return Err(if old.is_null() {
            RequestError::BothZero { name }
        } else {
            RequestError::Unchanged { name }
        });
    }
    Ok(Command {
        old,
        new,
        name: name.to_owned(),
    })
}

/// A SHA-1 object id in the lowercase hex git always sends.
fn parse_oid(hex: &[u8]) -> Result<ObjectId, RequestError> {
    let bad = || RequestError::BadOid { value: quote(hex) };
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if hex.len() != OID_HEX_LEN || !hex.iter().all(lower_hex) {
        return Err(bad());
    }
    ObjectId::from_hex(hex).map_err(|_| bad())
}

/// git's `check-ref-format` (through gix-validate) plus receive-pack's own rule: only
/// `refs/...`, and at least two levels below `refs/` unless the ref is being deleted
/// (`update()` in receive-pack.c refuses others as "funny refname").
fn check_refname(name: &str, delete: bool) -> Result<(), RequestError> {
    let bad = |reason: &str| RequestError::BadRefname {
        name: quote(name.as_bytes()),
        reason: reason.to_owned(),
    };
    if name.len() > MAX_REFNAME_LEN {
        return Err(bad("longer than 4096 bytes"));
    }
    let below_refs = match name.strip_prefix("refs/") {
        Some(rest) if !rest.is_empty() => rest,
        _ => return Err(bad("must start with refs/")),
    };
    gix::validate::reference::name(BStr::new(name)).map_err(|err| bad(&err.to_string()))?;
    if !delete && !below_refs.contains('/') {
        return Err(bad("must have a level below refs/, like refs/heads/<name>"));
    }
    Ok(())
}

fn check_object_format(caps: &[String]) -> Result<(), RequestError> {
    match cap_value(caps, CAP_OBJECT_FORMAT) {
        Some(format) if format != "sha1" => Err(RequestError::ObjectFormat(format.to_owned())),
        _ => Ok(()),
    }
}

/// Two commands for one ref would make the verdict ambiguous; git refuses them too.
fn check_duplicates(commands: &[Command]) -> Result<(), RequestError> {
    if commands.len() < 2 {
        return Ok(());
    }
    let mut names: Vec<&str> = commands.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    match names.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => Err(RequestError::DuplicateRef {
            name: pair[0].to_owned(),
        }),
        None => Ok(()),
    }
}

/// A pack must follow exactly when a command writes an object; nothing else may.
fn check_pack(request: &Request, rest: &[u8]) -> Result<(), RequestError> {
    let offset = request.pack_offset;
    if !request.needs_pack() {
        return match rest.len() {
            0 => Ok(()),
            len => Err(RequestError::TrailingData { offset, len }),
        };
    }
    if rest.is_empty() {
        return Err(RequestError::MissingPack);
    }
    if !rest.starts_with(PACK_SIGNATURE) {
        return Err(RequestError::NotAPack {
            offset,
            found: quote(&rest[..rest.len().min(PACK_SIGNATURE.len())]),
        });
    }
    Ok(())
}

fn parse_caps(caps: &[u8]) -> Result<Vec<String>, RequestError> {
    let caps =
        std::str::from_utf8(caps).map_err(|_| RequestError::Malformed { line: quote(caps) })?;
    Ok(caps.split_ascii_whitespace().map(str::to_owned).collect())
}

/// Re-encodes the command section (and push-options section) of `request` for the
/// upstream, announcing `capabilities` instead of the client's. The caller appends
/// `request.pack(body)` untouched.
///
/// `include_options` decides whether the push options are forwarded; the `push-options`
/// capability is added or dropped to match, because receive-pack reads an options
/// section exactly when that capability is present.
///
/// # Panics
///
/// If `capabilities` run to tens of KiB, or the request was built by hand with an
/// oversize ref name: a request from [`parse_request`] has a ref name of at most
/// [`MAX_REFNAME_LEN`] bytes, so its first line fits with room to spare.
pub fn encode_commands<S: AsRef<str>>(
    request: &Request,
    capabilities: &[S],
    include_options: bool,
) -> Vec<u8> {
    let caps = forwarded_caps(capabilities, include_options);
    let mut out = Vec::with_capacity(64 + request.commands.len() * 128 + caps.len());
    let mut hex = [0u8; OID_HEX_LEN];
    for oid in &request.shallow {
        put(&mut out, &[SHALLOW_PREFIX, oid_hex(oid, &mut hex)]);
    }
    for (i, command) in request.commands.iter().enumerate() {
        let mut new_hex = [0u8; OID_HEX_LEN];
        let old = oid_hex(&command.old, &mut hex);
        let new = oid_hex(&command.new, &mut new_hex);
        let name = command.name.as_bytes();
        if i == 0 {
            let line: &[&[u8]] = &[old, b" ", new, b" ", name, b"\0", caps.as_bytes()];
            put(&mut out, line);
        } else {
            put(&mut out, &[old, b" ", new, b" ", name]);
        }
    }
    pktline::write_flush(&mut out);
    if include_options && !request.commands.is_empty() {
        for option in &request.options {
            put(&mut out, &[option.as_bytes()]);
        }
        pktline::write_flush(&mut out);
    }
    out
}

/// One re-encoded line; see the panics section of [`encode_commands`].
fn put(out: &mut Vec<u8>, parts: &[&[u8]]) {
    pktline::write_parts(out, parts)
        .expect("parsed lines fit in a pkt-line again; ref names and capabilities are capped");
}

/// `capabilities`, each after a space as git's send-pack writes them, with
/// `push-options` present iff `include_options`.
fn forwarded_caps<S: AsRef<str>>(capabilities: &[S], include_options: bool) -> String {
    let mut caps = String::new();
    let mut has_options = false;
    for cap in capabilities.iter().map(AsRef::as_ref) {
        if cap_is(cap, CAP_PUSH_OPTIONS) {
            if !include_options || has_options {
                continue;
            }
            has_options = true;
        }
        caps.push(' ');
        caps.push_str(cap);
    }
    if include_options && !has_options {
        caps.push(' ');
        caps.push_str(CAP_PUSH_OPTIONS);
    }
    caps
}

fn oid_hex<'a>(oid: &ObjectId, buf: &'a mut [u8; OID_HEX_LEN]) -> &'a [u8] {
    oid.hex_to_buf(buf).as_bytes()
}

/// One advertised ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedRef {
    pub oid: ObjectId,
    pub name: String,
}

/// A parsed v0/v1 ref advertisement (`info/refs` body).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advertisement {
    /// The service named in the `# service=` header, if the body had one.
    pub service: Option<String>,
    /// 1 if the server sent a `version 1` line, else 0.
    pub version: u8,
    /// Real refs; the empty-repository placeholder and `.have` lines are not among them.
    pub refs: Vec<AdvertisedRef>,
    /// Capabilities from the first line, in order.
    pub capabilities: Vec<String>,
    /// Objects the server has through alternates (`.have` lines).
    pub haves: Vec<ObjectId>,
    /// The server's shallow boundary (`shallow` lines).
    pub shallow: Vec<ObjectId>,
}

impl Advertisement {
    /// Whether the server offers capability `cap` (matched by name).
    pub fn supports(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| cap_is(c, cap))
    }

    /// The value of a `name=value` capability.
    pub fn capability(&self, name: &str) -> Option<&str> {
        cap_value(&self.capabilities, name)
    }
}

/// Where the parts of an advertisement sit in its body.
struct Layout {
    /// Just after the service header and its flush (0 without a header).
    refs_start: usize,
    /// The line carrying the capabilities.
    first_line: Option<FirstLine>,
    /// The flush that ends the advertisement.
    end_flush: usize,
}

/// The first ref line: the whole packet, and its `<oid> SP <name>` part.
struct FirstLine {
    packet: Range<usize>,
    head: Range<usize>,
}

/// Parses an upstream `info/refs?service=...` body, with or without the service header.
pub fn parse_advertisement(body: &[u8]) -> Result<Advertisement, AdvertisementError> {
    scan_advertisement(body).map(|(advertisement, _)| advertisement)
}

/// Rewrites an advertisement's capability list: drops each capability named in `remove`
/// (by name, so `agent` drops `agent=...`; an entry ending in `=` drops by prefix), then
/// appends each of `add` not already present by name. Always emits the
/// `# service=<service>` header, whether or not the upstream sent one; every other
/// byte is copied as the upstream sent it.
pub fn rewrite_advertisement(
    body: &[u8],
    service: &str,
    add: &[&str],
    remove: &[&str],
) -> Result<Vec<u8>, AdvertisementError> {
    let (advertisement, layout) = scan_advertisement(body)?;
    if let Some(found) = advertisement.service.as_deref()
        && found != service
    {
        return Err(AdvertisementError::ServiceMismatch {
            expected: service.to_owned(),
            found: found.to_owned(),
        });
    }
    let caps = edit_caps(&advertisement.capabilities, add, remove);
    let mut out = Vec::with_capacity(body.len() + 64 + caps.len());
    pktline::write_parts(&mut out, &[SERVICE_PREFIX, service.as_bytes(), b"\n"])?;
    pktline::write_flush(&mut out);
    match layout.first_line {
        Some(FirstLine { packet, head }) => {
            out.extend_from_slice(&body[layout.refs_start..packet.start]);
            let line: &[&[u8]] = &[&body[head], b"\0", caps.as_bytes(), b"\n"];
            pktline::write_parts(&mut out, line)?;
            out.extend_from_slice(&body[packet.end..]);
        }
        // No ref line at all: give the capabilities the empty-repository line.
        None => {
            out.extend_from_slice(&body[layout.refs_start..layout.end_flush]);
            let name = EMPTY_REPO_REF.as_bytes();
            let line: &[&[u8]] = &[ZERO_OID_HEX, b" ", name, b"\0", caps.as_bytes(), b"\n"];
            pktline::write_parts(&mut out, line)?;
            out.extend_from_slice(&body[layout.end_flush..]);
        }
    }
    Ok(out)
}

fn scan_advertisement(body: &[u8]) -> Result<(Advertisement, Layout), AdvertisementError> {
    let mut reader = Reader::new(body);
    let mut advertisement = Advertisement::default();
    let mut layout = Layout {
        refs_start: 0,
        first_line: None,
        end_flush: 0,
    };
    let mut next = advertisement_line(&mut reader)?;
    if let Some(service) = next.and_then(|(_, line)| line.strip_prefix(SERVICE_PREFIX)) {
        advertisement.service = Some(utf8_line(service)?.to_owned());
        if advertisement_line(&mut reader)?.is_some() {
            return Err(AdvertisementError::Malformed {
                line: "a line where the flush after the service header belongs".into(),
            });
        }
        layout.refs_start = reader.offset();
        next = advertisement_line(&mut reader)?;
    }
    if let Some(version) = next.and_then(|(_, line)| line.strip_prefix(VERSION_PREFIX)) {
        if version != b"1" {
            return Err(AdvertisementError::Version(quote(version)));
        }
        advertisement.version = 1;
        next = advertisement_line(&mut reader)?;
    }
    while let Some((start, line)) = next {
        if layout.first_line.is_none() {
            let (head, caps) = split_nul(line);
            let head_start = start + pktline::HEADER_LEN;
            layout.first_line = Some(FirstLine {
                packet: start..reader.offset(),
                head: head_start..head_start + head.len(),
            });
            advertisement.capabilities = match caps {
                Some(caps) => utf8_line(caps)?
                    .split_ascii_whitespace()
                    .map(str::to_owned)
                    .collect(),
                None => Vec::new(),
            };
            add_ref_line(&mut advertisement, head)?;
        } else {
            add_ref_line(&mut advertisement, line)?;
        }
        next = advertisement_line(&mut reader)?;
    }
    // `advertisement_line` returned `None`, so the packet just read was the flush.
    layout.end_flush = reader.offset() - pktline::FLUSH.len();
    if !reader.rest().is_empty() {
        return Err(AdvertisementError::TrailingData {
            offset: reader.offset(),
            len: reader.rest().len(),
        });
    }
    Ok((advertisement, layout))
}

/// The next advertisement line with the offset it starts at; `None` at a flush.
fn advertisement_line<'a>(
    reader: &mut Reader<'a>,
) -> Result<Option<(usize, &'a [u8])>, AdvertisementError> {
    let start = reader.offset();
    match reader.read() {
        Ok(Some(PacketRef::Data(data))) => Ok(Some((start, chomp(data)))),
        Ok(Some(PacketRef::Flush)) => Ok(None),
        Ok(Some(other)) => Err(AdvertisementError::Malformed {
            line: format!("{other:?}"),
        }),
        Ok(None) | Err(pktline::Error::Truncated { .. }) => Err(AdvertisementError::Truncated),
        Err(err) => Err(err.into()),
    }
}

/// `<oid> SP <name>` or `shallow <oid>`, sorted into the advertisement.
fn add_ref_line(advertisement: &mut Advertisement, line: &[u8]) -> Result<(), AdvertisementError> {
    let malformed = || AdvertisementError::Malformed { line: quote(line) };
    if let Some(hex) = line.strip_prefix(SHALLOW_PREFIX) {
        advertisement
            .shallow
            .push(parse_oid(hex).map_err(|_| malformed())?);
        return Ok(());
    }
    if line.len() <= OID_HEX_LEN + 1 || line[OID_HEX_LEN] != b' ' {
        return Err(malformed());
    }
    let oid = parse_oid(&line[..OID_HEX_LEN]).map_err(|_| malformed())?;
    let name = utf8_line(&line[OID_HEX_LEN + 1..])?;
    match name {
        EMPTY_REPO_REF if oid.is_null() => {}
        HAVE_REF => advertisement.haves.push(oid),
        _ => advertisement.refs.push(AdvertisedRef {
            oid,
            name: name.to_owned(),
        }),
    }
    Ok(())
}

fn utf8_line(bytes: &[u8]) -> Result<&str, AdvertisementError> {
    std::str::from_utf8(bytes).map_err(|_| AdvertisementError::Malformed { line: quote(bytes) })
}

/// `caps` minus `remove`, plus whatever of `add` is missing, joined by spaces.
fn edit_caps(caps: &[String], add: &[&str], remove: &[&str]) -> String {
    let removed = |cap: &str| {
        remove.iter().any(|r| match r.strip_suffix('=') {
            Some(_) => cap.starts_with(r),
            None => cap_is(cap, r),
        })
    };
    let mut out = String::new();
    let kept = caps.iter().map(String::as_str).filter(|c| !removed(c));
    for cap in kept.clone() {
        push_word(&mut out, cap);
    }
    for cap in add {
        let name = cap_name(cap);
        if !kept.clone().any(|c| cap_name(c) == name) {
            push_word(&mut out, cap);
        }
    }
    out
}

/// Builds the response to a push the gateway answers itself, byte for byte what git's
/// receive-pack sends in stateless-rpc mode: `progress` lines on band 2 (a missing `\n` is
/// added), then the report (`unpack ...`, one `ok`/`ng` line per entry of `refs`, a flush)
/// as band-1 data, then a final flush. Without side-band the report goes bare and the
/// progress is dropped (it has nowhere to go); without `report-status` there is no report.
///
/// `refs` pairs a ref name with `None` for `ok` or `Some(reason)` for `ng`; list every
/// command of the request, in order, or `git push` complains that the remote did not
/// report on the missing ones. Line breaks in reasons become spaces.
pub fn encode_report(
    request: &Request,
    unpack: Result<(), &str>,
    refs: &[(&str, Option<&str>)],
    progress: &[String],
) -> Vec<u8> {
    let band = request.sideband();
    let mut out = Vec::new();
    if let Some(band) = band {
        for line in progress {
            write_progress(&mut out, band, line);
        }
    }
    if request.report_status().is_some() {
        let report = report_lines(unpack, refs);
        match band {
            Some(band) => {
                pktline::sideband(&mut out, pktline::BAND_DATA, &report, band.max_packet())
            }
            None => out.extend_from_slice(&report),
        }
    }
    if band.is_some() {
        pktline::write_flush(&mut out);
    }
    out
}

/// One progress line on band 2 (shown as `remote: <text>`), or nothing if the client did
/// not ask for side-band. Lets the gateway speak before relaying an upstream's response.
pub fn progress_packet(request: &Request, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(band) = request.sideband() {
        write_progress(&mut out, band, text);
    }
    out
}

fn write_progress(out: &mut Vec<u8>, band: Band, text: &str) {
    let line: Cow<'_, str> = if text.ends_with('\n') {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("{text}\n"))
    };
    pktline::sideband(
        out,
        pktline::BAND_PROGRESS,
        line.as_bytes(),
        band.max_packet(),
    );
}

/// The report-status pkt-lines, flush included.
fn report_lines(unpack: Result<(), &str>, refs: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut report = Vec::with_capacity(16 + refs.len() * 64);
    let status = match unpack {
        Ok(()) => Cow::Borrowed("ok"),
        Err(reason) if reason.trim().is_empty() => Cow::Borrowed("failed"),
        Err(reason) => one_line(reason),
    };
    write_report_line(&mut report, &[b"unpack "], &status);
    for (name, verdict) in refs {
        let name = one_line(name);
        match verdict {
            None => write_report_line(&mut report, &[b"ok "], &name),
            Some(reason) => {
                let parts: &[&[u8]] = &[b"ng ", name.as_bytes(), b" "];
                write_report_line(&mut report, parts, &one_line(reason));
            }
        }
    }
    pktline::write_flush(&mut report);
    report
}

/// Writes `prefix` + `text` + `\n` as one packet, shortening `text` to fit. A prefix that
/// cannot fit by itself (a ref name near 64 KiB) drops the line: there is no way to say it.
fn write_report_line(out: &mut Vec<u8>, prefix: &[&[u8]], text: &str) {
    let used: usize = prefix.iter().map(|part| part.len()).sum::<usize>() + 1;
    let Some(room) = pktline::MAX_DATA_LEN.checked_sub(used) else {
        return;
    };
    let text = truncate(text, room);
    let mut parts = prefix.to_vec();
    parts.extend_from_slice(&[text.as_bytes(), b"\n"]);
    pktline::write_parts(out, &parts).expect("the length was checked against the maximum");
}

/// Control characters would split or corrupt a report line; make them spaces.
fn one_line(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(text.replace(char::is_control, " "))
    } else {
        Cow::Borrowed(text)
    }
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";
    /// An empty version-2 pack: signature, version, zero objects, checksum.
    const EMPTY_PACK: &[u8] = b"PACK\0\0\0\x02\0\0\0\0\x02\x9d\x08\x82\x3b\xd8\xa8\xea\xb5\x10\xad\x6a\xc7\x5c\x82\x3c\xfd\x3e\xd3\x1e";

    /// pkt-lines from text: `"0000"` is a flush, anything else a data packet.
    fn pkts(items: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for item in items {
            match *item {
                "0000" => pktline::write_flush(&mut out),
                text => pktline::write_data(&mut out, text.as_bytes()).expect("short"),
            }
        }
        out
    }

    fn with_pack(items: &[&str]) -> Vec<u8> {
        let mut body = pkts(items);
        body.extend_from_slice(EMPTY_PACK);
        body
    }

    fn oid(hex: &str) -> ObjectId {
        ObjectId::from_hex(hex.as_bytes()).expect("test oid")
    }

    fn request(caps: &str) -> Request {
        let first = format!("{Z} {A} refs/heads/main\0{caps}");
        parse_request(&with_pack(&[&first, "0000"])).expect("valid")
    }

    #[test]
    fn parses_create_update_delete() {
        let body = with_pack(&[
            &format!(
                "{Z} {A} refs/heads/new\0 report-status-v2 side-band-64k quiet object-format=sha1 agent=git/2.47.3"
            ),
            &format!("{A} {B} refs/heads/main"),
            &format!("{B} {Z} refs/heads/old\n"),
            "0000",
        ]);
        let req = parse_request(&body).expect("valid");
        let kinds: Vec<_> = req.commands.iter().map(|c| c.kind().name()).collect();
        assert_eq!(kinds, ["create", "update", "delete"]);
        let kinds: Vec<_> = req.commands.iter().map(Command::kind).collect();
        assert_eq!(
            kinds,
            [
                CommandKind::Create,
                CommandKind::Update,
                CommandKind::Delete
            ]
        );
        assert_eq!(req.commands[2].name, "refs/heads/old");
        assert_eq!(req.commands[1].old, oid(A));
        assert_eq!(
            req.capabilities,
            [
                "report-status-v2",
                "side-band-64k",
                "quiet",
                "object-format=sha1",
                "agent=git/2.47.3"
            ]
        );
        assert!(req.wants("agent") && req.wants("quiet") && !req.wants("report-status"));
        assert_eq!(req.capability("agent"), Some("git/2.47.3"));
        assert_eq!(req.sideband(), Some(Band::SideBand64k));
        assert_eq!(req.report_status(), Some(ReportStatus::V2));
        assert!(req.needs_pack() && !req.is_probe());
        assert_eq!(req.pack(&body), EMPTY_PACK);
        assert!(req.options.is_empty());
    }

    #[test]
    fn probe_is_a_lone_flush() {
        let req = parse_request(b"0000").expect("probe");
        assert!(req.is_probe());
        assert_eq!(req.pack_offset, 4);
        assert_eq!(req.sideband(), None);
        assert_eq!(req.report_status(), None);
    }

    #[test]
    fn reads_shallow_lines_and_push_options() {
        let body = with_pack(&[
            &format!("shallow {B}"),
            &format!("{Z} {A} refs/heads/main\0report-status push-options side-band"),
            "0000",
            "prompt=hello",
            "x=y\n",
            "0000",
        ]);
        let req = parse_request(&body).expect("valid");
        assert_eq!(req.shallow, [oid(B)]);
        assert_eq!(req.options, ["prompt=hello", "x=y"]);
        assert_eq!(req.sideband(), Some(Band::SideBand));
        assert_eq!(req.report_status(), Some(ReportStatus::V1));
        assert_eq!(req.pack(&body), EMPTY_PACK);
    }

    #[test]
    fn delete_only_push_has_no_pack() {
        let body = pkts(&[&format!("{A} {Z} refs/heads/gone\0report-status"), "0000"]);
        let req = parse_request(&body).expect("valid");
        assert!(!req.needs_pack());
        assert_eq!(req.pack_offset, body.len());
        // receive-pack allows deleting a one-level ref even though it refuses to create one.
        let body = pkts(&[&format!("{A} {Z} refs/stash"), "0000"]);
        assert!(parse_request(&body).is_ok());
    }

    #[test]
    fn truncation_anywhere_before_the_flush() {
        let line = format!("{Z} {A} refs/heads/main\0report-status");
        let full = pkts(&[&line, "0000"]);
        assert_eq!(parse_request(b""), Err(RequestError::Truncated));
        for cut in [2, 10, full.len() - 4, full.len() - 2] {
            assert_eq!(
                parse_request(&full[..cut]),
                Err(RequestError::Truncated),
                "cut at {cut}"
            );
        }
        // An options section without its flush.
        let body = pkts(&[
            &format!("{Z} {A} refs/heads/main\0push-options"),
            "0000",
            "a=b",
        ]);
        assert_eq!(parse_request(&body), Err(RequestError::Truncated));
    }

    #[test]
    fn bad_pkt_lines() {
        assert!(matches!(
            parse_request(b"00zz"),
            Err(RequestError::Pktline(pktline::Error::NotHex { .. }))
        ));
        assert!(matches!(
            parse_request(b"0003"),
            Err(RequestError::Pktline(pktline::Error::Reserved {
                offset: 0
            }))
        ));
        assert!(matches!(
            parse_request(b"ffff"),
            Err(RequestError::Pktline(pktline::Error::TooLong { .. }))
        ));
        assert_eq!(
            parse_request(b"0001"),
            Err(RequestError::UnexpectedPacket {
                packet: "delim",
                offset: 0
            })
        );
    }

    #[test]
    fn malformed_commands() {
        for line in [
            String::new(),
            format!("{Z} {A}"),
            format!("{Z} {A} "),
            format!("{Z}-{A} refs/heads/x"),
            format!("{Z} {A}-refs/heads/x"),
        ] {
            let err = parse_request(&pkts(&[&line, "0000"])).unwrap_err();
            assert!(
                matches!(err, RequestError::Malformed { .. }),
                "{line:?}: {err}"
            );
        }
    }

    #[test]
    fn bad_object_ids() {
        let upper = A.replace('1', "A");
        let not_hex = A.replace('1', "g");
        for bad in [upper.as_str(), not_hex.as_str()] {
            let line = format!("{Z} {bad} refs/heads/x");
            assert_eq!(
                parse_request(&pkts(&[&line, "0000"])),
                Err(RequestError::BadOid { value: bad.into() })
            );
        }
        let line = format!("shallow {}", &A[..39]);
        assert!(matches!(
            parse_request(&pkts(&[&line, "0000"])),
            Err(RequestError::BadOid { .. })
        ));
    }

    #[test]
    fn sha256_is_refused_by_name() {
        let long = "1".repeat(64);
        let line = format!(
            "{} {long} refs/heads/x\0report-status object-format=sha256",
            "0".repeat(64)
        );
        let err = parse_request(&pkts(&[&line, "0000"])).unwrap_err();
        assert_eq!(err, RequestError::ObjectFormat("sha256".into()));
        assert_eq!(err.to_string(), "sha256 repositories are not supported");
    }

    #[test]
    fn bad_refnames() {
        for name in [
            "HEAD",
            "refs/",
            "heads/main",
            "refs/heads",
            "refs/heads/a..b",
            "refs/heads/a b",
            "refs/heads/a~1",
            "refs/heads/a^",
            "refs/heads/a:b",
            "refs/heads/a?",
            "refs/heads/a*",
            "refs/heads/a[b",
            "refs/heads/a\\b",
            "refs/heads/a\x7f",
            "refs/heads/a\tb",
            "refs/heads/a@{1}",
            "refs/heads/.hidden",
            "refs/heads/x.lock",
            "refs/heads/x.lock/y",
            "refs/heads/x/",
            "refs/heads/x.",
            "refs/heads//x",
        ] {
            let line = format!("{Z} {A} {name}");
            let err = parse_request(&with_pack(&[&line, "0000"])).unwrap_err();
            assert!(
                matches!(err, RequestError::BadRefname { .. }),
                "{name:?}: {err}"
            );
        }
        let mut line = format!("{Z} {A} refs/heads/").into_bytes();
        line.push(0xff);
        let mut body = Vec::new();
        pktline::write_data(&mut body, &line).expect("short");
        pktline::write_flush(&mut body);
        assert!(matches!(
            parse_request(&body),
            Err(RequestError::BadRefname { .. })
        ));
        // Valid but unusual names git accepts.
        for name in [
            "refs/heads/a.b/c",
            "refs/heads/@",
            "refs/heads/a./b",
            "refs/tags/v1.0-rc1",
        ] {
            let line = format!("{Z} {A} {name}");
            assert!(
                parse_request(&with_pack(&[&line, "0000"])).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn duplicate_and_no_op_commands() {
        let body = with_pack(&[
            &format!("{Z} {A} refs/heads/x"),
            &format!("{Z} {B} refs/heads/y"),
            &format!("{A} {B} refs/heads/x"),
            "0000",
        ]);
        assert_eq!(
            parse_request(&body),
            Err(RequestError::DuplicateRef {
                name: "refs/heads/x".into()
            })
        );
        let same = pkts(&[&format!("{A} {A} refs/heads/x"), "0000"]);
        assert!(matches!(
            parse_request(&same),
            Err(RequestError::Unchanged { .. })
        ));
        let zero = pkts(&[&format!("{Z} {Z} refs/heads/x"), "0000"]);
        assert!(matches!(
            parse_request(&zero),
            Err(RequestError::BothZero { .. })
        ));
    }

    #[test]
    fn push_cert_and_late_capabilities_are_refused() {
        let cert = pkts(&[
            "push-cert\0report-status",
            "certificate version 0.1",
            "0000",
        ]);
        assert_eq!(parse_request(&cert), Err(RequestError::PushCert));
        let late = with_pack(&[
            &format!("{Z} {A} refs/heads/x"),
            &format!("{Z} {B} refs/heads/y\0report-status"),
            "0000",
        ]);
        assert_eq!(
            parse_request(&late),
            Err(RequestError::LateCapabilities {
                name: "refs/heads/y".into()
            })
        );
    }

    #[test]
    fn pack_presence_is_checked() {
        let create = pkts(&[&format!("{Z} {A} refs/heads/x"), "0000"]);
        assert_eq!(parse_request(&create), Err(RequestError::MissingPack));
        let mut junk = create.clone();
        junk.extend_from_slice(b"KCAP");
        assert_eq!(
            parse_request(&junk),
            Err(RequestError::NotAPack {
                offset: create.len(),
                found: "KCAP".into()
            })
        );
        let mut delete = pkts(&[&format!("{A} {Z} refs/heads/x"), "0000"]);
        let offset = delete.len();
        delete.extend_from_slice(EMPTY_PACK);
        assert_eq!(
            parse_request(&delete),
            Err(RequestError::TrailingData {
                offset,
                len: EMPTY_PACK.len()
            })
        );
        assert!(matches!(
            parse_request(b"0000x"),
            Err(RequestError::TrailingData { .. })
        ));
    }

    #[test]
    fn hostile_values_are_quoted_short() {
        let name = format!("refs/heads/{}", "\u{1}".repeat(1000));
        let line = format!("{Z} {A} {name}");
        let err = parse_request(&with_pack(&[&line, "0000"])).unwrap_err();
        assert!(err.to_string().len() < 250, "{err}");
    }

    #[test]
    fn encode_commands_round_trips() {
        let body = with_pack(&[
            &format!("shallow {B}"),
            &format!("{Z} {A} refs/heads/main\0 report-status push-options agent=git/2.47.3"),
            &format!("{A} {Z} refs/heads/old"),
            "0000",
            "prompt=hello",
            "0000",
        ]);
        let req = parse_request(&body).expect("valid");
        let mut forwarded = encode_commands(&req, &req.capabilities, true);
        forwarded.extend_from_slice(req.pack(&body));
        assert_eq!(forwarded, body);

        // Without options the capability goes too, or upstream would wait for the section.
        let caps = ["report-status", "push-options", "atomic"];
        let mut stripped = encode_commands(&req, &caps, false);
        stripped.extend_from_slice(req.pack(&body));
        let again = parse_request(&stripped).expect("valid");
        assert_eq!(again.capabilities, ["report-status", "atomic"]);
        assert!(again.options.is_empty());
        assert_eq!(again.commands, req.commands);

        // Options requested but not in the list: the capability is added.
        let mut added = encode_commands(&req, &["report-status"], true);
        added.extend_from_slice(EMPTY_PACK);
        let again = parse_request(&added).expect("valid");
        assert_eq!(again.capabilities, ["report-status", "push-options"]);
        assert_eq!(again.options, ["prompt=hello"]);
    }

    #[test]
    fn encode_commands_of_a_probe_is_a_flush() {
        let req = parse_request(b"0000").expect("probe");
        assert_eq!(encode_commands(&req, &[] as &[&str], true), b"0000");
    }

    #[test]
    fn client_sizes_are_capped_so_re_encoding_cannot_overflow() {
        let long_name = format!("refs/heads/{}", "x".repeat(MAX_REFNAME_LEN));
        let line = format!("{Z} {A} {long_name}");
        assert!(matches!(
            parse_request(&with_pack(&[&line, "0000"])),
            Err(RequestError::BadRefname { .. })
        ));
        let line = format!(
            "{Z} {A} refs/heads/x\0agent={}",
            "a".repeat(MAX_CAPABILITIES_LEN)
        );
        assert_eq!(
            parse_request(&with_pack(&[&line, "0000"])),
            Err(RequestError::CapabilitiesTooLong {
                len: MAX_CAPABILITIES_LEN + 6
            })
        );
        // The largest accepted request still re-encodes with capabilities added.
        let name = format!("refs/heads/{}", "x".repeat(MAX_REFNAME_LEN - 11));
        let caps = format!("agent={}", "a".repeat(MAX_CAPABILITIES_LEN - 6));
        let line = format!("{Z} {A} {name}\0{caps}");
        let req = parse_request(&with_pack(&[&line, "0000"])).expect("at the limits");
        let mut caps = req.capabilities.clone();
        caps.extend(["atomic".to_string(), "report-status".to_string()]);
        let again = encode_commands(&req, &caps, true);
        let packets: Vec<_> = Reader::new(&again)
            .collect::<Result<_, _>>()
            .expect("framed");
        assert_eq!(packets.len(), 3, "command, flush, empty options section");
    }

    const CAPS: &str = "report-status report-status-v2 delete-refs side-band-64k quiet atomic ofs-delta push-cert=1700000000-abcd object-format=sha1 agent=git/2.47.3";

    fn advertisement(header: bool) -> Vec<u8> {
        let first = format!("{A} refs/heads/main\0{CAPS}\n");
        let second = format!("{B} refs/tags/v1\n");
        let have = format!("{B} .have\n");
        let mut items = vec![];
        if header {
            items.extend(["# service=git-receive-pack\n", "0000"]);
        }
        items.extend([first.as_str(), second.as_str(), have.as_str(), "0000"]);
        pkts(&items)
    }

    #[test]
    fn parses_an_advertisement_with_or_without_header() {
        for header in [true, false] {
            let ad = parse_advertisement(&advertisement(header)).expect("valid");
            assert_eq!(ad.service.as_deref(), header.then_some(SERVICE));
            let names: Vec<_> = ad.refs.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(names, ["refs/heads/main", "refs/tags/v1"]);
            assert_eq!(ad.refs[0].oid, oid(A));
            assert_eq!(ad.haves, [oid(B)]);
            assert!(ad.supports(CAP_ATOMIC) && ad.supports(CAP_PUSH_CERT));
            assert!(!ad.supports(CAP_PUSH_OPTIONS));
            assert_eq!(ad.capability(CAP_OBJECT_FORMAT), Some("sha1"));
        }
    }

    #[test]
    fn parses_an_empty_repository_and_version_1() {
        let body = pkts(&[
            "# service=git-receive-pack\n",
            "0000",
            "version 1\n",
            &format!("{Z} capabilities^{{}}\0report-status delete-refs\n"),
            "0000",
        ]);
        let ad = parse_advertisement(&body).expect("valid");
        assert!(ad.refs.is_empty());
        assert_eq!(ad.version, 1);
        assert_eq!(ad.capabilities, ["report-status", "delete-refs"]);
    }

    #[test]
    fn rewrites_capabilities_and_keeps_the_rest() {
        for header in [true, false] {
            let body = advertisement(header);
            let out = rewrite_advertisement(
                &body,
                SERVICE,
                &["push-options", "atomic"],
                &["push-cert", "report-status-v2"],
            )
            .expect("valid");
            let expected_first = format!(
                "{A} refs/heads/main\0report-status delete-refs side-band-64k quiet atomic ofs-delta object-format=sha1 agent=git/2.47.3 push-options\n"
            );
            let expected = pkts(&[
                "# service=git-receive-pack\n",
                "0000",
                &expected_first,
                &format!("{B} refs/tags/v1\n"),
                &format!("{B} .have\n"),
                "0000",
            ]);
            assert_eq!(
                out.escape_ascii().to_string(),
                expected.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn removes_by_prefix_and_keeps_the_version_line() {
        let body = pkts(&[
            "version 1\n",
            &format!("{Z} capabilities^{{}}\0agent=git/2.47.3 push-cert=nonce atomic\n"),
            "0000",
        ]);
        let out = rewrite_advertisement(
            &body,
            SERVICE,
            &["agent=portcullis"],
            &["agent=", "push-cert"],
        )
        .expect("valid");
        let ad = parse_advertisement(&out).expect("valid");
        assert_eq!(ad.capabilities, ["atomic", "agent=portcullis"]);
        assert_eq!(ad.version, 1);
    }

    #[test]
    fn an_advertisement_without_refs_gets_a_capabilities_line() {
        let out = rewrite_advertisement(b"0000", SERVICE, &["report-status"], &[]).expect("valid");
        let expected = pkts(&[
            "# service=git-receive-pack\n",
            "0000",
            &format!("{Z} capabilities^{{}}\0report-status\n"),
            "0000",
        ]);
        assert_eq!(out, expected);
    }

    #[test]
    fn bad_advertisements() {
        let wrong = pkts(&["# service=git-upload-pack\n", "0000", "0000"]);
        assert!(matches!(
            rewrite_advertisement(&wrong, SERVICE, &[], &[]),
            Err(AdvertisementError::ServiceMismatch { .. })
        ));
        let v2 = pkts(&["version 2\n", "agent=git/2.47.3\n", "0000"]);
        assert_eq!(
            parse_advertisement(&v2),
            Err(AdvertisementError::Version("2".into()))
        );
        let body = advertisement(true);
        assert_eq!(
            parse_advertisement(&body[..body.len() - 4]),
            Err(AdvertisementError::Truncated)
        );
        let mut trailing = body.clone();
        trailing.extend_from_slice(b"0000");
        assert!(matches!(
            parse_advertisement(&trailing),
            Err(AdvertisementError::TrailingData { .. })
        ));
        let junk = pkts(&["not a ref line\n", "0000"]);
        assert!(matches!(
            parse_advertisement(&junk),
            Err(AdvertisementError::Malformed { .. })
        ));
        let no_flush = pkts(&[
            "# service=git-receive-pack\n",
            &format!("{A} refs/heads/x\n"),
        ]);
        assert!(matches!(
            parse_advertisement(&no_flush),
            Err(AdvertisementError::Malformed { .. })
        ));
    }

    const DENY: &str = "portcullis: denied by git.protected-force: no force push";

    #[test]
    fn report_with_side_band_64k() {
        let req = request("report-status side-band-64k");
        let out = encode_report(
            &req,
            Ok(()),
            &[("refs/heads/main", Some(DENY))],
            &["checking push".into()],
        );
        let report = pkts(&[
            "unpack ok\n",
            &format!("ng refs/heads/main {DENY}\n"),
            "0000",
        ]);
        let mut expected = Vec::new();
        pktline::sideband(
            &mut expected,
            2,
            b"checking push\n",
            pktline::MAX_PACKET_LEN,
        );
        pktline::sideband(&mut expected, 1, &report, pktline::MAX_PACKET_LEN);
        pktline::write_flush(&mut expected);
        assert_eq!(out, expected);
    }

    #[test]
    fn report_without_side_band_is_bare_and_drops_progress() {
        let req = request("report-status-v2");
        let out = encode_report(
            &req,
            Err("index-pack\nfailed"),
            &[("refs/heads/main", None)],
            &["lost".into()],
        );
        assert_eq!(
            out,
            pkts(&["unpack index-pack failed\n", "ok refs/heads/main\n", "0000"])
        );
    }

    #[test]
    fn no_report_status_means_no_report() {
        let out = encode_report(
            &request("side-band-64k"),
            Ok(()),
            &[("refs/heads/main", Some(DENY))],
            &["hi\n".into()],
        );
        let mut expected = Vec::new();
        pktline::sideband(&mut expected, 2, b"hi\n", pktline::MAX_PACKET_LEN);
        pktline::write_flush(&mut expected);
        assert_eq!(out, expected);
        assert!(
            encode_report(
                &request("quiet"),
                Ok(()),
                &[("refs/heads/main", Some(DENY))],
                &["hi".into()]
            )
            .is_empty()
        );
    }

    #[test]
    fn small_side_band_splits_a_long_report() {
        let req = request("report-status side-band");
        let reason = "r".repeat(3000);
        let out = encode_report(&req, Ok(()), &[("refs/heads/main", Some(&reason))], &[]);
        let mut reader = Reader::new(&out);
        let mut report = Vec::new();
        while let Some(packet) = reader.read().expect("well formed") {
            match packet {
                PacketRef::Data(data) => {
                    assert!(data.len() + 4 <= pktline::SIDE_BAND_MAX_PACKET);
                    assert_eq!(data[0], pktline::BAND_DATA);
                    report.extend_from_slice(&data[1..]);
                }
                PacketRef::Flush => assert!(reader.rest().is_empty()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            report,
            pkts(&[
                "unpack ok\n",
                &format!("ng refs/heads/main {reason}\n"),
                "0000"
            ])
        );
    }

    #[test]
    fn progress_packet_needs_side_band() {
        let mut expected = Vec::new();
        pktline::sideband(
            &mut expected,
            2,
            b"held for review\n",
            pktline::MAX_PACKET_LEN,
        );
        assert_eq!(
            progress_packet(&request("side-band-64k"), "held for review"),
            expected
        );
        assert!(progress_packet(&request("report-status"), "held").is_empty());
    }

    #[test]
    fn overlong_reasons_are_cut_to_fit() {
        let req = request("report-status");
        let reason = "é".repeat(40_000);
        let out = encode_report(&req, Ok(()), &[("refs/heads/main", Some(&reason))], &[]);
        let packets: Vec<_> = Reader::new(&out)
            .collect::<Result<_, _>>()
            .expect("well formed");
        assert_eq!(packets.len(), 3);
        let PacketRef::Data(line) = packets[1] else {
            panic!("a data packet")
        };
        assert_eq!(line.len(), pktline::MAX_DATA_LEN);
        assert!(line.ends_with(b"\n") && std::str::from_utf8(line).is_ok());
    }
}
