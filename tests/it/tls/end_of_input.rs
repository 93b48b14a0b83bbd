//! What a TLS client that has ended its input (close_notify, or a FIN) is still owed: the rest
//! of a download, an upload's `DONE`, the lines held back before its close_notify. Each shown
//! against the same exchange over plain TCP, which gets it.

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;

use echoloop::ProtocolKind;
use echoloop::protocol::FilesConfig;

use super::client::TlsClient;
use super::{any_version, tls_server};
use crate::common::{TestServer, connect, pseudo_random_bytes, read_to_end, serve};
use crate::files::{TempDir, sha256_hex};

const SIZE: usize = 3_000_000;

/// A files server over TLS with a `SIZE`-byte `big.bin`, and a client that has asked for it.
/// The folder is returned too: the server serves it until the test ends.
fn download_requested(name: &str, seed: u64) -> (TempDir, Vec<u8>, TestServer, TlsClient) {
    let dir = TempDir::new(name);
    let body = pseudo_random_bytes(SIZE, seed);
    std::fs::write(dir.join("big.bin"), &body).unwrap();
    let server = tls_server(|cfg| {
        cfg.protocol = ProtocolKind::Files.into();
        cfg.files = Some(FilesConfig::new(dir.path()));
    });
    let mut client = TlsClient::connect(server.addr(), any_version());
    client.handshake().unwrap();
    client.send(b"GET big.bin\n");
    (dir, body, server, client)
}

/// `answer` is the whole download of `body`: the `OK` line, then every byte.
fn assert_whole_download(answer: &[u8], body: &[u8], client: &TlsClient) {
    let header = format!("OK {SIZE} {}\n", sha256_hex(body));
    assert!(
        answer.starts_with(header.as_bytes()),
        "got {} bytes, close_notify={}: {:?}",
        answer.len(),
        client.close_notify,
        String::from_utf8_lossy(&answer[..answer.len().min(80)])
    );
    assert_eq!(
        answer.len() - header.len(),
        SIZE,
        "body truncated; close_notify={} ({})",
        client.close_notify,
        client.state()
    );
}

/// `GET` then close_notify (`openssl s_client` at the end of its stdin, `nc -N` over TLS): the
/// whole file is owed, as over TCP (`half_close_refill.rs`), and then close_notify.
#[test]
fn a_download_requested_then_close_notify_arrives_whole() {
    let (_dir, body, _server, mut client) = download_requested("tls-end-of-input", 5);
    let answer = client.close_and_read_to_end();
    assert_whole_download(&answer, &body, &client);
}

/// The same with a FIN and no close_notify (what a plain `shutdown(SHUT_WR)` does under TLS).
#[test]
fn a_download_requested_then_fin_arrives_whole_over_tls() {
    let (_dir, body, _server, mut client) = download_requested("tls-end-of-input-fin", 6);
    client.flush().unwrap();
    client.sock.shutdown(Shutdown::Write).unwrap();
    let _ = client.drive_until("the server's FIN", |c| c.eof);
    let answer = std::mem::take(&mut client.incoming);
    assert_whole_download(&answer, &body, &client);
}

/// Chat lines held back by `--chat-rate`, then the end of input in the same read: over TCP every
/// line reaches the room (the FIN is read only once they are answered); over TLS close_notify
/// comes out of the same decrypt, and must wait for the held lines as the FIN does.
#[test]
fn lines_held_by_the_chat_rate_are_not_lost_at_close_notify() {
    const LINES: usize = 20; // burst is 2 x rate = 10: ten are held
    let lines: String = (0..LINES).map(|i| format!("line {i}\n")).collect();
    let count_said = |mut observer: Box<dyn FnMut() -> String>| {
        let mut said = 0;
        loop {
            let line = observer();
            if line.contains(" left ") {
                return said;
            }
            said += usize::from(line.contains("] line "));
        }
    };

    // Plain TCP: the reference.
    let plain = serve(|cfg| {
        cfg.protocol = ProtocolKind::Chat.into();
        cfg.chat_rate = Some(5);
        cfg.sources.trusted.clear(); // loopback is trusted (exempt) by default
    });
    let mut watcher = BufReader::new(connect(&plain));
    let mut line = String::new();
    watcher.read_line(&mut line).unwrap(); // * you are ...
    let mut talker = connect(&plain);
    line.clear();
    watcher.read_line(&mut line).unwrap(); // * ... joined
    talker.write_all(lines.as_bytes()).unwrap();
    talker.shutdown(Shutdown::Write).unwrap();
    let plain_said = count_said(Box::new(move || {
        let mut line = String::new();
        watcher.read_line(&mut line).unwrap();
        line
    }));
    let _ = read_to_end(&mut talker);
    assert_eq!(plain_said, LINES, "plain TCP");

    // TLS: the lines and close_notify in one segment.
    let server = tls_server(|cfg| {
        cfg.protocol = ProtocolKind::Chat.into();
        cfg.chat_rate = Some(5);
        cfg.sources.trusted.clear(); // loopback is trusted (exempt) by default
    });
    let mut watcher = TlsClient::connect(server.addr(), any_version());
    watcher.read_line().unwrap(); // * you are ...
    let mut talker = TlsClient::connect(server.addr(), any_version());
    talker.read_line().unwrap();
    watcher.read_line().unwrap(); // * ... joined
    talker.conn.writer().write_all(lines.as_bytes()).unwrap();
    talker.conn.send_close_notify();
    talker.send_held_records_at_once();
    let tls_said = count_said(Box::new(move || watcher.read_line().unwrap()));
    assert_eq!(tls_said, LINES, "TLS: lines lost at close_notify");
}

/// An upload, then close_notify (`openssl s_client < upload`): its `DONE` comes once the disk
/// worker has fsynced it, which is after the end of input; over TCP it is sent before our FIN.
#[test]
fn an_upload_then_close_notify_still_gets_its_done() {
    let dir = TempDir::new("tls-end-of-input-put");
    let server = tls_server(|cfg| {
        cfg.protocol = ProtocolKind::Files.into();
        cfg.files = Some(FilesConfig::new(dir.path()));
    });
    let content = pseudo_random_bytes(100_000, 7);
    let done = format!("DONE {} {}\n", content.len(), sha256_hex(&content));

    // Plain TCP: the reference.
    let plain_dir = TempDir::new("plain-end-of-input-put");
    let plain = serve(|cfg| {
        cfg.protocol = ProtocolKind::Files.into();
        cfg.files = Some(FilesConfig::new(plain_dir.path()));
    });
    let mut tcp = connect(&plain);
    tcp.write_all(format!("PUT up.bin {}\n", content.len()).as_bytes())
        .unwrap();
    let mut ok = [0u8; 5];
    std::io::Read::read_exact(&mut tcp, &mut ok).unwrap();
    assert_eq!(&ok, b"OK 0\n");
    tcp.write_all(&content).unwrap();
    tcp.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read_to_end(&mut tcp)),
        done,
        "plain TCP"
    );

    let mut client = TlsClient::connect(server.addr(), any_version());
    client.send(format!("PUT up.bin {}\n", content.len()).as_bytes());
    assert_eq!(client.read_line().unwrap(), "OK 0");
    client.send(&content);
    let answer = client.close_and_read_to_end();
    assert_eq!(
        String::from_utf8_lossy(&answer),
        done,
        "close_notify={}",
        client.close_notify
    );
}
