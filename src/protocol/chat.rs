//! Chat: one room per reactor; every line a client sends goes to everyone else.
//!
//! This is the protocol that shows why a server needs *more* than "read, answer the sender":
//! a line from one client becomes bytes for N others. Each client is named `user<N>` (its
//! [`ClientId`]) when it connects and is told so (`* you are user3`); the others see
//! `* user3 joined`, and later `* user3 left (<reason>)`, whatever the reason: the client closed,
//! reset, idled out, read too slowly, or said `/quit`.
//!
//! A line `hello` from `user3` goes to every *other* client as `[user3] hello\n`; the sender gets
//! nothing back. The bytes are built once, as an `Rc<[u8]>`, and every recipient's queue holds the
//! same allocation: a message to a thousand clients is one copy, not a thousand. The body is bytes:
//! it need not be UTF-8, and it is passed on as it came (only the line ending is normalised).
//!
//! Lines that start with `/` are commands:
//!
//! - `/nick NAME`: take a new name (unique, 1 to 32 bytes of printable ASCII, no spaces; `user<N>`
//!   is reserved for client N). The sender gets `* you are now known as NAME`, the others
//!   `* old is now known as NAME`.
//! - `/who`: `* online: alice user2 user7` (in order of arrival in their slots).
//! - `/quit`: `* bye`, then the connection closes (the others see `left (finished)`).
//! - anything else: `error: unknown command`. Every mistake is an `error: ...` line to the sender.
//!
//! **Slow readers are dropped.** A chat client that does not read would otherwise stop the room:
//! pausing the *sender* (echo's backpressure) punishes the wrong client. So [`Chat::slow_reader`]
//! is [`SlowReader::Drop`]: once a client's queue passes `--queue-limit` the reactor drops it
//! (logged at warn, counted), everyone else goes on, and the sender is never held up.
//!
//! The room lives inside one reactor: with `--workers N` each worker is its own room.
//!
//! Next: `files/mod.rs`, transfers with resume: sessions that are whole state machines.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::SystemTime;

use super::{Answer, ClientId, Protocol, Replies, SlowReader};
use crate::protocol::CloseReason;
use crate::protocol::framing::{self, Frame, FrameError, FramingKind};

/// Longest name `/nick` accepts, in bytes.
pub const MAX_NAME_BYTES: usize = 32;

/// The chat room of one reactor.
#[derive(Debug, Default)]
pub struct Chat {
    /// Who is here, by client: kept in order so `/who` lists a stable order.
    names: BTreeMap<ClientId, String>,
    /// Who has a name: the uniqueness check of `/nick`.
    owners: HashMap<String, ClientId>,
    /// Where shared messages are put together before they become an `Rc<[u8]>`.
    scratch: Vec<u8>,
}

impl Chat {
    /// An empty room.
    pub fn new() -> Self {
        Chat::default()
    }

    /// The name a client has, or the one it would have by default.
    fn name_of(&self, client: ClientId) -> String {
        self.names
            .get(&client)
            .cloned()
            .unwrap_or_else(|| default_name(client))
    }

    /// Frames `parts` as one message in `framing` and hands out the bytes, shared.
    fn shared(&mut self, framing: FramingKind, parts: &[&[u8]]) -> Rc<[u8]> {
        self.scratch.clear();
        framing::encode(framing, parts, &mut self.scratch);
        Rc::from(&self.scratch[..])
    }

    /// `* <what>` to every client but `except`.
    fn announce(&mut self, except: Option<ClientId>, what: &str, out: &mut Replies) {
        let bytes = self.shared(out.framing(), &[b"* ", what.as_bytes()]);
        out.broadcast(except, bytes);
    }

    fn on_command(&mut self, client: ClientId, line: &[u8], out: &mut Replies) {
        let (command, argument) = match line.iter().position(|b| *b == b' ') {
            Some(at) => (&line[..at], line[at + 1..].trim_ascii()),
            None => (line, &b""[..]),
        };
        match command {
            b"/nick" => self.rename(client, argument, out),
            b"/who" => {
                let names: Vec<&str> = self.names.values().map(String::as_str).collect();
                let line = format!("* online: {}", names.join(" "));
                out.send_frame(&[line.as_bytes()]);
            }
            b"/quit" => {
                out.send_frame(&[b"* bye"]);
                out.close();
            }
            _ => out.error_line("unknown command"),
        }
    }

    /// `/nick NAME`: checks the name, then tells the sender and the room.
    fn rename(&mut self, client: ClientId, wanted: &[u8], out: &mut Replies) {
        let new = match check_name(client, wanted) {
            Ok(name) => name,
            Err(why) => return out.error_line(why),
        };
        let old = self.name_of(client);
        if new == old {
            let line = format!("* you are already known as {new}");
            return out.send_frame(&[line.as_bytes()]);
        }
        if self.owners.contains_key(&new) {
            return out.error_line(&format!("name {new} is taken"));
        }
        self.owners.remove(&old);
        self.owners.insert(new.clone(), client);
        self.names.insert(client, new.clone());
        let line = format!("* you are now known as {new}");
        out.send_frame(&[line.as_bytes()]);
        self.announce(Some(client), &format!("{old} is now known as {new}"), out);
    }
}

/// The name a client gets on arrival.
fn default_name(client: ClientId) -> String {
    format!("user{}", client.0)
}

/// A valid name for `client`, or why `wanted` is not one.
fn check_name(client: ClientId, wanted: &[u8]) -> Result<String, &'static str> {
    if wanted.is_empty() {
        return Err("usage: /nick NAME");
    }
    if wanted.len() > MAX_NAME_BYTES {
        return Err("name too long (limit 32 bytes)");
    }
    if !wanted.iter().all(|b| b.is_ascii_graphic()) {
        return Err("a name is printable ASCII without spaces");
    }
    let name = String::from_utf8_lossy(wanted).into_owned(); // ASCII: nothing is lost
    let digits = name.strip_prefix("user").unwrap_or("");
    let looks_default = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if looks_default && name != default_name(client) {
        // So that client N can always be given `userN` when it arrives.
        return Err("names user<N> are reserved");
    }
    Ok(name)
}

impl Protocol for Chat {
    /// The member's client number: its name and everything else about it live in the room.
    type Session = ClientId;
    const NAME: &'static str = "chat";
    const FRAMING: FramingKind = FramingKind::Line;

    fn limits_frame_rate(&self) -> bool {
        true // `--chat-rate`: a flooder slows itself, not the room
    }

    fn slow_reader(&self) -> SlowReader {
        SlowReader::Drop
    }

    fn on_connect(&mut self, client: ClientId, _now: SystemTime, out: &mut Replies) -> ClientId {
        // `userN` is reserved for client N (see `check_name`), and N is not in use: it is free.
        let name = default_name(client);
        self.owners.insert(name.clone(), client);
        self.names.insert(client, name.clone());
        out.send_frame(&[b"* you are ", name.as_bytes()]);
        self.announce(Some(client), &format!("{name} joined"), out);
        client
    }

    fn on_frame(
        &mut self,
        client: &mut ClientId,
        frame: Frame<'_>,
        _now: SystemTime,
        out: &mut Replies,
    ) {
        let client = *client;
        let line = frame.payload;
        if line.is_empty() {
            return; // nothing to say
        }
        if line.starts_with(b"/") {
            return self.on_command(client, line, out);
        }
        let name = self.name_of(client);
        let bytes = self.shared(out.framing(), &[b"[", name.as_bytes(), b"] ", line]);
        out.broadcast(Some(client), bytes);
    }

    fn on_frame_error(&mut self, _client: &mut ClientId, error: &FrameError, out: &mut Replies) {
        // The decoder skips the rest of the line; the line goes to nobody.
        let FrameError::TooLong { limit } = error;
        if out.framing() == FramingKind::Line {
            out.error_line(&format!("line too long (limit {limit} bytes)"));
        }
    }

    fn on_disconnect(&mut self, client: ClientId, reason: CloseReason, out: &mut Replies) {
        let Some(name) = self.names.remove(&client) else {
            return;
        };
        self.owners.remove(&name);
        self.announce(None, &format!("{name} left ({})", reason.as_str()), out);
    }

    fn on_datagram(&mut self, _datagram: &[u8], _now: SystemTime, reply: &mut Vec<u8>) -> Answer {
        reply.extend_from_slice(b"error: chat needs a stream connection (TCP or Unix)\n");
        Answer::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::Harness;

    /// A room with clients `count` clients connected (user0, user1, ...); their welcome lines
    /// are thrown away.
    fn room(count: usize) -> (Harness<Chat>, Vec<ClientId>) {
        let mut chat = Harness::new(Chat::new());
        let ids: Vec<ClientId> = (0..count).map(|_| chat.connect()).collect();
        for id in &ids {
            chat.take_output(*id);
        }
        (chat, ids)
    }

    #[test]
    fn connect_names_the_client_and_tells_the_others() {
        let (mut chat, ids) = room(3);
        chat.disconnect(ids[2], CloseReason::PeerClosed);
        assert_eq!(chat.take_output(ids[0]), b"* user2 left (peer-closed)\n");
        chat.take_output(ids[1]);
        let newcomer = chat.connect();
        assert_eq!(newcomer, ClientId(2), "slots are reused");
        assert_eq!(chat.take_output(newcomer), b"* you are user2\n");
        assert_eq!(chat.take_output(ids[0]), b"* user2 joined\n");
        assert_eq!(chat.take_output(ids[1]), b"* user2 joined\n");
    }

    #[test]
    fn a_line_goes_to_the_others_as_bytes_not_back() {
        let (mut chat, ids) = room(3);
        chat.send(ids[1], b"caf\xe9 \x00ok\n");
        assert!(chat.take_output(ids[1]).is_empty());
        assert_eq!(chat.take_output(ids[0]), b"[user1] caf\xe9 \x00ok\n");
        assert_eq!(chat.take_output(ids[2]), b"[user1] caf\xe9 \x00ok\n");
    }

    #[test]
    fn empty_lines_say_nothing() {
        let (mut chat, ids) = room(2);
        chat.send(ids[1], b"\n\r\n");
        assert!(chat.take_output(ids[0]).is_empty() && chat.take_output(ids[1]).is_empty());
    }

    #[test]
    fn nick_renames_and_announces() {
        let (mut chat, ids) = room(2);
        let (alice, other) = (ids[1], ids[0]);
        chat.send(alice, b"/nick alice\n");
        assert_eq!(chat.take_output(alice), b"* you are now known as alice\n");
        assert_eq!(chat.take_output(other), b"* user1 is now known as alice\n");
        chat.send(alice, b"hi\n");
        assert_eq!(chat.take_output(other), b"[alice] hi\n");
        chat.send(alice, b"/nick alice\n");
        assert_eq!(
            chat.take_output(alice),
            b"* you are already known as alice\n"
        );
        assert!(chat.take_output(other).is_empty());
    }

    #[test]
    fn nick_refuses_taken_and_invalid_names() {
        let (mut chat, ids) = room(3);
        let (first, second) = (ids[1], ids[2]);
        chat.send(first, b"/nick alice\n");
        for id in &ids {
            chat.take_output(*id);
        }
        let cases: [(&[u8], &[u8]); 7] = [
            (b"/nick alice\n", b"error: name alice is taken\n"),
            (b"/nick user1\n", b"error: names user<N> are reserved\n"),
            (b"/nick user9\n", b"error: names user<N> are reserved\n"),
            (b"/nick\n", b"error: usage: /nick NAME\n"),
            (
                b"/nick a b\n",
                b"error: a name is printable ASCII without spaces\n",
            ),
            (
                b"/nick \xc3\xa9\n",
                b"error: a name is printable ASCII without spaces\n",
            ),
            (
                b"/nick 012345678901234567890123456789012\n",
                b"error: name too long (limit 32 bytes)\n",
            ),
        ];
        for (command, answer) in cases {
            chat.send(second, command);
            let got = chat.take_output(second);
            assert_eq!(got, answer, "{}", String::from_utf8_lossy(command));
            assert!(
                chat.take_output(ids[0]).is_empty(),
                "nobody else hears of it"
            );
        }
        // 32 bytes is fine; a name freed by a rename can be taken; one's own default is allowed.
        chat.send(second, b"/nick 01234567890123456789012345678901\n");
        assert!(
            chat.take_output(second)
                .starts_with(b"* you are now known as")
        );
        chat.send(first, b"/nick bob\n");
        assert_eq!(chat.take_output(second), b"* alice is now known as bob\n");
        chat.send(second, b"/nick alice\n");
        assert_eq!(chat.take_output(second), b"* you are now known as alice\n");
        chat.send(second, b"/nick user2\n");
        assert_eq!(chat.take_output(second), b"* you are now known as user2\n");
    }

    #[test]
    fn who_lists_everyone_in_slot_order() {
        let (mut chat, ids) = room(6);
        for gone in [1, 3, 4] {
            chat.disconnect(ids[gone], CloseReason::PeerClosed);
        }
        chat.send(ids[5], b"/nick eve\n");
        chat.take_output(ids[0]);
        chat.send(ids[0], b"/who\n");
        assert_eq!(chat.take_output(ids[0]), b"* online: user0 user2 eve\n");
    }

    #[test]
    fn quit_says_bye_and_closes() {
        let (mut chat, ids) = room(2);
        chat.send(ids[1], b"/quit\nthis is never read\n");
        assert_eq!(chat.take_output(ids[1]), b"* bye\n");
        assert!(chat.is_closing(ids[1]));
        assert!(chat.take_output(ids[0]).is_empty());
    }

    #[test]
    fn unknown_commands_are_errors() {
        let (mut chat, ids) = room(2);
        for command in [&b"/help\n"[..], b"/\n", b"/nickname x\n", b"/\xff\n"] {
            chat.send(ids[1], command);
            assert_eq!(chat.take_output(ids[1]), b"error: unknown command\n");
            assert!(chat.take_output(ids[0]).is_empty());
        }
    }

    #[test]
    fn leaving_is_announced_with_the_reason_and_frees_the_name() {
        let (mut chat, ids) = room(3);
        chat.send(ids[1], b"/nick alice\n");
        chat.take_output(ids[0]);
        chat.take_output(ids[2]);
        chat.disconnect(ids[1], CloseReason::QueueLimit);
        assert_eq!(chat.take_output(ids[0]), b"* alice left (queue-limit)\n");
        assert_eq!(chat.take_output(ids[2]), b"* alice left (queue-limit)\n");
        chat.send(ids[2], b"/nick alice\n");
        assert_eq!(chat.take_output(ids[2]), b"* you are now known as alice\n");
        chat.send(ids[2], b"/who\n");
        assert_eq!(chat.take_output(ids[2]), b"* online: user0 alice\n");
    }

    #[test]
    fn an_over_long_line_gets_an_error_and_goes_nowhere() {
        let mut chat = Harness::new(Chat::new()).with_max_frame(64);
        let (one, two) = (chat.connect(), chat.connect());
        chat.take_output(one);
        chat.take_output(two);
        let mut long = vec![b'x'; 100];
        long.extend_from_slice(b"\nfine\n");
        chat.send(one, &long);
        assert_eq!(
            chat.take_output(one),
            b"error: line too long (limit 64 bytes)\n"
        );
        assert_eq!(chat.take_output(two), b"[user0] fine\n");
    }

    #[test]
    fn length_framing_frames_the_shared_bytes() {
        let mut chat = Harness::new(Chat::new()).with_framing(FramingKind::Length);
        let (one, two) = (chat.connect(), chat.connect());
        chat.take_output(two);
        chat.send(one, b"\x00\x00\x00\x02hi");
        assert_eq!(chat.take_output(two), b"\x00\x00\x00\x0a[user0] hi");
    }

    #[test]
    fn an_idle_member_is_told_and_the_room_hears_why_it_left() {
        let (mut chat, ids) = room(2);
        chat.idle_timeout(ids[1]);
        assert_eq!(chat.take_output(ids[1]), b"error: idle timeout\n");
        chat.disconnect(ids[1], CloseReason::IdleTimeout);
        assert_eq!(chat.take_output(ids[0]), b"* user1 left (idle-timeout)\n");
    }

    #[test]
    fn a_datagram_is_told_chat_needs_a_stream() {
        let mut chat = Harness::new(Chat::new());
        let reply = chat.datagram(b"hello").unwrap();
        assert!(reply.starts_with(b"error: chat needs a stream"));
    }
}
