//! The clients over TLS: `client`, `load`, `put` and `get` against `tls:` listeners of an
//! in-process server with the committed test certificates (`tests/certs/`: `ca.pem` signs
//! `server.pem` for localhost, 127.0.0.1 and ::1).

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;

use crate::common::{self, PATIENCE, TestServer, pseudo_random_bytes, run_echoloop};
use crate::files::{TempDir, sha256_hex};
use echoloop::ProtocolKind;
use echoloop::protocol::FilesConfig;

fn cert(name: &str) -> String {
    format!("{}/tests/certs/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A server on one `tls:127.0.0.1:0` listener with the test certificate, changed by `adjust`.
fn serve_tls(adjust: impl FnOnce(&mut echoloop::ServeConfig)) -> TestServer {
    common::serve(|config| {
        config.listen = vec!["tls:127.0.0.1:0".parse().unwrap()];
        config.tls.cert = Some(cert("server.pem").into());
        config.tls.key = Some(cert("server.key").into());
        adjust(config);
    })
}

/// `tls:HOST:PORT` of the server, by the name its certificate carries.
fn tls_address(server: &TestServer, host: &str) -> String {
    let addr: SocketAddr = server.addr();
    format!("tls:{host}:{}", addr.port())
}

/// Runs `echoloop ARGS` with `input` on stdin (then EOF); kills it and fails after PATIENCE.
fn run_with_input(args: &[&str], input: &[u8]) -> Output {
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echoloop");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input); // then dropped: EOF
    });
    let pid = child.id() as libc::pid_t;
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let output = match done.recv_timeout(PATIENCE) {
        Ok(output) => output.expect("wait for echoloop"),
        Err(_) => {
            // SAFETY: kill(2) on the child this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("echoloop {args:?} did not exit by itself");
        }
    };
    writer.join().unwrap();
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exactly one line on stderr, `echoloop: ...`.
fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr:?}");
    lines[0]
}

// ----- client ------------------------------------------------------------------------------

#[test]
fn client_lines_are_echoed_over_tls_and_stdin_eof_ends_it_with_exit_0() {
    let server = serve_tls(|_| {});
    let ca = cert("ca.pem");
    for host in ["localhost", "127.0.0.1"] {
        let address = tls_address(&server, host);
        let output = run_with_input(&["client", &address, "--tls-ca", &ca], b"one\ntwo\nthree\n");
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert_eq!(text(&output.stdout), "one\ntwo\nthree\n", "over {address}");
        assert_eq!(text(&output.stderr), "");
    }
}

#[test]
fn client_a_large_input_comes_back_whole_over_tls() {
    // Many records per read each way: a loop that waited for a new edge while rustls held
    // decrypted bytes would stop short of the end and be killed at PATIENCE.
    let server = serve_tls(|_| {});
    let input: Vec<u8> = pseudo_random_bytes(1 << 20, 22)
        .iter()
        .map(|b| b'a' + b % 26)
        .collect();
    let address = tls_address(&server, "localhost");
    let output = run_with_input(&["client", &address, "--tls-ca", &cert("ca.pem")], &input);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(output.stdout.len(), input.len());
    assert!(output.stdout == input, "the echo differs");
}

#[test]
fn client_refuses_a_certificate_the_system_roots_do_not_sign_with_one_line_and_exit_1() {
    let server = serve_tls(|_| {});
    let address = tls_address(&server, "localhost");
    let output = run_with_input(&["client", &address], b"hello\n");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "");
    let line = text(&output.stderr);
    assert_eq!(
        one_line(&line),
        format!("echoloop: cannot connect to {address}: invalid peer certificate: UnknownIssuer")
            .replace("localhost", "127.0.0.1"),
    );
}

#[test]
fn client_insecure_accepts_the_certificate_and_warns_once() {
    let server = serve_tls(|_| {});
    let address = tls_address(&server, "localhost");
    let output = run_with_input(&["client", &address, "--insecure"], b"hello\n");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "hello\n");
    let line = text(&output.stderr);
    assert!(
        one_line(&line).contains("warning: --insecure") && line.contains("not authenticated"),
        "{line}"
    );
}

// ----- load --------------------------------------------------------------------------------

fn load_json(args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec!["load", "--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run_echoloop(&all);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("one JSON object ({e}): {stdout:?} {stderr}"));
    (code, json, stderr)
}

#[test]
fn load_checks_every_reply_over_tls_and_reports_handshakes_apart() {
    let server = serve_tls(|_| {});
    let address = tls_address(&server, "localhost");
    let ca = cert("ca.pem");
    let (code, json, stderr) = load_json(&[
        &address,
        "--tls-ca",
        &ca,
        "-c",
        "4",
        "-n",
        "400",
        "--threads",
        "2",
        "--pipeline",
        "4",
        "-s",
        "3000",
    ]);
    assert_eq!(code, 0, "{json} {stderr}");
    assert_eq!(json["config"]["transport"], "tls");
    assert_eq!(json["messages_sent"], 400);
    assert_eq!(json["messages_received"], 400);
    assert_eq!(json["mismatches"], 0);
    assert_eq!(json["connections_ok"], 4);
    let tls = &json["tls"];
    assert_eq!(tls["handshakes"], 4, "{json}");
    assert_eq!(tls["resumed"], 0, "resumption is off without --tls-resume");
    assert_eq!(tls["failed"], 0);
    for key in ["p50", "p99", "max"] {
        assert!(
            tls["handshake_us"][key].is_number(),
            "tls.handshake_us.{key}"
        );
        assert!(json["latency_us"][key].is_number(), "latency_us.{key}");
    }
    // A plain run has no handshakes to report.
    let plain = common::serve(|_| {});
    let (code, json, _) = load_json(&[&plain.addr().to_string(), "-c", "1", "-n", "10"]);
    assert_eq!(code, 0);
    assert!(json.get("tls").is_none(), "{json}");
}

#[test]
fn load_tls_resume_resumes_later_connections_and_without_it_none_do() {
    let server = serve_tls(|_| {});
    let address = tls_address(&server, "localhost");
    let ca = cert("ca.pem");
    // Connections start 50 ms apart, so the first one's tickets are in the shared cache when
    // the next ones connect.
    let staggered = [
        address.as_str(),
        "--tls-ca",
        &ca,
        "-c",
        "6",
        "--connect-rate",
        "20",
        "-n",
        "60",
        "--threads",
        "1",
    ];
    let (code, json, stderr) = load_json(&[&staggered[..], &["--tls-resume"]].concat());
    assert_eq!(code, 0, "{json} {stderr}");
    assert_eq!(json["tls"]["handshakes"], 6);
    let resumed = json["tls"]["resumed"].as_u64().unwrap();
    assert!(resumed > 0, "no handshake resumed: {json}");
    let (code, json, _) = load_json(&staggered);
    assert_eq!(code, 0);
    assert_eq!(json["tls"]["handshakes"], 6);
    assert_eq!(json["tls"]["resumed"], 0);
}

#[test]
fn load_reconnects_after_n_messages_and_with_tls_resume_those_handshakes_resume() {
    let server = serve_tls(|_| {});
    let address = tls_address(&server, "localhost");
    let ca = cert("ca.pem");
    let churn = [
        address.as_str(),
        "--tls-ca",
        &ca,
        "-c",
        "2",
        "--reconnect-after",
        "5",
        "-n",
        "60",
        "--threads",
        "1",
        "--pipeline",
        "2",
    ];
    for resume in [true, false] {
        let args = match resume {
            true => [&churn[..], &["--tls-resume"]].concat(),
            false => churn.to_vec(),
        };
        let (code, json, stderr) = load_json(&args);
        assert_eq!(code, 0, "{json} {stderr}");
        assert_eq!(json["messages_received"], 60);
        assert_eq!(json["config"]["reconnect_after"], 5);
        // 60 messages, 5 per connection: at least 12 connections, each with its handshake.
        let made = json["connections_ok"].as_u64().unwrap();
        assert!(made >= 12, "{json}");
        assert_eq!(json["tls"]["handshakes"], made);
        let resumed = json["tls"]["resumed"].as_u64().unwrap();
        match resume {
            true => assert!(resumed > 0, "no reconnect resumed: {json}"),
            false => assert_eq!(resumed, 0, "{json}"),
        }
    }
    // The same churn over plain TCP.
    let plain = common::serve(|_| {});
    let (code, json, _) = load_json(&[
        &plain.addr().to_string(),
        "-c",
        "2",
        "--reconnect-after",
        "5",
        "-n",
        "60",
    ]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["messages_received"], 60);
    assert!(json["connections_ok"].as_u64().unwrap() >= 12, "{json}");
    assert_eq!(json["errors"], 0);
}

#[test]
fn load_handshake_failures_are_failed_connections_with_reason_tls() {
    let server = serve_tls(|_| {});
    let address = tls_address(&server, "localhost");
    // The system roots do not sign the test certificate.
    let (code, json, stderr) = load_json(&[&address, "-c", "3", "-n", "30"]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["connections_ok"], 0);
    assert_eq!(json["connections_failed"], 3);
    assert_eq!(json["connections_failed_by_reason"]["tls"], 3);
    assert_eq!(json["tls"]["failed"], 3);
    assert_eq!(
        json["tls"]["first_failure"],
        "invalid peer certificate: UnknownIssuer"
    );
    assert!(json["failure"].is_string());
    assert!(stderr.contains("failed:"), "{stderr}");
}

// ----- put and get -------------------------------------------------------------------------

#[test]
fn put_and_get_over_tls_round_trip_byte_exact() {
    let store = TempDir::new("tls-store");
    let work = TempDir::new("tls-work");
    let server = serve_tls(|config| {
        config.protocol = ProtocolKind::Files.into();
        config.files = Some(FilesConfig::new(store.path()));
    });
    let address = tls_address(&server, "localhost");
    let ca = cert("ca.pem");
    let content = pseudo_random_bytes(3 << 20, 7);
    let local = work.join("data.bin");
    std::fs::write(&local, &content).unwrap();
    let local = local.to_str().unwrap();
    let (code, _, stderr) = run_echoloop(&["put", &address, local, "--tls-ca", &ca]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read(store.join("data.bin")).unwrap(), content);
    let fetched = work.join("fetched.bin");
    let fetched = fetched.to_str().unwrap();
    let (code, _, stderr) =
        run_echoloop(&["get", &address, "data.bin", "-o", fetched, "--tls-ca", &ca]);
    assert_eq!(code, 0, "{stderr}");
    let back = std::fs::read(fetched).unwrap();
    assert_eq!(back.len(), content.len());
    assert_eq!(sha256_hex(&back), sha256_hex(&content));
}

#[test]
fn put_refuses_an_unknown_issuer_at_once_without_retrying() {
    let store = TempDir::new("tls-refused");
    let server = serve_tls(|config| {
        config.protocol = ProtocolKind::Files.into();
        config.files = Some(FilesConfig::new(store.path()));
    });
    let address = tls_address(&server, "localhost");
    let local = store.join("x.txt");
    std::fs::write(&local, b"x").unwrap();
    let (code, _, stderr) = run_echoloop(&["put", &address, local.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        one_line(&stderr),
        "echoloop: TLS: invalid peer certificate: UnknownIssuer"
    );
}

// ----- the command line --------------------------------------------------------------------

#[test]
fn tls_flags_without_a_tls_address_and_a_bad_ca_file_are_usage_errors() {
    let ca = cert("ca.pem");
    for args in [
        &["client", "127.0.0.1:9", "--tls-ca", &ca][..],
        &["client", "127.0.0.1:9", "--insecure"],
        &["load", "127.0.0.1:9", "--tls-ca", &ca],
        &["load", "127.0.0.1:9", "--tls-resume"],
        &["put", "127.0.0.1:9", "Cargo.toml", "--insecure"],
        &["get", "127.0.0.1:9", "x.bin", "--tls-ca", &ca],
    ] {
        let (code, _, stderr) = run_echoloop(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let line = one_line(&stderr);
        assert!(line.ends_with("needs a tls:HOST:PORT address"), "{line}");
    }
    for command in ["client", "load", "get"] {
        let mut args = vec![command, "tls:localhost:9"];
        if command == "get" {
            args.push("x.bin");
        }
        args.extend(["--tls-ca", "/nonexistent/ca.pem"]);
        let (code, _, stderr) = run_echoloop(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(
            one_line(&stderr),
            "echoloop: --tls-ca /nonexistent/ca.pem: no such file or directory",
        );
    }
    let (code, _, stderr) =
        run_echoloop(&["load", "--udp", "127.0.0.1:9", "--reconnect-after", "5"]);
    assert_eq!(code, 2);
    assert!(one_line(&stderr).contains("--reconnect-after"), "{stderr}");
    let (code, _, stderr) = run_echoloop(&["load", "tls:localhost:9", "--tls-ca", "Cargo.toml"]);
    assert_eq!(code, 2);
    assert_eq!(
        one_line(&stderr),
        "echoloop: --tls-ca Cargo.toml: no PEM certificate in it"
    );
}

// ----- what a second look found ------------------------------------------------------------

/// Ctrl-Z then `fg` during a TLS upload: Linux fails a `recv` on a socket with SO_RCVTIMEO with
/// EINTR after SIGSTOP/SIGCONT (signal(7)). `BufReader::read_line` retries on `Interrupted`,
/// and `TlsConn::read` must not hand rustls its stale buffer again. A plain upload survives
/// the same pause, and so must this one.
#[test]
fn put_over_tls_survives_a_stop_and_continue() {
    let store = TempDir::new("tls-stopcont");
    let work = TempDir::new("tls-stopcont-work");
    let server = serve_tls(|config| {
        config.protocol = ProtocolKind::Files.into();
        config.files = Some(FilesConfig::new(store.path()));
    });
    let address = tls_address(&server, "localhost");
    let content = pseudo_random_bytes(192 << 20, 9);
    let local = work.join("paused.bin");
    std::fs::write(&local, &content).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args([
            "put",
            &address,
            local.to_str().unwrap(),
            "--tls-ca",
            &cert("ca.pem"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echoloop put");
    let pid = child.id() as libc::pid_t;
    // Wait until the body is on its way (the server's partial file exists).
    let started = std::time::Instant::now();
    while !std::fs::read_dir(store.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".partial"))
    {
        assert!(started.elapsed() < PATIENCE, "the upload never started");
        thread::sleep(std::time::Duration::from_millis(10));
    }
    // Ctrl-Z and `fg`, a few times (each pause may land in a different system call).
    for _ in 0..5 {
        // SAFETY: kill(2) on the child this test started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        thread::sleep(std::time::Duration::from_millis(50));
        unsafe { libc::kill(pid, libc::SIGCONT) };
        thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        sha256_hex(&std::fs::read(store.join("paused.bin")).unwrap()),
        sha256_hex(&content)
    );
}

/// `--insecure` with `--tls-ca` would silently drop the CA file: a usage error (exit 2, one
/// line).
#[test]
fn insecure_with_tls_ca_is_a_usage_error() {
    let server = serve_tls(|_| {});
    let address = tls_address(&server, "localhost");
    let output = run_with_input(
        &[
            "client",
            &address,
            "--insecure",
            "--tls-ca",
            "/nonexistent/ca.pem",
        ],
        b"hi\n",
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
}

/// A TLS 1.3 server that requires a client certificate refuses one after the client's side of
/// the handshake is done (load shows none): its alert comes with the first read. Counted as
/// failed handshakes, with the alert as the reason, not as errors on established connections.
#[test]
fn load_counts_a_refusal_after_its_side_of_the_handshake_as_a_failed_handshake() {
    let server = serve_tls(|config| {
        config.tls.client_ca = Some(cert("client-ca.pem").into());
    });
    let address = tls_address(&server, "localhost");
    let (code, json, _) =
        load_json(&[&address, "--tls-ca", &cert("ca.pem"), "-c", "3", "-n", "30"]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["tls"]["failed"], 3, "{json}");
    let reason = json["tls"]["first_failure"].as_str().unwrap_or_default();
    assert!(reason.contains("alert"), "{json}");
    assert_eq!(json["connections_ok"], 0, "{json}");
}
