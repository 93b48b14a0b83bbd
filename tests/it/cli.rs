//! The command line: exit codes, one-line errors, the `listening` lines.

use crate::common::Daemon;

use crate::common::run_echoloop as echoloop;

#[test]
fn bad_arguments_exit_2_with_one_line_naming_the_argument() {
    for (args, names) in [
        (
            &["serve", "--max-connections", "lots"][..],
            "--max-connections",
        ),
        (&["serve", "--listen", "nowhere"][..], "--listen"),
        (&["serve", "--nodelay", "maybe"][..], "--nodelay"),
        (&["serve", "--framing", "xml"][..], "--framing"),
        (&["serve", "--no-such-flag"][..], "--no-such-flag"),
        (&["serve", "--queue-limit", "0"][..], "--queue-limit"),
        (&["serve", "--allow", "10.0.0.0/40"][..], "--allow"),
        (&["serve", "--trusted", "everyone"][..], "--trusted"),
        (
            &["serve", "--max-per-source", "many"][..],
            "--max-per-source",
        ),
    ] {
        let (code, stdout, stderr) = echoloop(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
        assert!(stdout.is_empty());
    }
}

#[test]
fn port_0_prints_the_real_port_and_the_server_answers() {
    use std::io::{Read, Write};
    let daemon = Daemon::start(&["serve", "-l", "127.0.0.1:0", "-l", "[::1]:0"], 2);
    assert!(daemon.listening[0].starts_with("tcp 127.0.0.1:"));
    let addr = daemon.tcp_addr();
    assert_ne!(addr.port(), 0);
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.write_all(b"ping").unwrap();
    let mut reply = [0u8; 4];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ping");
}

#[test]
fn address_in_use_exits_1_with_a_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stdout, stderr) = echoloop(&["serve", "-l", &addr]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
}

#[test]
fn help_and_version_exit_0() {
    let (code, stdout, _) = echoloop(&["serve", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--queue-limit"));
    let (code, stdout, _) = echoloop(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("echoloop "));
}

/// A fresh folder for one test, named for this module, the test and the process.
fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("echoloop-cli-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port nobody listens on: bound, then closed again.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Every command, every kind of mistake: exit 2, one line on stderr that starts with `echoloop: `
/// and names what was wrong, nothing on stdout.
#[test]
fn every_bad_invocation_exits_2_with_one_line_naming_the_offender() {
    let dir = scratch("bad");
    let garbage = dir.join("garbage.hlog");
    std::fs::write(&garbage, "this is not an HdrHistogram log\n").unwrap();
    let file = dir.join("plain.txt");
    std::fs::write(&file, "x").unwrap();
    let (dir_s, garbage_s, file_s) = (
        dir.to_str().unwrap(),
        garbage.to_str().unwrap(),
        file.to_str().unwrap(),
    );
    let missing_dir_out = "/nonexistent/dir/x";
    let nobody = "127.0.0.1:1"; // never reached: each of these fails before connecting
    let cases: &[(&[&str], &[&str])] = &[
        // serve
        (&["serve", "-p", "nosuch"], &["'nosuch'", "--protocol"]),
        (
            &["serve", "--max-connections", "0"],
            &["--max-connections", "must be 1 or more"],
        ),
        (&["serve", "--workers", "300"], &["--workers", "1 to 256"]),
        (
            &["serve", "--queue-limit", "0"],
            &["--queue-limit", "1 byte"],
        ),
        (
            &["serve", "--idle-timeout", "soon"],
            &["--idle-timeout", "'soon'"],
        ),
        (&["serve", "--chat-rate", "-1"], &["--chat-rate", "'-1'"]),
        (&["serve", "--no-such-flag"], &["'--no-such-flag'"]),
        (
            &["serve", "-u", "echo@unix:/tmp/x"],
            &[
                "echo@unix:/tmp/x",
                "--udp",
                "Unix socket cannot be used here",
            ],
        ),
        (
            &["serve", "-l", "@127.0.0.1:0"],
            &["'@127.0.0.1:0'", "names no protocol"],
        ),
        (
            &[
                "serve",
                "-p",
                "files",
                "--dir",
                dir_s,
                "-l",
                "echo@127.0.0.1:0",
            ],
            &["--dir", "-p files serves none"],
        ),
        (
            &[
                "serve",
                "-p",
                "files",
                "--dir",
                "/nonexistent",
                "-l",
                "127.0.0.1:0",
            ],
            &["--dir /nonexistent"],
        ),
        (
            &["serve", "-p", "files", "--dir", file_s, "-l", "127.0.0.1:0"],
            &["--dir", "plain.txt"],
        ),
        (&["serve", "--framing", "xml"], &["'xml'", "--framing"]),
        // load
        (&["load"], &["<ADDR>"]),
        (&["load", "-d", "-1", nobody], &["--duration", "negative"]),
        (&["load", "-s", "10Q", nobody], &["--size", "'10Q'"]),
        (&["load", "-c", "0", nobody], &["--connections", "'0'"]),
        (&["load", "--protocol", "nosuch", nobody], &["'nosuch'"]),
        (&["load", "--udp", "unix:/x"], &["--udp"]),
        (
            &["load", "--json-out", missing_dir_out, nobody],
            &[missing_dir_out],
        ),
        (
            &["load", "--payload-file", "/nonexistent/payload", nobody],
            &["/nonexistent/payload"],
        ),
        // report
        (&["report"], &["<FILE>"]),
        (
            &["report", "/nonexistent/run.hlog"],
            &["/nonexistent/run.hlog"],
        ),
        (&["report", garbage_s], &[garbage_s]),
        (&["report", dir_s], &[dir_s]),
        (
            &["report", "--timeline", missing_dir_out, garbage_s],
            &[missing_dir_out],
        ),
        // client
        (&["client"], &["<ADDR>"]),
        (&["client", "--udp", "unix:/x"], &["--udp", "unix:/x"]),
        (&["client", "nowhere"], &["'nowhere'"]),
        // put
        (&["put", nobody, dir_s], &[dir_s, "is a directory"]),
        (
            &["put", nobody, "/nonexistent/file"],
            &["/nonexistent/file"],
        ),
        (&["put", nobody, file_s, "--name", "../x"], &["../x"]),
        (
            &["put", nobody, file_s, "--retries", "many"],
            &["--retries"],
        ),
        (&["put", nobody], &["<FILE>"]),
        // get
        (
            &["get", nobody, "name", "-o", dir_s],
            &[dir_s, "is a directory"],
        ),
        (
            &["get", nobody, "name", "-o", missing_dir_out],
            &[missing_dir_out],
        ),
        (&["get", nobody, "a/b"], &["a/b"]),
        // no command, or a wrong one
        (&[], &["missing command", "serve"]),
        (&["serev"], &["'serev'", "did you mean 'serve'"]),
    ];
    for (args, names) in cases {
        let (code, stdout, stderr) = echoloop(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("echoloop: "), "{args:?}: {stderr}");
        for name in *names {
            assert!(
                stderr.contains(name),
                "{args:?} should name {name}: {stderr}"
            );
        }
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_invalid_protocol_lists_the_valid_ones() {
    let (code, _, stderr) = echoloop(&["serve", "-p", "nosuch"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with(
            "echoloop: invalid value 'nosuch' for '--protocol <NAME>' (possible values: echo, timestamp,"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("chat"), "{stderr}");
}

#[test]
fn load_without_addr_names_addr() {
    let (code, _, stderr) = echoloop(&["load"]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "echoloop: missing required argument <ADDR> (see echoloop load --help)\n"
    );
}

#[test]
fn out_of_range_numbers_say_the_range_in_words() {
    for (args, line) in [
        (
            &["load", "-d", "-1", "127.0.0.1:1"][..],
            "echoloop: invalid value '-1' for '--duration <DURATION>': a duration cannot be negative\n",
        ),
        (
            &["serve", "--max-connections", "0"],
            "echoloop: invalid value '0' for '--max-connections <N>': must be 1 or more\n",
        ),
    ] {
        let (code, _, stderr) = echoloop(args);
        assert_eq!(code, 2);
        assert_eq!(stderr, line);
    }
}

/// The command line was right and the world was not: exit 1, one line.
#[test]
fn runtime_failures_exit_1_with_one_line() {
    let refused = closed_port();
    let dir = scratch("runtime");
    let file = dir.join("upload.txt");
    std::fs::write(&file, "some bytes").unwrap();
    let output = dir.join("download.txt");
    let files = Daemon::start(
        &[
            "serve",
            "-p",
            "files",
            "--dir",
            dir.to_str().unwrap(),
            "-l",
            "127.0.0.1:0",
        ],
        1,
    );
    let files_addr = files.tcp_addr().to_string();
    let file_s = file.to_str().unwrap();
    let output_s = output.to_str().unwrap();
    for (args, says) in [
        (&["client", &refused][..], "connection refused"),
        (&["put", "--retries", "0", &refused, file_s], "refused"),
        (
            &["get", "--retries", "0", &refused, "x", "-o", output_s],
            "refused",
        ),
        (&["load", "-c", "1", "-n", "1", &refused], "no connection"),
        // The server answers `error: not found`.
        (&["get", &files_addr, "absent", "-o", output_s], "not found"),
    ] {
        let (code, _, stderr) = echoloop(args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("echoloop: "), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        // A failed `get` leaves no empty file of its own making behind.
        assert!(!output.exists(), "{args:?} left {}", output.display());
    }
    drop(files);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A listener of the test's own, and the first connection made to it.
fn accept_one(listener: &std::net::TcpListener) -> std::net::TcpStream {
    listener.set_nonblocking(true).unwrap();
    crate::common::wait_until("a connection", || listener.accept().ok(), Option::is_some)
        .unwrap()
        .0
}

/// Sends SIGINT to `child` and returns its exit code (`None`: killed by the signal) and stderr.
fn interrupt(mut child: std::process::Child) -> (Option<i32>, String) {
    use std::io::Read;
    // SAFETY: kill(2) on the child we started and have not waited for.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    (status.code(), stderr)
}

#[test]
fn sigint_ends_the_client_with_130() {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(["client", &addr])
        .stdin(Stdio::piped()) // kept open: the client waits for both sides
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server_side = accept_one(&listener);
    server_side.write_all(b"hello\n").unwrap();
    // Printed from inside the client's loop: its signal handler is in place by now.
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "hello\n");
    let (code, stderr) = interrupt(child);
    assert_eq!(code, Some(130), "{stderr}");
}

#[test]
fn sigint_ends_put_and_get_with_130_and_one_line() {
    use std::process::{Command, Stdio};
    let dir = scratch("sigint");
    let file = dir.join("upload.txt");
    std::fs::write(&file, "some bytes").unwrap();
    let output = dir.join("download.txt");
    for args in [
        vec!["put", file.to_str().unwrap()],
        vec!["get", "name", "-o", output.to_str().unwrap()],
    ] {
        // A server that accepts and never answers: the transfer waits for its first reply.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_echoloop"));
        command.arg(args[0]).arg(&addr).args(&args[1..]);
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The handler is installed before the first connection.
        let _server_side = accept_one(&listener);
        let (code, stderr) = interrupt(child);
        assert_eq!(code, Some(130), "{args:?}: {stderr}");
        assert_eq!(
            stderr, "echoloop: interrupted: run the same command again to resume\n",
            "{args:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
