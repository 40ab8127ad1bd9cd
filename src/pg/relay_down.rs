//! Server → client: runs of complete frames go out as the server sent them, except
//! * a marker's error, swapped for the gateway's refusal;
//! * a DataRow with a value the mask rules hide, framed again with the masked values;
//! * the replies to a Describe the gateway added for itself, dropped;
//! * a ParameterStatus that shows the server now reads SQL differently from the gateway
//!   (the session ends).
//!
//! Results of reads waiting for them are summarised on the way (rows, a sample, what was
//! masked) for their events; the summary sees the masked values.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::oneshot;

use super::Gateway;
use super::error::Error;
use super::frame::complete_len;
use super::messages::{self, Severity};
use super::results::Results;
use super::rows;
use super::session::{Shared, lock};
use super::shapes::{Formats, Reply};
use super::stream::{ClientStream, UpstreamStream};
use crate::gateway::mask::{Column, MaskedBy, Masker, Plan};
use crate::gateway::record::Pending;
use crate::gateway::refusal;
use crate::policy::rule::Subject;

/// A change to the server's bytes: the frame at `at` (`len` bytes) is replaced (or, with
/// `None`, dropped).
struct Edit {
    at: usize,
    len: usize,
    with: Option<Bytes>,
}

/// What the client-side relay sends the client through this one: a fatal error to end
/// with, and notices (a held request's) to send between the server's frames.
pub struct FromClientSide {
    pub fatal: oneshot::Receiver<Bytes>,
    pub notices: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
}

pub async fn relay_down(
    gw: &Gateway,
    masker: &Masker,
    mut ur: ReadHalf<UpstreamStream>,
    mut cw: WriteHalf<ClientStream>,
    mut ubuf: BytesMut,
    markers: Shared,
    from_up: FromClientSide,
) -> Result<(), Error> {
    let FromClientSide {
        mut fatal,
        mut notices,
    } = from_up;
    let recorder = &gw.recorder;
    let mut results = Results::new(recorder.result_rows());
    let mut done: Vec<Pending> = Vec::new();
    let mut edits: Vec<Edit> = Vec::new();
    let mut out = BytesMut::new();
    let mut plans = Plans::default();
    // COPY ... TO STDOUT rows carry no description: their text is read for content.
    let copy_plan = masker.plan(vec![Column {
        name: "(copy)".into(),
        type_name: "text".into(),
        ..Column::default()
    }]);
    let mut copy_binary = false;
    // A result the catalog could not be asked about (the upstream going away, most
    // often): its rows cannot be masked, so one arriving ends the session; an error the
    // server sends instead still reaches the client.
    let mut undescribed: Option<Error> = None;
    loop {
        // Find the complete frames at the front; note where they must change.
        let mut end = 0;
        // Reads waiting for their results are queued before their query goes upstream.
        let mut capturing = lock(&markers).markers.waiting();
        // What ends the session here; the frames before it still go out.
        let mut ending: Option<Error> = None;
        while let Some(len) = complete_len(&ubuf[end..]) {
            let tag = ubuf[end];
            let body = &ubuf[end + 5..end + len];
            // Only the messages that end or describe a result move the shapes along.
            // An error belongs to the request in front, which the reply below may drop.
            let error_tables = (tag == b'E').then(|| lock(&markers).shapes.tables());
            let reply = match tag {
                b'T' | b'n' | b'C' | b's' | b'I' | b'E' | b'Z' => lock(&markers).shapes.reply(tag),
                _ => Reply::Forward,
            };
            match (tag, reply) {
                (_, Reply::Drop) => edits.push(Edit {
                    at: end,
                    len,
                    with: None,
                }),
                (b'T', Reply::Describe | Reply::DescribeHidden) => {
                    if let Err(e) = describe(gw, masker, &markers, &mut plans, body).await {
                        tracing::warn!(error = %e, "a result could not be described");
                        undescribed = Some(e);
                    }
                    if reply == Reply::DescribeHidden {
                        edits.push(Edit {
                            at: end,
                            len,
                            with: None,
                        });
                    } else if capturing {
                        results.observe(tag, body);
                    }
                }
                (b'D', _) => {
                    if let Some(e) = undescribed.take() {
                        ending = Some(e);
                        break;
                    }
                    let masked = match mask_row(masker, &markers, body) {
                        Ok(m) => m,
                        Err(e) => {
                            ending = Some(e);
                            break;
                        }
                    };
                    let seen = match &masked {
                        Some((row, _, _)) => &row[5..],
                        None => body,
                    };
                    if capturing {
                        results.observe(tag, seen);
                    }
                    if let Some((row, columns, plan)) = masked {
                        if capturing {
                            results.masked(&plan, &columns);
                        }
                        edits.push(Edit {
                            at: end,
                            len,
                            with: Some(row),
                        });
                    }
                }
                // CopyOutResponse: the rows that follow have no description, so a copy
                // of a table with a column the rules mask whole is refused; the rest
                // is read for content.
                (b'H', _) => {
                    copy_binary = body.first() == Some(&1);
                    let tables = lock(&markers).shapes.tables();
                    if let Some(rule) = masked_in(gw, masker, &tables).await? {
                        ending = Some(Error::Refused(refusal::copy_of_masked(&rule)));
                        break;
                    }
                }
                (b'd', _) => {
                    let masked = masker.row(&copy_plan, &[], &[Some(body)]);
                    match masked.values.and_then(|v| v.into_iter().next()) {
                        Some(Some(data)) => {
                            if copy_binary {
                                // Rewriting inside binary COPY would break its length words.
                                ending = Some(Error::Refused(refusal::BINARY_COPY_MASK.into()));
                                break;
                            }
                            if capturing {
                                results.masked(&copy_plan, &masked.masked);
                                results.observe(tag, &data);
                            }
                            edits.push(Edit {
                                at: end,
                                len,
                                with: Some(messages::copy_data(&data)),
                            });
                        }
                        // The sample keeps what the agent saw: text lines only.
                        _ if capturing && !copy_binary => results.observe(tag, body),
                        _ => {}
                    }
                }
                (b'E', _) => {
                    let refusal = {
                        let mut t = lock(&markers);
                        if t.markers.refusing() {
                            t.markers.error(&messages::error_text(body))
                        } else {
                            None
                        }
                    };
                    match refusal {
                        // A refusal, not a server error: nothing for the results.
                        Some(message) => edits.push(Edit {
                            at: end,
                            len,
                            with: Some(messages::error_response(
                                Severity::Error,
                                "42501",
                                &message,
                            )),
                        }),
                        None => {
                            // A server error can quote a value (`invalid input syntax
                            // for type integer: "..."`, a duplicate key's detail): over
                            // tables with a column masked for this agent, only its
                            // SQLSTATE gets through.
                            let tables = error_tables.unwrap_or_default();
                            // Tables whose columns cannot be looked up count as masked.
                            let hidden = masked_in(gw, masker, &tables)
                                .await
                                .unwrap_or_else(|_| Some(String::new()))
                                .map(|_| plain_error(body));
                            match hidden {
                                Some(replacement) => {
                                    if capturing {
                                        results.observe(tag, &replacement[5..]);
                                    }
                                    edits.push(Edit {
                                        at: end,
                                        len,
                                        with: Some(replacement),
                                    });
                                }
                                None if capturing => results.observe(tag, body),
                                None => {}
                            }
                        }
                    }
                }
                // A notice can quote a value too (`RAISE NOTICE '%', password` in a
                // function): withheld like an error's message, and also when the
                // statement calls a function that may read tables itself.
                (b'N', _) => {
                    let reads = lock(&markers).shapes.tables();
                    let quotes = masked_in(gw, masker, &reads).await?.is_some()
                        || (!masker.rules.is_empty_for(Subject::Mask)
                            && gw.catalog.calls_readers(&gw.target, &reads).await?);
                    if quotes {
                        edits.push(Edit {
                            at: end,
                            len,
                            with: Some(plain_notice(body)),
                        });
                    }
                }
                (b'S', _) => {
                    if let Some(why) = super::reading::parameter_status(body)
                        .and_then(|(name, value)| super::reading::misreading(name, value))
                    {
                        // A setting changed under the session (a function, a role's or
                        // database's default): nothing more is judged by a reading the
                        // server no longer shares. The frames before it go out; the
                        // session ends.
                        write(&mut cw, &ubuf[..end], &mut edits, &mut out).await?;
                        let message = refusal::misreading_mid_session(&why);
                        cw.write_all(&messages::error_response(
                            Severity::Fatal,
                            "42501",
                            &message,
                        ))
                        .await?;
                        cw.flush().await?;
                        return Err(Error::Refused(message));
                    }
                }
                (b'Z', _) => {
                    undescribed = None;
                    let mut t = lock(&markers);
                    t.markers.ready();
                    let (rows, sample, masked) = results.take();
                    let error = results.take_error();
                    let first = done.len();
                    while let Some(ev) = t.markers.completed() {
                        done.push(ev);
                    }
                    // Usually one event: the last one takes the results, the others
                    // (several queries answered by one ReadyForQuery) copies.
                    if let Some((last, others)) = done[first..].split_last_mut() {
                        for ev in others {
                            ev.complete(rows, sample.clone(), error.clone(), masked.clone());
                        }
                        last.complete(rows, sample, error, masked);
                    }
                    capturing = t.markers.waiting();
                }
                _ if capturing => results.observe(tag, body),
                _ => {}
            }
            end += len;
        }
        if let Some(e) = ending {
            write(&mut cw, &ubuf[..end], &mut edits, &mut out).await?;
            if let Some(resp) = e.response() {
                cw.write_all(&resp).await?;
            }
            cw.flush().await?;
            return Err(e);
        }
        if end > 0 {
            let chunk = ubuf.split_to(end);
            write(&mut cw, &chunk, &mut edits, &mut out).await?;
            // Reads are recorded once their results are complete.
            for ev in done.drain(..) {
                if let Err(e) = recorder.submit(ev).await {
                    tracing::error!(error = %e, "read event not recorded");
                }
            }
            // More complete frames may already be buffered: handle them before flushing.
            if complete_len(&ubuf).is_some() {
                continue;
            }
            cw.flush().await?;
        }
        tokio::select! {
            n = ur.read_buf(&mut ubuf) => {
                if n? == 0 {
                    let _ = cw.flush().await;
                    return Ok(());
                }
            }
            msg = &mut fatal => {
                if let Ok(resp) = msg {
                    cw.write_all(&resp).await?;
                    cw.flush().await?;
                }
                return Ok(());
            }
            // Only between the server's frames: everything complete was written above.
            Some(notice) = notices.recv() => {
                cw.write_all(&notice).await?;
                cw.flush().await?;
            }
        }
    }
}

/// Writes `chunk` with `edits` applied (and clears them): as it is when there are none,
/// else assembled once in `out`.
async fn write(
    cw: &mut WriteHalf<ClientStream>,
    chunk: &[u8],
    edits: &mut Vec<Edit>,
    out: &mut BytesMut,
) -> Result<(), Error> {
    if edits.is_empty() {
        cw.write_all(chunk).await?;
        return Ok(());
    }
    out.clear();
    let mut at = 0;
    for e in edits.drain(..).filter(|e| e.at + e.len <= chunk.len()) {
        out.extend_from_slice(&chunk[at..e.at]);
        if let Some(with) = &e.with {
            out.extend_from_slice(with);
        }
        at = e.at + e.len;
    }
    out.extend_from_slice(&chunk[at..]);
    cw.write_all(out).await?;
    Ok(())
}

/// The session's plans by RowDescription, built from what the catalog said in one
/// generation: the same query shape is planned once.
#[derive(Default)]
struct Plans {
    generation: u64,
    by_description: foldhash::HashMap<Vec<u8>, (Arc<Plan>, Formats)>,
    /// The buffer a description's key is made in, kept between results.
    key: Vec<u8>,
}

/// Plans kept per session before the oldest are dropped (all at once: simple, and rare).
const MAX_PLANS: usize = 256;

/// Builds the plan of a RowDescription (asking the catalog what its columns come from)
/// and keeps it where its rows will find it.
async fn describe(
    gw: &Gateway,
    masker: &Masker,
    markers: &Shared,
    plans: &mut Plans,
    body: &[u8],
) -> Result<(), Error> {
    let generation = gw.catalog.generation();
    if plans.generation != generation {
        plans.by_description.clear();
        plans.generation = generation;
    }
    let reads = lock(markers).shapes.tables();
    // The same description over other tables or statements is another plan.
    let key = &mut plans.key;
    key.clear();
    key.extend_from_slice(body);
    for t in reads.tables.iter() {
        key.push(0);
        key.extend_from_slice(t.as_bytes());
    }
    key.push(1);
    key.extend_from_slice(reads.shape.as_bytes());
    if let Some(path) = &reads.search_path {
        key.push(2);
        key.extend_from_slice(path.as_bytes());
    }
    if let Some((plan, formats)) = plans.by_description.get(&plans.key[..]) {
        lock(markers)
            .shapes
            .described(plan.clone(), formats.clone());
        return Ok(());
    }
    let fields = rows::row_description(body)
        .ok_or_else(|| Error::Protocol("malformed RowDescription from the server".into()))?;
    let formats: Formats = fields.iter().map(|f| f.format).collect();
    let columns = gw.catalog.columns(&gw.target, fields, &reads).await?;
    let plan = Arc::new(masker.plan(columns));
    if plans.by_description.len() >= MAX_PLANS {
        plans.by_description.clear();
    }
    plans
        .by_description
        .insert(plans.key.clone(), (plan.clone(), formats.clone()));
    lock(markers).shapes.described(plan, formats);
    Ok(())
}

/// A `column:rule` for a column of the tables `reads` names that the rules mask whole
/// for this agent.
async fn masked_in(
    gw: &Gateway,
    masker: &Masker,
    reads: &crate::sql::Reads,
) -> Result<Option<String>, Error> {
    if reads.tables.is_empty() {
        return Ok(None);
    }
    let columns = gw
        .catalog
        .table_columns(&gw.target, &reads.tables, reads.search_path.as_deref())
        .await?;
    Ok(masker.masks_any(&columns))
}

/// The severity and SQLSTATE of a server's ErrorResponse or NoticeResponse `body`.
fn severity_and_code(body: &[u8]) -> (Option<String>, Option<String>) {
    let mut fields = messages::fields(body);
    let mut take = |code: u8| {
        fields
            .iter()
            .position(|(c, _)| *c == code)
            .map(|i| fields.swap_remove(i).1)
    };
    let code = take(b'C');
    (take(b'V').or_else(|| take(b'S')), code)
}

/// The server's ErrorResponse `body` with nothing but its severity and SQLSTATE, and a
/// message saying why.
fn plain_error(body: &[u8]) -> Bytes {
    let (severity, code) = severity_and_code(body);
    let severity = match severity.as_deref() {
        Some("FATAL") | Some("PANIC") => Severity::Fatal,
        _ => Severity::Error,
    };
    let code = code.as_deref().unwrap_or("XX000");
    messages::error_response(severity, code, &refusal::error_hidden(code))
}

/// The server's NoticeResponse `body` with nothing but its severity and SQLSTATE.
fn plain_notice(body: &[u8]) -> Bytes {
    let (severity, code) = severity_and_code(body);
    let code = code.as_deref().unwrap_or("00000");
    messages::notice_response(
        severity.as_deref().unwrap_or("NOTICE"),
        code,
        &refusal::notice_hidden(code),
    )
}

/// A rewritten DataRow, the columns masked in it, and the plan that names them.
type MaskedRow = (Bytes, Vec<MaskedBy>, Arc<Plan>);

/// The DataRow to send instead of `body` (tag and length included), and the columns
/// masked in it; `None` when it goes as it is.
fn mask_row(masker: &Masker, markers: &Shared, body: &[u8]) -> Result<Option<MaskedRow>, Error> {
    let mut t = lock(markers);
    let Some(shape) = t.shapes.row() else {
        // Rows nothing described: the gateway cannot tell what they hold.
        return Err(Error::Refused(refusal::UNDESCRIBED_ROWS.into()));
    };
    if !shape.plan.active() {
        return Ok(None);
    }
    let values = rows::data_row(body)
        .ok_or_else(|| Error::Protocol("malformed DataRow from the server".into()))?;
    // Bind's format codes and a RowDescription's per-column formats read alike.
    let masked = masker.row(&shape.plan, &shape.formats, &values);
    Ok(masked
        .values
        .map(|v| (rows::encode_data_row(&v), masked.masked, shape.plan.clone())))
}
