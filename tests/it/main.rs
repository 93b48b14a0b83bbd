//! echoloop's integration tests: one test binary, one module per feature.
//!
//! Each module drives a real server over real sockets: most run the reactor in-process with
//! [`common::serve`] on `127.0.0.1:0`; the ones about the command line run the `echoloop` binary
//! (`env!("CARGO_BIN_EXE_echoloop")`) and read its `listening` lines. Tests wait for outcomes
//! (bytes, EOF, counters) under generous timeouts ([`common::PATIENCE`]).
//!
//! One binary means one link, not twenty-eight, and one process: the tests run on parallel threads of
//! it, so no test changes process-wide state (the environment, the current directory, signal
//! dispositions, rlimits). A child process gets its own through `Command::env`,
//! `Command::current_dir` or `pre_exec`. Temporary paths carry their module's name as well as
//! the process id, which every module now shares. (The library itself changes one thing: an
//! in-process files server ignores SIGXFSZ, for the whole process and the children it starts
//! afterwards. No test relies on its default.)
//!
//! A test that needs a program that may be missing (`systemd-socket-activate`, `promtool`,
//! `haproxy`, `python3`: found with [`common::tool`]) or root is `#[ignore = "needs ..."]`, so
//! `cargo test` lists it as ignored instead of passing it untested. CI installs the programs and
//! runs, as root, `cargo test -- --include-ignored`: each of those tests then fails, never
//! passes, without what it needs. `cargo test --test it udp::` runs one module.
//!
//! - [`common`]: the in-process server, blocking clients with timeouts, waiting for counters,
//!   the `echoloop` binary as a daemon, its descriptor count, the programs some tests need.
//!
//! The services, over TCP:
//! - [`echo`]: byte-exact for any payload, each of 500 concurrent clients gets its own stream.
//! - [`timestamp`]: `[<ctime>] <message>`: raw (the default, one per read), line, length framing.
//! - [`services`]: daytime, time, discard and chargen; chargen produces only as fast as it is read.
//! - [`inetd`]: several services in one process (`-l PROTOCOL@ADDR`), each counted apart; flags
//!   no configured service uses refused.
//! - [`chat`]: joins, leaves, broadcast order, commands, a slow reader dropped, a fast one kept.
//! - [`files`]: uploads and downloads with resume, hostile names, quotas, a full disk, the
//!   `put`/`get` clients.
//! - [`files_resume`]: resume across a restart, uploads nobody else can take over, digests
//!   checked before publishing, `--max-files`, reservations, links planted in the folder.
//! - [`custom`]: a protocol from outside the crate: sessions, shared state per worker, replies
//!   from `on_drained`, and the GUIDE's example.
//! - [`offloop`]: work on a protocol's own thread, reported through the reactor's waker; the
//!   client's input paused meanwhile and answered in order afterwards.
//! - [`greeting`]: `--greeting` comes before anything else, over TCP and Unix.
//!
//! Bytes on the wire, and how connections end:
//! - [`framing`]: split and merged lines, `\r\n`, `--max-frame`, length-prefixed frames.
//! - [`backpressure`]: a client that never reads is paused, with bounded memory.
//! - [`bounded`]: a read full of costly requests is answered while the queue has room; the
//!   reactor stays under `--max-memory` with a hundred clients that do not read.
//! - [`half_close_refill`]: a FIN right after the request still gets the whole answer.
//! - [`lifecycle`]: half-close, reset, refusal at `--max-connections`.
//! - [`idle`]: `--idle-timeout` closes the silent and spares the active.
//! - [`faults`]: resets, garbage and bad frames stay on their connection; the counters add up.
//! - [`poll_backend`]: what stalled the server on mio's `poll(2)` backend (answered once, lost
//!   stop requests); `.ci/run` runs it on that build too.
//!
//! Transports:
//! - [`unix`]: every protocol over a Unix socket, and the socket file's life.
//! - [`udp`]: every protocol over UDP, the loop-port rule, datagrams over `--max-frame`.
//! - [`tls`]: `-l tls:ADDR` (feature `tls`): echo byte-exact (rustls, Python, `openssl s_client`),
//!   many records in one segment, close_notify, failed and slow handshakes counted, client
//!   certificates, chat and files, the limits on ciphertext, PROXY v2 first, bad files at start,
//!   SIGHUP rotation.
//! - [`sources`]: `--allow`/`--deny`, `--trusted`, per-source limits, the UDP rate limit and
//!   reflection guard (forged datagrams from a raw socket, root only).
//!
//! Many clients, few descriptors, stopping:
//! - [`workers`]: `--workers 2` share one port, and each worker serves some of the clients.
//! - [`churn`]: thousands of short connections leave the descriptor count at baseline.
//! - [`exhaustion`]: past `RLIMIT_NOFILE`, connections are shed cheaply and service resumes.
//! - [`threaded`]: `--model threaded`, the same protocols and limits with a thread per client.
//! - [`shutdown`]: stop accepting, deliver what is queued, exit 0; a deadline for stubborn clients.
//!
//! Running it:
//! - [`cli`]: exit codes, one-line errors, the `listening` lines.
//! - [`client`]: `echoloop client` with stdin piped.
//! - [`load`]: `echoloop load` catches corrupting and stalling servers; never asserts throughput.
//! - [`tls_clients`]: `client`, `load`, `put` and `get` over `tls:`: trust, refusals, handshake
//!   counts and resumption, byte-exact transfers, usage errors.
//! - [`metrics`]: `--metrics` counts what clients did and passes `promtool`.
//! - [`activation`]: inherited sockets from `systemd-socket-activate`, and `sd_notify`.
//! - [`haproxy`]: HAProxy in front of two instances routes around a stopped one.
//! - [`compat`]: the tutorial Python clients, unchanged.
//! - [`manpage`]: the committed man pages and completions are current.
//!
//! The code itself:
//! - [`layout`]: the layers of `src/` import only downwards, and no two files import each other.
//! - [`docs`]: every path README.md and docs/*.md mention exists; the README's `serve` table
//!   matches clap; no tracked file holds a conflict marker.
//! - [`doc_blocks`]: the shell examples of the docs are run and print what they show, or are
//!   marked illustrative.
//! - [`scripts`]: the attack script and its Python driver parse.

mod common;

mod chat;
mod custom;
mod echo;
mod files;
mod files_resume;
mod greeting;
mod inetd;
mod offloop;
mod services;
mod timestamp;

mod backpressure;
mod bounded;
mod faults;
mod framing;
mod half_close_refill;
mod idle;
mod lifecycle;
mod poll_backend;

mod proxy_protocol;
mod sources;
#[cfg(feature = "tls")]
mod tls;
mod udp;
mod unix;

mod churn;
mod exhaustion;
mod shutdown;
mod threaded;
mod workers;

mod activation;
mod cli;
mod client;
mod compat;
mod haproxy;
mod load;
mod load_honesty;
mod load_outputs;
mod manpage;
mod metrics;
#[cfg(feature = "tls")]
mod tls_clients;

#[cfg(target_os = "linux")] // its runner reads /proc
mod doc_blocks;
mod docs;
mod layout;
mod scripts;
