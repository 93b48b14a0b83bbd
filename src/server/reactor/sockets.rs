//! The sockets of a reactor that are not clients: listeners, UDP endpoints, the metrics
//! endpoint, the signal pipe. Each is registered once, in its place in the token layout.
//!
//! UDP has no connections, so a UDP socket is served here whole: `udp.rs` reads its datagrams
//! in batches until `WouldBlock` (or a per-turn budget), the protocol answers each one, and refused replies
//! wait in the endpoint's own small queue. Each sender is judged first by the reactor's
//! `Sources` (`server/sources/`): the loop guard, the access lists, the rate limit.
//!
//! Next: `tidy.rs`, the end of each turn.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use log::warn;
use mio::{Interest, Registry};

use super::token::Source;
use super::{Reactor, Sockets};
use crate::net::listener::Listener;
use crate::server::metrics::MetricsEndpoint;
use crate::server::signals::SignalSource;
use crate::server::udp::{DatagramEndpoint, Drained, Lent};

impl Sockets {
    /// Registers every socket under its token.
    #[allow(clippy::too_many_arguments)] // the reactor's parts, handed over once
    pub(super) fn register(
        registry: &Registry,
        listeners: Vec<Listener>,
        datagrams: Vec<mio::net::UdpSocket>,
        mut metrics: Option<MetricsEndpoint>,
        signals: Option<SignalSource>,
        queue_limit: usize,
        udp_rcvbuf: Option<usize>,
        stop_requested: Arc<AtomicBool>,
    ) -> io::Result<Sockets> {
        if let Some(endpoint) = &mut metrics {
            endpoint.register(registry)?;
        }
        let mut registered = Vec::new();
        for (i, mut listener) in listeners.into_iter().enumerate() {
            registry.register(
                &mut listener,
                Source::Listener(i).token(),
                Interest::READABLE,
            )?;
            registered.push(Some(listener));
        }
        let mut endpoints = Vec::new();
        for (i, socket) in datagrams.into_iter().enumerate() {
            let token = Source::Datagram(i).token();
            endpoints.push(Some(DatagramEndpoint::register(
                socket,
                queue_limit,
                udp_rcvbuf,
                registry,
                token,
            )?));
        }
        Ok(Sockets {
            listeners: registered,
            listener_service: Vec::new(), // set by the reactor, from its service plan
            listener_tls: Vec::new(),
            datagrams: endpoints,
            datagram_service: Vec::new(),
            datagrams_still_ready: Vec::new(),
            metrics,
            signals,
            stop_requested,
        })
    }
}

impl Reactor {
    /// UDP endpoint `index` is readable (or writable, for refused replies): serve it.
    pub(super) fn drain_datagrams(&mut self, index: usize, writable: bool) {
        let Some(Some(endpoint)) = self.sockets.datagrams.get_mut(index) else {
            return; // closed by the drain: events are hints
        };
        let service = self.sockets.datagram_service[index];
        let stats = &self.report.stats[service];
        if writable {
            endpoint.flush(stats);
        }
        let lent = Lent {
            protocol: self.speech.services[service].service.as_mut(),
            sources: &mut self.sources,
            max_frame: self.settings.max_frame,
            clock: self.clock.now,
            now: self.clock.wall_now,
            stats,
        };
        match endpoint.drain_datagrams(lent) {
            Ok(Drained::Empty) => {}
            Ok(Drained::Budget) => self.sockets.datagrams_still_ready.push(index),
            Err(e) => warn!("{}udp receive failed: {e}", self.report.name),
        }
        let token = Source::Datagram(index).token();
        if let Err(e) = endpoint.sync(self.poll.registry(), token) {
            warn!("{}udp socket cannot change interest: {e}", self.report.name);
        }
    }

    /// A metrics scrape (or the metrics listener) is ready.
    pub(super) fn on_metrics(&mut self, n: usize) {
        if let Some(endpoint) = &mut self.sockets.metrics {
            endpoint.on_event(n, self.poll.registry());
        }
    }
}
