//! `echoloop client`: the interactive client's arguments.

use clap::Args;

use super::parse_address;
use crate::clients::interactive::ClientConfig;
use crate::net::address::Address;

/// `echoloop client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Send each stdin line as one UDP datagram (without its newline)
    #[arg(long)]
    pub udp: bool,
    #[allow(rustdoc::broken_intra_doc_links)] // `[V6]` is clap help text, not a link
    /// The server: HOST:PORT, [V6]:PORT or unix:/path
    #[arg(value_name = "ADDR", value_parser = parse_address)]
    pub addr: Address,
}

impl ClientArgs {
    /// The config these arguments describe.
    pub fn into_config(self) -> ClientConfig {
        ClientConfig {
            addr: self.addr,
            udp: self.udp,
        }
    }
}
