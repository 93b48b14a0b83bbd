//! Echo over TCP: byte-exact for any payload, and every client gets its own stream back.

use std::io::Write;
use std::thread;

use crate::common::{self, connect, pseudo_random_bytes, read_exactly, serve};

/// Sends `payload` from one thread while reading the echo on this one (a large payload would
/// otherwise fill both directions' buffers and deadlock the test, not the server).
fn echo_round_trip(server: &common::TestServer, payload: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let mut reader = connect(server);
    let mut writer = reader.try_clone().unwrap();
    let sent = payload.clone();
    let sender = thread::spawn(move || writer.write_all(&payload).unwrap());
    let echoed = read_exactly(&mut reader, sent.len());
    sender.join().unwrap();
    (sent, echoed)
}

#[test]
fn random_binary_payloads_from_1_byte_to_8_mib_come_back_byte_exact() {
    let server = serve(|_| {});
    for (i, len) in [1, 2, 7, 1500, 65_535, 65_536, 65_537, 1 << 20, 8 << 20]
        .into_iter()
        .enumerate()
    {
        let (sent, echoed) = echo_round_trip(&server, pseudo_random_bytes(len, i as u64 + 1));
        assert!(sent == echoed, "payload of {len} bytes came back changed");
    }
}

#[test]
fn five_hundred_concurrent_clients_each_get_their_own_stream() {
    let server = serve(|_| {});
    let clients: Vec<_> = (0..500u64)
        .map(|i| {
            let mut stream = connect(&server);
            thread::spawn(move || {
                for round in 0..10u64 {
                    let message = pseudo_random_bytes(100 + (i as usize % 900), i * 1000 + round);
                    stream.write_all(&message).unwrap();
                    assert_eq!(
                        read_exactly(&mut stream, message.len()),
                        message,
                        "client {i}"
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client saw a wrong echo");
    }
    let stats = common::wait_for_stats(&server, "500 clients closed", |s| {
        s.total().connections_accepted == 500 && s.total().connections_open == 0
    });
    assert_eq!(stats.total().bytes_received, stats.total().bytes_sent);
}

#[test]
fn the_tutorial_python_style_client_gets_its_bytes_back() {
    // s = socket.socket(); s.connect(...); s.sendall(b'hello'); print(s.recv(1024))
    let server = serve(|_| {});
    let mut s = connect(&server);
    s.write_all(b"hello").unwrap();
    let mut buf = [0u8; 1024];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
}
