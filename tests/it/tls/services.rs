//! Services other than echo over TLS: chat (lines between members, a member that never reads
//! dropped at the queue limit), files (uploads written and downloads read off the loop), and
//! the ones that speak first (daytime, `--greeting`), whose first bytes must wait for the
//! handshake.

use echoloop::protocol::FilesConfig;
use echoloop::{CloseReason, ProtocolKind};

use super::client::TlsClient;
use super::{any_version, handshakes, tls_server};
use crate::common::{pseudo_random_bytes, wait_for_stats};
use crate::files::{TempDir, sha256_hex};

#[test]
fn chat_over_tls_members_see_each_others_lines() {
    let server = tls_server(|cfg| cfg.protocol = ProtocolKind::Chat.into());
    let join = || {
        let mut client = TlsClient::connect(server.addr(), any_version());
        client.handshake().expect("the handshake");
        let greeting = client.read_line().expect("the greeting");
        let name = greeting
            .strip_prefix("* you are ")
            .unwrap_or_else(|| panic!("unexpected greeting {greeting:?}"))
            .to_string();
        (client, name)
    };
    let (mut a, an) = join();
    let (mut b, bn) = join();
    assert_eq!(a.read_line().unwrap(), format!("* {bn} joined"));
    b.send(b"hello over tls\n");
    b.flush().unwrap(); // `a` is driven below, `b` is not
    assert_eq!(a.read_line().unwrap(), format!("[{bn}] hello over tls"));
    a.send(b"and back\n");
    a.flush().unwrap();
    assert_eq!(b.read_line().unwrap(), format!("[{an}] and back"));
}

/// The queue a chat line joins holds ciphertext encrypted for each member: one that never
/// reads is dropped at the queue limit, and the others go on.
#[test]
fn chat_over_tls_drops_a_member_that_never_reads() {
    let server = tls_server(|cfg| {
        cfg.protocol = ProtocolKind::Chat.into();
        cfg.queue_limit = 64 * 1024;
    });
    let join = || {
        let mut client = TlsClient::connect(server.addr(), any_version());
        let greeting = client.read_line().expect("the greeting");
        let name = greeting.strip_prefix("* you are ").unwrap().to_string();
        (client, name)
    };
    let (mut a, an) = join();
    let (mut b, bn) = join();
    assert_eq!(a.read_line().unwrap(), format!("* {bn} joined"));
    let (_slow, slow_name) = join(); // never driven again: it reads nothing
    assert_eq!(a.read_line().unwrap(), format!("* {slow_name} joined"));
    assert_eq!(b.read_line().unwrap(), format!("* {slow_name} joined"));
    let filler = "y".repeat(1000);
    let mut sent = 0;
    let mut announcements = Vec::new();
    while server.stats().total().clients_dropped == 0 {
        for i in sent..sent + 32 {
            a.send(format!("{i} {filler}\n").as_bytes());
        }
        a.flush().unwrap();
        let target = sent + 32;
        while sent < target {
            let line = b.read_line().expect("b gets every line");
            match line.strip_prefix(&format!("[{an}] ")) {
                Some(rest) => assert_eq!(rest, format!("{sent} {filler}"), "b missed a line"),
                None => {
                    announcements.push(line);
                    continue;
                }
            }
            sent += 1;
        }
    }
    let stats = wait_for_stats(&server, "the slow reader dropped", |s| {
        s.closed_for(CloseReason::QueueLimit) == 1
    });
    assert_eq!(stats.total().clients_dropped, 1);
    a.send(b"end\n");
    a.flush().unwrap();
    loop {
        let line = b.read_line().unwrap();
        if line == format!("[{an}] end") {
            break;
        }
        announcements.push(line);
    }
    assert_eq!(announcements, [format!("* {slow_name} left (queue-limit)")]);
}

/// Daytime speaks first: its line must wait for the handshake (sent in clear before it, the
/// client would read it as a broken record).
#[test]
fn daytime_over_tls_sends_its_line_after_the_handshake() {
    let server = tls_server(|cfg| cfg.protocol = ProtocolKind::Daytime.into());
    let mut client = TlsClient::connect(server.addr(), any_version());
    client.handshake().expect("the handshake");
    let all = client.close_and_read_to_end();
    assert_eq!(client.error, None);
    assert!(client.close_notify, "no close_notify before the FIN");
    let line = String::from_utf8(all).expect("text");
    assert!(
        line.ends_with("\r\n") && line.matches('\n').count() == 1,
        "{line:?}"
    );
    assert!(line.len() > 20, "not a date: {line:?}");
    assert_eq!(handshakes(&server.stats()), 1);
}

#[test]
fn the_greeting_comes_after_the_handshake() {
    let server = tls_server(|cfg| cfg.greeting = Some(b"welcome over tls".to_vec()));
    let mut client = TlsClient::connect(server.addr(), any_version());
    client.handshake().expect("the handshake");
    assert_eq!(client.read_line().unwrap(), "welcome over tls");
    assert_eq!(client.echo(b"ping").unwrap(), b"ping");
}

/// Files over TLS: an upload in the same write as the next request, a download, byte-exact;
/// the bytes the disk work holds back wait decrypted, and are answered once it is done.
#[test]
fn files_over_tls_uploads_and_downloads_are_byte_exact() {
    let dir = TempDir::new("tls");
    let server = tls_server(|cfg| {
        cfg.protocol = ProtocolKind::Files.into();
        cfg.files = Some(FilesConfig::new(dir.path()));
    });
    let content = pseudo_random_bytes(3 << 20, 9);
    let mut client = TlsClient::connect(server.addr(), any_version());
    client.send(format!("PUT big.bin {}\n", content.len()).as_bytes());
    assert_eq!(client.read_line().unwrap(), "OK 0");
    client.send(&content);
    client.send(b"GET big.bin 0\n");
    let digest = sha256_hex(&content);
    assert_eq!(
        client.read_line().unwrap(),
        format!("DONE {} {digest}", content.len())
    );
    assert_eq!(
        client.read_line().unwrap(),
        format!("OK {} {digest}", content.len())
    );
    let body = client.receive(content.len()).expect("the download");
    assert!(body == content, "the download changed");
    assert!(std::fs::read(dir.join("big.bin")).unwrap() == content);
    client.send(b"QUIT\n");
    assert_eq!(client.read_line().unwrap(), "BYE");
}
