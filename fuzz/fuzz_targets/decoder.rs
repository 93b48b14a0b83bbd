//! Fuzzes the decoders: any bytes, cut into reads anywhere, in every framing and with any limit.
//! Invariants: no panic; no frame over the limit; the decoder never holds more than one frame;
//! and where no frame broke the rules, the frames' wire bytes put back together are the input.
#![no_main]

use echoloop::protocol::framing::{Decoder, FramingKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[kind, limit, cut_seed], stream)) = data.split_first_chunk::<3>() else {
        return;
    };
    let kind = [FramingKind::Raw, FramingKind::Line, FramingKind::Length][kind as usize % 3];
    let max_frame = 1 + limit as usize;
    let mut decoder = Decoder::new(kind, max_frame);
    let mut wire = Vec::new();
    let mut broken = false;
    let mut rest = stream;
    let mut step = 1 + cut_seed as usize;
    while !rest.is_empty() {
        let (read, after) = rest.split_at(step.min(rest.len()));
        rest = after;
        step = (step * 7 + 3) % 97 + 1;
        let mut input = read;
        loop {
            match decoder.next_frame(&mut input) {
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() <= max_frame);
                    wire.extend_from_slice(frame.wire);
                }
                Ok(None) => break,
                Err(_) => broken = true,
            }
        }
        assert!(decoder.buffered() <= max_frame + 4);
    }
    if !broken {
        let pending = decoder.buffered();
        if let Some(last) = decoder.finish() {
            wire.extend_from_slice(last.wire);
        } else {
            wire.extend_from_slice(&stream[stream.len() - pending..]);
        }
        assert_eq!(wire, stream);
    }
});
