//! Past one machine: HAProxy (`mode tcp`) in front of two echoloop instances, as in
//! docs/OPERATIONS.md. Connections reach both; when one stops, new connections reach the other.
//! And HAProxy with `send-proxy-v2` in front of `--proxy-protocol`: the client's own address
//! reaches echoloop (a client HAProxy sees as 127.0.0.2 is refused by `--deny 127.0.0.2`).
//!
//! Needs Debian's haproxy, so it is `#[ignore = "needs haproxy"]`; `.ci/run` installs haproxy
//! and runs it with `cargo test -- --include-ignored`. Without haproxy it fails, never passes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Daemon, PATIENCE};

/// The configuration docs/OPERATIONS.md gives, on loopback ports.
fn config(frontend: SocketAddr, backends: &[SocketAddr]) -> String {
    let mut text = format!(
        "defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch

frontend echo
    bind {frontend}
    default_backend echoloop

backend echoloop
    balance roundrobin
"
    );
    for (i, addr) in backends.iter().enumerate() {
        text.push_str(&format!(
            "    server echoloop{i} {addr} check inter 200ms fall 1 rise 1\n"
        ));
    }
    text
}

/// HAProxy in the foreground (`-db`), killed by its PID if the test ends early.
struct Haproxy {
    child: Child,
    log: PathBuf,
}

impl Haproxy {
    fn start(binary: &Path, dir: &Path, config_text: &str) -> Haproxy {
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, config_text).unwrap();
        let log = dir.join("haproxy.log");
        let child = Command::new(binary)
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start haproxy");
        Haproxy { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects through the proxy; returns the greeting of the instance reached (after an echo
/// round trip), or `None` if the proxy closed the connection without reaching one.
fn reach(frontend: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(frontend).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut greeting = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).ok()? == 1 {
        if byte[0] == b'\n' {
            break;
        }
        greeting.push(byte[0]);
    }
    let greeting = String::from_utf8(greeting).ok()?;
    if greeting.is_empty() {
        return None;
    }
    stream.write_all(b"ping").ok()?;
    let mut echo = [0u8; 4];
    stream.read_exact(&mut echo).ok()?;
    assert_eq!(&echo, b"ping", "echo through the proxy");
    Some(greeting)
}

#[test]
#[ignore = "needs haproxy"]
fn haproxy_spreads_connections_and_routes_around_a_stopped_instance() {
    let binary = common::tool("haproxy", "haproxy");
    let dir = std::env::temp_dir().join(format!("echoloop-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = Daemon::start(
        &["serve", "-l", "127.0.0.1:0", "--greeting", "instance-a"],
        1,
    );
    let b = Daemon::start(
        &["serve", "-l", "127.0.0.1:0", "--greeting", "instance-b"],
        1,
    );
    let frontend: SocketAddr = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let proxy = Haproxy::start(
        &binary,
        &dir,
        &config(frontend, &[a.tcp_addr(), b.tcp_addr()]),
    );

    // Both instances are reached (round robin, once the checks have seen them up).
    let start = Instant::now();
    let (mut seen_a, mut seen_b) = (false, false);
    while !(seen_a && seen_b) {
        match reach(frontend).as_deref() {
            Some("instance-a") => seen_a = true,
            Some("instance-b") => seen_b = true,
            Some(other) => panic!("unexpected greeting {other:?}"),
            None => std::thread::sleep(Duration::from_millis(20)),
        }
        assert!(
            start.elapsed() < PATIENCE,
            "not both reached (a={seen_a} b={seen_b}); haproxy said:\n{}",
            proxy.log()
        );
    }

    // Stop instance a (SIGTERM, by its PID) and wait for it to exit.
    a.signal(libc::SIGTERM);
    let (code, _) = a.wait();
    assert_eq!(code, 0);

    // From now on every connection that reaches an instance reaches b; a few may be closed
    // by the proxy while its check has not yet seen a go down.
    let start = Instant::now();
    let mut in_a_row = 0;
    let mut lost = 0;
    while in_a_row < 6 {
        match reach(frontend).as_deref() {
            Some("instance-b") => in_a_row += 1,
            Some(other) => panic!("reached {other:?} after it stopped"),
            None => {
                lost += 1;
                in_a_row = 0;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        assert!(
            start.elapsed() < PATIENCE,
            "b not reached 6 times in a row ({lost} lost); haproxy said:\n{}",
            proxy.log()
        );
    }
    drop(proxy);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// HAProxy in front of one echoloop, telling it each client's address (`send-proxy-v2`).
fn proxy_v2_config(frontend: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s

frontend echo
    bind {frontend}
    default_backend echoloop

backend echoloop
    server echoloop0 {backend} send-proxy-v2
"
    )
}

/// Connects to `frontend` from `source`, sends `ping`, and returns what comes back before EOF
/// (at most 4 bytes).
fn ping_from(source: &str, frontend: SocketAddr) -> Option<Vec<u8>> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    let local: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&local.into()).ok()?;
    socket.connect(&frontend.into()).ok()?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"ping").ok()?;
    let mut reply = Vec::new();
    let _ = stream.take(4).read_to_end(&mut reply);
    Some(reply)
}

#[test]
#[ignore = "needs haproxy"]
fn haproxy_send_proxy_v2_carries_the_client_address() {
    let binary = common::tool("haproxy", "haproxy");
    let dir = std::env::temp_dir().join(format!("echoloop-haproxy-v2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let echoloop = Daemon::start(
        &[
            "serve",
            "-l",
            "127.0.0.1:0",
            "--proxy-protocol",
            "127.0.0.1/32",
            "--deny",
            "127.0.0.2/32",
            "--trusted",
            "none",
        ],
        1,
    );
    let frontend: SocketAddr = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let proxy = Haproxy::start(
        &binary,
        &dir,
        &proxy_v2_config(frontend, echoloop.tcp_addr()),
    );
    // A client at 127.0.0.3 is echoed (once HAProxy listens) ...
    let start = Instant::now();
    loop {
        match ping_from("127.0.0.3", frontend) {
            Some(reply) if reply == b"ping" => break,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no echo through haproxy; haproxy said:\n{}",
            proxy.log()
        );
    }
    // ... and one at 127.0.0.2 is refused by echoloop, which saw its address, not HAProxy's.
    assert_eq!(ping_from("127.0.0.2", frontend), Some(Vec::new()));
    drop(proxy);
    echoloop.signal(libc::SIGTERM);
    let (code, output) = echoloop.wait();
    assert_eq!(code, 0, "{output}");
    let _ = std::fs::remove_dir_all(&dir);
}
