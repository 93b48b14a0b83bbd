//! `ServeConfig::custom`: a protocol that is not one of echoloop's own, served by the reactor.

use std::time::SystemTime;

use echoloop::{ClientId, Frame, FramingKind, Protocol, ProtocolFactory, Replies, ServeConfig};

use crate::common;

/// Answers each line with its length in bytes.
struct Count;

impl Protocol for Count {
    fn default_framing(&self) -> FramingKind {
        FramingKind::Line
    }

    fn on_frame(&mut self, _: ClientId, frame: Frame<'_>, _: SystemTime, out: &mut Replies) {
        out.send_frame(&[frame.payload.len().to_string().as_bytes()]);
    }
}

fn factory() -> ProtocolFactory {
    ProtocolFactory::new(|| Box::new(Count))
}

#[test]
fn a_custom_protocol_is_served_with_its_own_default_framing() {
    let server = common::serve(|cfg| cfg.custom = Some(factory()));
    let mut client = common::connect(&server);
    common::send(&mut client, b"four\n\xff\xfe\r\n");
    assert_eq!(common::read_line(&mut client), b"4");
    assert_eq!(common::read_line(&mut client), b"2");
}

#[test]
fn the_framing_in_force_is_the_custom_protocols() {
    let config = ServeConfig {
        custom: Some(factory()),
        ..ServeConfig::for_tests()
    };
    assert_eq!(config.framing(), FramingKind::Line); // echo, the `protocol` field, would be raw
}

#[test]
fn each_worker_gets_its_own_protocol_value() {
    let server = common::serve(|cfg| {
        cfg.custom = Some(factory());
        cfg.workers = 2;
    });
    for _ in 0..4 {
        let mut client = common::connect(&server);
        common::send(&mut client, b"abc\n");
        assert_eq!(common::read_line(&mut client), b"3");
    }
}
