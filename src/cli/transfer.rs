//! `echoloop put` and `echoloop get`: the file transfer clients' arguments.

use std::path::PathBuf;

use clap::Args;

use super::client::TlsArgs;
use super::parse_address;
use crate::clients::transfer::{GetConfig, PutConfig};
use crate::net::address::Address;

/// `echoloop put`.
#[allow(rustdoc::broken_intra_doc_links)] // `[V6]` is clap help text, not a link
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The server: HOST:PORT, [V6]:PORT, unix:/path or tls:HOST:PORT
    #[arg(value_name = "ADDR", value_parser = parse_address)]
    pub addr: Address,
    /// Whom to trust over TLS
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The local file to upload
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The name on the server [default: FILE's own name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Reconnect this many times after a dropped connection (or `error: busy`)
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: u32,
}

/// `echoloop get`.
#[allow(rustdoc::broken_intra_doc_links)] // `[V6]` is clap help text, not a link
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The server: HOST:PORT, [V6]:PORT, unix:/path or tls:HOST:PORT
    #[arg(value_name = "ADDR", value_parser = parse_address)]
    pub addr: Address,
    /// Whom to trust over TLS
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The file's name on the server
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to write it [default: NAME in the current folder]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Reconnect this many times after a dropped connection
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: u32,
}

impl PutArgs {
    /// The config these arguments describe.
    pub fn into_config(self) -> PutConfig {
        PutConfig {
            tls: self.tls.options(false),
            addr: self.addr,
            file: self.file,
            name: self.name,
            retries: self.retries,
        }
    }
}

impl GetArgs {
    /// The config these arguments describe.
    pub fn into_config(self) -> GetConfig {
        GetConfig {
            tls: self.tls.options(false),
            addr: self.addr,
            name: self.name,
            output: self.output,
            retries: self.retries,
        }
    }
}
