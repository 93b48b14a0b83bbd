//! `echoloop load` on the command line, parsed with clap into a [`LoadConfig`].
//!
//! Only this file knows about clap; the library takes a [`LoadConfig`]. What clap cannot check
//! alone (a timestamp reply in raw framing, `--udp` towards a Unix socket, source addresses of the
//! wrong family) is checked by [`LoadArgs::into_config`], which answers with the one line that
//! `main.rs` prints before exiting with code 2.
//!
//! Next: `docs/LOAD.md`, for how to use all this.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse_address;
use crate::clients::load::{LoadConfig, ReplyKind, Target, parse_source_addrs};
use crate::net::address::Address;
use crate::protocol::framing::FramingKind;

/// Largest UDP payload over IPv4.
const MAX_DATAGRAM_PAYLOAD: u64 = 65_507;

/// `echoloop load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    #[allow(rustdoc::broken_intra_doc_links)] // `[V6]` is clap help text, not a link
    /// The server: HOST:PORT, [V6]:PORT or unix:/path (with --udp: HOST:PORT)
    #[arg(value_name = "ADDR", value_parser = parse_address)]
    pub addr: Address,
    /// Send datagrams to a UDP server instead (one message per datagram)
    #[arg(long)]
    pub udp: bool,
    /// Connections (UDP: sockets) over all threads
    #[arg(short = 'c', long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub connections: u64,
    /// Measured seconds, after connecting and warmup (fractions allowed: 0.5)
    #[arg(short = 'd', long, default_value = "10", value_name = "SECS", value_parser = parse_positive_secs)]
    pub duration: Duration,
    /// Seconds of traffic before the measurement starts
    #[arg(long, default_value = "0", value_name = "SECS", value_parser = parse_secs)]
    pub warmup: Duration,
    /// Payload bytes per message
    #[arg(short = 's', long, default_value_t = 64, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..=16 * 1024 * 1024))]
    pub size: u64,
    /// Messages in flight per connection
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub pipeline: u64,
    /// Total messages per second over all connections: open loop (latency from intended send time)
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// New connections per second (ramp-up)
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub connect_rate: Option<f64>,
    /// Client reactors, one thread each [default: number of cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,
    /// How requests are framed and replies cut [default: echo raw, timestamp line]
    #[arg(long, value_enum, value_name = "F")]
    pub framing: Option<FramingKind>,
    /// What a correct reply looks like
    #[arg(long, value_enum, default_value = "echo", value_name = "NAME")]
    pub protocol: ReplyKind,
    /// Local addresses to spread connections over: 127.0.0.1-127.0.0.16, or a comma list
    #[arg(long, value_name = "ADDRS")]
    pub source_addrs: Option<String>,
    /// Print one JSON object on stdout instead of the summary
    #[arg(long)]
    pub json: bool,
    /// Write the latency percentile distribution (HdrHistogram text, µs) to FILE
    #[arg(long, value_name = "FILE")]
    pub histogram: Option<PathBuf>,
    /// Open the connections, keep them idle for -d seconds, report how many are up
    #[arg(long)]
    pub hold: bool,
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{text}' is not a number of seconds"))
}

fn parse_positive_secs(text: &str) -> Result<Duration, String> {
    match parse_secs(text)? {
        Duration::ZERO => Err("must be more than 0 seconds".into()),
        secs => Ok(secs),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("'{text}' is not a positive rate")),
    }
}

impl LoadArgs {
    /// The config these arguments describe, or the one line saying what is wrong with them.
    pub fn into_config(self) -> Result<LoadConfig, String> {
        let target = match (self.udp, self.addr) {
            (false, address) => Target::Stream(address),
            (true, Address::Tcp(addr)) => Target::Datagram(addr),
            (true, Address::Unix(_)) => return Err("--udp needs HOST:PORT, not unix:".into()),
        };
        let framing = self.framing.unwrap_or(match self.protocol {
            ReplyKind::Echo => FramingKind::Raw,
            ReplyKind::Timestamp => FramingKind::Line,
        });
        if self.protocol == ReplyKind::Timestamp && framing == FramingKind::Raw && !self.udp {
            return Err(
                "--protocol timestamp needs --framing line or length (in raw framing replies cannot be told apart)"
                    .into(),
            );
        }
        if self.udp && self.size > MAX_DATAGRAM_PAYLOAD {
            return Err(format!(
                "--size {} is more than a datagram holds ({MAX_DATAGRAM_PAYLOAD})",
                self.size
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
            Target::Stream(Address::Tcp(addr)) | Target::Datagram(addr)
                if source_addrs.iter().any(|ip| ip.is_ipv4() != addr.is_ipv4()) =>
            {
                return Err(format!(
                    "--source-addrs must be of the same family as {addr}"
                ));
            }
            _ => {}
        }
        let threads = self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n as usize,
        );
        Ok(LoadConfig {
            target,
            connections: self.connections as usize,
            duration: self.duration,
            warmup: self.warmup,
            size: self.size as usize,
            pipeline: self.pipeline as usize,
            rate: self.rate,
            connect_rate: self.connect_rate,
            threads,
            framing,
            reply: self.protocol,
            source_addrs,
            hold: self.hold,
            live: true,
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
        assert_eq!(config.duration, Duration::from_secs(10));
        assert_eq!(config.size, 64);
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
        assert_eq!(config.duration, Duration::from_millis(500));
        assert_eq!(config.framing, FramingKind::Line);
        assert_eq!(config.source_addrs.len(), 4);
    }

    #[test]
    fn contradictions_are_refused() {
        for bad in [
            &["--protocol", "timestamp", "--framing", "raw", "127.0.0.1:1"][..],
            &["--udp", "unix:/tmp/x"],
            &["--source-addrs", "::1", "127.0.0.1:1"],
            &["-d", "0", "127.0.0.1:1"],
            &["--rate", "-5", "127.0.0.1:1"],
            &["-c", "0", "127.0.0.1:1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
