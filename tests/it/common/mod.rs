//! What every integration test needs: an in-process server on `127.0.0.1:0`, blocking clients
//! with timeouts, ways to wait for outcomes rather than for time, and the `echoloop` binary as a
//! daemon; and, for the few tests that drive another program, where that program is.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use echoloop::{RunningServer, ServeConfig, Server, StatsSnapshot};

/// Generous: the machine is shared and noisy. Tests wait for outcomes, never for time.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// An in-process server; it drains, stops and is joined when dropped.
pub type TestServer = RunningServer;

/// Starts a server from the test defaults (echo on 127.0.0.1:0), changed by `adjust`.
pub fn serve(adjust: impl FnOnce(&mut ServeConfig)) -> TestServer {
    let mut config = ServeConfig::for_tests();
    adjust(&mut config);
    Server::bind(&config)
        .expect("bind the test server")
        .spawn()
        .expect("start the test server")
}

/// A blocking client with read and write timeouts.
pub fn connect(server: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).expect("connect to the test server");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Reads exactly `len` bytes (panics on timeout or early EOF).
pub fn read_exactly(stream: &mut impl Read, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream
        .read_exact(&mut buf)
        .expect("read the expected bytes");
    buf
}

/// Reads one `\n`-terminated line (without the `\n`), byte by byte: slow, simple, exact.
pub fn read_line(stream: &mut impl Read) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => panic!(
                "EOF before end of line; got {:?}",
                String::from_utf8_lossy(&line)
            ),
            Ok(_) if byte[0] == b'\n' => return line,
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!(
                "reading a line: {e}; got {:?}",
                String::from_utf8_lossy(&line)
            ),
        }
    }
}

/// Reads until EOF; returns everything read. A reset counts as EOF.
pub fn read_to_end(stream: &mut impl Read) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("reading to EOF: {e} after {} bytes", all.len()),
        }
    }
}

/// Waits until `check` holds for the server's counters; panics with the last counters after
/// [`PATIENCE`].
pub fn wait_for_stats(
    server: &TestServer,
    what: &str,
    check: impl Fn(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    wait_until(what, || server.stats(), check)
}

/// Reads counters with `read` until `check` holds for them, and returns them; panics with the
/// last ones after [`PATIENCE`]. [`wait_for_stats`] is this for a server's counters added up.
pub fn wait_until<T: std::fmt::Debug>(
    what: &str,
    read: impl Fn() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let start = Instant::now();
    loop {
        let stats = read();
        if check(&stats) {
            return stats;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "waited for {what}; counters: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a failure can be reproduced.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Writes all of `bytes`.
pub fn send(stream: &mut impl Write, bytes: &[u8]) {
    stream.write_all(bytes).expect("write to the server");
}

/// The `echoloop` binary started with `args`, stdout piped; its `listening ...` lines read.
pub struct Daemon {
    /// The process.
    pub child: std::process::Child,
    /// The socket on each line: its first two words after `listening `, `tcp 127.0.0.1:40123`
    /// (as a script reads the first three fields of the line).
    pub listening: Vec<String>,
    /// Each whole line after `listening `, the service included: `tcp 127.0.0.1:40123 echo`.
    pub lines: Vec<String>,
}

impl Daemon {
    /// Starts `echoloop <args>` and reads `expected_lines` `listening` lines from its stdout.
    pub fn start(args: &[&str], expected_lines: usize) -> Daemon {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_echoloop"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start echoloop");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut listening = Vec::new();
        let mut lines = Vec::new();
        for _ in 0..expected_lines {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read a listening line");
            let words = line
                .trim_end()
                .strip_prefix("listening ")
                .unwrap_or_else(|| panic!("expected a listening line, got {line:?}"));
            let socket: Vec<&str> = words.split(' ').take(2).collect();
            listening.push(socket.join(" "));
            lines.push(words.to_string());
        }
        Daemon {
            child,
            listening,
            lines,
        }
    }

    /// The address of the first `listening tcp` line.
    pub fn tcp_addr(&self) -> std::net::SocketAddr {
        self.listening
            .iter()
            .find_map(|l| l.strip_prefix("tcp "))
            .expect("a tcp listener")
            .parse()
            .unwrap()
    }

    /// Sends `signal` (libc number) to the process.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on a process we started and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
    }

    /// Waits for the process to exit (panics after PATIENCE) and returns its exit code and stderr.
    pub fn wait(mut self) -> (i32, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                let _ = self
                    .child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr);
                return (status.code().unwrap_or(-1), stderr);
            }
            if start.elapsed() > PATIENCE {
                let _ = self.child.kill();
                panic!("echoloop did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How many descriptors process `pid` has open (`/proc/PID/fd`).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the process's descriptors")
        .count()
}

/// The path of `program`, for a test marked `#[ignore = "needs <program>"]`: looked up in `PATH`,
/// then in the sbin folders (Debian keeps haproxy there, outside a user's `PATH`). Panics when it
/// is missing: an ignored test run with `--include-ignored` fails rather than passing having
/// tested nothing.
pub fn tool(program: &str, debian_package: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| {
            panic!("this test needs {program} (Debian: apt-get install {debian_package})")
        })
}

/// `echoloop <args>` run to its end: exit code (-1: killed by a signal), stdout, stderr.
pub fn run_echoloop(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(args)
        .output()
        .expect("run echoloop");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
