//! A statement's masking plan without running it, for `check sql --config`: the upstream
//! describes the statement (Parse, Describe, Sync on a connection of the gateway's own;
//! nothing is executed) and the description is planned by the same code as a live
//! result's RowDescription, so what a DBA checks is what the gateway does.

use bytes::BytesMut;

use super::catalog::{Catalog, exchange};
use super::error::Error;
use super::{messages, upstream};
use crate::config::PostgresTarget;
use crate::gateway::mask::{Masker, Plan};
use crate::sql::Reads;

/// The plan the gateway would make for the results of `sql` (the first statement the
/// server reads in it); `reads` are what its statements read.
pub async fn masking_plan(
    target: &PostgresTarget,
    masker: &Masker,
    sql: &str,
    reads: &Reads,
) -> Result<Plan, Error> {
    let session = upstream::connect(
        &target.upstream,
        target.upstream_password.as_deref(),
        &[("application_name".into(), "portcullis-check".into())],
    )
    .await?;
    let (mut stream, mut buf) = (session.stream, session.leftover);
    let mut request = BytesMut::new();
    request.extend_from_slice(&messages::parse("", sql));
    request.extend_from_slice(&messages::describe(b'S', ""));
    request.extend_from_slice(&[b'S', 0, 0, 0, 4]);
    let fields = exchange(&mut stream, &mut buf, &request)
        .await
        .map_err(|e| Error::Upstream(format!("the upstream cannot describe it: {e}")))?
        .fields;
    let columns = Catalog::default().columns(target, fields, reads).await?;
    Ok(masker.plan(columns))
}
