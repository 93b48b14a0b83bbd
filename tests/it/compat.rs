//! The tutorial Python clients of `scripts/compat/`, run unchanged with `python3` against a
//! timestamp server: the TCP one against `echoloop serve -p timestamp` with no other flag (the
//! real binary, its defaults), as a newcomer would run it. `#[ignore = "needs python3"]`:
//! `cargo test -- --include-ignored` runs them, and they fail if python3 is missing
//! (`tests/it/timestamp.rs` has the same client in Rust, which always runs).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use echoloop::ProtocolKind;

use crate::common;

/// Runs `script` with `host port`, typing `input` at it; returns its stdout. The child is killed
/// if it has not finished after [`common::PATIENCE`].
fn run_client(script: &str, port: u16, input: &[u8]) -> String {
    let path = format!("{}/scripts/compat/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(common::tool("python3", "python3"))
        .args([&path, "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("running python3: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap(); // dropped: the client sees EOF after
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > common::PATIENCE {
            child.kill().unwrap();
            panic!("{script} did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{script} failed: {:?}",
        output.status
    );
    String::from_utf8(output.stdout).expect("the client prints text")
}

/// The stamped replies the client printed, after its `> ` prompts.
fn replies(stdout: &str) -> Vec<&str> {
    stdout
        .split("> ")
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .collect()
}

fn assert_stamped(reply: &str, message: &str) {
    assert!(reply.starts_with('['), "{reply:?}");
    assert_eq!(reply.len(), 27 + message.len(), "{reply:?}");
    assert!(reply.ends_with(&format!("] {message}")), "{reply:?}");
}

#[test]
#[ignore = "needs python3"]
fn the_tutorial_tcp_client_gets_one_stamped_reply_per_send() {
    // Sends each line typed without its newline, then waits in recv(1024): raw framing, the default.
    let daemon = common::Daemon::start(&["serve", "-p", "timestamp", "-l", "127.0.0.1:0"], 1);
    let stdout = run_client(
        "tcp_timestamp_client.py",
        daemon.tcp_addr().port(),
        b"hello python\nsecond message\n\n",
    );
    let got = replies(&stdout);
    assert_eq!(got.len(), 2, "{stdout:?}");
    assert_stamped(got[0], "hello python");
    assert_stamped(got[1], "second message");
}

#[test]
#[ignore = "needs python3"]
fn the_tutorial_udp_client_gets_one_stamped_datagram_per_sendto() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Timestamp.into();
        cfg.udp = vec!["127.0.0.1:0".parse().unwrap()];
    });
    let stdout = run_client(
        "udp_timestamp_client.py",
        server.udp_addrs()[0].port(),
        b"hello udp\n\n",
    );
    let got = replies(&stdout);
    assert_eq!(got.len(), 1, "{stdout:?}");
    assert_stamped(got[0], "hello udp");
}
