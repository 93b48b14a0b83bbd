//! The live line: once a second, on a terminal, what the run is doing.
//!
//! Reactors do not share counters on the hot path. Every tick (100 ms) each one *publishes* its
//! totals into its [`Live`] (a few relaxed atomic stores) and hands over the latencies it recorded
//! since the last tick (one uncontended lock). The caller's thread wakes once a second, adds them
//! up, and draws one line on stderr with `indicatif`:
//!
//! ```text
//! ⠙ 2.0s  123456 msgs/s  p99 85 µs  50 up  0 failed  0 mismatches  0 errors
//! ```
//!
//! When stderr is not a terminal (a pipe, a file, a test) nothing is drawn at all.
//!
//! Next: `clients/tls.rs`, TLS for all the clients; then `clients/interactive.rs`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::config::LoadConfig;
use super::tally::{Tally, new_histogram};

/// One reactor's published counters.
#[derive(Debug)]
pub struct Live {
    received: AtomicU64,
    mismatches: AtomicU64,
    errors: AtomicU64,
    failed: AtomicU64,
    up: AtomicU64,
    /// Latencies since the watcher last looked, in ns.
    recent: Mutex<Histogram<u64>>,
    /// What `recent` was last given up to (a copy of the reactor's cumulative histogram count).
    handed_over: Mutex<Histogram<u64>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            received: AtomicU64::new(0),
            mismatches: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            up: AtomicU64::new(0),
            recent: Mutex::new(new_histogram()),
            handed_over: Mutex::new(new_histogram()),
        }
    }
}

impl Live {
    /// Called by the reactor every tick.
    pub fn publish(&self, tally: &Tally, up: u64) {
        self.received.store(tally.received_all, Ordering::Relaxed);
        self.mismatches.store(tally.mismatches, Ordering::Relaxed);
        self.errors.store(
            tally.errors.iter().sum::<u64>() + tally.timeouts + tally.lost,
            Ordering::Relaxed,
        );
        self.failed
            .store(tally.connect_failures.iter().sum(), Ordering::Relaxed);
        self.up.store(up, Ordering::Relaxed);
        // New samples = cumulative minus what was handed over before.
        let mut handed_over = self.handed_over.lock().expect("live lock");
        if tally.latency.len() > handed_over.len() {
            let mut fresh = tally.latency.clone();
            let _ = fresh.subtract(&*handed_over);
            if let Ok(mut recent) = self.recent.lock() {
                let _ = recent.add(&fresh);
            }
            *handed_over = tally.latency.clone();
        }
    }
}

/// The live line on stderr, redrawn once a second (only ever on a terminal).
pub struct LiveLine {
    bar: Option<ProgressBar>,
    start: Instant,
    /// When the line was last drawn, and the replies counted then.
    last: (Instant, u64),
    window: hdrhistogram::Histogram<u64>,
}

impl LiveLine {
    /// A line that draws if `config.live` and stderr is a terminal, and does nothing otherwise.
    pub fn new(config: &LoadConfig) -> Self {
        let bar = (config.live && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("template"));
            bar
        });
        LiveLine {
            bar,
            start: Instant::now(),
            last: (Instant::now(), 0),
            window: new_histogram(),
        }
    }

    /// Called often (every 50 ms or so): spins the spinner, and once a second redraws the line.
    pub fn tick(&mut self, lives: &[std::sync::Arc<Live>]) {
        let Some(bar) = &self.bar else { return };
        bar.tick();
        if self.last.0.elapsed() < Duration::from_secs(1) {
            return;
        }
        let sum = |f: fn(&Live) -> &AtomicU64| -> u64 {
            lives.iter().map(|l| f(l).load(Ordering::Relaxed)).sum()
        };
        let received = sum(|l| &l.received);
        let rate =
            (received - self.last.1.min(received)) as f64 / self.last.0.elapsed().as_secs_f64();
        self.last = (Instant::now(), received);
        self.window.reset();
        for live in lives {
            if let Ok(mut recent) = live.recent.lock() {
                let _ = self.window.add(&*recent);
                recent.reset();
            }
        }
        let p99 = if self.window.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{:.0} µs",
                self.window.value_at_quantile(0.99) as f64 / 1000.0
            )
        };
        bar.set_message(format!(
            "{:.1}s  {rate:.0} msgs/s  p99 {p99}  {} up  {} failed  {} mismatches  {} errors",
            self.start.elapsed().as_secs_f64(),
            sum(|l| &l.up),
            sum(|l| &l.failed),
            sum(|l| &l.mismatches),
            sum(|l| &l.errors),
        ));
    }

    /// The run is over: the line goes.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
