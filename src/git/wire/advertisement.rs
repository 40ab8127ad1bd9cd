//! The ref advertisement an upstream sends for `info/refs?service=git-receive-pack`, read
//! and rewritten (capabilities the gateway cannot honour are taken out).

use std::ops::Range;

use gix::ObjectId;

use super::caps::*;
use super::pktline::{self, PacketRef, Reader};
use super::request::parse_oid;
use super::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::wire::testkit::*;

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
}
