//! Every protocol over a Unix socket, and the socket file's life: a stale file is replaced, a
//! live one is not, and the file is removed when the server stops.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use echoloop::{Address, ProtocolKind, ServeConfig, Server, StartError};

use crate::common;

/// A fresh socket path in the temp dir, unique to this process and call.
fn socket_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "echoloop-{}-unix-{name}-{n}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn serve_unix(protocol: ProtocolKind, path: &Path) -> common::TestServer {
    common::serve(|cfg| {
        cfg.protocol = protocol.into();
        cfg.listen = vec![Address::Unix(path.to_path_buf())];
    })
}

fn connect_unix(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect to the unix socket");
    stream.set_read_timeout(Some(common::PATIENCE)).unwrap();
    stream.set_write_timeout(Some(common::PATIENCE)).unwrap();
    stream
}

#[test]
fn echo_over_unix() {
    let path = socket_path("echo");
    let _server = serve_unix(ProtocolKind::Echo, &path);
    let mut client = connect_unix(&path);
    client.write_all(b"over a file\x00\xff").unwrap();
    assert_eq!(
        common::read_exactly(&mut client, 13),
        b"over a file\x00\xff"
    );
}

#[test]
fn timestamp_over_unix() {
    let path = socket_path("timestamp");
    let _server = serve_unix(ProtocolKind::Timestamp, &path);
    let mut client = connect_unix(&path);
    client.write_all(b"hello\n").unwrap();
    let line = common::read_line(&mut client);
    assert_eq!(line.len(), 27 + 5);
    assert_eq!(line[0], b'[');
    assert_eq!(&line[25..], b"] hello");
}

#[test]
fn daytime_over_unix() {
    let path = socket_path("daytime");
    let _server = serve_unix(ProtocolKind::Daytime, &path);
    let mut client = connect_unix(&path);
    let all = common::read_to_end(&mut client);
    assert_eq!(all.len(), 26);
    assert!(all.ends_with(b"\r\n"));
}

#[test]
fn discard_over_unix() {
    let path = socket_path("discard");
    let server = serve_unix(ProtocolKind::Discard, &path);
    let mut client = connect_unix(&path);
    client.write_all(&[7u8; 100_000]).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(common::read_to_end(&mut client), b"");
    let stats = common::wait_for_stats(&server, "everything read", |s| {
        s.total().connections_open == 0
    });
    assert_eq!(stats.total().bytes_received, 100_000);
}

#[test]
fn chargen_over_unix() {
    let path = socket_path("chargen");
    let _server = serve_unix(ProtocolKind::Chargen, &path);
    let mut client = connect_unix(&path);
    let mut first = [0u8; 148];
    client.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b" !\"#$"));
    assert!(first[74..].starts_with(b"!\"#$%"));
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let path = socket_path("stale");
    drop(UnixListener::bind(&path).unwrap()); // the file stays; nobody accepts on it
    assert!(path.exists());
    let _server = serve_unix(ProtocolKind::Echo, &path);
    let mut client = connect_unix(&path);
    client.write_all(b"fresh").unwrap();
    assert_eq!(common::read_exactly(&mut client, 5), b"fresh");
}

#[test]
fn a_live_socket_is_not_taken_over() {
    let path = socket_path("live");
    let _owner = UnixListener::bind(&path).unwrap();
    let mut config = ServeConfig::for_tests();
    config.listen = vec![Address::Unix(path.clone())];
    match Server::bind(&config) {
        Err(StartError::Bind { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse)
        }
        Err(other) => panic!("expected a bind error, got {other}"),
        Ok(_) => panic!("bound a socket someone else is serving"),
    }
    assert!(path.exists(), "the owner's file is left alone");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_socket_file_is_removed_when_the_server_stops() {
    let path = socket_path("removed");
    let server = serve_unix(ProtocolKind::Echo, &path);
    assert!(path.exists());
    server.stop().unwrap();
    assert!(!path.exists());
}
