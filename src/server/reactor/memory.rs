//! The memory cap: `--max-memory` over every connection's buffers, per reactor.
//!
//! Each connection's limits bound what *one* client can make us hold (`--queue-limit`, one read
//! held back, one unfinished frame). Ten thousand clients each within their limits can still hold
//! gigabytes, so the reactor also keeps one total ([`MemoryMeter`](crate::net::memory)): every
//! connection's queue, held input and unfinished frame, counted by capacity, and bytes shared by
//! many queues (a chat line) counted once. A TLS client's session adds what rustls holds for it
//! (`net/tls/session.rs`: its state, and a record or the handshake so far), and its queue holds
//! ciphertext; a client still sending its PROXY header adds what it sent of it. Each
//! connection's share is brought up to date in `settle`, after everything that can change it,
//! so the total is always current.
//!
//! Over the cap an *episode* begins (logged once at warn, counted in
//! `echoloop_memory_episodes_total`), and until the total is back under nine tenths of the cap:
//!
//! - a client whose queue holds more than a client that keeps up would (16 KiB: its replies are
//!   not being read) is not read and its waiting input not answered, exactly as backpressure
//!   does; so the clients holding the most stop, and those that keep up (an interactive client
//!   whose queue is empty) are still served. Only the queue is judged: held input and an
//!   unfinished frame shrink only by being answered, so holding a client back for them would
//!   hold it for good. A protocol that drops slow readers (chat) drops such a client instead. A
//!   client held back is served again once its reader has caught up (8 KiB or less queued), or
//!   when the episode ends.
//! - new connections are accepted only to be told `error: server busy` and closed.
//!
//! The total can pass the cap by what each client still being read adds before its next check:
//! one read (32 KiB) and its replies, plus its unfinished frame (up to `--max-frame`), since a read is answered frame by frame and stops at the
//! queue limit. A share of the cap per client would not bound the total: clients that grew past
//! their share before the episode began, and are not read since, keep what they hold, and the
//! others could each still grow to their share.
//!
//! Next: `sockets.rs`.

use log::{info, warn};

/// What a client that keeps up with its replies holds at most, about: its queue is written as
/// fast as it is filled. Over the cap, a client holding more is not read.
const KEEPING_UP_BYTES: usize = 16 * 1024;

use super::Reactor;
use crate::protocol::{CloseReason, SlowReader};

impl Reactor {
    /// Brings client `id`'s share of the total up to date and, during an episode, holds it back
    /// (or drops it) if it holds more than a client that keeps up. Called from every `settle`: in the
    /// usual case (nothing changed, no episode) it costs a few comparisons.
    #[inline]
    pub(super) fn account_memory(&mut self, id: usize) {
        let Some(client) = self.clients.slab.get_mut(id) else {
            return;
        };
        let besides_conn = client.tls.as_ref().map_or(0, |tls| tls.memory())
            + client.header.as_ref().map_or(0, |header| header.memory());
        let conn = &mut client.conn;
        let now_held = conn.memory() + besides_conn;
        if now_held == conn.memory_counted && !self.memory.over {
            return;
        }
        self.memory.meter.recount(conn.memory_counted, now_held);
        conn.memory_counted = now_held;
        let total = self.memory.meter.total();
        self.report.stats[0].note_memory(total);
        if total > self.memory.cap && !self.memory.over {
            self.begin_memory_episode(total);
        }
        if self.memory.over {
            self.hold_back_if_big(id, total);
        }
    }

    /// During an episode: holds client `id` back (or drops it, for chat) if it holds more than a
    /// client that keeps up would while the total is over the cap; serves it again once its
    /// reader has caught up.
    fn hold_back_if_big(&mut self, id: usize, total: usize) {
        let Some(client) = self.clients.slab.get_mut(id) else {
            return;
        };
        let conn = &mut client.conn;
        if conn.is_closed() {
            return;
        }
        // Judged on its queue alone: the part its reader can drain. Its held input and its
        // unfinished frame shrink only by being answered, which holding it back would prevent.
        let holding = conn.outbound.footprint();
        if conn.holds.memory {
            // Its reader caught up: it holds little now, so it is served again even while
            // others keep the total high (they are the ones held back).
            if holding <= KEEPING_UP_BYTES / 2 {
                conn.holds.memory = false;
                self.clients.still_ready.push(id);
            }
            return;
        }
        if total <= self.memory.cap || holding <= KEEPING_UP_BYTES {
            return;
        }
        match client.policy.slow_reader {
            SlowReader::Drop => {
                warn!(
                    "client {id} dropped: it holds {holding} bytes with the reactor over --max-memory"
                );
                conn.abort(CloseReason::MemoryLimit);
            }
            SlowReader::PauseReading => {
                conn.holds.memory = true;
                // Listed once per episode, however often it is held and released in it.
                if !conn.listed_in_memory_episode {
                    conn.listed_in_memory_episode = true;
                    self.memory.held.push(id);
                }
            }
        }
    }

    /// Ends an episode once the total is back under nine tenths of the cap: the clients held back
    /// are served again (their held input answered, their sockets read). Called every turn.
    pub(super) fn end_memory_episode_if_under(&mut self) {
        let memory = &mut self.memory;
        if !memory.over {
            return;
        }
        let total = memory.meter.total();
        self.report.stats[0].note_memory(total);
        if total > memory.cap / 10 * 9 {
            return;
        }
        memory.over = false;
        info!(
            "{}back under --max-memory ({total} bytes held): serving every client again",
            self.report.name
        );
        for id in std::mem::take(&mut memory.held) {
            if let Some(client) = self.clients.slab.get_mut(id) {
                client.conn.listed_in_memory_episode = false;
                if client.conn.holds.memory {
                    client.conn.holds.memory = false;
                    self.clients.still_ready.push(id);
                }
            }
        }
    }

    /// Bytes shared with other clients were just queued (a broadcast): they change the total
    /// without changing any client's own share, so the cap is checked here too.
    pub(super) fn after_shared_bytes(&mut self) {
        let total = self.memory.meter.total();
        self.report.stats[0].note_memory(total);
        if total > self.memory.cap && !self.memory.over {
            self.begin_memory_episode(total);
        }
    }

    /// Over the cap: an episode begins (logged once, counted once).
    fn begin_memory_episode(&mut self, total: usize) {
        let memory = &mut self.memory;
        memory.over = true;
        self.report.stats[0].memory_episodes.add(1);
        warn!(
            "{}over --max-memory ({total} bytes held, cap {}): holding back the biggest \
             clients and refusing new ones until under {}",
            self.report.name,
            memory.cap,
            memory.cap / 10 * 9
        );
    }

    /// Whether new connections are to be turned away (`error: server busy`): an episode is on.
    pub(super) fn over_memory(&self) -> bool {
        self.memory.over
    }
}
