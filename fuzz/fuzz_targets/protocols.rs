//! Fuzzes the protocols' frame handling: each protocol is driven the way the reactor drives it
//! (connect, reads cut into frames, drains, FIN, idle timeouts, datagrams, disconnects) by
//! clients the fuzzer makes up, through `echoloop::protocol::testing::Harness`.
//! Invariant: nothing a peer sends panics a protocol.
#![no_main]

use std::time::{Duration, SystemTime};

use echoloop::CloseReason;
use echoloop::protocol::framing::FramingKind;
use echoloop::protocol::testing::Harness;
use echoloop::protocol::{Chargen, Chat, Daytime, Discard, Echo, Protocol, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[kind, framing, when], script)) = data.split_first_chunk::<3>() else {
        return;
    };
    let framing = [FramingKind::Raw, FramingKind::Line, FramingKind::Length][framing as usize % 3];
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(when as u64 * 86_400 * 97);
    match kind % 6 {
        0 => run(Echo, framing, now, script),
        1 => run(Timestamp::new(), framing, now, script),
        2 => run(Daytime, framing, now, script),
        3 => run(Discard, framing, now, script),
        4 => run(Chargen::new(), framing, now, script),
        _ => run(Chat::new(), framing, now, script),
    }
});

/// The script: an opcode byte, a client byte, a length byte, then that many bytes.
fn run<P: Protocol>(protocol: P, framing: FramingKind, now: SystemTime, script: &[u8]) {
    let mut harness = Harness::new(protocol)
        .with_framing(framing)
        .with_max_frame(64);
    harness.set_now(now);
    let mut rest = script;
    while let Some((&[op, client, len], after)) = rest.split_first_chunk::<3>() {
        let (bytes, after) = after.split_at((len as usize).min(after.len()));
        rest = after;
        let clients = harness.clients();
        let target = (!clients.is_empty()).then(|| clients[client as usize % clients.len()]);
        match (op % 7, target) {
            (0, _) if clients.len() < 8 => {
                harness.connect();
            }
            (1, Some(id)) => harness.send(id, bytes),
            (2, Some(id)) => {
                harness.drain(id);
            }
            (3, Some(id)) => harness.end_input(id),
            (4, Some(id)) => harness.idle_timeout(id),
            (5, Some(id)) => harness.disconnect(id, CloseReason::ALL[len as usize % 8]),
            (6, _) => {
                let _ = harness.datagram(bytes);
            }
            _ => {}
        }
        for id in harness.clients() {
            harness.take_output(id);
        }
    }
}
