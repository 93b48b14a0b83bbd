//! `--greeting`: a line every stream client gets before anything else, over TCP and Unix.

use std::os::unix::net::UnixStream;

use echoloop::{Address, ProtocolKind};

use crate::common;

#[test]
fn the_greeting_comes_first_over_tcp() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Timestamp.into();
        cfg.greeting = Some(b"welcome to echoloop".to_vec());
    });
    let mut client = common::connect(&server);
    common::send(&mut client, b"hi\n");
    assert_eq!(common::read_line(&mut client), b"welcome to echoloop");
    let reply = common::read_line(&mut client);
    assert!(reply.starts_with(b"[") && reply.ends_with(b"] hi"));
}

#[test]
fn the_greeting_comes_before_daytimes_line() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Daytime.into();
        cfg.greeting = Some(b"hello".to_vec());
    });
    let mut client = common::connect(&server);
    let all = common::read_to_end(&mut client);
    assert!(
        all.starts_with(b"hello\n"),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
    assert_eq!(all.len(), 6 + 26);
}

#[test]
fn the_greeting_comes_first_over_unix() {
    let path = std::env::temp_dir().join(format!("echoloop-{}-greeting.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let _server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Echo.into();
        cfg.listen = vec![Address::Unix(path.clone())];
        cfg.greeting = Some(b"unix says hi".to_vec());
    });
    let mut client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(common::PATIENCE)).unwrap();
    assert_eq!(common::read_line(&mut client), b"unix says hi");
    common::send(&mut client, b"ping");
    assert_eq!(common::read_exactly(&mut client, 4), b"ping");
}
