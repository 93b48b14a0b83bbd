//! `--workers N`: independent reactors on one port (SO_REUSEPORT), each serving its own share.

use std::io::Write;

use crate::common::{
    self, connect, pseudo_random_bytes, read_exactly, serve, wait_for_stats, wait_until,
};

#[test]
fn two_workers_share_the_port_and_every_client_is_served() {
    let server = serve(|cfg| {
        cfg.workers = 2;
        cfg.udp = vec!["127.0.0.1:0".parse().unwrap()];
    });
    let mut clients: Vec<_> = (0..64).map(|_| connect(&server)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let message = pseudo_random_bytes(200, i as u64);
        client.write_all(&message).unwrap();
        assert_eq!(read_exactly(client, message.len()), message);
    }
    let stats = wait_for_stats(&server, "64 accepted", |s| s.total().connections_open == 64);
    assert_eq!(stats.total().connections_accepted, 64);

    // Both workers served. SO_REUSEPORT hands each connection to one of the listeners by a hash
    // of its 4-tuple, and every client here has a source port of its own: the chance that one
    // of the two workers gets none of the 64 is 2 x 2^-64 = 2^-63.
    let workers = wait_until(
        "64 accepted, worker by worker",
        || server.worker_stats(),
        |workers| {
            let accepted = workers.iter().map(|w| w.total().connections_accepted);
            accepted.sum::<u64>() == 64
        },
    );
    assert_eq!(workers.len(), 2);
    for (i, worker) in workers.iter().enumerate() {
        assert!(
            worker.total().connections_accepted >= 1,
            "worker {i} accepted none of the 64 connections: {workers:?}"
        );
    }

    // UDP is shared the same way.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(common::PATIENCE)).unwrap();
    udp.send_to(b"datagram", server.udp_addrs()[0]).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"datagram");
}
