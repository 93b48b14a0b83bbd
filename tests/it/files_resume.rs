//! `-p files` as a service you can leave running: resume across a server restart, uploads that
//! nobody else can take over or splice, digests checked before a name is published, `--max-files`,
//! quota reservations that end, partial files that expire, links planted in the folder refused,
//! and a flood of pipelined `LIST`s answered a batch at a time.

use std::time::{Duration, SystemTime};

use crate::common::{self, PATIENCE, pseudo_random_bytes};
use crate::files::{Client, TempDir, echoloop, put_when_free, serve_files, sha256_hex};
use std::time::Instant;

/// `PUT <name> <size> <sha256 of content>`.
fn put_line(name: &str, content: &[u8]) -> String {
    format!("PUT {name} {} {}", content.len(), sha256_hex(content))
}

/// The name of the partial file the server keeps for `name` with `content`'s size and digest.
fn partial_of(name: &str, content: &[u8]) -> String {
    format!(".partial-{}-{}-{name}", content.len(), sha256_hex(content))
}

/// Sends `request` until it is answered with something else than `refused` (the server has not
/// yet seen an earlier connection end); returns that answer.
fn request_until_not(addr: std::net::SocketAddr, request: &str, refused: &str) -> String {
    common::wait_until(
        &format!("{request} answered otherwise than {refused:?}"),
        || Client::connect(addr).request(request),
        |reply| reply != refused,
    )
}

#[test]
fn echoloop_put_resumes_after_the_server_restarts() {
    let dir = TempDir::new("restart");
    let local = TempDir::new("restart-local");
    let content = pseudo_random_bytes(2_000_000, 40);
    std::fs::write(local.join("data.bin"), &content).unwrap();
    {
        let server = serve_files(dir.path(), |_| {});
        let mut killed = Client::connect(server.addr());
        assert_eq!(killed.request(&put_line("data.bin", &content)), "OK 0");
        killed.send(&content[..1_234_567]);
        drop(killed);
        common::wait_for_stats(&server, "the killed client's end", |s| {
            s.total().connections_open == 0
        });
    } // the server stops here
    let server = serve_files(dir.path(), |_| {});
    let addr = server.addr().to_string();
    let run = echoloop(&["put", &addr, "data.bin"], local.path());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("resuming data.bin at byte 1234567 of 2000000"),
        "only the missing bytes are sent: {stderr}"
    );
    assert!(std::fs::read(dir.join("data.bin")).unwrap() == content);
    assert_eq!(dir.names(), ["data.bin"]);
}

#[test]
fn nobody_else_resumes_or_splices_an_upload_that_is_not_theirs() {
    let dir = TempDir::new("takeover");
    let server = serve_files(dir.path(), |_| {});
    let mine = pseudo_random_bytes(100_000, 41);
    let mut theirs = mine.clone();
    theirs[99_999] ^= 1; // same name, same size, another file
    let mut owner = Client::connect(server.addr());
    assert_eq!(owner.request(&put_line("f.bin", &mine)), "OK 0");
    owner.send(&mine[..60_000]);
    // While the owner is connected, the name is busy for everyone, whatever they declare.
    let mut other = Client::connect(server.addr());
    assert_eq!(other.request(&put_line("f.bin", &mine)), "error: busy");
    assert_eq!(other.request(&put_line("f.bin", &theirs)), "error: busy");
    assert_eq!(other.request("PUT f.bin 100000"), "error: busy");
    drop(owner);
    // Once the owner is gone, another digest gets a partial file of its own, from byte 0.
    let (mut other, reply) = put_when_free(server.addr(), &put_line("f.bin", &theirs));
    assert_eq!(reply, "OK 0", "never the owner's offset");
    let mut names = dir.names();
    names.sort();
    let mut expected = vec![partial_of("f.bin", &mine), partial_of("f.bin", &theirs)];
    expected.sort();
    assert_eq!(names, expected, "the owner's partial file is untouched");
    other.send(&theirs);
    assert_eq!(other.line(), format!("DONE 100000 {}", sha256_hex(&theirs)));
    assert!(
        std::fs::read(dir.join("f.bin")).unwrap() == theirs,
        "stored exactly as sent, nothing spliced"
    );
    assert_eq!(
        dir.names(),
        ["f.bin"],
        "the other partial files of the name are removed"
    );
    // The owner, back, is told the name is taken.
    assert_eq!(
        Client::connect(server.addr()).request(&put_line("f.bin", &mine)),
        "error: exists"
    );
}

#[test]
fn a_file_that_does_not_match_its_digest_is_never_published() {
    let dir = TempDir::new("mismatch");
    let server = serve_files(dir.path(), |_| {});
    let declared = pseudo_random_bytes(300_000, 42);
    let mut sent = declared.clone();
    sent[150_000] ^= 0x80;
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(&put_line("m.bin", &declared)), "OK 0");
    client.send(&sent);
    assert_eq!(client.line(), "error: digest mismatch");
    assert_eq!(dir.names(), Vec::<String>::new(), "partial file deleted");
    assert_eq!(client.list(), Vec::<String>::new());
    // The connection goes on, and the name is free: the right bytes are accepted.
    assert_eq!(
        client.put("m.bin", &declared),
        format!("DONE 300000 {}", sha256_hex(&declared))
    );
    assert_eq!(client.request(&put_line("x", b"abc")), "OK 0");
    client.send(b"abd");
    assert_eq!(client.line(), "error: digest mismatch");
    assert_eq!(dir.names(), ["m.bin"]);
}

#[test]
fn max_files_counts_complete_partial_and_empty_files_and_allows_resumes() {
    let dir = TempDir::new("max-files");
    let server = serve_files(dir.path(), |files| files.max_files = 3);
    let mut client = Client::connect(server.addr());
    assert!(client.put("empty-1", b"").starts_with("DONE 0 "));
    assert!(client.put("empty-2", b"").starts_with("DONE 0 "));
    let content = pseudo_random_bytes(1000, 43);
    let mut cut = Client::connect(server.addr());
    assert_eq!(cut.request(&put_line("p", &content)), "OK 0");
    cut.send(&content[..400]);
    drop(cut);
    assert_eq!(client.request("PUT empty-3 0"), "error: too many files");
    assert_eq!(
        client.request(&put_line("q", &content)),
        "error: too many files"
    );
    // Resuming the partial file that exists is allowed.
    let (mut resumed, reply) = put_when_free(server.addr(), &put_line("p", &content));
    assert_eq!(reply, "OK 400");
    resumed.send(&content[400..]);
    assert!(resumed.line().starts_with("DONE 1000 "));
    assert_eq!(client.request("PUT empty-3 0"), "error: too many files");
    assert_eq!(client.list(), ["0 empty-1", "0 empty-2", "1000 p"]);
    // The tutorial client is counted too.
    let mut tutorial = common::connect(&server);
    common::send(&mut tutorial, b"5");
    assert_eq!(
        common::read_to_end(&mut tutorial),
        b"error: too many files\n"
    );
}

#[test]
fn a_reservation_ends_with_its_connection_or_after_the_reservation_timeout() {
    let dir = TempDir::new("reservation");
    let server = serve_files(dir.path(), |files| {
        files.dir_quota = 100;
        files.reservation_timeout = Duration::from_secs(1);
    });
    let mut holder = Client::connect(server.addr());
    assert_eq!(holder.request("PUT big 80"), "OK 0");
    holder.send(&[1; 10]);
    let mut other = Client::connect(server.addr());
    assert_eq!(
        other.request("PUT small 30"),
        "error: over quota (20 bytes free)"
    );
    // The holder sends nothing more: after --reservation-timeout its partial file counts only
    // its 10 real bytes.
    let start = Instant::now();
    let _small = loop {
        let mut small = Client::connect(server.addr());
        match small.request("PUT small 30").as_str() {
            "OK 0" => break small, // kept connected: its 30 bytes stay reserved
            "error: over quota (20 bytes free)" => {}
            other => panic!("{other}"),
        }
        assert!(start.elapsed() < PATIENCE, "the reservation never ended");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Bytes after the timeout ask for the reservation again: 60 free, 70 needed.
    holder.send(&[1; 10]);
    assert_eq!(holder.line(), "error: over quota (60 bytes free)");
    assert_eq!(holder.rest(), b"");

    // A connection that ends frees its reservation at once.
    let dir = TempDir::new("reservation-end");
    let server = serve_files(dir.path(), |files| files.dir_quota = 100);
    let mut holder = Client::connect(server.addr());
    assert_eq!(holder.request("PUT big 80"), "OK 0");
    assert_eq!(
        Client::connect(server.addr()).request("PUT small 30"),
        "error: over quota (20 bytes free)"
    );
    drop(holder);
    let reply = request_until_not(
        server.addr(),
        "PUT small 30",
        "error: over quota (20 bytes free)",
    );
    assert_eq!(reply, "OK 0");
}

#[test]
fn a_partial_file_that_is_a_link_is_never_written_through() {
    let root = TempDir::new("linked-partial");
    let served = root.join("served");
    std::fs::create_dir(&served).unwrap();
    let outside = root.join("outside");
    std::fs::write(&outside, b"keep out").unwrap();
    let content = b"0123456789";
    // Planted before the start: a symbolic link and a hard link under partial files' names.
    std::os::unix::fs::symlink(&outside, served.join(partial_of("sym", content))).unwrap();
    std::fs::hard_link(&outside, served.join(partial_of("hard", content))).unwrap();
    let server = serve_files(&served, |_| {});
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(&put_line("sym", content)), "error: exists");
    assert_eq!(client.request(&put_line("hard", content)), "error: exists");
    // Swapped while the server runs: a partial file of ours becomes a hard link elsewhere.
    let mut cut = Client::connect(server.addr());
    assert_eq!(cut.request(&put_line("swap", content)), "OK 0");
    cut.send(&content[..4]);
    drop(cut);
    let partial = served.join(partial_of("swap", content));
    common::wait_until(
        "the partial file's first bytes",
        || std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0),
        |&len| len == 4,
    );
    std::fs::remove_file(&partial).unwrap();
    std::fs::hard_link(&outside, &partial).unwrap();
    let reply = request_until_not(server.addr(), &put_line("swap", content), "error: busy");
    assert_eq!(reply, "error: exists");
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep out");
    assert_eq!(client.list(), Vec::<String>::new());
}

#[test]
fn a_publish_cut_short_by_a_crash_is_completed_at_start() {
    // Where there is no rename that refuses to replace, publishing is a link and an unlink; a
    // crash between the two leaves the file under both names, which the start-up scan mends.
    let dir = TempDir::new("crash-pair");
    let content = b"published";
    std::fs::write(dir.join("p.txt"), content).unwrap();
    std::fs::hard_link(dir.join("p.txt"), dir.join(&partial_of("p.txt", content))).unwrap();
    let server = serve_files(dir.path(), |_| {});
    assert_eq!(dir.names(), ["p.txt"]);
    let mut client = Client::connect(server.addr());
    assert_eq!(client.list(), ["9 p.txt"]);
    assert_eq!(client.get("p.txt", 0).1, content);
}

#[test]
fn partial_files_untouched_for_the_ttl_are_removed() {
    let dir = TempDir::new("ttl");
    let old = dir.join(".partial-5-u-old");
    std::fs::write(&old, b"ab").unwrap();
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    std::fs::write(dir.join(".partial-5-u-fresh"), b"ab").unwrap();
    let server = serve_files(dir.path(), |files| files.dir_quota = 10);
    let mut client = Client::connect(server.addr());
    // The first request sweeps: the old partial file's bytes no longer count.
    assert_eq!(client.request("PUT x 8"), "OK 0");
    assert_eq!(dir.names(), [".partial-5-u-fresh", ".partial-8-u-x"]);
}

#[test]
fn a_flood_of_pipelined_lists_holds_one_batch_while_others_are_answered() {
    let dir = TempDir::new("list-flood");
    for i in 0..1000 {
        std::fs::write(dir.join(&format!("file-{i:05}")), b"x").unwrap();
    }
    let server = serve_files(dir.path(), |_| {});
    // 6,553 `LIST`s in one 32 KiB write, from a client that never reads its answers: 85 MB of
    // listings, if they were made at once. They are made a batch per drained queue, so once the
    // flooder's socket buffers are full the server holds what one drain made, no more.
    let mut flooder = Client::connect(server.addr());
    flooder.send(&b"LIST\n".repeat(32 * 1024 / 5));
    let one_batch = 256 * "1 file-00000\n".len() as u64;
    common::wait_for_stats(&server, "the flooder's socket buffers full", |s| {
        s.total().queued_bytes > 0
    });
    let mut other = Client::connect(server.addr());
    for round in 0..3 {
        assert!(
            other
                .put(&format!("new-{round}"), b"still served")
                .starts_with("DONE 12 "),
            "round {round}"
        );
        assert_eq!(other.list().len(), 1001 + round);
    }
    // One drained queue may end a listing (its last batch, `END`) and begin the next (its first).
    let stats = server.stats().total();
    assert!(
        0 < stats.queued_bytes && stats.queued_bytes_peak <= 2 * one_batch + 4,
        "{stats:?}"
    );
    drop(flooder);
}
