//! What stalled the server on mio's `poll(2)` backend, as tests that any build must pass.
//!
//! `.ci/run` also runs this module on a build with `RUSTFLAGS='--cfg mio_unsupported_force_poll_poll'`
//! (the guide's "Why epoll" build), where mio emulates epoll's edges: a socket it has reported is
//! not watched again until a read through mio says `WouldBlock`, and a `Waker`'s wake-up can be
//! read away by mio's own bookkeeping. There, before the fix, a connection was answered once and
//! then never again (the reactor stopped reading at a short read), and a stop request sent just
//! as a client left was lost. On epoll these pass as they always did; each names its bug.

use std::io::Write;
use std::sync::mpsc;
use std::thread;

use crate::common::{PATIENCE, connect, read_exactly, serve};

#[test]
fn every_message_of_a_ping_pong_is_answered_not_only_the_first() {
    let server = serve(|_| {});
    let mut clients = [connect(&server), connect(&server)];
    // Each message waits for its echo before the next is sent: every read on the server side is
    // a short one, and the next message can only be seen if the socket was watched again.
    for round in 0..50 {
        for (i, client) in clients.iter_mut().enumerate() {
            let message = format!("round {round} client {i}\n");
            client.write_all(message.as_bytes()).unwrap();
            assert_eq!(read_exactly(client, message.len()), message.as_bytes());
        }
    }
}

#[test]
fn a_stop_request_as_a_client_leaves_is_not_lost() {
    let server = serve(|_| {});
    let mut client = connect(&server);
    client.write_all(b"hello").unwrap();
    assert_eq!(read_exactly(&mut client, 5), b"hello");
    // The client's FIN and the stop request reach the reactor together: closing the client
    // changes the poller's set while the waker's wake-up is pending.
    drop(client);
    let (done, stopped) = mpsc::channel();
    thread::spawn(move || {
        let result = server.stop();
        let _ = done.send(result.is_ok());
    });
    assert_eq!(
        stopped.recv_timeout(PATIENCE),
        Ok(true),
        "the server did not stop: the stop request was lost"
    );
}
