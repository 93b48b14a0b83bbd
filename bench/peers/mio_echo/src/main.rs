//! A minimal mio echo server, echoloop's mio reference peer (scripts/bench.sh): what echoloop
//! would be without its protocols, limits and bookkeeping, on the same library.
//!
//! One thread, one `Poll`, one shared 64 KiB read buffer. Each readable connection is read until
//! `WouldBlock` and every read is written back at once; only bytes the kernel refuses are kept,
//! per connection, and while any are kept the connection is not read (its client's TCP window
//! slows it down) and is registered for `WRITABLE` as well.
//!
//! usage:  mio_echo PORT        (0 picks a free port; 127.0.0.1, the listener's backlog 4096)
//! stdout: listening tcp 127.0.0.1:PORT             stop: SIGTERM

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{Domain, Socket, Type};

const LISTENER: Token = Token(usize::MAX);
const READ_BUFFER_BYTES: usize = 64 * 1024;

struct Connection {
    stream: TcpStream,
    /// Bytes the kernel refused, to be written before anything more is read.
    owed: Vec<u8>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(port) = args
        .first()
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|_| args.len() == 1)
    else {
        eprintln!("usage: mio_echo PORT");
        return ExitCode::from(2);
    };
    match serve(port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mio_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(port: u16) -> io::Result<()> {
    // mio's own `TcpListener::bind` listens with a backlog of 1024: 4096, as every peer.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(socket.into());
    println!("listening tcp {}", listener.local_addr()?);

    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut connections: Slab<Connection> = Slab::new();
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut connections);
                continue;
            }
            let id = event.token().0;
            let Some(connection) = connections.get_mut(id) else {
                continue;
            };
            if !pump(connection, &mut buf, &poll, Token(id)) {
                let mut gone = connections.remove(id);
                let _ = poll.registry().deregister(&mut gone.stream);
            }
        }
    }
}

fn accept_all(listener: &TcpListener, poll: &Poll, connections: &mut Slab<Connection>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = connections.vacant_entry();
                let token = Token(entry.key());
                if poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE)
                    .is_ok()
                {
                    entry.insert(Connection {
                        stream,
                        owed: Vec::new(),
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // WouldBlock: all taken. Anything else (out of descriptors): the next event retries.
            Err(_) => return,
        }
    }
}

/// Writes what is owed, then reads and echoes until `WouldBlock`. `false`: close it.
fn pump(connection: &mut Connection, buf: &mut [u8], poll: &Poll, token: Token) -> bool {
    let was_owing = !connection.owed.is_empty();
    let result = (|| -> io::Result<bool> {
        while !connection.owed.is_empty() {
            match connection.stream.write(&connection.owed) {
                Ok(n) => {
                    connection.owed.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            let n = match connection.stream.read(buf) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut written = 0;
            while written < n {
                match connection.stream.write(&buf[written..n]) {
                    Ok(k) => written += k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        connection.owed.extend_from_slice(&buf[written..n]);
                        return Ok(true);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    })();
    match result {
        Ok(true) => {
            let owing = !connection.owed.is_empty();
            if owing != was_owing {
                let interest = if owing {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                return poll
                    .registry()
                    .reregister(&mut connection.stream, token, interest)
                    .is_ok();
            }
            true
        }
        Ok(false) | Err(_) => false,
    }
}
