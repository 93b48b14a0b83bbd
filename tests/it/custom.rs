//! A protocol that is not one of echoloop's own, served by the reactor: its sessions live with
//! their connections, its shared state with its reactor, and every reply path is delivered.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use echoloop::{
    ClientId, Frame, FramingKind, Protocol, ProtocolChoice, ProtocolFactory, Replies, ServeConfig,
};

use crate::common;

/// Answers each line with `<line of this client> <lines this protocol value has seen> <bytes>`:
/// the first number lives in the session, the second in the protocol value.
struct Count {
    seen: usize,
}

impl Protocol for Count {
    /// The client's own line count.
    type Session = usize;
    const NAME: &'static str = "count";
    const FRAMING: FramingKind = FramingKind::Line;

    fn on_connect(&mut self, _: ClientId, _: SystemTime, _: &mut Replies) -> usize {
        0
    }

    fn on_frame(&mut self, lines: &mut usize, frame: Frame<'_>, _: SystemTime, out: &mut Replies) {
        *lines += 1;
        self.seen += 1;
        let answer = format!("{} {} {}", lines, self.seen, frame.payload.len());
        out.send_frame(&[answer.as_bytes()]);
    }
}

/// A factory that counts how many protocol values it made.
fn counting_factory() -> (ProtocolFactory, Arc<AtomicUsize>) {
    let built = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&built);
    let factory = ProtocolFactory::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Count { seen: 0 }
    });
    (factory, built)
}

#[test]
fn a_custom_protocol_is_served_with_its_own_default_framing_and_sessions() {
    let (factory, _) = counting_factory();
    let server = common::serve(|cfg| cfg.protocol = factory.into());
    let mut first = common::connect(&server);
    common::send(&mut first, b"four\n\xff\xfe\r\n");
    assert_eq!(common::read_line(&mut first), b"1 1 4");
    assert_eq!(common::read_line(&mut first), b"2 2 2");
    let mut second = common::connect(&server);
    common::send(&mut second, b"x\n");
    // Its own session starts at line 1; the protocol value has now seen three lines.
    assert_eq!(common::read_line(&mut second), b"1 3 1");
}

#[test]
fn the_framing_and_name_are_the_custom_protocols_known_without_building_it() {
    let (factory, built) = counting_factory();
    let config = ServeConfig {
        protocol: factory.into(),
        ..ServeConfig::for_tests()
    };
    assert_eq!(config.framing(), FramingKind::Line); // echo's would be raw
    assert_eq!(config.protocol.name(), "count"); // what `serving ...` logs
    assert_eq!(built.load(Ordering::SeqCst), 0);
}

#[test]
fn each_worker_gets_its_own_protocol_value_shared_by_its_clients() {
    let (factory, built) = counting_factory();
    let server = common::serve(|cfg| {
        cfg.protocol = factory.into();
        cfg.workers = 2;
    });
    const CLIENTS: usize = 32;
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| common::connect(&server)).collect();
    let mut seen = Vec::new();
    for client in &mut clients {
        common::send(client, b"abc\n");
        let line = String::from_utf8(common::read_line(client)).unwrap();
        let fields: Vec<usize> = line.split(' ').map(|f| f.parse().unwrap()).collect();
        assert_eq!((fields[0], fields[2]), (1, 3), "{line}");
        seen.push(fields[1]);
    }
    assert_eq!(built.load(Ordering::SeqCst), 2, "one value per worker");
    // Each worker's value counted its own clients' lines, 1, 2, 3, ...: one value per
    // connection would answer 1 every time, one value for both workers 1..=32.
    let stats = common::wait_for_stats(&server, "every client counted", |s| {
        s.total().connections_open == CLIENTS as u64
    });
    assert_eq!(stats.total().connections_accepted, CLIENTS as u64);
    let per_worker: Vec<usize> = server
        .worker_stats()
        .iter()
        .map(|s| s.total().connections_accepted as usize)
        .collect();
    let mut expected: Vec<usize> = per_worker.iter().flat_map(|&n| 1..=n).collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected, "clients per worker: {per_worker:?}");
}

/// `to N` arms a relay: the next time the sender's queue is empty, `on_drained` sends a line to
/// client N. Nothing else: the line reaches N only if replies made in `on_drained` are delivered.
struct Relay;

impl Protocol for Relay {
    /// Where the armed relay goes.
    type Session = Option<ClientId>;
    const NAME: &'static str = "relay";
    const FRAMING: FramingKind = FramingKind::Line;

    fn on_connect(&mut self, client: ClientId, _: SystemTime, out: &mut Replies) -> Self::Session {
        out.send_frame(&[client.0.to_string().as_bytes()]);
        None
    }

    fn on_frame(
        &mut self,
        armed: &mut Self::Session,
        frame: Frame<'_>,
        _: SystemTime,
        out: &mut Replies,
    ) {
        let target = std::str::from_utf8(&frame.payload[3..]).unwrap();
        *armed = Some(ClientId(target.parse().unwrap()));
        out.send_frame(&[b"armed"]);
        out.refill_when_drained();
    }

    fn on_drained(&mut self, armed: &mut Self::Session, out: &mut Replies) {
        if let Some(target) = armed.take() {
            out.send_to(target, Rc::from(&b"from on_drained\n"[..]));
        }
    }
}

#[test]
fn a_send_to_from_on_drained_reaches_its_target() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolChoice::Custom(ProtocolFactory::new(|| Relay));
    });
    let mut a = common::connect(&server);
    let mut b = common::connect(&server);
    common::read_line(&mut a);
    let b_id = String::from_utf8(common::read_line(&mut b)).unwrap();
    common::send(&mut a, format!("to {b_id}\n").as_bytes());
    assert_eq!(common::read_line(&mut a), b"armed");
    b.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(common::read_line(&mut b), b"from on_drained");
}

/// Asks for a refill after every line and again from every refill, but never sends anything
/// from one: a refill that makes nothing must end the refills, or the reactor would spin (the
/// threaded model's tests use it too).
pub(crate) struct Idler {
    pub(crate) refills: Arc<AtomicUsize>,
}

impl Protocol for Idler {
    type Session = ();
    const NAME: &'static str = "idler";
    const FRAMING: FramingKind = FramingKind::Line;

    fn on_connect(&mut self, _: ClientId, _: SystemTime, _: &mut Replies) {}

    fn on_frame(&mut self, _: &mut (), _: Frame<'_>, _: SystemTime, out: &mut Replies) {
        out.send_frame(&[b"pong"]);
        out.refill_when_drained();
    }

    fn on_drained(&mut self, _: &mut (), out: &mut Replies) {
        self.refills.fetch_add(1, Ordering::SeqCst);
        out.refill_when_drained(); // but nothing to send
    }
}

#[test]
fn a_refill_that_makes_nothing_is_not_asked_again_at_once() {
    let refills = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&refills);
    let server = common::serve(move |cfg| {
        let counter = Arc::clone(&counter);
        cfg.protocol = ProtocolFactory::new(move || Idler {
            refills: Arc::clone(&counter),
        })
        .into();
    });
    let mut client = common::connect(&server);
    for round in 1..=4 {
        common::send(&mut client, b"ping\n");
        assert_eq!(common::read_line(&mut client), b"pong");
        common::wait_until(
            "the refill",
            || refills.load(Ordering::SeqCst),
            |n| *n >= round,
        );
    }
    // One call per line asked: a reactor that kept calling would be in the millions by now.
    let calls = refills.load(Ordering::SeqCst);
    assert!(calls < 10, "{calls} calls to on_drained for 4 requests");
}

/// Says goodbye in its own words when a client idles out, and asks to close while at it.
struct Polite;

impl Protocol for Polite {
    type Session = ();
    const NAME: &'static str = "polite";
    const FRAMING: FramingKind = FramingKind::Raw;

    fn on_connect(&mut self, _: ClientId, _: SystemTime, _: &mut Replies) {}

    fn on_frame(&mut self, _: &mut (), _: Frame<'_>, _: SystemTime, _: &mut Replies) {}

    fn on_idle_timeout(&mut self, _: &mut (), out: &mut Replies) {
        out.send_raw(b"bye for now\n");
        out.close();
    }
}

#[test]
fn an_idle_goodbye_goes_through_the_protocol_and_the_close_counts_as_idle() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolFactory::new(|| Polite).into();
        cfg.idle_timeout = Some(Duration::from_millis(200));
    });
    let mut client = common::connect(&server);
    assert_eq!(common::read_to_end(&mut client), b"bye for now\n");
    common::wait_for_stats(&server, "the idle close", |s| {
        s.closed_for(echoloop::CloseReason::IdleTimeout) == 1
    });
}

/// The example of docs/GUIDE.md ("Writing your own protocol"), kept here so that the guide's
/// code and its assertions are checked: change both together.
mod guide {
    use std::rc::Rc;
    use std::time::SystemTime;

    use echoloop::protocol::testing::Harness;
    use echoloop::{ClientId, Frame, FramingKind, Protocol, Replies};

    #[derive(Default)]
    struct Counter {
        lines_seen: u64,
    }

    impl Protocol for Counter {
        type Session = u64;
        const NAME: &'static str = "counter";
        const FRAMING: FramingKind = FramingKind::Line;

        fn on_connect(&mut self, _client: ClientId, _now: SystemTime, _out: &mut Replies) -> u64 {
            0
        }

        fn on_frame(
            &mut self,
            lines: &mut u64,
            frame: Frame<'_>,
            _now: SystemTime,
            out: &mut Replies,
        ) {
            *lines += 1;
            self.lines_seen += 1;
            if let Some(text) = frame.payload.strip_prefix(b"!all ") {
                let mut shared = Vec::new();
                echoloop::protocol::framing::encode(out.framing(), &[text], &mut shared);
                out.broadcast(None, Rc::from(shared));
            }
            out.send_frame(&[lines.to_string().as_bytes(), b" ", frame.payload]);
        }
    }

    #[test]
    fn the_guides_counter_answers_as_the_guide_says() {
        let mut counter = Harness::new(Counter::default());
        let (a, b) = (counter.connect(), counter.connect());
        counter.send(a, b"hello\n!all hi\n");
        // The sender's own replies to one read go first, then what was recorded for everyone.
        assert_eq!(counter.take_output(a), b"1 hello\n2 !all hi\nhi\n");
        assert_eq!(counter.take_output(b), b"hi\n");
        assert_eq!(counter.protocol().lines_seen, 2);
    }

    #[test]
    fn the_guides_counter_is_served_by_a_factory() {
        let config = echoloop::ServeConfig {
            protocol: echoloop::ProtocolFactory::new(Counter::default).into(),
            ..echoloop::ServeConfig::for_tests()
        };
        let server = echoloop::Server::bind(&config).unwrap().spawn().unwrap();
        let mut client = crate::common::connect(&server);
        crate::common::send(&mut client, b"x\n");
        assert_eq!(crate::common::read_line(&mut client), b"1 x");
    }
}
