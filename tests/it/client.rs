//! `echoloop client` as a user runs it: the real binary, stdin piped, against in-process servers.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;

use crate::common::{self, PATIENCE, connect, read_line, send, serve};
use echoloop::{Address, ProtocolKind};

fn spawn_client(args: &[&str], stdin: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .arg("client")
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echoloop client")
}

/// Waits for the client to exit by itself; kills it (by its pid) and fails after [`PATIENCE`].
fn wait_for_exit(child: Child) -> Output {
    let pid = child.id() as libc::pid_t;
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done.recv_timeout(PATIENCE) {
        Ok(output) => output.expect("wait for the client"),
        Err(_) => {
            // SAFETY: kill(2) on the child this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the client did not exit by itself");
        }
    }
}

/// Runs the client with `input` on its stdin (then EOF) and waits for it to exit.
fn run_client(args: &[&str], input: &[u8]) -> Output {
    let mut child = spawn_client(args, Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // From another thread: the client's output must be read while its input is still written.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input); // then dropped: EOF
    });
    let output = wait_for_exit(child);
    writer.join().unwrap();
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn echo_lines_come_back_and_the_client_exits_0() {
    let server = serve(|_| {});
    let addr = server.addr().to_string();
    let output = run_client(&[&addr], b"a\nb\n\xffbytes\n");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"a\nb\n\xffbytes\n");
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
}

#[test]
fn a_large_piped_input_comes_back_whole() {
    let server = serve(|_| {});
    let addr = server.addr().to_string();
    let input = common::pseudo_random_bytes(3 << 20, 7);
    let output = run_client(&[&addr], &input);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        output.stdout == input,
        "{} bytes back of {}",
        output.stdout.len(),
        input.len()
    );
}

#[test]
fn stdin_from_a_regular_file_works() {
    let server = serve(|_| {});
    let addr = server.addr().to_string();
    let path = std::env::temp_dir().join(format!("echoloop-client-{}.txt", std::process::id()));
    std::fs::write(&path, b"from a file\n").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let output = wait_for_exit(spawn_client(&[&addr], Stdio::from(file)));
    let _ = std::fs::remove_file(&path);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(output.stdout, b"from a file\n");
}

#[test]
fn udp_lines_are_datagrams_and_replies_are_printed_one_per_line() {
    let server = serve(|cfg| cfg.udp = vec!["127.0.0.1:0".parse().unwrap()]);
    let addr = server.udp_addrs()[0].to_string();
    let output = run_client(&["--udp", &addr], b"one\r\ntwo\nlast without newline");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mut lines: Vec<String> = text(&output.stdout).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["last without newline", "one", "two"]);
    common::wait_for_stats(&server, "three datagrams", |s| s.datagrams_received == 3);
}

#[test]
fn unix_socket_addresses_work() {
    let path = std::env::temp_dir().join(format!("echoloop-client-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let server = serve(|cfg| cfg.listen = vec![Address::Unix(path.clone())]);
    let addr = format!("unix:{}", path.display());
    let output = run_client(&[&addr], b"over unix\n");
    drop(server);
    let _ = std::fs::remove_file(&path);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(output.stdout, b"over unix\n");
}

#[test]
fn a_refused_connection_is_one_line_and_exit_1() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nobody listens there now
    let addr = format!("127.0.0.1:{port}");
    let output = run_client(&[&addr], b"never sent\n");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!("echoloop: cannot connect to {addr}: connection refused\n")
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn chat_lines_go_both_ways_while_stdin_is_open() {
    let server = serve(|cfg| cfg.protocol = ProtocolKind::Chat.into());
    let mut member = connect(&server);
    assert_eq!(read_line(&mut member), b"* you are user0");
    let mut child = spawn_client(&[&server.addr().to_string()], Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    // The client's output, line by line, as it arrives.
    let (lines_tx, lines) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    thread::spawn(move || {
        for line in stdout.lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let next = || {
        lines
            .recv_timeout(PATIENCE)
            .expect("a line from the client")
    };
    assert_eq!(next(), "* you are user1");
    assert_eq!(read_line(&mut member), b"* user1 joined");

    // A message arrives while the client's stdin is open and idle: it is printed at once.
    send(&mut member, b"hi from member\n");
    assert_eq!(next(), "[user0] hi from member");
    stdin.write_all(b"hello from client\n").unwrap();
    assert_eq!(read_line(&mut member), b"[user1] hello from client");

    drop(stdin); // EOF: the client sends FIN, the server closes, the client exits 0
    assert_eq!(read_line(&mut member), b"* user1 left (peer-closed)");
    let output = wait_for_exit(child);
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn the_client_exits_0_when_the_server_closes_first() {
    let server = serve(|cfg| cfg.protocol = ProtocolKind::Chat.into());
    let mut child = spawn_client(&[&server.addr().to_string()], Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"/quit\n").unwrap(); // stdin stays open: the server ends the session
    let output = wait_for_exit(child);
    drop(stdin);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "* you are user0\n* bye\n");
}
