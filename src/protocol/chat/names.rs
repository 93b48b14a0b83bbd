//! Names in the room: what `/nick` accepts, and when two names are the same name.
//!
//! A name is shown to everyone, at the start of every line its owner says (`[alice] hi`), so it
//! must be plain: 1 to [`MAX_NAME_BYTES`] of `A-Z a-z 0-9 _ -`. No spaces (a name is one word of
//! `/who`'s list), no punctuation, nothing outside ASCII: so no control bytes, and none of the
//! letters from other scripts that look like Latin ones (Cyrillic `а` beside Latin `a`). What is
//! left of confusability is case, and that is handled by uniqueness: two names are the same
//! name when they differ only in case ([`key`]), so `ALICE` cannot join beside `alice`. Each
//! member keeps the case it chose for display.
//!
//! Every client is named `user<N>` when it arrives (N its [`ClientId`]), so `user<N>` names, in
//! any case, are reserved: client N may call itself `user<N>` (or `USER<N>`), nobody else can.
//! That is how a newcomer's default name is always free.
//!
//! Next: `escape.rs`, what a member says, made safe for the others' terminals.

use crate::protocol::ClientId;

/// Longest name `/nick` accepts, in bytes (one byte per character: names are ASCII).
pub const MAX_NAME_BYTES: usize = 32;

/// The name a client gets on arrival: `user<N>`.
pub fn default_name(client: ClientId) -> String {
    format!("user{}", client.0)
}

/// The form under which a name is unique: `Alice`, `ALICE` and `alice` are one name.
pub fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// `wanted` as a name `client` may take (if nobody has it), or the `error:` text saying why not.
pub fn check_name(client: ClientId, wanted: &[u8]) -> Result<String, &'static str> {
    if wanted.is_empty() {
        return Err("usage: /nick NAME");
    }
    if wanted.len() > MAX_NAME_BYTES {
        return Err("name too long (limit 32 bytes)");
    }
    if !wanted
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("a name is letters, digits, _ and - only");
    }
    let name = String::from_utf8_lossy(wanted).into_owned(); // ASCII: nothing is lost
    let lower = key(&name);
    let digits = lower.strip_prefix("user").unwrap_or("");
    let looks_default = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if looks_default && lower != default_name(client) {
        // So that client N can always be given `userN` when it arrives.
        return Err("names user<N> are reserved");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_letters_digits_underscore_and_dash() {
        let me = ClientId(4);
        for good in [
            "alice",
            "Bob_2",
            "x",
            "a-b",
            "0",
            "user4",
            "USER4",
            &"z".repeat(32),
        ] {
            assert_eq!(check_name(me, good.as_bytes()), Ok(good.to_string()));
        }
        let charset = Err("a name is letters, digits, _ and - only");
        for bad in [
            &b"a b"[..],
            b"a.b",
            b"*",
            b"[x]",
            b"caf\xc3\xa9",
            b"\xd0\xb0lice",
            b"a\x1b",
            b"a\tb",
        ] {
            assert_eq!(check_name(me, bad), charset, "{bad:?}");
        }
        assert_eq!(check_name(me, b""), Err("usage: /nick NAME"));
        assert_eq!(
            check_name(me, "z".repeat(33).as_bytes()),
            Err("name too long (limit 32 bytes)")
        );
    }

    #[test]
    fn user_n_is_reserved_for_client_n_in_any_case() {
        let reserved = Err("names user<N> are reserved");
        for other in ["user5", "User5", "USER5", "user04", "user0"] {
            assert_eq!(
                check_name(ClientId(4), other.as_bytes()),
                reserved,
                "{other}"
            );
        }
        for free in ["user", "users", "user4x", "user-4", "myuser4"] {
            assert!(check_name(ClientId(4), free.as_bytes()).is_ok(), "{free}");
        }
    }

    #[test]
    fn names_differing_only_in_case_have_one_key() {
        assert_eq!(key("ALICE"), key("alice"));
        assert_eq!(key("Al-Ice_9"), "al-ice_9");
        assert_ne!(key("alice"), key("alice_"));
    }
}
