//! The end of each turn: timers that came due, shared bytes flushed, closed clients freed.
//!
//! Closing waits for the end of the turn on purpose: a handler only *marks* a client closed, and
//! the slot is freed here, after the whole batch of events. An event later in the same batch may
//! name a client that closed earlier in it; it then finds the client marked (and is ignored), never
//! a slot already given to someone new. A client that leaves may make the protocol speak to the
//! others (chat's `* alice left`), which may close more (a slow reader dropped), so `tidy` goes
//! round until nothing is left to do.
//!
//! Next: `shutdown.rs`.

use std::time::Instant;

use log::debug;

use super::{Phase, Reactor};
use crate::protocol::CloseReason;
use crate::server::connection::Expiry;
use crate::server::stats::{HeaderRefusal, TlsFailure};
use crate::server::timers::TimerEntry;

impl Reactor {
    /// Expires idle and lingering connections, retries accepting, logs periodic stats, runs the
    /// watchdog's check, and ends a drain that ran out of time.
    pub(super) fn run_timers(&mut self) {
        let now = Instant::now();
        self.clock.now = now;
        while let Some(entry) = self.clock.timers.pop_due(now) {
            self.on_timer(entry);
        }
        if self.accepting.retry_at.is_some_and(|at| at <= now) {
            self.accepting.retry_at = None;
            for index in 0..self.sockets.listeners.len() {
                self.drain_accepts(index);
            }
        }
        if let Some(at) = self.clock.next_stats_at
            && at <= now
        {
            self.log_stats();
            self.clock.next_stats_at = self.settings.stats_interval.map(|every| now + every);
        }
        if let Some(watchdog) = &mut self.clock.watchdog
            && watchdog.next_check() <= now
        {
            watchdog.check(now);
        }
        if let Phase::Draining { deadline } = self.phase
            && deadline <= now
        {
            self.abandon_remaining();
        }
    }

    /// A timer entry came due: expire its connection, or schedule it again if it was active.
    fn on_timer(&mut self, entry: TimerEntry) {
        let id = entry.slot;
        let Some(client) = self.clients.slab.get_mut(id) else {
            return;
        };
        let conn = &mut client.conn;
        if conn.serial != entry.serial || conn.timer_at != Some(entry.due) {
            return; // stale: the connection left, or a newer entry replaced this one
        }
        conn.timer_at = None;
        let service = client.service;
        match conn.expire(&client.policy, self.clock.now) {
            Expiry::NotYet(_) | Expiry::Closed => {} // `sync` schedules a new deadline, or closes
            // Its frame budget refilled: answer what it held back, then read on.
            Expiry::Refilled => self.clients.still_ready.push(id),
            Expiry::Idle => {
                debug!("client {id} idle: closing");
                // Finishing first: it closes as idle whatever the protocol says on the way out.
                conn.finish(CloseReason::IdleTimeout);
                let speech = &mut self.speech;
                speech.replies.reset(conn.decoder.kind());
                speech.services[service]
                    .service
                    .idle_timeout(&mut conn.session, &mut speech.replies);
                self.deliver(id, service);
            }
        }
        self.sync(id);
    }

    /// Flushes the clients given shared bytes this turn, then closes the marked ones (whose
    /// goodbyes may give others more bytes, and so on until nothing is left to do).
    pub(super) fn tidy(&mut self) {
        while !self.clients.to_flush.is_empty() || !self.clients.closing.is_empty() {
            for id in std::mem::take(&mut self.clients.to_flush) {
                if self.clients.slab.contains(id) {
                    self.flush_client(id);
                    self.sync(id);
                }
            }
            while let Some(id) = self.clients.closing.pop() {
                self.close(id);
            }
        }
    }

    /// Frees a closed client's slot and socket, counts it, and tells the protocol.
    fn close(&mut self, id: usize) {
        if !self
            .clients
            .slab
            .get(id)
            .is_some_and(|client| client.conn.is_closed())
        {
            return; // already closed (marked twice)
        }
        let client = self.clients.slab.remove(id);
        if !client.trusted {
            self.sources.closed(id); // its source may open another
        }
        let conn = client.conn;
        let reason = conn.close_reason().unwrap_or(CloseReason::IoError);
        let service = client.service;
        let counters = client.stats.stream(client.stream.transport());
        counters.count_close(reason);
        // Still owing its PROXY header (`proxied.rs`) or its TLS handshake (`tls.rs`): the
        // protocol never heard of it. Failures decided elsewhere (a broken header, a FIN, a
        // denied address, a failed handshake) were counted there; what ends it here is the
        // deadline, or a peer that reset or failed.
        let started = client.started;
        if client.header.is_some() {
            match reason {
                CloseReason::IdleTimeout => counters.count_header_refusal(HeaderRefusal::Timeout),
                CloseReason::Reset | CloseReason::IoError => {
                    counters.count_header_refusal(HeaderRefusal::Malformed)
                }
                _ => {}
            }
        } else if !started && client.tls.as_ref().is_some_and(|tls| tls.is_handshaking()) {
            match reason {
                CloseReason::IdleTimeout => counters.count_tls_failure(TlsFailure::Timeout),
                CloseReason::Reset | CloseReason::IoError | CloseReason::Shutdown => {
                    counters.count_tls_failure(TlsFailure::Closed)
                }
                _ => {}
            }
        }
        counters.queued_bytes.sub(conn.queue_counted as u64);
        if conn.memory_counted > 0 {
            self.memory.meter.sub(conn.memory_counted);
            self.report.stats[0].note_memory(self.memory.meter.total());
        }
        let (bytes_in, bytes_out) = conn.bytes();
        debug!(
            "client {id} closed: {reason} (in={bytes_in} out={bytes_out} unsent={} age={:.1}s)",
            conn.outbound.len(),
            conn.opened_at().elapsed().as_secs_f64()
        );
        drop(client.stream); // closes the socket; epoll forgets it
        self.compact_timers();
        if !started {
            return;
        }
        let speech = &mut self.speech;
        speech.replies.reset(conn.decoder.kind());
        speech.services[service]
            .service
            .disconnect(conn.session, reason, &mut speech.replies);
        self.deliver(id, service); // the slot is free: only what is meant for others is carried out
    }

    /// Drops timer entries left behind by closed connections once they outnumber the live ones,
    /// so that heavy churn cannot grow the heap (amortized: one pass per many closes).
    fn compact_timers(&mut self) {
        let timers = &mut self.clock.timers;
        if timers.len() <= 2 * self.clients.slab.len() + 1024 {
            return;
        }
        let slab = &self.clients.slab;
        timers.retain(|entry| {
            slab.get(entry.slot).is_some_and(|client| {
                client.conn.serial == entry.serial && client.conn.timer_at == Some(entry.due)
            })
        });
    }
}
