//! What the fuzz targets (`fuzz/`, issue 14) drive of this module without a network: the
//! framing and message decoders, and the session's bookkeeping of a client/server
//! exchange ([`Shapes`] and [`Markers`], which both relays share, and the [`Results`]
//! summary). The modules they live in are private; these two entry points are the only
//! way in, so the fuzz crate and the regression tests (`tests/suite/fuzz_regressions.rs`)
//! run exactly the same code.
//!
//! The exchange is a mirror of what [`relay_up`](super::relay_up) and
//! [`relay_down`](super::relay_down) do with each frame, with the gateway's judgement (a
//! rule lookup, the planner, the audit store) replaced by a bit of the input: those parts
//! need a `Gateway` and sockets and are covered by the integration tests instead.

use std::sync::Arc;

use bytes::BytesMut;

use super::frame::{complete_len, cstr, split_frame, split_startup};
use super::markers::Markers;
use super::messages;
use super::reading;
use super::results::Results;
use super::rows;
use super::shapes::{Formats, Reply, Shapes};

/// Splits `data` into typed frames as the client relay does (fed in uneven pieces, so the
/// "need more" path runs), and decodes every frame with each reader the gateway has.
/// The first byte sets the message size limit; the rest is also read as a startup packet.
pub fn frames(data: &[u8]) {
    let Some((&limit, data)) = data.split_first() else {
        return;
    };
    let max = 4 + usize::from(limit) * 64;
    if let Ok(Some((_code, body))) = split_startup(&mut BytesMut::from(data)) {
        let _ = messages::startup_params(&body);
    }
    let piece = 1 + usize::from(limit % 7);
    let mut buf = BytesMut::new();
    for chunk in data.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            let before = complete_len(&buf);
            match split_frame(&mut buf, max) {
                Ok(Some(frame)) => {
                    assert_eq!(before, Some(frame.bytes.len()), "complete_len disagrees");
                    assert!(frame.bytes.len() <= max + 1, "frame over the limit");
                    decode(frame.tag, frame.body());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Every reader of a message body, whatever the tag (tags mean different messages in
/// each direction).
fn decode(tag: u8, body: &[u8]) {
    let _ = messages::query_text(body);
    let _ = messages::parse_body(body);
    let _ = messages::parse_parameter_types(body);
    let _ = messages::target_body(body);
    if let Ok((_, _, formats)) = messages::bind_body(body) {
        let _ = formats.into_iter().count();
        assert!(
            messages::bind_parameters(body).is_some(),
            "a Bind read whole has parameters"
        );
    }
    let _ = messages::error_text(body);
    let _ = messages::fields(body);
    let _ = messages::fields_nul_list(body);
    let _ = reading::parameter_status(body);
    let _ = rows::row_description(body);
    if let Some(values) = rows::data_row(body) {
        let owned: Vec<_> = values
            .iter()
            .map(|v| v.map(std::borrow::Cow::Borrowed))
            .collect();
        let again = rows::encode_data_row(&owned);
        assert_eq!(
            rows::data_row(&again[5..]),
            Some(values),
            "a DataRow framed again reads the same"
        );
    }
    let mut b = body;
    let _ = cstr(&mut b);
    let mut results = Results::new(2);
    results.observe(tag, body);
    let _ = results.take();
}

/// Runs a client/server exchange through the session's bookkeeping. `data` is a run of
/// steps, each one byte and one typed frame: the byte's low bit says who sent the frame
/// (0 the client, 1 the server), the next bit whether the gateway refuses a Query, Parse
/// or Bind. Server frames move the shapes and markers as the server relay does.
pub fn session(data: &[u8]) {
    let mut shapes: Shapes<u32> = Shapes::default();
    let mut markers: Markers<u32> = Markers::default();
    let mut results = Results::new(3);
    let mut buf = BytesMut::from(data);
    let mut plans = 0u32;
    let mut tokens: Vec<String> = Vec::new();
    loop {
        if buf.is_empty() {
            break;
        }
        let step = buf[0];
        bytes::Buf::advance(&mut buf, 1);
        let frame = match split_frame(&mut buf, 1 << 16) {
            Ok(Some(f)) => f,
            _ => break,
        };
        let body = frame.body();
        let refuse = step & 2 != 0;
        if step & 1 == 0 {
            if client(
                &mut shapes,
                &mut markers,
                frame.tag,
                body,
                refuse,
                &mut tokens,
            )
            .is_err()
            {
                break;
            }
            continue;
        }
        // Server → client.
        let reply = match frame.tag {
            b'T' | b'n' | b'C' | b's' | b'I' | b'E' | b'Z' => {
                let _ = shapes.tables();
                shapes.reply(frame.tag)
            }
            _ => Reply::Forward,
        };
        match (frame.tag, reply) {
            (_, Reply::Drop) => {}
            (b'T', Reply::Describe | Reply::DescribeHidden) => {
                let formats: Formats = rows::row_description(body)
                    .unwrap_or_default()
                    .iter()
                    .map(|f| f.format)
                    .collect();
                plans += 1;
                shapes.described(Arc::new(plans), formats);
                results.observe(frame.tag, body);
            }
            (b'D', _) => {
                if let Some(shape) = shapes.row() {
                    let _ = (*shape.plan, shape.formats.len());
                }
                results.observe(frame.tag, body);
            }
            (b'E', _) => {
                if markers.refusing() {
                    // The server's error quotes the marker; pick one by the body's length.
                    let text = match tokens.get(body.len() % (tokens.len() + 1)) {
                        Some(token) => format!("syntax error at or near \"{token}\""),
                        None => messages::error_text(body),
                    };
                    let _ = markers.error(&text);
                }
                results.observe(frame.tag, body);
            }
            (b'Z', _) => {
                markers.ready();
                while markers.completed().is_some() {}
                let _ = results.take();
                let _ = results.take_error();
            }
            _ => results.observe(frame.tag, body),
        }
    }
    let _ = markers.unfinished().count();
}

/// What a session does with a verified identity before and while it relays: its state,
/// and the check that ends it once the token has expired.
pub fn identity(identity: &crate::identity::Identity) {
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 5432));
    let state = super::session::State::new("fuzz", peer, identity, "db");
    let _ = state.expired();
}

/// One client frame, as the client relay handles it; `Err` where the relay would end the
/// session.
fn client(
    shapes: &mut Shapes<u32>,
    markers: &mut Markers<u32>,
    tag: u8,
    body: &[u8],
    refuse: bool,
    tokens: &mut Vec<String>,
) -> Result<(), super::Error> {
    let mut refused = |markers: &mut Markers<u32>, ends_at: u64| {
        let token = markers.refuse("refused".into(), ends_at);
        tokens.push(token);
    };
    match tag {
        b'Q' => {
            messages::query_text(body)?;
            let ends_at = markers.query();
            shapes.query(Default::default());
            if refuse {
                refused(markers, ends_at);
            } else {
                markers.defer(u32::from(tag), ends_at);
            }
        }
        b'P' => {
            let (name, _text) = messages::parse_body(body)?;
            let ends_at = markers.parse();
            shapes.parse(name, Default::default());
            if refuse {
                refused(markers, ends_at);
            }
        }
        b'F' => {
            shapes.query(Default::default());
            let ends_at = markers.query();
            refused(markers, ends_at);
        }
        b'B' => {
            let (portal, statement, formats) = messages::bind_body(body)?;
            let _ = messages::bind_parameters(body);
            shapes.bind(portal, statement, formats.into_iter());
            if refuse {
                let ends_at = markers.parse();
                refused(markers, ends_at);
            }
        }
        b'D' => match messages::target_body(body)? {
            (b'S', name) => shapes.describe_statement(name),
            (_, name) => shapes.describe_portal(name),
        },
        b'E' => {
            let mut b = body;
            let portal = cstr(&mut b)?;
            let _ = shapes.execute(portal);
        }
        b'C' => match messages::target_body(body)? {
            (b'S', name) => shapes.close_statement(name),
            (_, name) => shapes.close_portal(name),
        },
        b'S' => {
            markers.sync();
            shapes.sync();
        }
        _ => {}
    }
    Ok(())
}
