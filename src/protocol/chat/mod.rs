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
//! same allocation: a message to a thousand clients is one copy, not a thousand.
//!
//! **A room open to strangers.** What one member sends ends up on the others' terminals, so three
//! rules keep a member from acting on anyone else's screen or passing for the server:
//!
//! - The body is shown, not obeyed: control bytes, C1 controls and bytes that are not UTF-8 are
//!   written as visible `\xNN` (`escape.rs`); text in any script passes unchanged. (Echo and
//!   timestamp stay byte-transparent: this is chat's rule.)
//! - Lines from the server start with `* `, lines from members with `[name] `, and a member's
//!   line can never hold a line break (an escaped `\n` or `\r` is four visible characters), so
//!   nothing a member sends can start a line that looks like the server's, whatever the framing.
//! - Names are plain (`names.rs`): 1 to 32 of `A-Z a-z 0-9 _ -`, unique without regard to case.
//!
//! Lines that start with `/` are commands:
//!
//! - `/nick NAME`: take a new name (see `names.rs`; `user<N>` is reserved for client N). The
//!   sender gets `* you are now known as NAME`, the others `* old is now known as NAME`.
//! - `/who`: `* online: alice user2 user7` (in order of their slots), made line by line as the
//!   asker reads it when the room is large (`who.rs`).
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
//! Next: `names.rs`, what `/nick` accepts.

mod escape;
mod names;
mod who;

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::SystemTime;

use super::{Answer, ClientId, Protocol, Replies, SlowReader};
use crate::protocol::CloseReason;
use crate::protocol::framing::{self, Frame, FrameError, FramingKind};
use names::{check_name, default_name, key};
use who::WhoListing;

/// The chat room of one reactor.
#[derive(Debug, Default)]
pub struct Chat {
    /// Who is here, by client, with the name as its owner spelled it: kept in slot order, which
    /// is the order `/who` lists and resumes in.
    names: BTreeMap<ClientId, String>,
    /// Who has a name, by its [`key`] (lower case): `/nick`'s uniqueness check.
    owners: HashMap<String, ClientId>,
    /// A member's body once escaped, before it is framed.
    body: Vec<u8>,
    /// Where shared messages are put together before they become an `Rc<[u8]>`.
    scratch: Vec<u8>,
}

/// What the room keeps with each member's connection.
#[derive(Debug)]
pub struct Member {
    id: ClientId,
    /// The `/who` being answered to this member, if any.
    who: Option<WhoListing>,
}

impl Chat {
    /// An empty room.
    pub fn new() -> Self {
        Chat::default()
    }

    /// `* <what>` to every client but `except`.
    fn announce(&mut self, except: Option<ClientId>, what: &str, out: &mut Replies) {
        let bytes = share(&mut self.scratch, out.framing(), &[b"* ", what.as_bytes()]);
        out.broadcast(except, bytes);
    }

    fn on_command(&mut self, member: &mut Member, line: &[u8], out: &mut Replies) {
        let (command, argument) = match line.iter().position(|b| *b == b' ') {
            Some(at) => (&line[..at], line[at + 1..].trim_ascii()),
            None => (line, &b""[..]),
        };
        match command {
            b"/nick" => self.rename(member.id, argument, out),
            b"/who" => match &mut member.who {
                Some(listing) => listing.ask_again(), // answered when the current one is done
                None => self.list_more(member, WhoListing::new(), out),
            },
            b"/quit" => {
                out.send_frame(&[b"* bye"]);
                out.close();
            }
            _ => out.error_line("unknown command"),
        }
    }

    /// Sends the next line of a `/who` listing, and asks to be called for the one after it.
    fn list_more(&self, member: &mut Member, listing: WhoListing, out: &mut Replies) {
        member.who = listing.send_next_line(&self.names, out);
        if member.who.is_some() {
            out.refill_when_drained();
        }
    }

    /// `/nick NAME`: checks the name, then tells the sender and the room.
    fn rename(&mut self, client: ClientId, wanted: &[u8], out: &mut Replies) {
        let new = match check_name(client, wanted) {
            Ok(name) => name,
            Err(why) => return out.error_line(why),
        };
        let old = self
            .names
            .get(&client)
            .cloned()
            .unwrap_or_else(|| default_name(client));
        if new == old {
            let line = format!("* you are already known as {new}");
            return out.send_frame(&[line.as_bytes()]);
        }
        let new_key = key(&new);
        if self
            .owners
            .get(&new_key)
            .is_some_and(|owner| *owner != client)
        {
            return out.error_line(&format!("name {new} is taken"));
        }
        // The owner itself may change the case of its name: its key stays, its spelling changes.
        self.owners.remove(&key(&old));
        self.owners.insert(new_key, client);
        self.names.insert(client, new.clone());
        let line = format!("* you are now known as {new}");
        out.send_frame(&[line.as_bytes()]);
        self.announce(Some(client), &format!("{old} is now known as {new}"), out);
    }
}

/// Frames `parts` as one message in `framing` (put together in `scratch`) and hands out the
/// bytes, shared.
fn share(scratch: &mut Vec<u8>, framing: FramingKind, parts: &[&[u8]]) -> Rc<[u8]> {
    scratch.clear();
    framing::encode(framing, parts, scratch);
    Rc::from(&scratch[..])
}

impl Protocol for Chat {
    /// The member's client number and its `/who` under way: its name lives in the room.
    type Session = Member;
    const NAME: &'static str = "chat";
    const FRAMING: FramingKind = FramingKind::Line;

    fn limits_frame_rate(&self) -> bool {
        true // `--chat-rate`: a flooder slows itself, not the room
    }

    fn slow_reader(&self) -> SlowReader {
        SlowReader::Drop
    }

    fn on_connect(&mut self, client: ClientId, _now: SystemTime, out: &mut Replies) -> Member {
        // `userN` is reserved for client N (see `names.rs`), and N is not in use: it is free.
        let name = default_name(client);
        self.owners.insert(key(&name), client);
        self.names.insert(client, name.clone());
        out.send_frame(&[b"* you are ", name.as_bytes()]);
        self.announce(Some(client), &format!("{name} joined"), out);
        Member {
            id: client,
            who: None,
        }
    }

    fn on_frame(
        &mut self,
        member: &mut Member,
        frame: Frame<'_>,
        _now: SystemTime,
        out: &mut Replies,
    ) {
        let line = frame.payload;
        if line.is_empty() {
            return; // nothing to say
        }
        if line.starts_with(b"/") {
            return self.on_command(member, line, out);
        }
        self.body.clear();
        escape::escape_into(line, &mut self.body);
        let name = match self.names.get(&member.id) {
            Some(name) => name.as_bytes(),
            None => return, // not in the room: never happens while connected
        };
        let parts: [&[u8]; 4] = [b"[", name, b"] ", &self.body];
        let bytes = share(&mut self.scratch, out.framing(), &parts);
        out.broadcast(Some(member.id), bytes);
    }

    fn on_frame_error(&mut self, _member: &mut Member, error: &FrameError, out: &mut Replies) {
        // The decoder skips the rest of the line; the line goes to nobody.
        let FrameError::TooLong { limit } = error;
        if out.framing() == FramingKind::Line {
            out.error_line(&format!("line too long (limit {limit} bytes)"));
        }
    }

    fn on_drained(&mut self, member: &mut Member, out: &mut Replies) {
        if let Some(listing) = member.who.take() {
            self.list_more(member, listing, out);
        }
    }

    fn on_end_of_input(&mut self, member: &mut Member, out: &mut Replies) {
        // The reactor dropped the pending refill at the FIN; a listing under way is still owed
        // (`printf '/who\n' | nc` gets the whole list), so ask again.
        if member.who.is_some() {
            out.refill_when_drained();
        }
    }

    fn on_disconnect(&mut self, member: Member, reason: CloseReason, out: &mut Replies) {
        let Some(name) = self.names.remove(&member.id) else {
            return;
        };
        self.owners.remove(&key(&name));
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
    fn a_line_goes_to_the_others_and_not_back() {
        let (mut chat, ids) = room(3);
        chat.send(ids[1], "café 日本 🦀\tok\n".as_bytes());
        assert!(chat.take_output(ids[1]).is_empty());
        assert_eq!(
            chat.take_output(ids[0]),
            "[user1] café 日本 🦀\tok\n".as_bytes()
        );
        assert_eq!(
            chat.take_output(ids[2]),
            "[user1] café 日本 🦀\tok\n".as_bytes()
        );
    }

    #[test]
    fn control_bytes_and_invalid_utf8_are_shown_not_passed() {
        let (mut chat, ids) = room(2);
        let cases: [(&[u8], &[u8]); 5] = [
            (b"caf\xe9 \x00ok\n", br"[user1] caf\xe9 \x00ok"),
            (
                b"\x1b]52;c;aGk=\x07 \x1b[2J\n",
                br"[user1] \x1b]52;c;aGk=\x07 \x1b[2J",
            ),
            (b"\xff\xfb\x01 IAC\n", br"[user1] \xff\xfb\x01 IAC"),
            ("\u{9b}0m \x7f\n".as_bytes(), br"[user1] \xc2\x9b0m \x7f"),
            (b"x\x9by\n", br"[user1] x\x9by"),
        ];
        for (sent, shown) in cases {
            chat.send(ids[1], sent);
            assert_eq!(chat.take_output(ids[0]), [shown, b"\n"].concat());
        }
    }

    #[test]
    fn a_member_cannot_forge_a_system_line() {
        let (mut chat, ids) = room(2);
        // `\r` would send the terminal's cursor back over `[user1] `.
        chat.send(ids[1], b"hi\r* user0 left (reset)\r\r\n");
        assert_eq!(
            chat.take_output(ids[0]),
            br"[user1] hi\x0d* user0 left (reset)\x0d"
                .iter()
                .chain(b"\n")
                .copied()
                .collect::<Vec<u8>>()
        );
        // A line that merely starts with `* ` still carries its sender's name first.
        chat.send(ids[1], b"* bye\n");
        assert_eq!(chat.take_output(ids[0]), b"[user1] * bye\n");
        // Framings that carry `\n` inside a message: it is shown, never a line break.
        for framing in [FramingKind::Length, FramingKind::Raw] {
            let mut chat = Harness::new(Chat::new()).with_framing(framing);
            let (one, two) = (chat.connect(), chat.connect());
            chat.take_output(two);
            let message: &[u8] = b"ok\n* user1 left (reset)\n";
            let sent = match framing {
                FramingKind::Length => {
                    [&(message.len() as u32).to_be_bytes()[..], message].concat()
                }
                _ => message.to_vec(),
            };
            chat.send(one, &sent);
            let got = chat.take_output(two);
            let body: &[u8] = br"[user0] ok\x0a* user1 left (reset)\x0a";
            assert!(
                got.ends_with(body),
                "{framing:?}: {}",
                String::from_utf8_lossy(&got)
            );
            assert!(!got.contains(&b'\n'), "{framing:?}");
        }
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
        let cases: [(&[u8], &[u8]); 10] = [
            (b"/nick alice\n", b"error: name alice is taken\n"),
            (b"/nick ALICE\n", b"error: name ALICE is taken\n"),
            (b"/nick aLiCe\n", b"error: name aLiCe is taken\n"),
            (b"/nick USER1\n", b"error: names user<N> are reserved\n"),
            (b"/nick user1\n", b"error: names user<N> are reserved\n"),
            (b"/nick user9\n", b"error: names user<N> are reserved\n"),
            (b"/nick\n", b"error: usage: /nick NAME\n"),
            (
                b"/nick a b\n",
                b"error: a name is letters, digits, _ and - only\n",
            ),
            (
                b"/nick \xc3\xa9\n",
                b"error: a name is letters, digits, _ and - only\n",
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
    fn a_member_may_change_the_case_of_its_own_name() {
        let (mut chat, ids) = room(2);
        chat.send(ids[1], b"/nick alice\n");
        chat.take_output(ids[0]);
        chat.take_output(ids[1]);
        chat.send(ids[1], b"/nick Alice\n");
        assert_eq!(chat.take_output(ids[1]), b"* you are now known as Alice\n");
        assert_eq!(chat.take_output(ids[0]), b"* alice is now known as Alice\n");
        chat.send(ids[0], b"/nick ALICE\n");
        assert_eq!(chat.take_output(ids[0]), b"error: name ALICE is taken\n");
        // Its own default, in another case, is its own too.
        chat.send(ids[0], b"/nick USER0\n");
        assert_eq!(chat.take_output(ids[0]), b"* you are now known as USER0\n");
        chat.disconnect(ids[1], CloseReason::PeerClosed);
        assert_eq!(chat.take_output(ids[0]), b"* Alice left (peer-closed)\n");
        chat.send(ids[0], b"/nick alice\n");
        assert_eq!(
            chat.take_output(ids[0]),
            b"* you are now known as alice\n",
            "freed"
        );
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

    /// Everything `client` gets until its `/who` listings are done, draining as a reader would.
    fn read_listing(chat: &mut Harness<Chat>, client: ClientId) -> Vec<String> {
        let mut got = chat.take_output(client);
        while chat.drain(client) {
            got.extend(chat.take_output(client));
        }
        String::from_utf8(got)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn who_in_a_big_room_comes_a_line_per_drained_queue() {
        let members = 3 * who::NAMES_PER_LINE + 5;
        let (mut chat, ids) = room(members);
        chat.send(ids[7], b"/who\n");
        let first = chat.take_output(ids[7]);
        assert!(
            first.ends_with(b" user63 ...\n"),
            "one line at once, and no more"
        );
        assert!(chat.wants_refill(ids[7]));
        let mut lines = vec![String::from_utf8(first).unwrap().trim_end().to_string()];
        lines.extend(read_listing(&mut chat, ids[7]));
        assert_eq!(lines.len(), 4);
        let listed: Vec<&str> = lines
            .iter()
            .flat_map(|line| line.strip_prefix("* online: ").unwrap().split(' '))
            .filter(|name| *name != "...")
            .collect();
        let everyone: Vec<String> = (0..members).map(|n| format!("user{n}")).collect();
        assert_eq!(listed, everyone);
        assert!(!chat.wants_refill(ids[7]), "done: no more refills");
    }

    #[test]
    fn a_who_flood_is_counted_not_built() {
        let (mut chat, ids) = room(who::NAMES_PER_LINE + 1);
        chat.send(ids[0], &b"/who\n".repeat(1000));
        let at_once = chat.take_output(ids[0]);
        assert_eq!(
            at_once.iter().filter(|b| **b == b'\n').count(),
            1,
            "one line, not 1000 lists"
        );
        let lines = read_listing(&mut chat, ids[0]);
        assert_eq!(lines.len(), 1 + 2 * 999, "every /who is answered, in turn");
        assert_eq!(lines.iter().filter(|l| l.ends_with(" ...")).count(), 999);
    }

    #[test]
    fn room_changes_during_a_who_are_interleaved_and_respected() {
        let (mut chat, ids) = room(who::NAMES_PER_LINE + 2);
        chat.send(ids[0], b"/who\n");
        chat.disconnect(ids[who::NAMES_PER_LINE], CloseReason::PeerClosed);
        let lines = read_listing(&mut chat, ids[0]);
        assert!(lines[0].ends_with(" user63 ..."));
        assert_eq!(lines[1], "* user64 left (peer-closed)");
        assert_eq!(
            lines[2], "* online: user65",
            "the one who left is not listed"
        );
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn who_goes_on_after_the_askers_fin() {
        let (mut chat, ids) = room(who::NAMES_PER_LINE + 2);
        chat.send(ids[0], b"/who\n");
        chat.end_input(ids[0]);
        assert!(chat.wants_refill(ids[0]), "asked again after the FIN");
        let lines = read_listing(&mut chat, ids[0]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], "* online: user64 user65");
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
