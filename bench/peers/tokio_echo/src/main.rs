//! The idiomatic tokio echo server, echoloop's tokio reference peer (scripts/bench.sh, pairs.sh).
//!
//! A task per connection, each with its own 16 KiB buffer: `read`, then `write_all` what was
//! read, until the client closes. The `current_thread` runtime by default, the fair match for
//! one echoloop reactor; `--multi-thread [N]` for tokio's work-stealing runtime with N workers
//! (default: one per core).
//!
//! usage:  tokio_echo PORT [--multi-thread [N]]     (0 picks a free port; 127.0.0.1, backlog 4096)
//! stdout: listening tcp 127.0.0.1:PORT             stop: SIGTERM

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const BUFFER_BYTES: usize = 16 * 1024;

fn main() -> ExitCode {
    let Some((port, workers)) = parse(std::env::args().skip(1).collect()) else {
        eprintln!("usage: tokio_echo PORT [--multi-thread [N]]");
        return ExitCode::from(2);
    };
    let runtime = match workers {
        None => tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = n {
                builder.worker_threads(n);
            }
            builder.enable_io().enable_time().build()
        }
    };
    match runtime.and_then(|runtime| runtime.block_on(serve(port))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `PORT [--multi-thread [N]]`: the port, and `None` for current_thread or `Some(workers)`.
fn parse(args: Vec<String>) -> Option<(u16, Option<Option<usize>>)> {
    let port = args.first()?.parse().ok()?;
    match args.get(1).map(String::as_str) {
        None => Some((port, None)),
        Some("--multi-thread") => match args.get(2) {
            None => Some((port, Some(None))),
            Some(n) if args.len() == 3 => {
                Some((port, Some(Some(n.parse().ok().filter(|&n| n > 0)?))))
            }
            Some(_) => None,
        },
        Some(_) => None,
    }
}

async fn serve(port: u16) -> io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    let listener: TcpListener = socket.listen(4096)?;
    println!("listening tcp {}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(echo(stream));
            }
            // Out of descriptors and the like: the connection waits in the backlog; try again
            // shortly rather than spin.
            Err(e) => {
                eprintln!("tokio_echo: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; BUFFER_BYTES];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
