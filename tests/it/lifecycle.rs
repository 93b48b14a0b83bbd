//! How connections end: half-close, reset, and refusal at the connection limit.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;

use crate::common::{
    connect, pseudo_random_bytes, read_exactly, read_to_end, serve, wait_for_stats,
};
use echoloop::CloseReason;

#[test]
fn half_close_still_delivers_every_byte_owed() {
    let server = serve(|cfg| cfg.queue_limit = 64 * 1024);
    let mut client = connect(&server);
    let payload = pseudo_random_bytes(4 << 20, 7);
    let mut writer = client.try_clone().unwrap();
    let sent = payload.clone();
    let sender = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap(); // FIN: "I am done sending"
    });
    let echoed = read_to_end(&mut client); // ends only when the server closes
    sender.join().unwrap();
    assert!(
        echoed == payload,
        "got {} of {} bytes",
        echoed.len(),
        payload.len()
    );
    wait_for_stats(&server, "a peer-closed close", |s| {
        s.closed_for(CloseReason::PeerClosed) == 1
    });
}

#[test]
fn a_reset_mid_stream_costs_nobody_else_anything() {
    let server = serve(|_| {});
    let mut steady = connect(&server);
    for round in 0..20u64 {
        let mut doomed = connect(&server);
        doomed
            .write_all(&pseudo_random_bytes(100_000, round))
            .unwrap();
        // SO_LINGER 0: close sends RST instead of FIN.
        socket2::SockRef::from(&doomed)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(doomed);
        let message = pseudo_random_bytes(1000, 1000 + round);
        steady.write_all(&message).unwrap();
        assert_eq!(read_exactly(&mut steady, message.len()), message);
    }
    wait_for_stats(&server, "20 closes", |s| s.total().connections_open == 1);
}

#[test]
fn one_over_max_connections_is_told_and_closed_and_the_others_are_undisturbed() {
    let server = serve(|cfg| cfg.max_connections = 3);
    let mut admitted: Vec<_> = (0..3).map(|_| connect(&server)).collect();
    for (i, client) in admitted.iter_mut().enumerate() {
        client.write_all(&[i as u8]).unwrap();
        assert_eq!(read_exactly(client, 1), [i as u8]); // each one is really served
    }
    let mut extra = connect(&server);
    assert_eq!(
        read_to_end(&mut extra),
        b"error: server full (3 connections)\n"
    );
    for client in admitted.iter_mut() {
        client.write_all(b"still here").unwrap();
        assert_eq!(read_exactly(client, 10), b"still here");
    }
    assert_eq!(server.stats().total().connections_refused, 1);

    // Once one leaves, a newcomer is admitted.
    drop(admitted.pop());
    wait_for_stats(&server, "a slot free", |s| s.total().connections_open == 2);
    let mut newcomer = connect(&server);
    newcomer.write_all(b"x").unwrap();
    let mut byte = [0u8; 1];
    newcomer.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"x");
}
