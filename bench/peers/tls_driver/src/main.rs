//! A neutral closed-loop TLS load driver for echo servers (scripts/bench-tls.sh).
//!
//! `echoloop load` drives echoloop's own benchmarks; for TLS the benchmark wants a client that
//! belongs to neither side, as `udp_driver.c` is for UDP. This one is tokio-rustls on one
//! thread (a `current_thread` runtime), with rustls' ring provider like both servers it
//! measures, and it speaks plain TCP too (`--plain`), so that TLS and plain figures come from the
//! same client.
//!
//! 1. **Handshakes first, timed apart**: N connections, at most 64 handshakes at a time, each
//!    timed from `connect` to the end of the TLS handshake. Session resumption is off: every
//!    handshake is a full one. Then one message is echoed on each connection, so the server has
//!    finished its side of the handshake too (TLS 1.3 lets the client finish first).
//! 2. **Load**: all connections at once, P messages of M bytes in flight on each. Whenever
//!    replies come back, as many new messages go out as replies completed (one write for all of
//!    them), so P stay in flight. Every byte received is checked against the byte sent at that
//!    offset of the stream: a message is counted once all its bytes came back unchanged.
//!    Messages completed in the D seconds after the warmup are counted.
//! 3. **One JSON line** on stdout: messages, msgs/s, errors (connections that failed or closed
//!    during the load), mismatches, the handshake figures, the negotiated version and suite and,
//!    with `--server-pid`, the server's CPU time (utime+stime from /proc) over the same window.
//!
//! With `--hold`, step 2 is skipped: the driver prints its JSON line and keeps the handshaken,
//! idle connections open until it is killed (the memory per idle connection is measured so).
//!
//! usage: tls_driver HOST:PORT [-c N] [-s BYTES] [-p IN_FLIGHT] [-d SECS] [--warmup SECS]
//!                   [--plain] [--ca FILE] [--server-name NAME] [--server-pid PID] [--hold]
//! defaults: -c 1 -s 64 -p 1 -d 5 --warmup 0.5 --ca tests/certs/ca.pem --server-name localhost

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

const USAGE: &str = "usage: tls_driver HOST:PORT [-c N] [-s BYTES] [-p IN_FLIGHT] [-d SECS] \
                     [--warmup SECS] [--plain] [--ca FILE] [--server-name NAME] \
                     [--server-pid PID] [--hold]";
/// Handshakes under way at once: enough to keep the server busy, few enough that each one's
/// time is its own and not the queue's.
const HANDSHAKES_AT_ONCE: usize = 64;
/// The largest read; the pattern tape is long enough to check one read at any offset.
const READ_BYTES: usize = 16 * 1024;
/// The byte sent at offset `o` of connection `c` is `TAPE[(o + c) % PERIOD]`: a prime period,
/// so that a reply shifted by whole messages does not match by chance.
const PERIOD: usize = 251;

struct Options {
    addr: SocketAddr,
    connections: usize,
    size: usize,
    in_flight: usize,
    duration: f64,
    warmup: f64,
    plain: bool,
    ca: String,
    server_name: String,
    server_pid: Option<u32>,
    hold: bool,
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1).collect()) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("tls_driver: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let connector = if options.plain {
        None
    } else {
        match connector(&options.ca) {
            Ok(connector) => Some(connector),
            Err(e) => {
                eprintln!("tls_driver: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build();
    match runtime.and_then(|runtime| runtime.block_on(run(options, connector))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls_driver: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut args = args.into_iter();
    let addr = args.next().ok_or("no address")?;
    let addr = addr
        .parse()
        .map_err(|_| format!("{addr}: not HOST:PORT (an IP address)"))?;
    let mut options = Options {
        addr,
        connections: 1,
        size: 64,
        in_flight: 1,
        duration: 5.0,
        warmup: 0.5,
        plain: false,
        ca: "tests/certs/ca.pem".into(),
        server_name: "localhost".into(),
        server_pid: None,
        hold: false,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        fn number<T: std::str::FromStr>(flag: &str, text: String) -> Result<T, String> {
            text.parse()
                .map_err(|_| format!("{flag} {text}: not a number"))
        }
        match flag.as_str() {
            "-c" => options.connections = number(&flag, value()?)?,
            "-s" => options.size = number(&flag, value()?)?,
            "-p" => options.in_flight = number(&flag, value()?)?,
            "-d" => options.duration = number(&flag, value()?)?,
            "--warmup" => options.warmup = number(&flag, value()?)?,
            "--ca" => options.ca = value()?,
            "--server-name" => options.server_name = value()?,
            "--server-pid" => options.server_pid = Some(number(&flag, value()?)?),
            "--plain" => options.plain = true,
            "--hold" => options.hold = true,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if options.connections == 0 || options.size == 0 || options.in_flight == 0 {
        return Err("-c, -s and -p must be at least 1".into());
    }
    if options.size * options.in_flight > 1 << 20 || options.duration <= 0.0 {
        return Err("-s × -p at most 1 MiB; -d above 0".into());
    }
    Ok(options)
}

/// The client side of TLS: trusts only the CA file; TLS 1.3 or 1.2; no session resumption, so
/// every handshake is a full one.
fn connector(ca: &str) -> Result<TlsConnector, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("{ca}: {e}"))?)
            .map_err(|e| format!("{ca}: {e}"))?;
    }
    // ring, as both servers (rustls deprecates it in 0.23.48 for lacking post-quantum key exchange),
    // offering X25519 first as OpenSSL, browsers and Python do: rustls lists ring's P-384 first,
    // and the key share a client sends is for the group it lists first, so the default would
    // measure P-384 handshakes (nine times the server's instructions) that real clients never ask.
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        kx_groups: vec![X25519, SECP256R1, SECP384R1],
        ..rustls::crypto::ring::default_provider()
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// One connection of either kind.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// What every connection task shares.
struct Shared {
    /// Messages whose every byte came back unchanged.
    completed: AtomicU64,
    /// Connections that failed or were closed by the server during the load.
    errors: AtomicU64,
    /// Connections that received a byte other than the one sent at that offset.
    mismatches: AtomicU64,
    /// Set once the measured window is over: connections stop sending.
    stop: AtomicBool,
    tape: Vec<u8>,
}

async fn run(options: Options, connector: Option<TlsConnector>) -> io::Result<()> {
    let name = ServerName::try_from(options.server_name.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // Handshakes, HANDSHAKES_AT_ONCE at a time.
    let gate = Arc::new(Semaphore::new(HANDSHAKES_AT_ONCE));
    let (started, handshake_cpu0) = (Instant::now(), cpu_ticks(options.server_pid));
    let mut pending = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        let (gate, connector, name, addr) =
            (gate.clone(), connector.clone(), name.clone(), options.addr);
        pending.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let t = Instant::now();
            let stream = open(addr, connector, name).await?;
            Ok::<_, io::Error>((stream, t.elapsed()))
        }));
    }
    let (mut streams, mut times, mut failures, mut first_failure) =
        (Vec::new(), Vec::new(), 0, None);
    for task in pending {
        match task.await.map_err(io::Error::other)? {
            Ok((stream, time)) => {
                streams.push(stream);
                times.push(time);
            }
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert(e);
            }
        }
    }
    let (handshake_wall, handshake_cpu1) = (started.elapsed(), cpu_ticks(options.server_pid));
    if streams.is_empty() {
        return Err(first_failure.unwrap_or_else(|| io::Error::other("no connection")));
    }
    if let Some(e) = first_failure {
        eprintln!("tls_driver: {failures} connections failed, the first: {e}");
    }
    times.sort();
    let (version, suite) = match &streams[0] {
        Stream::Plain(_) => ("tcp".to_string(), "none".to_string()),
        Stream::Tls(tls) => {
            let (_, session) = tls.get_ref();
            (
                format!("{:?}", session.protocol_version().unwrap()),
                format!("{:?}", session.negotiated_cipher_suite().unwrap().suite()),
            )
        }
    };

    let tape_bytes = PERIOD + READ_BYTES.max(options.size * options.in_flight);
    let shared = Arc::new(Shared {
        completed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        mismatches: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        tape: (0..tape_bytes).map(|i| (i % PERIOD) as u8).collect(),
    });
    // One message echoed on each connection: both sides are done with the handshake.
    let mut ready = Vec::new();
    for (id, stream) in streams.into_iter().enumerate() {
        let (shared, size) = (shared.clone(), options.size);
        ready.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut checker = Checker::new(id, size);
            checker.send(&mut stream, &shared.tape, 1).await?;
            let mut buf = vec![0u8; READ_BYTES];
            while checker.received < checker.sent {
                checker.receive(&mut stream, &mut buf, &shared.tape).await?;
            }
            Ok::<_, io::Error>((stream, checker))
        }));
    }
    let mut connections = Vec::new();
    for task in ready {
        match task.await.map_err(io::Error::other)? {
            Ok(connection) => connections.push(connection),
            Err(e) => {
                failures += 1;
                eprintln!("tls_driver: first echo: {e}");
            }
        }
    }
    let percentile = |p: f64| times[((times.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    let handshakes = format!(
        "\"mode\":\"{}\",\"version\":\"{version}\",\"suite\":\"{suite}\",\"connections\":{},\
         \"size\":{},\"in_flight\":{},\"handshakes\":{},\"handshake_failures\":{failures},\
         \"handshake_wall_s\":{:.4},\"handshakes_per_s\":{:.1},\"handshake_p50_ms\":{:.3},\
         \"handshake_p99_ms\":{:.3}",
        if options.plain { "tcp" } else { "tls" },
        options.connections,
        options.size,
        options.in_flight,
        times.len(),
        handshake_wall.as_secs_f64(),
        times.len() as f64 / handshake_wall.as_secs_f64(),
        percentile(0.5),
        percentile(0.99),
    );
    let handshakes = match (handshake_cpu0, handshake_cpu1) {
        (Some(a), Some(b)) => format!(
            "{handshakes},\"server_cpu_us_per_handshake\":{:.1}",
            (b - a) as f64 / clock_ticks_per_second() / times.len() as f64 * 1e6
        ),
        _ => handshakes,
    };
    if options.hold {
        println!("{{{handshakes},\"holding\":{}}}", connections.len());
        // Kept open until the driver is killed.
        std::future::pending::<()>().await;
    }

    for (stream, checker) in connections {
        let (shared, in_flight) = (shared.clone(), options.in_flight);
        tokio::spawn(async move {
            // Failures after the window closed are the end of the run, not errors.
            if let Err(e) = keep_in_flight(stream, checker, in_flight, &shared).await
                && !shared.stop.load(Ordering::Relaxed)
            {
                if e.kind() == io::ErrorKind::InvalidData {
                    shared.mismatches.fetch_add(1, Ordering::Relaxed);
                }
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(options.warmup)).await;
    let before = Snapshot::take(&shared, options.server_pid);
    tokio::time::sleep(Duration::from_secs_f64(options.duration)).await;
    let after = Snapshot::take(&shared, options.server_pid);
    shared.stop.store(true, Ordering::Relaxed);
    let msgs = after.completed - before.completed;
    let window = (after.at - before.at).as_secs_f64();
    let cpu = match (before.server, after.server) {
        (Some(a), Some(b)) => {
            let tick = clock_ticks_per_second();
            let seconds = (b - a) as f64 / tick;
            // Cores kept busy by neither the server nor this driver: the machine's other load.
            let foreign = match (before.machine, after.machine, before.driver, after.driver) {
                (Some(m0), Some(m1), Some(d0), Some(d1)) => {
                    (m1 as f64 - m0 as f64 - (d1 - d0) as f64 - (b - a) as f64) / tick / window
                }
                _ => f64::NAN,
            };
            let per_msg = if msgs > 0 {
                seconds / msgs as f64 * 1e6
            } else {
                f64::NAN
            };
            format!(
                ",\"server_cpu_s\":{seconds:.3},\"server_cpu_us_per_msg\":{per_msg:.3},\
                 \"foreign_cores\":{foreign:.2}"
            )
        }
        _ => String::new(),
    };
    println!(
        "{{{handshakes},\"duration_s\":{window:.3},\"msgs\":{msgs},\"msgs_per_s\":{:.0},\
         \"errors\":{},\"mismatches\":{}{cpu}}}",
        msgs as f64 / window,
        shared.errors.load(Ordering::Relaxed),
        shared.mismatches.load(Ordering::Relaxed),
    );
    Ok(())
}

async fn open(
    addr: SocketAddr,
    connector: Option<TlsConnector>,
    name: ServerName<'static>,
) -> io::Result<Stream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(match connector {
        None => Stream::Plain(tcp),
        Some(connector) => Stream::Tls(Box::new(connector.connect(name, tcp).await?)),
    })
}

/// The load on one connection: keep `in_flight` messages out until the window is over.
async fn keep_in_flight(
    mut stream: Stream,
    mut checker: Checker,
    in_flight: usize,
    shared: &Shared,
) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BYTES];
    checker.send(&mut stream, &shared.tape, in_flight).await?;
    while !shared.stop.load(Ordering::Relaxed) {
        let done = checker.receive(&mut stream, &mut buf, &shared.tape).await?;
        shared.completed.fetch_add(done as u64, Ordering::Relaxed);
        if done > 0 {
            checker.send(&mut stream, &shared.tape, done).await?;
        }
    }
    Ok(())
}

/// One connection's stream offsets: what was sent, what came back, and the check between them.
struct Checker {
    shift: usize,
    size: usize,
    sent: usize,
    received: usize,
}

impl Checker {
    fn new(id: usize, size: usize) -> Checker {
        Checker {
            shift: id % PERIOD,
            size,
            sent: 0,
            received: 0,
        }
    }

    /// Sends `count` messages in one write (one TLS record for up to 16 KiB).
    async fn send(&mut self, stream: &mut Stream, tape: &[u8], count: usize) -> io::Result<()> {
        let start = (self.sent + self.shift) % PERIOD;
        let bytes = &tape[start..start + count * self.size];
        match stream {
            Stream::Plain(s) => write_all(s, bytes).await?,
            Stream::Tls(s) => write_all(s.as_mut(), bytes).await?,
        }
        self.sent += bytes.len();
        Ok(())
    }

    /// Reads once and checks the bytes; returns how many messages that completed.
    async fn receive(
        &mut self,
        stream: &mut Stream,
        buf: &mut [u8],
        tape: &[u8],
    ) -> io::Result<usize> {
        let n = match stream {
            Stream::Plain(s) => s.read(buf).await?,
            Stream::Tls(s) => s.read(buf).await?,
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed",
            ));
        }
        if self.received + n > self.sent {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more bytes than were sent",
            ));
        }
        let start = (self.received + self.shift) % PERIOD;
        if buf[..n] != tape[start..start + n] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a reply differs from its message",
            ));
        }
        let before = self.received / self.size;
        self.received += n;
        Ok(self.received / self.size - before)
    }
}

async fn write_all<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// The counters at one instant of the measured window.
struct Snapshot {
    completed: u64,
    server: Option<u64>,
    driver: Option<u64>,
    machine: Option<u64>,
    at: Instant,
}

impl Snapshot {
    fn take(shared: &Shared, server_pid: Option<u32>) -> Snapshot {
        Snapshot {
            completed: shared.completed.load(Ordering::Relaxed),
            server: cpu_ticks(server_pid),
            driver: cpu_ticks(Some(std::process::id())),
            machine: machine_busy_ticks(),
            at: Instant::now(),
        }
    }
}

/// utime+stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks all CPUs of the machine spent busy: the first line of /proc/stat (user nice
/// system idle iowait irq softirq steal ...) less idle and iowait; guest time is in user already.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    Some(ticks.iter().sum::<u64>() - ticks.get(3)? - ticks.get(4)?)
}

fn clock_ticks_per_second() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux the benchmark runs on; getconf says so too.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}
