//! Server → client: runs of complete frames go out untouched, except a marker's error
//! (swapped for the gateway's refusal) and a ParameterStatus that shows the server now
//! reads SQL differently from the gateway (the session ends). Results of reads waiting
//! for them are summarised on the way (rows, a sample) for their events. Result rewriting
//! (masking) belongs here.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::oneshot;

use super::error::Error;
use super::frame::complete_len;
use super::messages::{self, Severity};
use super::results::Results;
use super::session::{Shared, lock};
use super::stream::{ClientStream, UpstreamStream};
use crate::gateway::record::{Pending, Recorder};
use crate::gateway::refusal;

pub async fn relay_down(
    mut ur: ReadHalf<UpstreamStream>,
    mut cw: WriteHalf<ClientStream>,
    mut ubuf: BytesMut,
    markers: Shared,
    mut fatal: oneshot::Receiver<Bytes>,
    recorder: &Recorder,
) -> Result<(), Error> {
    let mut results = Results::new(recorder.result_rows());
    let mut done: Vec<Pending> = Vec::new();
    loop {
        // Find the complete frames at the front; note where a rewrite is needed.
        let mut end = 0;
        let mut rewrite: Option<(usize, usize, Bytes)> = None;
        // Reads waiting for their results are queued before their query goes upstream.
        let mut capturing = lock(&markers).waiting();
        while let Some(len) = complete_len(&ubuf[end..]) {
            let tag = ubuf[end];
            let body = &ubuf[end + 5..end + len];
            if tag == b'E' {
                let mut m = lock(&markers);
                if m.refusing() {
                    let fields = messages::fields(body);
                    let text = fields
                        .iter()
                        .find(|(c, _)| *c == b'M')
                        .map_or("", |(_, t)| t.as_str());
                    if let Some(message) = m.error(text) {
                        // A refusal, not a server error: nothing for the results.
                        rewrite = Some((
                            end,
                            len,
                            messages::error_response(Severity::Error, "42501", &message),
                        ));
                        end += len;
                        break;
                    }
                }
                drop(m);
                if capturing {
                    results.observe(tag, body);
                }
            } else if tag == b'S'
                && let Some(why) = super::reading::parameter_status(body)
                    .and_then(|(name, value)| super::reading::misreading(name, value))
            {
                // A setting changed under the session (a function, a role's or
                // database's default): nothing more is judged by a reading the server
                // no longer shares. The frames before it go out; the session ends.
                cw.write_all(&ubuf[..end]).await?;
                let message = refusal::misreading_mid_session(&why);
                cw.write_all(&messages::error_response(
                    Severity::Fatal,
                    "42501",
                    &message,
                ))
                .await?;
                cw.flush().await?;
                return Err(Error::Refused(message));
            } else if tag == b'Z' {
                let mut m = lock(&markers);
                m.ready();
                let (rows, sample) = results.take();
                let error = results.take_error();
                while let Some(mut ev) = m.completed() {
                    ev.complete(rows, sample.clone(), error.clone());
                    done.push(ev);
                }
                capturing = m.waiting();
            } else if capturing {
                results.observe(tag, body);
            }
            end += len;
        }
        if end > 0 {
            let chunk = ubuf.split_to(end);
            match rewrite {
                Some((at, len, replacement)) => {
                    cw.write_all(&chunk[..at]).await?;
                    cw.write_all(&replacement).await?;
                    cw.write_all(&chunk[at + len..]).await?;
                }
                None => cw.write_all(&chunk).await?,
            }
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
        }
    }
}
