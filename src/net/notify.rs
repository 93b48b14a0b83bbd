//! Telling the service manager how we are: readiness, status, stopping, and the watchdog's ping.
//!
//! **The protocol.** With `Type=notify`, systemd starts a service with `NOTIFY_SOCKET` in its
//! environment: the address of a Unix *datagram* socket it listens on. A service sends it
//! newline-separated `KEY=value` lines, one message per datagram: `READY=1` (started: units that
//! wait for us may go on), `STATUS=...` (a line for `systemctl status`), `STOPPING=1` (the drain
//! has begun), `WATCHDOG=1` (still alive, see below). That is the whole of `sd_notify(3)`; a
//! datagram needs no connection and no reply, so we open an unbound socket, send, and close it.
//!
//! **Path or abstract.** The address is a file path (`/run/systemd/notify`) or, starting with
//! `@`, a name in Linux's *abstract* namespace (`@/org/freedesktop/systemd1/notify/...`): a
//! socket address that is no file at all, used by some service managers and container runtimes
//! (no file to bind-mount, gone with its socket). The `sd-notify` crate's 0.5 handles only paths,
//! so this small module does the sending itself, with std's abstract addresses
//! (`SocketAddrExt::from_abstract_name`, Linux only). Other systems have no abstract namespace:
//! there a `@` address is refused, which is logged like any failure.
//!
//! **Failures** never stop the server: a service manager that cannot be told is not a reason
//! to stop serving. The first one is logged at warn level (a unit whose `Type=notify` never hears
//! `READY=1` is killed at its start timeout: the log line says why), later ones at debug, so a
//! status line every few seconds cannot flood the journal.
//!
//! **The watchdog.** With `WatchdogSec=` in the unit, systemd sets `WATCHDOG_USEC` (and
//! `WATCHDOG_PID`, the process it is meant for) and restarts the service if no `WATCHDOG=1` comes
//! within that time. [`watchdog_interval`] reads them; `server/watchdog.rs` decides when a ping is
//! honest (every reactor still turning).
//!
//! Next: `server/timers.rs`, deadlines without scanning every connection.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use log::{debug, warn};

/// `READY=1`: every socket is bound; systemd may start what depends on us.
pub fn notify_ready() {
    notify("READY=1\n");
}

/// `STOPPING=1`: the drain has begun.
pub fn notify_stopping() {
    notify("STOPPING=1\n");
}

/// `STATUS=...`: one line for `systemctl status` (a newline in `line` would end it early, so
/// any is replaced by a space).
pub fn notify_status(line: &str) {
    notify(&format!("STATUS={}\n", line.replace('\n', " ")));
}

/// `WATCHDOG=1`: every reactor is still turning (see `server/watchdog.rs`).
pub fn notify_watchdog() {
    notify("WATCHDOG=1\n");
}

/// Whether a notify failure has been logged at warn level yet (only the first one is).
static FAILURE_WARNED: AtomicBool = AtomicBool::new(false);

/// Sends `message` to the service manager, if there is one; a failure is logged, never fatal.
fn notify(message: &str) {
    let Some(address) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&address, message.as_bytes()) {
        let what = message.lines().next().unwrap_or_default();
        if FAILURE_WARNED.swap(true, Ordering::Relaxed) {
            debug!("sd_notify {what} to {address:?} failed: {e}");
        } else {
            warn!(
                "sd_notify {what} to {address:?} failed: {e} (later failures are logged at debug level)"
            );
        }
    }
}

/// One datagram to the notify socket at `address`: a path, or `@name` for an abstract socket.
pub fn send(address: &OsString, message: &[u8]) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = address.as_encoded_bytes();
    let sent = match bytes.split_first() {
        Some((b'@', name)) => send_abstract(&socket, name, message)?,
        Some((b'/', _)) => socket.send_to(message, address)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "NOTIFY_SOCKET is neither a path nor an @abstract name",
            ));
        }
    };
    if sent != message.len() {
        return Err(io::Error::other("the notification was cut short"));
    }
    Ok(())
}

/// Sends to the abstract socket `name` (without its `@`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &address)
}

/// No abstract namespace here: only paths can be notified.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket addresses (@name) exist only on Linux",
    ))
}

/// How often systemd wants `WATCHDOG=1`, if it wants it from this process: `WATCHDOG_USEC`
/// (microseconds, more than 0), unless `WATCHDOG_PID` names another process (a variable a child
/// inherited is not meant for it).
pub fn watchdog_interval() -> Option<Duration> {
    let interval = parse_watchdog(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    );
    if interval.is_none() && std::env::var_os("WATCHDOG_USEC").is_some() {
        debug!("WATCHDOG_USEC is set but not for this process, or not a count: no watchdog");
    }
    interval
}

/// [`watchdog_interval`] without the environment, for tests.
fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(our_pid)
    {
        return None;
    }
    match usec?.trim().parse::<u64>() {
        Ok(0) | Err(_) => None,
        Ok(micros) => Some(Duration::from_micros(micros)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> Vec<u8> {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notification");
        buf[..n].to_vec()
    }

    #[test]
    fn a_path_socket_gets_the_datagram() {
        let path = std::env::temp_dir().join(format!("echoloop-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let manager = UnixDatagram::bind(&path).unwrap();
        send(&path.clone().into_os_string(), b"READY=1\n").unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(receive(&manager), b"READY=1\n");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_gets_the_datagram() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("echoloop-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let manager = UnixDatagram::bind_addr(&address).unwrap();
        send(&OsString::from(format!("@{name}")), b"WATCHDOG=1\n").unwrap();
        assert_eq!(receive(&manager), b"WATCHDOG=1\n");
    }

    #[test]
    fn an_address_that_is_neither_path_nor_abstract_is_refused() {
        let error = send(&OsString::from("relative/notify"), b"READY=1\n").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported);
        let error = send(&OsString::new(), b"READY=1\n").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn nobody_listening_is_an_error_not_a_panic() {
        let path = std::env::temp_dir().join("echoloop-notify-nobody-listens-here");
        assert!(send(&path.into_os_string(), b"READY=1\n").is_err());
    }

    #[test]
    fn the_watchdog_interval_is_for_us_only() {
        let ms = Duration::from_millis;
        assert_eq!(parse_watchdog(Some("30000000"), None, 7), Some(ms(30_000)));
        assert_eq!(parse_watchdog(Some("500000"), Some("7"), 7), Some(ms(500)));
        assert_eq!(parse_watchdog(Some("500000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 7), None);
        assert_eq!(parse_watchdog(None, Some("7"), 7), None);
    }
}
