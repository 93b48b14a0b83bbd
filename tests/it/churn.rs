//! Connect/close churn leaves nothing behind: the server's descriptor count returns to baseline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Daemon, PATIENCE, open_fds};

/// What each descriptor is, for the failure message.
fn describe_fds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|entry| {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            format!(
                "{} -> {}",
                entry.file_name().to_string_lossy(),
                target.display()
            )
        })
        .collect()
}

#[test]
fn thousands_of_short_connections_leave_the_fd_count_at_baseline() {
    let daemon = Daemon::start(&["serve", "-l", "127.0.0.1:0"], 1);
    let addr = daemon.tcp_addr();
    let pid = daemon.child.id();
    // One round trip first: the reactor is then fully set up (its reserve descriptor is open).
    let mut first = TcpStream::connect(addr).unwrap();
    first.write_all(b"x").unwrap();
    first.read_exact(&mut [0u8; 1]).unwrap();
    drop(first);
    thread::sleep(Duration::from_millis(100));
    let baseline = open_fds(pid);
    let before = describe_fds(pid);

    let workers: Vec<_> = (0..4u32)
        .map(|w| {
            thread::spawn(move || {
                for i in 0..1000u32 {
                    let mut client = TcpStream::connect(addr).unwrap();
                    client.set_read_timeout(Some(PATIENCE)).unwrap();
                    let message = (w * 1_000_000 + i).to_be_bytes();
                    client.write_all(&message).unwrap();
                    let mut reply = [0u8; 4];
                    client.read_exact(&mut reply).unwrap();
                    assert_eq!(reply, message);
                    if i % 2 == 0 {
                        // Half leave politely, half just drop the socket after their answer.
                        client.shutdown(std::net::Shutdown::Write).unwrap();
                        let _ = client.read(&mut reply);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let start = Instant::now();
    while open_fds(pid) != baseline {
        assert!(
            start.elapsed() < PATIENCE,
            "descriptors: {:?} now, {before:?} before",
            describe_fds(pid)
        );
        thread::sleep(Duration::from_millis(20));
    }
    daemon.signal(libc::SIGTERM);
    let (code, stderr) = daemon.wait();
    assert_eq!(code, 0, "{stderr}");
}
