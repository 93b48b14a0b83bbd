//! When messages are sent: closed loop or open loop, and what latency then means.
//!
//! **Closed loop** (the default): each connection keeps `--pipeline` messages in flight and sends
//! the next one the moment a reply comes back. The server sets the pace, so this measures how fast
//! it *can* go. Latency is the time from sending a message to its reply.
//!
//! **Open loop** (`--rate N`): messages are due on a fixed schedule, N per second over all
//! connections, whatever the server does, as real users arrive whether or not the server is keeping
//! up. Each reactor hands out its share of the schedule round robin: slot `k` is due
//! `k / rate` seconds after traffic starts and belongs to connection `k mod n`. A connection that
//! already has `--pipeline` messages in flight keeps its due messages waiting until replies free
//! a place.
//!
//! **Coordinated omission.** Suppose the server stalls for 200 ms once. A closed-loop client is
//! stalled with it: it sends nothing during the stall, so it records *one* slow reply, and the
//! hundreds of users who would have arrived in those 200 ms and waited are never counted: the
//! client has coordinated with the server to omit the bad samples. In open loop we know when each
//! message *should* have been sent, so latency is measured from that intended time (as wrk2 does):
//! a message due 150 ms into the stall and answered when it ends waited 50 ms, and it says so. We
//! also report the figure measured from the actual send time (`latency_uncorrected_us`), which
//! shows the omission: it barely moves during a stall.
//!
//! Next: `connection.rs`, one client connection's state.

/// Closed or open loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Send as soon as a reply frees a place in the pipeline.
    Closed,
    /// Send on a schedule.
    Open(Schedule),
}

impl Pacing {
    /// Open loop at `rate` messages per second, if given; closed loop otherwise.
    pub fn new(rate: Option<f64>) -> Self {
        match rate {
            Some(rate) => Pacing::Open(Schedule::new(rate)),
            None => Pacing::Closed,
        }
    }
}

/// A fixed rate: slot `k` is due at `k × interval` after the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    interval_ns: f64,
}

impl Schedule {
    /// `rate` messages per second (> 0).
    pub fn new(rate: f64) -> Self {
        Schedule {
            interval_ns: 1e9 / rate.max(1e-9),
        }
    }

    /// When slot `k` is due, in nanoseconds after the start.
    pub fn due_at_ns(&self, slot: u64) -> u64 {
        (slot as f64 * self.interval_ns) as u64
    }

    /// When message `m` of connection `i` (of `n` round robin) is due, in ns after the start.
    pub fn message_due_at_ns(&self, connection: usize, n: usize, message: u64) -> u64 {
        self.due_at_ns(message * n as u64 + connection as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_evenly_spaced_and_round_robin() {
        let schedule = Schedule::new(1000.0); // one per ms
        assert_eq!(schedule.due_at_ns(0), 0);
        assert_eq!(schedule.due_at_ns(3), 3_000_000);
        // 4 connections: connection 1's third message (m = 2) is slot 9.
        assert_eq!(schedule.message_due_at_ns(1, 4, 2), 9_000_000);
        assert_eq!(Pacing::new(None), Pacing::Closed);
    }
}
