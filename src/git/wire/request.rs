//! The push request: the body of `POST git-receive-pack` before its pack.

use gix::ObjectId;
use gix::bstr::BStr;

use super::caps::*;
use super::pktline::{self, PacketRef, Reader};
use super::*;

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

/// Reads a request body as it arrives, without parsing it again after every piece: each
/// call decodes only the packets it has not seen, and the request is parsed once, when
/// its command (and push-option) sections are complete and the pack's signature is in.
#[derive(Debug, Default)]
pub struct RequestScanner {
    /// Where the next undecoded packet starts.
    offset: usize,
    /// Flushes still to come before the sections end (`None` before the first packet).
    flushes_left: Option<u8>,
}

impl RequestScanner {
    /// `Ok(None)`: more bytes are needed. `Ok(Some(request))`: the request, parsed from
    /// `body` (everything received so far; `ended` when nothing more will come).
    pub fn scan(&mut self, body: &[u8], ended: bool) -> Result<Option<Request>, RequestError> {
        loop {
            if self.flushes_left == Some(0) {
                break;
            }
            let packet = match pktline::decode(&body[self.offset..]) {
                Ok(pktline::Decoded::Packet { packet, len }) => {
                    self.offset += len;
                    packet
                }
                Ok(pktline::Decoded::NeedMore(_)) if !ended => return Ok(None),
                // Truncated or malformed: the full parse names the fault precisely.
                _ => return parse_request(body).map(Some),
            };
            match (packet, self.flushes_left) {
                (PacketRef::Flush, None) => self.flushes_left = Some(0),
                (PacketRef::Flush, Some(n)) => self.flushes_left = Some(n - 1),
                (PacketRef::Data(line), None) => {
                    let first = !line.starts_with(SHALLOW_PREFIX);
                    let options = first
                        && split_nul(chomp(line))
                            .1
                            .and_then(|caps| std::str::from_utf8(caps).ok())
                            .is_some_and(|caps| {
                                caps.split_ascii_whitespace()
                                    .any(|c| cap_is(c, CAP_PUSH_OPTIONS))
                            });
                    if first {
                        self.flushes_left = Some(if options { 2 } else { 1 });
                    }
                }
                (PacketRef::Data(_), Some(_)) => {}
                _ => return parse_request(body).map(Some),
            }
        }
        match parse_request(body) {
            // The pack's first bytes are still on their way.
            Err(RequestError::MissingPack) if !ended => Ok(None),
            Err(RequestError::NotAPack { .. })
                if !ended && body.len() < self.offset + PACK_SIGNATURE.len() =>
            {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Bytes decoded so far: a caller refuses a body whose sections outgrow its limit.
    pub fn decoded(&self) -> usize {
        self.offset
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
pub(super) fn parse_oid(hex: &[u8]) -> Result<ObjectId, RequestError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::wire::testkit::*;

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

    #[test]
    fn the_scanner_reads_a_body_in_pieces_and_parses_it_once_whole() {
        let first = format!("{Z} {A} refs/heads/main\0report-status push-options");
        let second = format!("{A} {Z} refs/heads/old");
        let body = with_pack(&[&first, &second, "0000", "prompt=fix it", "0000"]);
        let whole = parse_request(&body).expect("valid");
        for piece in [1, 3, 7, 64] {
            let mut scanner = RequestScanner::default();
            let mut got = None;
            for end in (piece..body.len()).step_by(piece).chain([body.len()]) {
                if let Some(r) = scanner.scan(&body[..end], false).expect("no error") {
                    got = Some((end, r));
                    break;
                }
            }
            let (end, request) = got.expect("complete before the body ends");
            assert_eq!(request, whole);
            // Done as soon as the pack's signature is in, not at the end of the pack.
            assert!(end >= whole.pack_offset + 4 && end < whole.pack_offset + 4 + piece);
        }
    }

    #[test]
    fn the_scanner_waits_for_the_options_section_only_when_asked_for() {
        let first = format!("{A} {Z} refs/heads/gone\0report-status");
        let body = pkts(&[&first, "0000"]);
        let mut scanner = RequestScanner::default();
        let request = scanner.scan(&body, false).expect("ok").expect("complete");
        assert_eq!(request.commands.len(), 1);
        let first = format!("{A} {Z} refs/heads/gone\0report-status push-options");
        let body = pkts(&[&first, "0000"]);
        let mut scanner = RequestScanner::default();
        assert_eq!(
            scanner.scan(&body, false),
            Ok(None),
            "options still to come"
        );
        let mut full = body.clone();
        full.extend(pkts(&["0000"]));
        assert!(scanner.scan(&full, false).expect("ok").is_some());
    }

    #[test]
    fn the_scanner_reports_what_the_full_parse_reports() {
        // A body that ends early, a bad header, a probe.
        let first = format!("{Z} {A} refs/heads/main\0report-status");
        let cut = pkts(&[&first]);
        let mut scanner = RequestScanner::default();
        assert_eq!(scanner.scan(&cut, false), Ok(None));
        assert_eq!(scanner.scan(&cut, true), Err(RequestError::Truncated));
        let mut scanner = RequestScanner::default();
        assert!(matches!(
            scanner.scan(b"zzzz", false),
            Err(RequestError::Pktline(_))
        ));
        let mut scanner = RequestScanner::default();
        let probe = scanner.scan(b"0000", false).expect("ok").expect("complete");
        assert!(probe.is_probe());
    }
}
