//! `echoloop load` on the command line, parsed with clap into a [`LoadConfig`].
//!
//! Only this file knows about clap; the library takes a [`LoadConfig`]. What clap cannot check
//! alone (raw timestamp with `--pipeline` above 1, `--udp` towards a Unix socket, source
//! addresses of the wrong family, TLS flags without a `tls:` address, an unreadable `--tls-ca`)
//! is checked by [`LoadArgs::into_config`], which answers with the
//! one line that `main.rs` prints before exiting with code 2.
//!
//! Next: `results.rs`, where results are written; `report.rs`, several runs added up;
//! `docs/LOAD.md`, for how to use all this.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::client::TlsArgs;
use super::results::ResultFiles;
use super::{parse_address, units};
use crate::clients::load::{
    self, LoadConfig, OutputPaths, Payloads, ReplyKind, Target, parse_source_addrs,
};
use crate::net::address::Address;
use crate::protocol::framing::FramingKind;

/// `-d` when neither `-d` nor `-n` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Largest UDP payload over IPv4.
const MAX_DATAGRAM_PAYLOAD: u64 = 65_507;

/// `echoloop load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    #[allow(rustdoc::broken_intra_doc_links)] // `[V6]` is clap help text, not a link
    /// The server: HOST:PORT, [V6]:PORT, unix:/path or tls:HOST:PORT (with --udp: HOST:PORT)
    #[arg(value_name = "ADDR", value_parser = parse_address)]
    pub addr: Address,
    /// Whom to trust over TLS
    #[command(flatten)]
    pub tls: TlsArgs,
    /// tls: share one session cache, so that later handshakes resume (else each is full)
    #[arg(long)]
    pub tls_resume: bool,
    /// Send datagrams to a UDP server instead (one message per datagram)
    #[arg(long)]
    pub udp: bool,
    /// Connections (UDP: sockets) over all threads
    #[arg(short = 'c', long, default_value_t = 50, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 1u64..=10_000_000))]
    pub connections: u64,
    /// How long to measure, after connecting and warmup (500ms, 30s, 2m; a bare number is seconds)
    /// [default: 10s, or no limit with -n]
    #[arg(short = 'd', long, value_name = "DURATION", allow_hyphen_values = true, value_parser = units::positive_duration)]
    pub duration: Option<Duration>,
    /// Stop after N replies in total (with -d: whichever comes first)
    #[arg(short = 'n', long, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 1u64..))]
    pub messages: Option<u64>,
    /// Traffic before the measurement starts, not counted (5s)
    #[arg(long, default_value = "0", value_name = "DURATION", allow_hyphen_values = true, value_parser = units::duration)]
    pub warmup: Duration,
    /// A reply later than this is a timeout; replies still owed at the end are waited for this long
    #[arg(long, default_value = "2s", value_name = "DURATION", allow_hyphen_values = true, value_parser = units::positive_duration)]
    pub timeout: Duration,
    /// Payload bytes per message (64, 4K, 1M)
    #[arg(short = 's', long, default_value = "64", value_name = "BYTES", allow_hyphen_values = true, value_parser = |t: &str| units::bytes_in(t, 1, 16 << 20))]
    pub size: u64,
    /// Each message's payload from FILE (line framing: one message per line of the file, in turn)
    #[arg(long, value_name = "FILE", conflicts_with = "size")]
    pub payload_file: Option<PathBuf>,
    /// Messages in flight per connection (timestamp: only with --framing line or length)
    #[arg(long, default_value_t = 1, value_name = "K", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 1u64..=65_536))]
    pub pipeline: u64,
    /// Total messages per second over all connections: open loop (latency from intended send time)
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// New connections per second (ramp-up)
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_rate)]
    pub connect_rate: Option<f64>,
    /// Client reactors, one thread each [default: number of cores]
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 1u64..=1024))]
    pub threads: Option<u64>,
    /// How requests are framed and replies cut [default: raw; --protocol timestamp pipelines only with line or length, on both sides (serve --framing line)]
    #[arg(long, value_enum, value_name = "F")]
    pub framing: Option<FramingKind>,
    /// What a correct reply looks like
    #[arg(long, value_enum, default_value = "echo", value_name = "NAME")]
    pub protocol: ReplyKind,
    /// UDP: fail the run only if more than PCT percent of the datagrams are lost
    #[arg(long, default_value_t = 1.0, value_name = "PCT", allow_hyphen_values = true, value_parser = parse_percent)]
    pub max_loss: f64,
    /// Latency percentiles to report (JSON keys p50, p999, p9999)
    #[arg(long, default_value = "50,90,99,99.9", value_name = "LIST", value_parser = parse_percentiles)]
    pub percentiles: Percentiles,
    /// Local addresses to spread connections over: 127.0.0.1-127.0.0.16, or a comma list
    #[arg(long, value_name = "ADDRS")]
    pub source_addrs: Option<String>,
    /// The summary's form and the result files
    #[command(flatten)]
    pub results: ResultFiles,
    /// Length of one row of the results over time (--timeline, --plot, --hdr-log)
    #[arg(long, default_value = "1s", value_name = "DURATION", allow_hyphen_values = true, value_parser = units::positive_duration)]
    pub interval: Duration,
    /// Write the HdrHistogram interval log to FILE (for `echoloop report` and HdrHistogram tools)
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// Open the connections, keep them idle for -d, report how many are up
    #[arg(long)]
    pub hold: bool,
    /// Close each connection after N messages (their replies in) and connect again: churn
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 1u64..))]
    pub reconnect_after: Option<u64>,
}

/// `--percentiles`, as clap keeps it (a `Vec` would be taken for a repeated flag).
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles(pub Vec<f64>);

fn parse_percentiles(text: &str) -> Result<Percentiles, String> {
    load::parse_percentiles(text).map(Percentiles)
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("'{text}' is not a percentage between 0 and 100")),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("'{text}' is not a positive rate")),
    }
}

impl LoadArgs {
    /// The files to write, besides the summary.
    pub fn output_paths(&self) -> OutputPaths {
        OutputPaths {
            json_out: self.results.json_out.clone(),
            histogram: self.results.histogram.clone(),
            timeline: self.results.timeline.clone(),
            plot: self.results.plot.clone(),
            hdr_log: self.hdr_log.clone(),
        }
    }

    /// The config these arguments describe, or the one line saying what is wrong with them.
    pub fn into_config(self) -> Result<LoadConfig, String> {
        let tls = self.tls.options(self.tls_resume);
        // A bad --tls-ca is the command line's mistake, found before the run (which builds the
        // config again, once, for all its connections).
        tls.trust(&self.addr)?;
        let target = match (self.udp, self.addr) {
            (false, address) => Target::Stream(address),
            (true, Address::Tcp(addr)) => Target::Datagram(addr),
            (true, Address::Unix(_)) => return Err("--udp needs HOST:PORT, not unix:".into()),
            (true, Address::Tls { .. }) => return Err("--udp needs HOST:PORT, not tls:".into()),
        };
        // Raw for every kind, as the servers' defaults: timestamp too, one reply per read.
        let framing = self.framing.unwrap_or(FramingKind::Raw);
        if self.udp && !self.protocol.answers_each_message() {
            return Err(format!(
                "--protocol {} measures a stream: it does not take --udp",
                if self.protocol == ReplyKind::Discard {
                    "discard"
                } else {
                    "chargen"
                }
            ));
        }
        if self.protocol == ReplyKind::Timestamp
            && framing == FramingKind::Raw
            && !self.udp
            && self.pipeline > 1
        {
            // Refused rather than quietly lowered to 1: the run would not measure what was asked.
            return Err(format!(
                "--pipeline {}: raw timestamp replies are told apart only one at a time; pipelining needs --framing line here and on the server (serve -p timestamp --framing line)",
                self.pipeline
            ));
        }
        let payloads = match &self.payload_file {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("--payload-file: cannot read {}: {e}", path.display()))?;
                Payloads::from_file(bytes, framing)?
            }
            None => Payloads::Generated {
                size: self.size as usize,
            },
        };
        if self.udp && payloads.max_size() as u64 > MAX_DATAGRAM_PAYLOAD {
            return Err(format!(
                "a payload of {} bytes is more than a datagram holds ({MAX_DATAGRAM_PAYLOAD})",
                payloads.max_size()
            ));
        }
        let source_addrs: Vec<IpAddr> = match &self.source_addrs {
            Some(text) => parse_source_addrs(text)?,
            None => Vec::new(),
        };
        match &target {
            Target::Stream(Address::Unix(_)) if !source_addrs.is_empty() => {
                return Err("--source-addrs does not apply to unix: addresses".into());
            }
            Target::Stream(Address::Tcp(addr) | Address::Tls { addr, .. })
            | Target::Datagram(addr)
                if source_addrs.iter().any(|ip| ip.is_ipv4() != addr.is_ipv4()) =>
            {
                return Err(format!(
                    "--source-addrs must be of the same family as {addr}"
                ));
            }
            _ => {}
        }
        if self.reconnect_after.is_some()
            && (self.udp || self.hold || !self.protocol.answers_each_message())
        {
            return Err(
                "--reconnect-after counts replies on stream connections: not with --udp, --hold, discard or chargen"
                    .into(),
            );
        }
        let threads = self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n as usize,
        );
        Ok(LoadConfig {
            target,
            connections: self.connections as usize,
            duration: match (self.duration, self.messages) {
                (None, None) => Some(DEFAULT_DURATION),
                (duration, _) => duration,
            },
            messages: self.messages,
            timeout: self.timeout,
            max_loss_percent: self.max_loss,
            percentiles: self.percentiles.0,
            interval: self.interval,
            warmup: self.warmup,
            payloads,
            pipeline: self.pipeline as usize,
            rate: self.rate,
            connect_rate: self.connect_rate,
            threads,
            framing,
            reply: self.protocol,
            source_addrs,
            hold: self.hold,
            live: true,
            reconnect_after: self.reconnect_after,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadArgs,
    }

    fn parse(args: &[&str]) -> Result<LoadConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("load").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.args.into_config()
    }

    #[test]
    fn defaults_match_the_issue() {
        let config = parse(&["127.0.0.1:7007"]).unwrap();
        assert_eq!(config.connections, 50);
        assert_eq!(config.duration, Some(Duration::from_secs(10)));
        assert_eq!(config.messages, None);
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.percentiles, vec![50.0, 90.0, 99.0, 99.9]);
        assert_eq!(config.max_loss_percent, 1.0);
        assert_eq!(config.payloads, Payloads::Generated { size: 64 });
        assert_eq!(config.pipeline, 1);
        assert_eq!(config.framing, FramingKind::Raw);
        assert_eq!(config.rate, None);
        assert!(config.threads >= 1);
    }

    #[test]
    fn fractions_ranges_and_defaults_per_protocol() {
        let config = parse(&[
            "-d",
            "0.5",
            "--protocol",
            "timestamp",
            "--source-addrs",
            "127.0.0.1-127.0.0.4",
            "127.0.0.1:1",
        ])
        .unwrap();
        assert_eq!(config.duration, Some(Duration::from_millis(500)));
        assert_eq!(config.framing, FramingKind::Raw);
        assert_eq!(config.source_addrs.len(), 4);
    }

    #[test]
    fn raw_timestamp_keeps_one_in_flight_and_line_pipelines() {
        let raw = parse(&["--protocol", "timestamp", "127.0.0.1:1"]).unwrap();
        assert_eq!((raw.framing, raw.in_flight_limit()), (FramingKind::Raw, 1));
        let error =
            parse(&["--protocol", "timestamp", "--pipeline", "4", "127.0.0.1:1"]).unwrap_err();
        assert!(error.contains("--pipeline 4"), "{error}");
        assert!(error.contains("--framing line"), "{error}");
        let line = parse(&[
            "--protocol",
            "timestamp",
            "--framing",
            "line",
            "--pipeline",
            "4",
            "127.0.0.1:1",
        ])
        .unwrap();
        assert_eq!(line.in_flight_limit(), 4);
        let udp = parse(&[
            "--udp",
            "--protocol",
            "timestamp",
            "--pipeline",
            "4",
            "127.0.0.1:1",
        ]);
        assert_eq!(udp.unwrap().in_flight_limit(), 4, "a datagram is one reply");
    }

    #[test]
    fn units_messages_and_percentiles() {
        let config = parse(&[
            "-d",
            "500ms",
            "--warmup",
            "1m",
            "--timeout",
            "250ms",
            "-s",
            "4K",
            "--percentiles",
            "50,99.99",
            "--interval",
            "0.25",
            "127.0.0.1:1",
        ])
        .unwrap();
        assert_eq!(config.duration, Some(Duration::from_millis(500)));
        assert_eq!(config.warmup, Duration::from_secs(60));
        assert_eq!(config.timeout, Duration::from_millis(250));
        assert_eq!(config.size(), 4096);
        assert_eq!(config.percentiles, vec![50.0, 99.99]);
        assert_eq!(config.interval, Duration::from_millis(250));
        // -n alone has no time limit; with -d both hold.
        let config = parse(&["-n", "1000", "127.0.0.1:1"]).unwrap();
        assert_eq!((config.messages, config.duration), (Some(1000), None));
        let config = parse(&["-n", "5", "-d", "2m", "127.0.0.1:1"]).unwrap();
        assert_eq!(config.duration, Some(Duration::from_secs(120)));
    }

    #[test]
    fn a_payload_file_gives_the_payloads() {
        let path = std::env::temp_dir().join(format!("echoloop-payload-{}", std::process::id()));
        std::fs::write(&path, "alpha\nbeta\n").unwrap();
        let file = path.to_str().unwrap();
        let lines = parse(&["--payload-file", file, "--framing", "line", "127.0.0.1:1"]).unwrap();
        let whole = parse(&["--payload-file", file, "127.0.0.1:1"]).unwrap();
        let _ = std::fs::remove_file(&path);
        let given = |p: Payloads| match p {
            Payloads::Given(given) => given.as_ref().clone(),
            Payloads::Generated { .. } => panic!("generated"),
        };
        assert_eq!(
            given(lines.payloads),
            vec![b"alpha".to_vec(), b"beta".to_vec()]
        );
        assert_eq!(given(whole.payloads), vec![b"alpha\nbeta\n".to_vec()]);
    }

    #[test]
    fn contradictions_are_refused() {
        for bad in [
            &["--protocol", "timestamp", "--pipeline", "2", "127.0.0.1:1"][..],
            &["--udp", "unix:/tmp/x"],
            &["--source-addrs", "::1", "127.0.0.1:1"],
            &["-d", "0", "127.0.0.1:1"],
            &["-d", "-1s", "127.0.0.1:1"],
            &["-d", "soon", "127.0.0.1:1"],
            &["--percentiles", "100", "127.0.0.1:1"],
            &["--max-loss", "101", "127.0.0.1:1"],
            &["--udp", "--protocol", "discard", "127.0.0.1:1"],
            &["--payload-file", "/nonexistent/echoloop", "127.0.0.1:1"],
            &["-s", "4K", "--payload-file", "/etc/hostname", "127.0.0.1:1"],
            &["--rate", "-5", "127.0.0.1:1"],
            &["-c", "0", "127.0.0.1:1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
