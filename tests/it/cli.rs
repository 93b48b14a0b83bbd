//! The command line: exit codes, one-line errors, the `listening` lines.

use std::process::Command;

use crate::common::Daemon;

fn echoloop(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(args)
        .output()
        .expect("run echoloop");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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
