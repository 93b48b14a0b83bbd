//! Running under systemd: inherited sockets (via `systemd-socket-activate`), `sd_notify` to a
//! path or an abstract (`@name`, Linux) socket, and the watchdog's `WATCHDOG=1` pings (checked on
//! worker 0's loop: they stop while any worker is stuck, and cost no thread).
//!
//! `systemd-socket-activate` (Debian's systemd package) binds the sockets, waits for the first
//! client, then execs echoloop in the same process with `LISTEN_PID`/`LISTEN_FDS` set: what a
//! `.socket` unit does. Tests that need it are `#[ignore = "needs systemd-socket-activate"]`: run
//! them with `cargo test -- --include-ignored`, and they fail if it is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use echoloop::{
    ClientId, Frame, FramingKind, Protocol, ProtocolFactory, Replies, ServeConfig, Server,
};

use crate::common::{self, PATIENCE};

const ECHOLOOP: &str = env!("CARGO_BIN_EXE_echoloop");

/// `systemd-socket-activate`, or a panic saying it is missing.
fn socket_activate() -> Command {
    Command::new(common::tool("systemd-socket-activate", "systemd"))
}

/// A directory of this test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("echoloop-activation-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nobody listens on now (the kernel picks it; there is a small race).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A started process, killed (by its PID, through `Child`) if the test ends early.
struct Process(Child);

impl Process {
    fn start(command: &mut Command) -> (Process, BufReader<ChildStdout>) {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the process");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        (Process(child), stdout)
    }

    fn terminate_and_wait(mut self) -> i32 {
        // SAFETY: kill(2) on a child we started and have not reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(start.elapsed() < PATIENCE, "the process did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads `count` `listening` lines; returns the words after `listening `.
fn listening_lines(stdout: &mut BufReader<ChildStdout>, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read a listening line");
            line.trim_end()
                .strip_prefix("listening ")
                .unwrap_or_else(|| panic!("expected a listening line, got {line:?}"))
                .to_string()
        })
        .collect()
}

/// Connects, retrying while the activator is still binding.
fn connect_when_listening(addr: SocketAddr) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                return stream;
            }
            Err(e) => assert!(start.elapsed() < PATIENCE, "connect {addr}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[ignore = "needs systemd-socket-activate"]
fn inherited_tcp_and_unix_sockets_are_served_by_every_worker() {
    let dir = TempDir::new("sockets");
    let tcp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let unix = dir.0.join("echo.sock");
    let (process, mut stdout) = Process::start(
        socket_activate()
            .arg("-l")
            .arg(tcp.to_string())
            .arg("-l")
            .arg(&unix)
            .arg("--fdname=echo-tcp:echo-unix")
            // Two workers: each gets a duplicate of every inherited socket.
            .args([ECHOLOOP, "serve", "--workers", "2"]),
    );
    // The first client starts echoloop, on the socket it was waiting on.
    let mut first = connect_when_listening(tcp);
    first.write_all(b"first").unwrap();
    let mut reply = [0u8; 5];
    first.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"first");

    let lines = listening_lines(&mut stdout, 2);
    assert_eq!(
        lines,
        vec![
            format!("tcp {tcp} echo"),
            format!("unix {} echo", unix.display())
        ]
    );
    let mut local = UnixStream::connect(&unix).unwrap();
    local.set_read_timeout(Some(PATIENCE)).unwrap();
    local.write_all(b"local").unwrap();
    local.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"local");
    drop(first);
    drop(local);

    assert_eq!(process.terminate_and_wait(), 0);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "no other socket (no default 127.0.0.1:7007)");
}

#[test]
#[ignore = "needs systemd-socket-activate"]
fn an_inherited_udp_socket_is_served() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (process, mut stdout) = Process::start(
        socket_activate()
            .args(["--datagram", "-l", &addr.to_string()])
            .args([ECHOLOOP, "serve"]),
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Before the activator has bound, a datagram is lost: send again until one is answered.
    let start = Instant::now();
    let mut reply = [0u8; 16];
    let n = loop {
        client.send_to(b"datagram", addr).unwrap();
        if let Ok((n, _)) = client.recv_from(&mut reply) {
            break n;
        }
        assert!(start.elapsed() < PATIENCE, "no echo from {addr}");
    };
    assert_eq!(&reply[..n], b"datagram");
    assert_eq!(
        listening_lines(&mut stdout, 1),
        vec![format!("udp {addr} echo")]
    );
    assert_eq!(process.terminate_and_wait(), 0);
}

/// `echoloop serve -p echo` started by `systemd-socket-activate` on one TCP socket named
/// `fdname`; the first client's bytes and what came back, and the `listening` line.
fn serve_one_named_socket(fdname: &str) -> (Vec<u8>, String) {
    let tcp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (process, mut stdout) = Process::start(
        socket_activate()
            .arg("-l")
            .arg(tcp.to_string())
            .arg(format!("--fdname={fdname}"))
            .args([ECHOLOOP, "serve", "-p", "echo"]),
    );
    let mut client = connect_when_listening(tcp);
    client.write_all(b"hello\n").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    let line = listening_lines(&mut stdout, 1).remove(0);
    assert_eq!(process.terminate_and_wait(), 0);
    (reply, line)
}

#[test]
#[ignore = "needs systemd-socket-activate"]
fn a_socket_named_after_a_protocol_serves_that_protocol() {
    // `FileDescriptorName=daytime`: daytime, whatever -p says.
    let (reply, line) = serve_one_named_socket("daytime");
    assert!(line.ends_with(" daytime"), "{line}");
    assert_eq!(reply.len(), 26, "{:?}", String::from_utf8_lossy(&reply));
    assert!(reply.ends_with(b"\r\n"));
}

#[test]
#[ignore = "needs systemd-socket-activate"]
fn a_socket_with_any_other_name_serves_dash_p() {
    // systemd's default name is the socket unit's: `-p` is served on it.
    let (reply, line) = serve_one_named_socket("echoloop.socket");
    assert!(line.ends_with(" echo"), "{line}");
    assert_eq!(reply, b"hello\n");
}

#[test]
fn listen_pid_of_another_process_is_ignored() {
    // A real listening socket as descriptor 3, announced for another process (PID 1): a variable
    // inherited from a parent, not meant for us. echoloop serves only its own `-l`.
    let decoy = TcpListener::bind("127.0.0.1:0").unwrap();
    let decoy_fd = std::os::fd::AsRawFd::as_raw_fd(&decoy);
    let mut command = Command::new(ECHOLOOP);
    command
        .args(["serve", "-l", "127.0.0.1:0"])
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "decoy");
    // SAFETY: only dup2(2), which is async-signal-safe, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if libc::dup2(decoy_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (process, mut stdout) = Process::start(&mut command);
    let lines = listening_lines(&mut stdout, 1);
    assert!(lines[0].starts_with("tcp 127.0.0.1:"), "{lines:?}");
    assert_ne!(
        lines[0],
        format!("tcp {}", decoy.local_addr().unwrap()),
        "the decoy is not served"
    );
    assert_eq!(process.terminate_and_wait(), 0);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "only the -l socket");
}

#[test]
fn sd_notify_says_ready_status_and_stopping() {
    let dir = TempDir::new("notify");
    let path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&path).unwrap();
    notify.set_read_timeout(Some(PATIENCE)).unwrap();
    let (process, mut stdout) = Process::start(
        Command::new(ECHOLOOP)
            .args(["serve", "-l", "127.0.0.1:0", "--stats-interval", "1"])
            .env("NOTIFY_SOCKET", &path),
    );
    let receive = || {
        let mut buf = [0u8; 4096];
        let n = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let lines = listening_lines(&mut stdout, 1);
    assert_eq!(receive(), "READY=1\n", "ready once {lines:?} is bound");
    let status = receive();
    assert!(
        status.starts_with("STATUS=stats: open=0 accepted=0"),
        "{status}"
    );
    // SAFETY: kill(2) on a child we started and have not reaped.
    unsafe { libc::kill(process.0.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    loop {
        let message = receive();
        if message == "STOPPING=1\n" {
            break;
        }
        assert!(message.starts_with("STATUS="), "unexpected {message:?}");
        assert!(start.elapsed() < PATIENCE, "no STOPPING=1");
    }
    assert_eq!(process.terminate_and_wait(), 0);
}

/// A notify socket in Linux's abstract namespace, named for this test and process: what
/// `NOTIFY_SOCKET=@name` points at.
#[cfg(target_os = "linux")]
fn abstract_notify_socket(test: &str) -> (UnixDatagram, String) {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("echoloop-test-{test}-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let socket = UnixDatagram::bind_addr(&address).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    (socket, format!("@{name}"))
}

#[cfg(target_os = "linux")]
fn receive_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[cfg(target_os = "linux")]
#[test]
fn readiness_reaches_an_abstract_notify_socket() {
    let (notify, address) = abstract_notify_socket("ready");
    let (process, mut stdout) = Process::start(
        Command::new(ECHOLOOP)
            .args(["serve", "-l", "127.0.0.1:0"])
            .env("NOTIFY_SOCKET", &address),
    );
    let lines = listening_lines(&mut stdout, 1);
    assert_eq!(
        receive_notification(&notify),
        "READY=1\n",
        "ready once {lines:?} is bound"
    );
    // SAFETY: kill(2) on a child we started and have not reaped.
    unsafe { libc::kill(process.0.id() as i32, libc::SIGTERM) };
    assert_eq!(receive_notification(&notify), "STOPPING=1\n");
    assert_eq!(process.terminate_and_wait(), 0);
}

#[cfg(target_os = "linux")]
#[test]
fn watchdog_pings_arrive_while_the_loops_turn() {
    let (notify, address) = abstract_notify_socket("watchdog");
    // `WATCHDOG_PID` names the process itself, as systemd sets it: the shell's PID is the one
    // echoloop keeps after `exec`.
    let (process, mut stdout) = Process::start(
        Command::new("sh")
            .arg("-c")
            .arg(r#"WATCHDOG_PID=$$ exec "$0" serve -l 127.0.0.1:0 --workers 2"#)
            .arg(ECHOLOOP)
            .env("NOTIFY_SOCKET", &address)
            // 200 ms: a ping every 100 ms while both idle reactors turn when woken.
            .env("WATCHDOG_USEC", "200000"),
    );
    listening_lines(&mut stdout, 1);
    assert_eq!(receive_notification(&notify), "READY=1\n");
    let mut pings = 0;
    while pings < 3 {
        // Each receive waits at most PATIENCE: the pings are bounded in time, never timed.
        let message = receive_notification(&notify);
        assert_eq!(message, "WATCHDOG=1\n");
        pings += 1;
    }
    assert_eq!(process.terminate_and_wait(), 0);
}

#[cfg(target_os = "linux")]
#[test]
fn the_watchdog_costs_no_thread_of_its_own() {
    let (notify, address) = abstract_notify_socket("threads");
    let (process, mut stdout) = Process::start(
        Command::new("sh")
            .arg("-c")
            .arg(r#"WATCHDOG_PID=$$ exec "$0" serve -l 127.0.0.1:0 -p echo --workers 2"#)
            .arg(ECHOLOOP)
            .env("NOTIFY_SOCKET", &address)
            .env("WATCHDOG_USEC", "200000"),
    );
    listening_lines(&mut stdout, 1);
    assert_eq!(receive_notification(&notify), "READY=1\n");
    assert_eq!(
        receive_notification(&notify),
        "WATCHDOG=1\n",
        "the watchdog is running"
    );
    let tasks = std::fs::read_dir(format!("/proc/{}/task", process.0.id()))
        .unwrap()
        .count();
    assert_eq!(tasks, 2, "one thread per worker, nothing else");
    assert_eq!(
        receive_notification(&notify),
        "WATCHDOG=1\n",
        "and still pinging"
    );
    assert_eq!(process.terminate_and_wait(), 0);
}

/// A ping as a test sees it: one message on a channel (systemd's would be `WATCHDOG=1`).
fn counted_pings(server: &mut Server) -> Receiver<()> {
    let (sender, pings) = mpsc::channel();
    // 200 ms: a check every 100 ms on worker 0's loop.
    server.set_watchdog(Duration::from_millis(200), move || {
        let _ = sender.send(());
    });
    pings
}

#[test]
fn pings_go_on_while_two_idle_workers_turn_only_when_woken() {
    let mut config = ServeConfig::for_tests();
    config.workers = 2;
    let mut server = Server::bind(&config).unwrap();
    let pings = counted_pings(&mut server);
    let _server = server.spawn().unwrap();
    // Ten pings span five intervals: worker 1, with no client and no timer, would be stale after
    // one if worker 0's checks did not wake it.
    for ping in 0..10 {
        pings
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("ping {ping} while both workers idle"));
    }
}

/// What the stalling protocol tells the test about one line it was sent.
#[derive(Debug, PartialEq)]
enum Arrival {
    /// Worker 1 got it and is now stuck in `on_frame`, until released.
    Stuck,
    /// Worker 0 got it, and ignored it.
    Elsewhere,
}

/// A protocol whose worker-1 value blocks in `on_frame` until the test releases it: a reactor
/// stuck in one client's callback, as the watchdog is there to notice.
struct Stall {
    arrivals: Sender<Arrival>,
    release: Arc<Mutex<Receiver<()>>>,
}

impl Protocol for Stall {
    type Session = ();
    const NAME: &'static str = "stall";
    const FRAMING: FramingKind = FramingKind::Line;

    fn on_connect(&mut self, _: ClientId, _: SystemTime, _: &mut Replies) {}

    fn on_frame(&mut self, _: &mut (), _: Frame<'_>, _: SystemTime, out: &mut Replies) {
        if std::thread::current().name() != Some("echoloop-worker-1") {
            let _ = self.arrivals.send(Arrival::Elsewhere);
            return;
        }
        let _ = self.arrivals.send(Arrival::Stuck);
        let _ = self.release.lock().unwrap().recv_timeout(PATIENCE);
        out.send_frame(&[b"released"]);
    }
}

#[test]
fn a_stuck_worker_stops_the_pings_until_it_turns_again() {
    let (arrivals_to, arrivals) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    let mut config = ServeConfig::for_tests();
    config.workers = 2;
    config.protocol = ProtocolFactory::new(move || Stall {
        arrivals: arrivals_to.clone(),
        release: Arc::clone(&released),
    })
    .into();
    let mut server = Server::bind(&config).unwrap();
    let pings = counted_pings(&mut server);
    let server = server.spawn().unwrap();
    pings
        .recv_timeout(PATIENCE)
        .expect("a ping while both turn");

    // The kernel spreads connections over the two workers (on macOS it hands them all to the
    // last bound, worker 1): connect until worker 1 has one.
    let mut stuck = None;
    for _ in 0..200 {
        let mut client = common::connect(&server);
        common::send(&mut client, b"stall\n");
        if arrivals.recv_timeout(PATIENCE).unwrap() == Arrival::Stuck {
            stuck = Some(client);
            break;
        }
    }
    let mut stuck = stuck.expect("a connection reached worker 1");
    // Pings already sent, and those of the checks that still find worker 1's last stamp within
    // the interval (at most three, 100 ms apart, in its 200 ms); then none while it is stuck.
    while pings.try_recv().is_ok() {}
    let mut late = 0;
    while pings.recv_timeout(Duration::from_secs(2)).is_ok() {
        late += 1;
        assert!(late <= 3, "pings go on while worker 1 is stuck");
    }

    release.send(()).unwrap();
    assert_eq!(common::read_line(&mut stuck), b"released");
    pings
        .recv_timeout(PATIENCE)
        .expect("pings again once worker 1 turns");
    drop(server);
}
