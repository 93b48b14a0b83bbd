//! Fuzzes the protocols' frame handling: each protocol is driven the way the reactor drives it
//! (connect, frames, errors, drains, datagrams, disconnects) by clients the fuzzer makes up.
//! Invariant: nothing a peer sends panics a protocol.
#![no_main]

use std::time::{Duration, SystemTime};

use echoloop::protocol::framing::{Decoder, FramingKind};
use echoloop::protocol::{ClientId, ProtocolKind, Replies};
use echoloop::CloseReason;
use libfuzzer_sys::fuzz_target;

const KINDS: &[ProtocolKind] = &[
    ProtocolKind::Echo,
    ProtocolKind::Timestamp,
    ProtocolKind::Daytime,
    ProtocolKind::Discard,
    ProtocolKind::Chargen,
    ProtocolKind::Chat,
];

fuzz_target!(|data: &[u8]| {
    let Some((&[kind, framing, when], script)) = data.split_first_chunk::<3>() else {
        return;
    };
    let mut protocol = KINDS[kind as usize % KINDS.len()].build();
    let framing = [FramingKind::Raw, FramingKind::Line, FramingKind::Length][framing as usize % 3];
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(when as u64 * 86_400 * 97);
    let mut decoders: Vec<Option<Decoder>> = (0..4).map(|_| None).collect();
    let mut out = Replies::new(framing);
    // The script: an opcode byte, a client byte, a length byte, then that many bytes.
    let mut rest = script;
    while let Some((&[op, client, len], after)) = rest.split_first_chunk::<3>() {
        let (bytes, after) = after.split_at((len as usize).min(after.len()));
        rest = after;
        let slot = client as usize % decoders.len();
        let id = ClientId(slot);
        out.reset(framing);
        match (op % 5, &mut decoders[slot]) {
            (0, decoder @ None) => {
                *decoder = Some(Decoder::new(framing, 64));
                protocol.on_connect(id, now, &mut out);
            }
            (1, Some(decoder)) => {
                let mut input = bytes;
                loop {
                    match decoder.next_frame(&mut input) {
                        Ok(Some(frame)) => protocol.on_frame(id, frame, now, &mut out),
                        Ok(None) => break,
                        Err(error) => protocol.on_frame_error(id, &error, &mut out),
                    }
                }
            }
            (2, Some(_)) => protocol.on_drained(id, &mut out),
            (3, decoder @ Some(_)) => {
                *decoder = None;
                protocol.on_disconnect(id, CloseReason::ALL[len as usize % 8], &mut out);
            }
            (4, _) => {
                let mut reply = Vec::new();
                let _ = protocol.on_datagram(bytes, now, &mut reply);
            }
            _ => {}
        }
    }
});
