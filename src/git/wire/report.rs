//! The answer to a push the gateway gives itself: report-status lines and progress text,
//! on the side-band the client asked for.

use std::borrow::Cow;

use super::pktline;
use super::request::{Band, Request};

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

/// What an upstream's receive-pack refused of a push.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rejections {
    /// The unpack status when it is not `ok`.
    pub unpack: Option<String>,
    /// Each `ng` ref with its reason.
    pub refused: Vec<(String, String)>,
}

/// What an upstream's receive-pack reported, read from the response it sent (side-band
/// demultiplexed when the client asked for it). `None` when the response holds no
/// readable report.
pub fn rejections(request: &Request, response: &[u8]) -> Option<Rejections> {
    let mut report = Vec::new();
    let mut reader = pktline::Reader::new(response);
    if request.sideband().is_some() {
        while let Ok(Some(packet)) = reader.read() {
            if let pktline::PacketRef::Data([pktline::BAND_DATA, rest @ ..]) = packet {
                report.extend_from_slice(rest);
            }
        }
    } else {
        report.extend_from_slice(response);
    }
    let mut reader = pktline::Reader::new(&report);
    let mut unpack = None;
    let mut refused = Vec::new();
    let mut seen = false;
    while let Ok(Some(packet)) = reader.read() {
        let Some(line) = packet.as_text() else {
            continue;
        };
        let line = String::from_utf8_lossy(line);
        if let Some(status) = line.strip_prefix("unpack ") {
            seen = true;
            if status != "ok" {
                unpack = Some(status.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("ng ") {
            let (name, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            refused.push((name.to_string(), reason.to_string()));
        }
    }
    seen.then_some(Rejections { unpack, refused })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::wire::pktline::{PacketRef, Reader};
    use crate::git::wire::testkit::*;

    const DENY: &str = "portcullis: denied by git.protected-force: no force push";

    #[test]
    fn an_upstreams_refusals_are_read_back_with_and_without_side_band() {
        for caps in ["report-status side-band-64k", "report-status"] {
            let req = request(caps);
            let out = encode_report(
                &req,
                Ok(()),
                &[
                    ("refs/heads/a", None),
                    ("refs/heads/b", Some("fetch first")),
                ],
                &["progress".into()],
            );
            let read = rejections(&req, &out).expect("a report");
            assert_eq!(read.unpack, None, "{caps}");
            assert_eq!(
                read.refused,
                vec![("refs/heads/b".to_string(), "fetch first".to_string())],
                "{caps}"
            );
            let out = encode_report(
                &req,
                Err("index-pack failed"),
                &[("refs/heads/a", Some("n/a"))],
                &[],
            );
            assert_eq!(
                rejections(&req, &out).unwrap().unpack.as_deref(),
                Some("index-pack failed")
            );
        }
        assert_eq!(rejections(&request("report-status"), b""), None);
    }

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
