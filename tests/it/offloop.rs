//! Work off the loop: a protocol hands a job to a thread of its own, pauses the client's input,
//! and is called back on the reactor's thread through its waker; the frames that waited are then
//! answered in order.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, SystemTime};

use echoloop::protocol::testing::Harness;
use echoloop::{ClientId, Frame, FramingKind, Protocol, ProtocolFactory, Replies};

use crate::common;

/// `slow <n>` is answered `done <n>` by a helper thread after a pause; any other line is
/// answered `now <line>` at once. While a `slow` job runs, the client's input is paused.
struct Slow {
    jobs: Option<Sender<(ClientId, Vec<u8>)>>,
    done: Option<Receiver<(ClientId, Vec<u8>)>>,
    /// Results that came back, by client, until `on_resume` sends them.
    finished: Vec<(ClientId, Vec<u8>)>,
}

impl Slow {
    fn new() -> Self {
        Slow {
            jobs: None,
            done: None,
            finished: Vec::new(),
        }
    }
}

impl Protocol for Slow {
    type Session = ClientId;
    const NAME: &'static str = "slow";
    const FRAMING: FramingKind = FramingKind::Line;

    fn attach_waker(&mut self, waker: Arc<mio::Waker>) {
        let (jobs, inbox) = mpsc::channel::<(ClientId, Vec<u8>)>();
        let (outbox, done) = mpsc::channel();
        std::thread::spawn(move || {
            for (client, what) in inbox {
                std::thread::sleep(Duration::from_millis(30)); // the "fsync"
                if outbox.send((client, what)).is_err() {
                    return;
                }
                let _ = waker.wake();
            }
        });
        self.jobs = Some(jobs);
        self.done = Some(done);
    }

    fn on_connect(&mut self, client: ClientId, _: SystemTime, _: &mut Replies) -> ClientId {
        client
    }

    fn on_frame(&mut self, me: &mut ClientId, frame: Frame<'_>, _: SystemTime, out: &mut Replies) {
        match frame.payload.strip_prefix(b"slow ") {
            Some(what) => {
                let jobs = self.jobs.as_ref().expect("a reactor attaches its waker");
                jobs.send((*me, what.to_vec())).unwrap();
                out.pause_input();
            }
            None => out.send_frame(&[b"now ", frame.payload]),
        }
    }

    fn on_woken(&mut self, ready: &mut Vec<ClientId>) {
        if let Some(done) = &self.done {
            for (client, what) in done.try_iter() {
                ready.push(client);
                self.finished.push((client, what));
            }
        }
    }

    fn on_resume(&mut self, me: &mut ClientId, _: SystemTime, out: &mut Replies) {
        let mut rest = Vec::new();
        for (client, what) in self.finished.drain(..) {
            if client != *me {
                rest.push((client, what));
            } else if what == b"body" {
                // Like a download whose hash was made off the loop: the body comes as the
                // client reads, and input resumes once it is sent.
                out.refill_when_drained();
            } else {
                out.send_frame(&[b"done ", &what]);
                out.resume_input();
            }
        }
        self.finished = rest;
    }

    fn on_drained(&mut self, _: &mut ClientId, out: &mut Replies) {
        out.send_frame(&[b"the body"]);
        out.resume_input();
    }
}

#[test]
fn frames_after_a_paused_one_wait_for_its_resume_and_keep_their_order() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolFactory::new(Slow::new).into());
    let mut client = common::connect(&server);
    // One write: the second `slow` and the plain lines are read with the first, and must wait.
    common::send(&mut client, b"slow 1\na\nslow 2\nb\nc\n");
    for expected in ["done 1", "now a", "done 2", "now b", "now c"] {
        assert_eq!(common::read_line(&mut client), expected.as_bytes());
    }
    // Another client is answered while one waits for its job.
    let mut other = common::connect(&server);
    common::send(&mut client, b"slow 3\nd\n");
    common::send(&mut other, b"x\n");
    assert_eq!(common::read_line(&mut other), b"now x");
    assert_eq!(common::read_line(&mut client), b"done 3");
    assert_eq!(common::read_line(&mut client), b"now d");
}

#[test]
fn a_refill_asked_for_on_resume_is_made_at_once() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolFactory::new(Slow::new).into());
    let mut client = common::connect(&server);
    common::send(
        &mut client,
        b"slow body
after
",
    );
    assert_eq!(common::read_line(&mut client), b"the body");
    assert_eq!(common::read_line(&mut client), b"now after");
}

#[test]
fn a_client_that_leaves_during_its_job_is_closed_once_the_job_is_done() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolFactory::new(Slow::new).into());
    let mut leaver = common::connect(&server);
    common::send(
        &mut leaver,
        b"slow gone
never answered
",
    );
    drop(leaver);
    // Its input is not read while its job runs, so its number is not given out meanwhile;
    // afterwards its FIN is read and it is closed like any other.
    common::wait_for_stats(&server, "the leaver closed", |s| {
        s.total().connections_accepted == 1 && s.total().connections_open == 0
    });
    let mut next = common::connect(&server);
    common::send(
        &mut next,
        b"hello
slow mine
",
    );
    assert_eq!(common::read_line(&mut next), b"now hello");
    assert_eq!(common::read_line(&mut next), b"done mine");
}

#[test]
fn the_harness_drives_pause_wake_and_resume_like_the_reactor() {
    let mut harness = Harness::new(Slow::new()).with_waker();
    let client = harness.connect();
    harness.send(client, b"slow 1\nafter\n");
    assert!(harness.is_paused(client));
    assert!(harness.take_output(client).is_empty(), "`after` waits");
    harness.send(client, b"later\n"); // sent while paused: waits too
    assert!(harness.wait_for_wake(common::PATIENCE));
    assert_eq!(
        harness.take_output(client),
        b"done 1\nnow after\nnow later\n"
    );
    assert!(!harness.is_paused(client));
}
