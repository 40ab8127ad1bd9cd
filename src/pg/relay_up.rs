//! Client → server: every Query and Parse is judged before anything of its batch goes
//! upstream; a refused one goes as a marker (see [`markers`](super::markers)). Other
//! messages pass through as the client framed them.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::Gateway;
use super::error::Error;
use super::frame::{self, split_frame};
use super::messages;
use super::session::{Shared, State, lock};
use super::stream::{ClientStream, UpstreamStream};
use crate::gateway::refusal;

pub async fn relay_up(
    gw: &Gateway,
    mut cr: ReadHalf<ClientStream>,
    mut uw: WriteHalf<UpstreamStream>,
    mut cbuf: BytesMut,
    markers: Shared,
    state: &mut State,
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
                    let refused = state.judge(gw, "query", text);
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
                    state.ends_at = lock(&markers).markers.parse();
                    let refused = state.judge(gw, "parse", text);
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
                    lock(&markers)
                        .shapes
                        .bind(portal, statement, formats.into_iter());
                    out.extend_from_slice(&f.bytes);
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
        if !out.is_empty() {
            // Nothing judged goes upstream before its event is recorded as required.
            state.flush_events(gw, Some(&markers)).await?;
            uw.write_all(&out).await?;
            uw.flush().await?;
            out.clear();
        }
        if cr.read_buf(&mut cbuf).await? == 0 {
            return Ok(());
        }
    }
}
