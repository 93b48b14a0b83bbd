//! Faults stay on the connection that made them: resets, garbage, broken frames, abandoned
//! clients. Good clients verify their streams throughout, and the counters add up.

use std::io::Write;
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use crate::common::{
    connect, pseudo_random_bytes, read_exactly, read_to_end, serve, wait_for_stats,
};
use echoloop::CloseReason;
use echoloop::protocol::framing::{FramingKind, encode};

#[test]
fn resets_garbage_and_bad_frames_while_good_clients_verify_their_streams() {
    let server = serve(|cfg| {
        cfg.framing = Some(FramingKind::Length);
        cfg.max_frame = 4096;
    });
    let good: Vec<_> = (0..8u64)
        .map(|i| {
            let mut stream = connect(&server);
            thread::spawn(move || {
                for round in 0..200u64 {
                    let payload =
                        pseudo_random_bytes(1 + (round as usize * 37) % 4000, i << 32 | round);
                    let mut frame = Vec::new();
                    encode(FramingKind::Length, &[&payload], &mut frame);
                    stream.write_all(&frame).unwrap();
                    assert_eq!(
                        read_exactly(&mut stream, frame.len()),
                        frame,
                        "client {i} round {round}"
                    );
                }
            })
        })
        .collect();

    let mut bad_frames = 0;
    let mut resets = 0;
    for round in 0..60u64 {
        let mut bad = connect(&server);
        match round % 3 {
            0 => {
                // A length prefix far over --max-frame: that connection, and only it, is closed.
                bad.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
                assert_eq!(read_to_end(&mut bad), b"");
                bad_frames += 1;
            }
            1 => {
                // Half a frame, then a reset.
                bad.write_all(&[0, 0, 0x0f, 0xa0]).unwrap();
                bad.write_all(&pseudo_random_bytes(1000, round)).unwrap();
                socket2::SockRef::from(&bad)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                resets += 1;
            }
            _ => {
                // Random garbage, then a half-close: whatever it is, the server answers or closes.
                bad.write_all(&pseudo_random_bytes(3000, round)).unwrap();
                bad.shutdown(Shutdown::Write).unwrap();
                let _ = read_to_end(&mut bad);
            }
        }
    }
    for client in good {
        client.join().expect("a good client saw its stream damaged");
    }
    let stats = wait_for_stats(&server, "every client closed", |s| {
        s.total().connections_open == 0
    });
    assert_eq!(stats.total().connections_accepted, 68);
    assert!(stats.closed_for(CloseReason::FrameError) >= bad_frames);
    let total_closed: u64 = stats.total().closed.iter().sum();
    assert_eq!(total_closed, 68, "{stats:?}");
    assert!(resets > 0);
}

#[test]
fn counters_match_what_the_clients_did() {
    let server = serve(|_| {});
    let mut sent = 0u64;
    for i in 0..10u64 {
        let mut client = connect(&server);
        let payload = pseudo_random_bytes(1000 * (i as usize + 1), i);
        client.write_all(&payload).unwrap();
        assert_eq!(read_exactly(&mut client, payload.len()), payload);
        sent += payload.len() as u64;
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&mut client), b"");
    }
    let stats = wait_for_stats(&server, "ten closes", |s| s.total().connections_open == 0);
    assert_eq!(stats.total().connections_accepted, 10);
    assert_eq!(stats.closed_for(CloseReason::PeerClosed), 10);
    assert_eq!(stats.total().bytes_received, sent);
    assert_eq!(stats.total().bytes_sent, sent);
    assert_eq!(stats.total().queued_bytes, 0);
    assert_eq!(stats.total().connections_refused, 0);
}
