//! Client → server: every Query and Parse is judged before anything of its batch goes
//! upstream; a refused one goes as a marker (see [`markers`](super::markers)). Other
//! messages pass through as the client framed them.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::Gateway;
use super::error::Error;
use super::frame::{self, split_frame};
use super::hold::{Notices, has_sync, hold};
use super::messages;
use super::session::{Judged, Shared, State, lock};
use super::stream::{ClientStream, UpstreamStream};
use crate::gateway::refusal;

pub async fn relay_up(
    gw: &Gateway,
    mut cr: ReadHalf<ClientStream>,
    mut uw: WriteHalf<UpstreamStream>,
    mut cbuf: BytesMut,
    markers: Shared,
    state: &mut State,
    notices: Notices,
) -> Result<(), Error> {
    let max = gw.target.max_message_bytes;
    let mut out = BytesMut::with_capacity(8192);
    loop {
        if !cbuf.is_empty() {
            // A session lasts no longer than its token: nothing more is judged or
            // forwarded once it has expired, a Bind/Execute of a statement prepared
            // before included. One clock read per batch the client sent.
            state.expired()?;
        }
        while let Some(f) = split_frame(&mut cbuf, max)? {
            match f.tag {
                b'Q' => {
                    let text = messages::query_text(f.body())?;
                    state.ends_at = lock(&markers).markers.query();
                    let refused = match state.judge(gw, "query", text).await {
                        Judged::Go => None,
                        Judged::Refuse(sentence) => Some(sentence),
                        Judged::Review(review) => {
                            // What the client sent before it does not wait with it.
                            send(gw, state, &markers, &mut uw, &mut out).await?;
                            let identity = vec![text.to_string()];
                            hold(gw, state, &notices, *review, text, identity).await
                        }
                    };
                    let mut t = lock(&markers);
                    t.shapes.query(state.tables.clone());
                    match refused {
                        None => out.extend_from_slice(&f.bytes),
                        Some(message) => {
                            let token = t.markers.refuse(message, state.ends_at);
                            out.extend_from_slice(&messages::query(&token));
                        }
                    }
                }
                b'P' => {
                    let (name, text) = messages::parse_body(f.body())?;
                    if name.is_empty() {
                        // PostgreSQL drops the unnamed statement before parsing anew.
                        state.forget_statement(name);
                    }
                    state.ends_at = lock(&markers).markers.parse();
                    let refused = match state.judge(gw, "parse", text).await {
                        Judged::Go => {
                            if state.needs_bound_estimate {
                                let types = messages::parse_parameter_types(f.body())?;
                                state.estimate_each_run(name, text, types);
                            }
                            state.name_statement(gw, name).await;
                            None
                        }
                        Judged::Refuse(sentence) => Some(sentence),
                        // Parsing runs nothing: each execution waits instead (see Bind).
                        Judged::Review(review) => {
                            state.hold_statement(name, *review, text);
                            state.name_statement(gw, name).await;
                            None
                        }
                    };
                    let mut t = lock(&markers);
                    t.shapes.parse(name, state.tables.clone());
                    match refused {
                        None => out.extend_from_slice(&f.bytes),
                        Some(message) => {
                            let token = t.markers.refuse(message, state.ends_at);
                            out.extend_from_slice(&messages::parse(name, &token));
                        }
                    }
                }
                b'F' => {
                    // The fast-path function call runs a function by OID with no SQL to
                    // judge (lo_import is one): refused, in place, as a query would be.
                    let token = {
                        let mut t = lock(&markers);
                        t.shapes.query(Default::default());
                        let ends_at = t.markers.query();
                        t.markers.refuse(refusal::FUNCTION_CALL.into(), ends_at)
                    };
                    out.extend_from_slice(&messages::query(&token));
                }
                b'B' => {
                    let (portal, statement, formats) = messages::bind_body(f.body())?;
                    // A prepared write is judged again with the planner's estimate for
                    // the values this run binds.
                    let parameters = messages::bind_parameters(f.body())
                        .map(|(_, p)| p)
                        .unwrap_or_default();
                    state.ends_at = lock(&markers).markers.parse();
                    let mut refused = state.judge_run(gw, statement, parameters).await;
                    let held = match refused {
                        None => state.statement_review(statement, parameters),
                        Some(_) => None,
                    };
                    if let Some((review, text)) = held {
                        // An execution of a statement a rule sent to review: the batch
                        // waits for approval of this text with these parameters.
                        while !has_sync(&cbuf) && cbuf.len() <= max {
                            if cr.read_buf(&mut cbuf).await? == 0 {
                                break;
                            }
                        }
                        let params = crate::audit::chain::hex(parameters);
                        send(gw, state, &markers, &mut uw, &mut out).await?;
                        let identity = vec![text.clone(), params];
                        refused = hold(gw, state, &notices, review, &text, identity).await;
                    } else if refused.is_none() {
                        // Every run is on the record with the values it ran with.
                        state.executed(gw, statement, parameters);
                    }
                    let mut t = lock(&markers);
                    t.shapes.bind(portal, statement, formats.into_iter());
                    match refused {
                        None => out.extend_from_slice(&f.bytes),
                        // Refused in place: the server fails the marker and skips the
                        // rest of the batch, its Execute included.
                        Some(message) => {
                            let ends_at = t.markers.parse();
                            let token = t.markers.refuse(message, ends_at);
                            out.extend_from_slice(&messages::parse(&token, &token));
                        }
                    }
                }
                b'D' => {
                    let (kind, name) = messages::target_body(f.body())?;
                    let mut t = lock(&markers);
                    match kind {
                        b'S' => t.shapes.describe_statement(name),
                        _ => t.shapes.describe_portal(name),
                    }
                    out.extend_from_slice(&f.bytes);
                }
                b'E' => {
                    // Rows are only sent with a plan: an Execute nothing described is
                    // described first, for the gateway's eyes only.
                    let mut b = f.body();
                    let portal = frame::cstr(&mut b)?;
                    if lock(&markers).shapes.execute(portal) {
                        out.extend_from_slice(&messages::describe_portal(portal));
                    }
                    out.extend_from_slice(&f.bytes);
                }
                b'C' => {
                    let (kind, name) = messages::target_body(f.body())?;
                    if kind == b'S' {
                        state.forget_statement(name);
                    }
                    let mut t = lock(&markers);
                    match kind {
                        b'S' => t.shapes.close_statement(name),
                        _ => t.shapes.close_portal(name),
                    }
                    out.extend_from_slice(&f.bytes);
                }
                b'S' => {
                    let mut t = lock(&markers);
                    t.markers.sync();
                    t.shapes.sync();
                    out.extend_from_slice(&f.bytes);
                }
                b'X' => {
                    out.extend_from_slice(&f.bytes);
                    state.flush_events(gw, Some(&markers)).await?;
                    uw.write_all(&out).await?;
                    uw.flush().await?;
                    return Ok(());
                }
                _ => out.extend_from_slice(&f.bytes),
            }
        }
        send(gw, state, &markers, &mut uw, &mut out).await?;
        if cr.read_buf(&mut cbuf).await? == 0 {
            return Ok(());
        }
    }
}

/// Sends what is ready to go upstream. Nothing judged goes upstream before its event is
/// recorded as required.
async fn send(
    gw: &Gateway,
    state: &mut State,
    markers: &Shared,
    uw: &mut WriteHalf<UpstreamStream>,
    out: &mut BytesMut,
) -> Result<(), Error> {
    if out.is_empty() {
        return Ok(());
    }
    state.flush_events(gw, Some(markers)).await?;
    uw.write_all(out).await?;
    uw.flush().await?;
    out.clear();
    Ok(())
}
