//! Signals and the drain: how a reactor stops without losing what it owes.
//!
//! SIGINT and SIGTERM arrive as a readable event (`signals.rs`) (SIGUSR1 and SIGHUP too, for
//! the counters, and for the loop guard's addresses and the TLS certificate), as does a stop
//! request from
//! another thread (a [`crate::StopHandle`] sets a flag and wakes the poller). The reactor then
//! *drains*: it closes its listeners (new connection attempts are refused by the kernel), stops
//! reading, and lets every client finish: its queue is written, FIN is sent, and it is closed.
//! Whoever is still there at `--shutdown-timeout` is closed with what it was owed left unsent,
//! and a warning says how much. A second stop request gives up on the drain at once.
//!
//! Next: `server/connection.rs`, one client's life as a state machine.

use std::sync::atomic::Ordering;

use log::{info, warn};

use super::{Phase, Reactor};
use crate::net::activation;
use crate::protocol::CloseReason;
use crate::server::signals::SignalRequest;
use crate::server::stats::{StatsSnapshot, summary_by_service};

impl Reactor {
    /// The signal pipe is readable: act on every signal that arrived.
    pub(super) fn on_signals(&mut self) {
        let requests = match &mut self.sockets.signals {
            Some(signals) => signals.pending(self.poll.registry()),
            None => return,
        };
        for request in requests {
            match request {
                SignalRequest::LogStats => self.log_stats(),
                SignalRequest::Reload => {
                    self.read_local_addresses();
                    self.reload_tls();
                }
                SignalRequest::Stop => self.begin_shutdown(),
            }
        }
    }

    /// SIGHUP: the loop guard reads the host's addresses again.
    fn read_local_addresses(&mut self) {
        match self.sources.read_local_addresses() {
            Ok(count) => info!(
                "{}SIGHUP: the loop guard knows {count} local addresses",
                self.report.name
            ),
            Err(e) => warn!(
                "{}SIGHUP: cannot read the host's addresses: {e}",
                self.report.name
            ),
        }
    }

    /// The waker rang: another thread may have asked us to stop.
    pub(super) fn on_stop_request(&mut self) {
        if self.sockets.stop_requested.load(Ordering::SeqCst) {
            self.begin_shutdown();
        }
    }

    /// One line of counters (SIGUSR1, `--stats-interval`), and the same to systemd.
    pub(super) fn log_stats(&self) {
        let report = &self.report;
        let mine: Vec<(&str, StatsSnapshot)> = self
            .speech
            .services
            .iter()
            .zip(&report.stats)
            .map(|(served, stats)| (served.name, stats.snapshot()))
            .collect();
        info!("{}{}", report.name, summary_by_service(&mine));
        if let Some(all) = &report.all_stats {
            activation::notify_status(&all.snapshot().summary_line());
        }
    }

    /// Stops accepting at once, then lets every client finish: flush, FIN, close. A second
    /// request while draining gives up on the drain.
    fn begin_shutdown(&mut self) {
        if let Phase::Draining { .. } = self.phase {
            info!("{}second stop request: closing now", self.report.name);
            self.abandon_remaining();
            return;
        }
        let deadline = self.clock.now + self.settings.shutdown_timeout;
        self.phase = Phase::Draining { deadline };
        activation::notify_stopping();
        info!(
            "{}shutting down: {} clients to drain (up to {:?})",
            self.report.name,
            self.clients.slab.len(),
            self.settings.shutdown_timeout
        );
        // Dropping a listener closes it: new connection attempts are refused by the kernel.
        // (An inherited socket stays open in systemd, which queues them for the next start.)
        let sockets = &mut self.sockets;
        sockets.listeners.iter_mut().for_each(|l| *l = None);
        sockets.datagrams.iter_mut().for_each(|d| *d = None);
        sockets.metrics = None;
        let ids: Vec<usize> = self.clients.slab.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.clients.slab[id].conn.finish(CloseReason::Shutdown);
            self.sync(id);
        }
    }

    /// The drain deadline has passed: close everyone still here, saying what was left unsent.
    pub(super) fn abandon_remaining(&mut self) {
        let mut unsent = 0;
        let mut clients = 0;
        for (id, client) in self.clients.slab.iter_mut() {
            let conn = &mut client.conn;
            unsent += conn.abort(conn.close_reason().unwrap_or(CloseReason::Shutdown));
            clients += 1;
            self.clients.closing.push(id);
        }
        if unsent > 0 {
            warn!(
                "{}shutdown deadline: {clients} clients closed with {unsent} bytes unsent",
                self.report.name
            );
        }
        self.phase = Phase::Draining {
            deadline: self.clock.now,
        };
    }
}
