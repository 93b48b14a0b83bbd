//! A protocol of your own: the tutorial server that answers every message with the message and
//! a suffix (`hello` → `hello (seen by echoloop)`).
//!
//! A protocol is a value that implements [`Protocol`]: frames in, replies out. Hand the server a
//! [`ProtocolFactory`] that makes one, and the reactor does the rest: accepting, reading, framing,
//! short writes, slow readers. This example starts the server on `127.0.0.1:0`, talks to it as a
//! client, prints the replies and stops the server:
//!
//! ```text
//! cargo run --example suffix
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use echoloop::{
    ClientId, Frame, FramingKind, Protocol, ProtocolFactory, Replies, ServeConfig, Server,
};

/// Answers each message with itself and a suffix.
struct Suffix {
    suffix: &'static [u8],
}

impl Protocol for Suffix {
    /// Nothing is kept per client.
    type Session = ();
    /// The name the server's log gives it.
    const NAME: &'static str = "suffix";
    /// Lines: the message ends at `\n`, and so does the answer.
    const FRAMING: FramingKind = FramingKind::Line;

    fn on_connect(&mut self, _client: ClientId, _now: SystemTime, _out: &mut Replies) {}

    fn on_frame(&mut self, _: &mut (), frame: Frame<'_>, _now: SystemTime, out: &mut Replies) {
        // `send_frame` frames the answer as the client frames its messages: a line here.
        out.send_frame(&[frame.payload, self.suffix]);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServeConfig {
        protocol: ProtocolFactory::new(|| Suffix {
            suffix: b" (seen by echoloop)",
        })
        .into(),
        ..ServeConfig::for_tests() // 127.0.0.1:0, no signal handlers
    };
    let server = Server::bind(&config)?.spawn()?;
    println!("listening on {}", server.addr());

    let mut client = TcpStream::connect(server.addr())?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut replies = BufReader::new(client.try_clone()?);
    for message in ["hello", "how are you?"] {
        client.write_all(format!("{message}\n").as_bytes())?;
        let mut reply = String::new();
        replies.read_line(&mut reply)?;
        println!("sent {message:?}, got {:?}", reply.trim_end());
    }
    drop(replies);
    drop(client);
    server.stop()?; // the same drain as SIGTERM
    println!("stopped");
    Ok(())
}
