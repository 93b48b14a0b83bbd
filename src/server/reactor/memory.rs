//! The memory cap: `--max-memory` over every connection's buffers, per reactor.
//!
//! Each connection's limits bound what *one* client can make us hold (`--queue-limit`, one read
//! held back, one unfinished frame). Ten thousand clients each within their limits can still hold
//! gigabytes, so the reactor also keeps one total ([`MemoryMeter`](crate::net::memory)): every
//! connection's queue, held input and unfinished frame, counted by capacity, and bytes shared by
//! many queues (a chat line) counted once. Each connection's share is brought up to date in
//! `settle`, after everything that can change it, so the total is always current.
//!
//! Over the cap an *episode* begins (logged once at warn, counted in
//! `echoloop_memory_episodes_total`), and until the total is back under nine tenths of the cap:
//!
//! - a client holding more than its fair share (the cap divided by the clients connected) is
//!   held back: not read, its waiting input not answered, exactly as backpressure does; so the
//!   clients holding the most stop first, and those holding little are still served. A protocol
//!   that drops slow readers (chat) drops such a client instead: the slowest members go first.
//! - new connections are accepted only to be told `error: server busy` and closed.
//!
//! The total can pass the cap by what the clients still being read add before they reach their
//! fair share: at most one read (32 KiB) and its replies each, since a read is answered frame
//! by frame and stops at the queue limit.
//!
//! Next: `sockets.rs`.

use log::{info, warn};

use super::Reactor;
use crate::protocol::{CloseReason, SlowReader};

impl Reactor {
    /// Brings client `id`'s share of the total up to date and, during an episode, holds it back
    /// (or drops it) if it holds more than its fair share. Called from `settle`.
    #[inline]
    pub(super) fn account_memory(&mut self, id: usize) {
        let memory = &mut self.memory;
        let connected = self.clients.slab.len().max(1);
        let Some(client) = self.clients.slab.get_mut(id) else {
            return;
        };
        let conn = &mut client.conn;
        let now_held = conn.memory();
        if now_held != conn.memory_counted {
            memory.meter.recount(conn.memory_counted, now_held);
            conn.memory_counted = now_held;
        }
        // Shared bytes (a broadcast) change the total without changing this client's share.
        let total = memory.meter.total();
        self.report.stats.note_memory(total);
        if total <= memory.cap {
            return;
        }
        if !memory.over {
            memory.over = true;
            self.report.stats.memory_episodes.add(1);
            warn!(
                "{}over --max-memory ({total} bytes held, cap {}): holding back the biggest \
                 clients and refusing new ones until under {}",
                self.report.name,
                memory.cap,
                memory.cap / 10 * 9
            );
        }
        let fair_share = memory.cap / connected;
        let holding =
            conn.outbound.footprint() + conn.held.capacity() + conn.decoder.buffered_capacity();
        if holding <= fair_share || conn.holds.memory || conn.is_closed() {
            return;
        }
        match self.settings.policy.slow_reader {
            SlowReader::Drop => {
                warn!(
                    "client {id} dropped: it holds {holding} bytes with the reactor over --max-memory"
                );
                conn.abort(CloseReason::MemoryLimit);
            }
            SlowReader::PauseReading => {
                conn.holds.memory = true;
                memory.held.push(id);
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
        self.report.stats.note_memory(total);
        if total > memory.cap / 10 * 9 {
            return;
        }
        memory.over = false;
        info!(
            "{}back under --max-memory ({total} bytes held): serving every client again",
            self.report.name
        );
        for id in std::mem::take(&mut memory.held) {
            if let Some(client) = self.clients.slab.get_mut(id)
                && client.conn.holds.memory
            {
                client.conn.holds.memory = false;
                self.clients.still_ready.push(id);
            }
        }
    }

    /// Whether new connections are to be turned away (`error: server busy`): an episode is on.
    pub(super) fn over_memory(&self) -> bool {
        self.memory.over
    }
}
