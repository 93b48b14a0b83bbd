//! The `echoloop` binary with `tls:` listeners: its `listening` lines beside plain ones, a bad
//! certificate or key file at start (one line naming it, exit 2), and SIGHUP: a renewed
//! certificate for new connections, in every worker, and a broken file that keeps the old one.

use std::io::BufRead;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::client::TlsClient;
use rustls::{HandshakeKind, version};

use super::{any_version, cert_path, certificates, client_config, try_ping};
use crate::common::{self, Daemon, PATIENCE, run_echoloop};

/// The address of the daemon's `n`th `listening tls` line.
fn tls_addr(daemon: &Daemon, n: usize) -> SocketAddr {
    daemon
        .listening
        .iter()
        .filter_map(|l| l.strip_prefix("tls "))
        .nth(n)
        .unwrap_or_else(|| panic!("no tls line {n} in {:?}", daemon.lines))
        .parse()
        .unwrap()
}

/// `echoloop serve ARGS --tls-cert CERT --tls-key KEY`, once it has printed `listening` lines
/// for its `listeners`.
fn serve_tls(cert: &Path, key: &Path, args: &[&str], listeners: usize) -> Daemon {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    all.extend([
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    Daemon::start(&all, listeners)
}

#[test]
fn tls_and_plain_listeners_mix_and_each_names_its_service() {
    let cert = cert_path("server.pem");
    let key = cert_path("server.key");
    let daemon = serve_tls(
        &cert,
        &key,
        &[
            "-l",
            "tls:127.0.0.1:0",
            "-l",
            "127.0.0.1:0",
            "-l",
            "chat@tls:127.0.0.1:0",
        ],
        3,
    );
    let kinds_and_services: Vec<(&str, &str)> = daemon
        .lines
        .iter()
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            (words[0], words[2])
        })
        .collect();
    assert_eq!(
        kinds_and_services,
        [("tls", "echo"), ("tcp", "echo"), ("tls", "chat")],
        "{:?}",
        daemon.lines
    );
    let mut tls = TlsClient::connect(tls_addr(&daemon, 0), any_version());
    assert_eq!(try_ping(&mut tls).unwrap(), b"ping");
    let mut plain = TcpStream::connect(daemon.tcp_addr()).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    common::send(&mut plain, b"plain\n");
    assert_eq!(common::read_line(&mut plain), b"plain");
    let mut chat = TlsClient::connect(tls_addr(&daemon, 1), any_version());
    chat.handshake().expect("the handshake");
    assert!(chat.read_line().unwrap().starts_with("* you are "));
    daemon.signal(libc::SIGTERM);
    let (code, stderr) = daemon.wait();
    assert_eq!(code, 0, "{stderr}");
}

/// A temporary folder for this test's files.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("echoloop-{}-tls-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_bad_certificate_or_key_file_is_one_line_naming_it_and_exit_2() {
    let dir = temp_dir("bad-files");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let only_a_key = dir.join("only-a-key.pem");
    std::fs::copy(cert_path("server.key"), &only_a_key).unwrap();
    let missing = dir.join("missing.pem");
    let server_pem = cert_path("server.pem");
    let server_key = cert_path("server.key");
    let renewed_key = cert_path("renewed.key");
    // (cert, key, client CA, the file the message must name)
    let cases: [(&Path, &Path, Option<&Path>, &Path); 7] = [
        (&missing, &server_key, None, &missing),
        (&server_pem, &missing, None, &missing),
        (&garbage, &server_key, None, &garbage),
        (&server_pem, &garbage, None, &garbage),
        (&server_pem, &renewed_key, None, &renewed_key), // the key of another certificate
        (&only_a_key, &server_key, None, &only_a_key),   // a cert file with no certificate
        (&server_pem, &server_key, Some(&garbage), &garbage),
    ];
    for (cert, key, client_ca, named) in cases {
        let mut args = vec![
            "serve",
            "-l",
            "tls:127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ];
        if let Some(ca) = client_ca {
            args.extend(["--tls-client-ca", ca.to_str().unwrap()]);
        }
        let (code, stdout, stderr) = run_echoloop(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(named.to_str().unwrap()),
            "{args:?}: the message does not name {}: {stderr}",
            named.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_rotates_the_certificate_and_a_broken_file_keeps_the_old_one() {
    let dir = temp_dir("sighup");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::copy(cert_path("server.pem"), &cert).unwrap();
    std::fs::copy(cert_path("server.key"), &key).unwrap();
    let mut daemon = serve_tls(&cert, &key, &["-l", "tls:127.0.0.1:0"], 1);
    // Its log, line by line, so that the test can wait for the warning.
    let log = log_lines(&mut daemon);
    let addr = tls_addr(&daemon, 0);
    let shown = || {
        let mut client = TlsClient::connect(addr, any_version());
        client.handshake().expect("the handshake");
        client.server_certificate()
    };
    let original = certificates(&cert_path("server.pem"))[0].to_vec();
    let renewed = certificates(&cert_path("renewed.pem"))[0].to_vec();
    assert!(shown() == original);
    let mut before = TlsClient::connect(addr, any_version());
    before.handshake().expect("the handshake");

    // Rotated: new connections get the new certificate; the one open before goes on.
    std::fs::copy(cert_path("renewed.pem"), &cert).unwrap();
    std::fs::copy(cert_path("renewed.key"), &key).unwrap();
    daemon.signal(libc::SIGHUP);
    common::wait_until("the renewed certificate", shown, |c| *c == renewed);
    assert_eq!(before.echo(b"still\n").unwrap(), b"still\n");

    // Broken, twice: a warning naming the file at fault, and the renewed certificate kept.
    // First a cert file that is not PEM; then the old key beside the renewed certificate.
    let broken: [(&str, &[u8], &[u8], &Path); 2] = [
        (
            "garbage",
            b"not a certificate\n",
            &std::fs::read(cert_path("renewed.key")).unwrap(),
            &cert,
        ),
        (
            "a key of another certificate",
            &std::fs::read(cert_path("renewed.pem")).unwrap(),
            &std::fs::read(cert_path("server.key")).unwrap(),
            &key,
        ),
    ];
    for (what, cert_bytes, key_bytes, named) in broken {
        std::fs::write(&cert, cert_bytes).unwrap();
        std::fs::write(&key, key_bytes).unwrap();
        daemon.signal(libc::SIGHUP);
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            match log.recv_timeout(Duration::from_millis(100)) {
                // Not an INFO line of a reload, which names the cert file too.
                Ok(line) if line.contains("WARN") => {
                    assert!(
                        line.contains(named.to_str().unwrap()),
                        "{what}: the warning does not name {}: {line}",
                        named.display()
                    );
                    break;
                }
                Ok(line) => seen.push(line),
                Err(_) => assert!(
                    start.elapsed() < PATIENCE,
                    "{what}: no warning; the log: {seen:?}"
                ),
            }
        }
        assert!(shown() == renewed, "{what} replaced the certificate");
        assert_eq!(before.echo(b"on\n").unwrap(), b"on\n");
    }

    daemon.signal(libc::SIGTERM);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < PATIENCE, "echoloop did not exit");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every worker reads the files again: after the SIGHUP, no new connection, whichever worker
/// takes it, gets the old certificate.
#[test]
fn sighup_rotates_the_certificate_in_every_worker() {
    let dir = temp_dir("sighup-workers");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::copy(cert_path("server.pem"), &cert).unwrap();
    std::fs::copy(cert_path("server.key"), &key).unwrap();
    let daemon = serve_tls(&cert, &key, &["-l", "tls:127.0.0.1:0", "--workers", "2"], 1);
    let addr = tls_addr(&daemon, 0);
    let renewed = certificates(&cert_path("renewed.pem"))[0].to_vec();
    // Clients held open on both workers, so that new ones are spread over both.
    let mut open = Vec::new();
    for _ in 0..8 {
        let mut client = TlsClient::connect(addr, any_version());
        client.handshake().expect("the handshake");
        open.push(client);
    }
    std::fs::copy(cert_path("renewed.pem"), &cert).unwrap();
    std::fs::copy(cert_path("renewed.key"), &key).unwrap();
    daemon.signal(libc::SIGHUP);
    // Once one connection shows the new certificate, wait until 40 in a row do.
    let in_a_row = || {
        (0..40)
            .map(|_| {
                let mut client = TlsClient::connect(addr, any_version());
                client.handshake().expect("the handshake");
                client.server_certificate() == renewed
            })
            .filter(|renewed| *renewed)
            .count()
    };
    common::wait_until("every worker's renewed certificate", in_a_row, |n| *n == 40);
    drop(open);
    daemon.signal(libc::SIGTERM);
    let (code, stderr) = daemon.wait();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr.matches("TLS certificate reloaded").count(),
        2,
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sessions to resume outlive a SIGHUP and are shared by the workers: a client that had a
/// session before the reload resumes after it, whichever worker takes each connection.
#[test]
fn sessions_resume_across_sighup_and_workers() {
    let cert = cert_path("server.pem");
    let key = cert_path("server.key");
    let mut daemon = serve_tls(&cert, &key, &["-l", "tls:127.0.0.1:0", "--workers", "2"], 1);
    let log = log_lines(&mut daemon);
    let addr = tls_addr(&daemon, 0);
    let configs = [
        client_config(&[&version::TLS13], None),
        client_config(&[&version::TLS12], None),
    ];
    for config in &configs {
        let mut first = TlsClient::connect(addr, config.clone());
        assert_eq!(try_ping(&mut first).unwrap(), b"ping");
        assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
    }
    daemon.signal(libc::SIGHUP);
    let mut reloads = 0;
    let mut seen = Vec::new();
    while reloads < 2 {
        match log.recv_timeout(PATIENCE) {
            Ok(line) if line.contains("TLS certificate reloaded") => reloads += 1,
            Ok(line) => seen.push(line),
            Err(_) => panic!("{reloads} of 2 workers reloaded; the log: {seen:?}"),
        }
    }
    for (config, version) in configs.iter().zip(["1.3", "1.2"]) {
        for i in 0..6 {
            let mut again = TlsClient::connect(addr, config.clone());
            assert_eq!(try_ping(&mut again).unwrap(), b"ping");
            assert_eq!(
                again.conn.handshake_kind(),
                Some(HandshakeKind::Resumed),
                "TLS {version}, connection {i} after the reload"
            );
        }
    }
    daemon.signal(libc::SIGTERM);
    let start = Instant::now();
    while daemon.child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < PATIENCE, "echoloop did not exit");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The daemon's log, line by line, as it is written (its stderr taken from [`Daemon::wait`]).
fn log_lines(daemon: &mut Daemon) -> mpsc::Receiver<String> {
    let stderr = std::io::BufReader::new(daemon.child.stderr.take().unwrap());
    let (lines, log) = mpsc::channel();
    thread::spawn(move || {
        for line in stderr.lines() {
            if lines.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    log
}
