//! `echoloop client`: the interactive client's arguments, and the TLS flags every client takes.

use std::path::PathBuf;

use clap::Args;

use super::parse_address;
use crate::clients::interactive::ClientConfig;
use crate::clients::tls::TlsOptions;
use crate::net::address::Address;

/// `echoloop client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Send each stdin line as one UDP datagram (without its newline)
    #[arg(long)]
    pub udp: bool,
    /// Whom to trust over TLS
    #[command(flatten)]
    pub tls: TlsArgs,
    #[allow(rustdoc::broken_intra_doc_links)] // `[V6]` is clap help text, not a link
    /// The server: HOST:PORT, [V6]:PORT, unix:/path or tls:HOST:PORT
    #[arg(value_name = "ADDR", value_parser = parse_address)]
    pub addr: Address,
}

/// `--tls-ca` and `--insecure`: the same two flags on `client`, `load`, `put` and `get`.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// tls: trust the certificates in this PEM file instead of the system's roots
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// tls: accept any server certificate (test certificates; the server is not authenticated)
    #[arg(long, conflicts_with = "tls_ca")]
    pub insecure: bool,
}

impl TlsArgs {
    /// The options these flags give (`resume`: `load --tls-resume`).
    pub fn options(&self, resume: bool) -> TlsOptions {
        TlsOptions {
            ca: self.tls_ca.clone(),
            insecure: self.insecure,
            resume,
        }
    }
}

impl ClientArgs {
    /// The config these arguments describe. TLS flags are checked against the address when the
    /// client starts (`TlsOptions::check`).
    pub fn into_config(self) -> ClientConfig {
        ClientConfig {
            tls: self.tls.options(false),
            addr: self.addr,
            udp: self.udp,
        }
    }
}
