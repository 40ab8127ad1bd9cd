//! A statement's masking plan without running it, for `check sql --config`: the upstream
//! describes the statement (Parse, Describe, Sync on a connection of the gateway's own;
//! nothing is executed) and the description is planned by the same code as a live
//! result's RowDescription, so what a DBA checks is what the gateway does.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::catalog::Catalog;
use super::error::Error;
use super::frame::split_frame;
use super::{messages, rows, upstream};
use crate::config::PostgresTarget;
use crate::gateway::mask::{Masker, Plan};

/// Largest reply read.
const MAX_REPLY: usize = 16 << 20;

/// The plan the gateway would make for the results of `sql` (the first statement the
/// server reads in it); `tables` are those the statement reads or writes.
pub async fn masking_plan(
    target: &PostgresTarget,
    masker: &Masker,
    sql: &str,
    tables: &[String],
) -> Result<Plan, Error> {
    let up = |e: std::io::Error| Error::Upstream(e.to_string());
    let session = upstream::connect(
        &target.upstream,
        target.upstream_password.as_deref(),
        &[("application_name".into(), "portcullis-check".into())],
    )
    .await?;
    let (mut stream, mut buf): (_, BytesMut) = (session.stream, session.leftover);
    let mut out = BytesMut::new();
    out.extend_from_slice(&messages::parse("", sql));
    out.extend_from_slice(&messages::describe(b'S', ""));
    out.extend_from_slice(&[b'S', 0, 0, 0, 4]);
    stream.write_all(&out).await.map_err(up)?;
    stream.flush().await.map_err(up)?;
    let mut fields = Vec::new();
    loop {
        let Some(frame) = split_frame(&mut buf, MAX_REPLY)? else {
            if stream.read_buf(&mut buf).await.map_err(up)? == 0 {
                return Err(Error::Upstream("the upstream closed the connection".into()));
            }
            continue;
        };
        match frame.tag {
            b'T' => {
                fields = rows::row_description(frame.body()).ok_or_else(|| {
                    Error::Protocol("malformed RowDescription from the server".into())
                })?
            }
            b'E' => {
                let fields = messages::fields(frame.body());
                let text = fields
                    .iter()
                    .find(|(c, _)| *c == b'M')
                    .map_or("", |(_, m)| m.as_str());
                return Err(Error::Upstream(format!(
                    "the upstream cannot describe it: {text}"
                )));
            }
            b'Z' => break,
            _ => {}
        }
    }
    let columns = Catalog::default().columns(target, fields, tables).await?;
    Ok(masker.plan(columns))
}
