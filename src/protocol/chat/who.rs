//! `/who`: the list of who is in the room, made as the asker reads it.
//!
//! In a room of ten thousand members the list is some 330 KB. Built whole for each request, a
//! member that sends `/who` a few thousand times in one write makes the server build gigabytes
//! at once, long before the kernel takes any of it. So the list is made in lines of at most
//! [`NAMES_PER_LINE`] names, one line at a time, each only when the asker's queue is empty:
//! the pattern of chargen ([`Replies::refill_when_drained`], then
//! [`Protocol::on_drained`](crate::protocol::Protocol::on_drained)). A [`WhoListing`] in the
//! asker's session remembers where the next line starts (the last member listed: the room is
//! kept in slot order) and how many more `/who`s were asked for meanwhile. A `/who` while a
//! listing is under way is only counted: each gets its own whole listing, one after the other,
//! so however many arrive at once the server holds one counter, not one list each.
//!
//! The wire form. A room that fits in one line gets one line, `* online: alice user2 user7`.
//! A longer list is cut into lines that end with ` ...` while more follow (`...` is not a name,
//! so it cannot be mistaken for one); the last line has no ` ...`. If everyone still to be
//! listed left before that last line was made, it is `* online: (end)`.
//!
//! **Joins and leaves during a listing.** Lines go out over time, and the room changes between
//! them. A member present from the `/who` to the last line is listed exactly once; nobody is
//! listed twice; a member who leaves before its line is made is not listed; one who arrives (or
//! is renamed) during the listing is listed, under its name at that time, if its slot comes
//! after the last one listed, and not otherwise. The asker hears of every such change anyway: the
//! `joined`, `left` and `is now known as` lines come in between the list's lines. Other replies
//! to the asker (an `error:` line, a `/nick` answer) and other members' lines may also arrive
//! before the list's end: each line is whole, but they interleave.
//!
//! Next: `files/mod.rs`, transfers with resume: sessions that are whole state machines.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::protocol::{ClientId, Replies};

/// Most names on one line of the list: with names of at most 32 bytes, a line is at most some
/// 2 KiB, and one line is all a refill makes.
pub const NAMES_PER_LINE: usize = 64;

/// A `/who` being answered, line by line: kept in the asker's session until done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WhoListing {
    /// The last member listed: the next line starts at the slot after it (`None`: at the start).
    after: Option<ClientId>,
    /// `/who`s asked for while this listing was under way, each owed a whole listing after it.
    queued: u32,
}

impl WhoListing {
    /// A listing from the start of the room.
    pub fn new() -> Self {
        WhoListing::default()
    }

    /// Another `/who` arrived while this one is under way: it is answered after this one.
    pub fn ask_again(&mut self) {
        self.queued = self.queued.saturating_add(1);
    }

    /// Sends the next line of the list (`names` is the room, in slot order). Returns what is left
    /// to do, or `None` once every listing asked for is complete.
    pub fn send_next_line(
        self,
        names: &BTreeMap<ClientId, String>,
        out: &mut Replies,
    ) -> Option<WhoListing> {
        let start = match self.after {
            Some(last) => Bound::Excluded(last),
            None => Bound::Unbounded,
        };
        let mut rest = names.range((start, Bound::Unbounded));
        let mut line = String::from("* online:");
        let mut last = None;
        for (client, name) in rest.by_ref().take(NAMES_PER_LINE) {
            line.push(' ');
            line.push_str(name);
            last = Some(*client);
        }
        let more = rest.next().is_some();
        if last.is_none() {
            line.push_str(" (end)"); // everyone still to be listed left meanwhile
        }
        if more {
            line.push_str(" ...");
        }
        out.send_frame(&[line.as_bytes()]);
        if more {
            return Some(WhoListing {
                after: last,
                ..self
            });
        }
        (self.queued > 0).then(|| WhoListing {
            after: None,
            queued: self.queued - 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::framing::FramingKind;

    fn room(count: usize) -> BTreeMap<ClientId, String> {
        (0..count)
            .map(|n| (ClientId(n), format!("user{n}")))
            .collect()
    }

    /// Sends one line; returns it (without `\n`) and what is left to do.
    fn next(
        listing: WhoListing,
        names: &BTreeMap<ClientId, String>,
    ) -> (String, Option<WhoListing>) {
        let mut out = Replies::new(FramingKind::Line);
        let left = listing.send_next_line(names, &mut out);
        let line = String::from_utf8(out.to_sender().to_vec()).unwrap();
        (line.strip_suffix('\n').unwrap().to_string(), left)
    }

    #[test]
    fn a_small_room_is_one_line() {
        let (line, left) = next(WhoListing::new(), &room(3));
        assert_eq!(line, "* online: user0 user1 user2");
        assert_eq!(left, None);
    }

    #[test]
    fn a_big_room_is_cut_into_lines_marked_until_the_last() {
        let names = room(NAMES_PER_LINE * 2 + 1);
        let (first, left) = next(WhoListing::new(), &names);
        assert!(first.starts_with("* online: user0 user1 ") && first.ends_with(" user63 ..."));
        let (second, left) = next(left.unwrap(), &names);
        assert!(second.starts_with("* online: user64 ") && second.ends_with(" user127 ..."));
        let (third, left) = next(left.unwrap(), &names);
        assert_eq!(third, "* online: user128");
        assert_eq!(left, None);
    }

    #[test]
    fn a_room_of_exactly_one_line_has_no_continuation() {
        let (line, left) = next(WhoListing::new(), &room(NAMES_PER_LINE));
        assert!(line.ends_with(" user63"));
        assert_eq!(left, None);
    }

    #[test]
    fn the_room_changing_between_lines() {
        let mut names = room(NAMES_PER_LINE + 3);
        let (_, left) = next(WhoListing::new(), &names);
        // Listed already: user5 leaving changes nothing. Not yet: user64 leaving drops it.
        names.remove(&ClientId(5));
        names.remove(&ClientId(NAMES_PER_LINE));
        // A newcomer in a later slot is listed; one in an earlier, freed slot is not (again).
        names.insert(ClientId(5), "late".into());
        names.insert(ClientId(1000), "newcomer".into());
        let (line, left) = next(left.unwrap(), &names);
        assert_eq!(line, "* online: user65 user66 newcomer");
        assert_eq!(left, None);

        // Everyone still to be listed left: the last line says so.
        let mut names = room(NAMES_PER_LINE + 1);
        let (_, left) = next(WhoListing::new(), &names);
        names.remove(&ClientId(NAMES_PER_LINE));
        assert_eq!(
            next(left.unwrap(), &names),
            ("* online: (end)".into(), None)
        );
    }

    #[test]
    fn each_repeated_who_gets_a_whole_listing_after_the_current_one() {
        let names = room(NAMES_PER_LINE + 1);
        let (_, left) = next(WhoListing::new(), &names);
        let mut listing = left.unwrap();
        listing.ask_again();
        listing.ask_again();
        let mut lines = Vec::new();
        let mut left = Some(listing);
        while let Some(listing) = left {
            let (line, rest) = next(listing, &names);
            lines.push(line);
            left = rest;
        }
        assert_eq!(
            lines.len(),
            5,
            "the rest of the first, then two whole listings of two lines"
        );
        assert_eq!(lines[0], lines[2]);
        assert_eq!(lines[2], lines[4]);
        assert!(lines[1].ends_with(" ..."));
    }
}
