//! `-p files`: the tutorial upload client, named PUT/GET with resume, hostile names, limits, a
//! full disk, many transfers at once; and the `echoloop put` / `get` clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::common::{self, PATIENCE, TestServer, pseudo_random_bytes};
use echoloop::ProtocolKind;
use echoloop::protocol::FilesConfig;
use echoloop::protocol::files::request::hex;
use sha2::{Digest, Sha256};

/// A folder under the temp dir, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(what: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "echoloop-files-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Every name in the folder, sorted (hidden partial files included).
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn serve_files(dir: &Path, adjust: impl FnOnce(&mut FilesConfig)) -> TestServer {
    let mut files = FilesConfig::new(dir);
    adjust(&mut files);
    common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Files.into();
        cfg.files = Some(files);
    })
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A named-mode client: requests out, reply lines and bodies in.
pub(crate) struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub(crate) fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    pub(crate) fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a reply");
        assert!(line.ends_with('\n'), "EOF before a whole line: {line:?}");
        line.pop();
        line
    }

    pub(crate) fn request(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        self.line()
    }

    pub(crate) fn body(&mut self, len: usize) -> Vec<u8> {
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).expect("read the body");
        body
    }

    /// Everything until the server closes.
    pub(crate) fn rest(&mut self) -> Vec<u8> {
        common::read_to_end(&mut self.reader)
    }

    /// A whole upload: `PUT`, the body, `DONE`.
    pub(crate) fn put(&mut self, name: &str, bytes: &[u8]) -> String {
        let ok = self.request(&format!("PUT {name} {}", bytes.len()));
        assert_eq!(ok, "OK 0");
        self.send(bytes);
        self.line()
    }

    /// A whole download from `offset`: the `OK` line and the bytes.
    pub(crate) fn get(&mut self, name: &str, offset: u64) -> (String, Vec<u8>) {
        let ok = self.request(&format!("GET {name} {offset}"));
        let size: u64 = ok
            .split(' ')
            .nth(1)
            .expect("OK <size> <sha>")
            .parse()
            .unwrap();
        let body = self.body((size - offset) as usize);
        (ok, body)
    }

    /// `LIST`'s lines up to `END`.
    pub(crate) fn list(&mut self) -> Vec<String> {
        self.send(b"LIST\n");
        let mut lines = Vec::new();
        loop {
            match self.line() {
                end if end == "END" => return lines,
                line => lines.push(line),
            }
        }
    }
}

/// Sends `PUT` until the name is no longer busy (the server has seen an old connection end).
pub(crate) fn put_when_free(addr: SocketAddr, request: &str) -> (Client, String) {
    let start = Instant::now();
    loop {
        let mut client = Client::connect(addr);
        let reply = client.request(request);
        if reply != "error: busy" {
            return (client, reply);
        }
        assert!(start.elapsed() < PATIENCE, "still busy");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

pub(crate) fn echoloop(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run echoloop")
}

// ----- tutorial mode ---------------------------------------------------------------------------

#[test]
fn the_tutorial_upload_client_stores_a_byte_exact_file() {
    let dir = TempDir::new("tutorial");
    let server = serve_files(dir.path(), |_| {});
    let content = pseudo_random_bytes(3 * 1024 * 1024 + 17, 1);
    // The tutorial client: the size as digits, wait for the echo, stream the bytes.
    let mut stream = common::connect(&server);
    let size = content.len().to_string();
    common::send(&mut stream, size.as_bytes());
    assert_eq!(
        common::read_exactly(&mut stream, size.len()),
        size.as_bytes()
    );
    for chunk in content.chunks(1024) {
        common::send(&mut stream, chunk);
    }
    assert_eq!(
        common::read_to_end(&mut stream),
        b"",
        "closed after the last byte"
    );
    let names = dir.names();
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    assert!(
        name.starts_with("upload-") && name.ends_with("Z-1.bin") && name.len() == 29,
        "{name}"
    );
    assert_eq!(std::fs::read(dir.join(name)).unwrap(), content);
    // Served like any other file.
    let (ok, body) = Client::connect(server.addr()).get(name, 0);
    assert_eq!(ok, format!("OK {} {}", content.len(), sha256_hex(&content)));
    assert_eq!(body, content);
}

#[test]
fn a_tutorial_upload_cut_short_leaves_nothing_and_one_too_large_is_refused() {
    let dir = TempDir::new("tutorial-short");
    let server = serve_files(dir.path(), |files| files.max_file_bytes = 1000);
    let mut stream = common::connect(&server);
    common::send(&mut stream, b"1000");
    assert_eq!(common::read_exactly(&mut stream, 4), b"1000");
    common::send(&mut stream, &[7; 400]);
    drop(stream);
    let mut stream = common::connect(&server);
    common::send(&mut stream, b"1001");
    assert_eq!(
        common::read_to_end(&mut stream),
        b"error: too large (limit 1000 bytes)\n"
    );
    common::wait_for_stats(&server, "both closed", |s| s.total().connections_open == 0);
    assert_eq!(dir.names(), Vec::<String>::new());
}

// ----- named mode: PUT, GET, resume ------------------------------------------------------------

#[test]
fn put_get_list_quit_and_errors_keep_the_connection() {
    let dir = TempDir::new("named");
    let server = serve_files(dir.path(), |_| {});
    let mut client = Client::connect(server.addr());
    let content = pseudo_random_bytes(200_000, 2);
    assert_eq!(
        client.put("a.bin", &content),
        format!("DONE 200000 {}", sha256_hex(&content))
    );
    assert_eq!(client.request("PUT a.bin 200000"), "error: exists");
    assert_eq!(client.request("FETCH a.bin"), "error: unknown command");
    assert_eq!(client.request("PUT b.bin lots"), "error: bad size");
    assert_eq!(client.request("GET nothing.bin"), "error: not found");
    assert_eq!(
        client.request("GET a.bin 200001"),
        "error: bad offset (size 200000)"
    );
    // A body and the next request in one write.
    let mut glued = b"PUT empty 0\nPUT c.txt 5\nhelloLIST\n".to_vec();
    glued.extend_from_slice(b"GET c.txt\nQUIT\n");
    client.send(&glued);
    assert_eq!(client.line(), "OK 0");
    assert_eq!(client.line(), format!("DONE 0 {}", sha256_hex(b"")));
    assert_eq!(client.line(), "OK 0");
    assert_eq!(client.line(), format!("DONE 5 {}", sha256_hex(b"hello")));
    for expected in ["200000 a.bin", "5 c.txt", "0 empty", "END"] {
        assert_eq!(client.line(), expected);
    }
    assert_eq!(client.line(), format!("OK 5 {}", sha256_hex(b"hello")));
    assert_eq!(client.body(5), b"hello");
    assert_eq!(client.line(), "BYE");
    assert_eq!(client.rest(), b"");
}

#[test]
fn an_interrupted_put_resumes_with_only_what_the_server_lacks() {
    let dir = TempDir::new("resume-put");
    let server = serve_files(dir.path(), |_| {});
    let content = pseudo_random_bytes(1_000_000, 3);
    let request = format!("PUT r.bin {}", content.len());
    // The first client is killed after 300000 bytes (its socket closes, as the kernel closes it).
    let mut first = Client::connect(server.addr());
    assert_eq!(first.request(&request), "OK 0");
    first.send(&content[..300_000]);
    drop(first);
    // Asked again, the server holds those bytes: the client sends only the rest.
    let (mut second, reply) = put_when_free(server.addr(), &request);
    let held: usize = reply.strip_prefix("OK ").unwrap().parse().unwrap();
    assert_eq!(held, 300_000);
    assert!(
        dir.names().iter().all(|n| n.starts_with(".partial-")),
        "hidden while partial"
    );
    assert_eq!(Client::connect(server.addr()).list(), Vec::<String>::new());
    second.send(&content[held..]);
    assert_eq!(
        second.line(),
        format!("DONE 1000000 {}", sha256_hex(&content))
    );
    assert_eq!(dir.names(), vec!["r.bin"]);
    assert_eq!(std::fs::read(dir.join("r.bin")).unwrap(), content);
}

#[test]
fn echoloop_put_resumes_a_killed_upload_and_checks_the_digest() {
    let dir = TempDir::new("resume-cli");
    let local = TempDir::new("resume-cli-local");
    let server = serve_files(dir.path(), |_| {});
    let content = pseudo_random_bytes(2_000_000, 4);
    std::fs::write(local.join("data.bin"), &content).unwrap();
    let mut killed = Client::connect(server.addr());
    let put = format!("PUT data.bin 2000000 {}", sha256_hex(&content));
    assert_eq!(killed.request(&put), "OK 0");
    killed.send(&content[..1_234_567]);
    drop(killed);
    common::wait_for_stats(&server, "the killed client's end", |s| {
        s.total().connections_open == 0
    });
    let addr = server.addr().to_string();
    let run = echoloop(&["put", &addr, "data.bin"], local.path());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("resuming data.bin at byte 1234567 of 2000000"),
        "{stderr}"
    );
    assert!(stderr.contains(&sha256_hex(&content)), "{stderr}");
    assert_eq!(std::fs::read(dir.join("data.bin")).unwrap(), content);
    // Again: the server has it complete, with the same digest: nothing to do.
    let again = echoloop(&["put", &addr, "data.bin"], local.path());
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("stored already"));
    // Another file under that name: the server's refusal, exit 1.
    std::fs::write(local.join("other.bin"), b"other").unwrap();
    let other = echoloop(
        &["put", &addr, "other.bin", "--name", "data.bin"],
        local.path(),
    );
    assert_eq!(other.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other.stderr).contains("error: exists"));
}

#[test]
fn get_resumes_from_an_offset() {
    let dir = TempDir::new("resume-get");
    let local = TempDir::new("resume-get-local");
    let content = pseudo_random_bytes(700_000, 5);
    std::fs::write(dir.join("g.bin"), &content).unwrap(); // an operator's file
    let server = serve_files(dir.path(), |_| {});
    let (ok, body) = Client::connect(server.addr()).get("g.bin", 123_456);
    assert_eq!(ok, format!("OK 700000 {}", sha256_hex(&content)));
    assert_eq!(body, &content[123_456..]);
    // The client continues a partial local file, writing to NAME in the current folder.
    std::fs::write(local.join("g.bin"), &content[..400_000]).unwrap();
    let run = echoloop(&["get", &server.addr().to_string(), "g.bin"], local.path());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("resuming g.bin at byte 400000 of 700000"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(local.join("g.bin")).unwrap(), content);
    // A local file that does not match: the digest says so.
    let mut wrong = content.clone();
    wrong[10] ^= 1;
    std::fs::write(local.join("wrong.bin"), &wrong[..500_000]).unwrap();
    let addr = server.addr().to_string();
    let run = echoloop(&["get", &addr, "g.bin", "-o", "wrong.bin"], local.path());
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("sha256 mismatch"));
    let run = echoloop(&["get", &addr, "missing.bin"], local.path());
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("error: not found"));
}

#[test]
fn two_puts_of_one_name_at_once_the_second_is_busy() {
    let dir = TempDir::new("busy");
    let server = serve_files(dir.path(), |_| {});
    let mut first = Client::connect(server.addr());
    assert_eq!(first.request("PUT same 10"), "OK 0");
    let mut second = Client::connect(server.addr());
    assert_eq!(second.request("PUT same 10"), "error: busy");
    assert_eq!(second.request("PUT same 20"), "error: busy");
    first.send(b"0123456789");
    assert!(first.line().starts_with("DONE 10 "));
    assert_eq!(second.request("PUT same 10"), "error: exists");
}

// ----- what is refused -------------------------------------------------------------------------

#[test]
fn hostile_names_are_refused_and_nothing_is_written_outside_the_folder() {
    let root = TempDir::new("hostile");
    let served = root.join("served");
    let outside = root.join("outside");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"keep out").unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), served.join("link")).unwrap();
    std::os::unix::fs::symlink(&outside, served.join("linkdir")).unwrap();
    let server = serve_files(&served, |_| {});
    let mut client = Client::connect(server.addr());
    for name in ["../x", "/etc/passwd", "a/b", ".hidden", "..", "linkdir/x"] {
        assert_eq!(
            client.request(&format!("PUT {name} 4")),
            "error: bad name",
            "{name}"
        );
        assert_eq!(
            client.request(&format!("GET {name}")),
            "error: bad name",
            "{name}"
        );
    }
    // A symlink planted in the folder is never followed, never replaced.
    assert_eq!(client.request("PUT link 4"), "error: exists");
    assert_eq!(client.request("PUT linkdir 4"), "error: exists");
    assert_eq!(client.request("GET link"), "error: not found");
    assert_eq!(client.request("GET linkdir"), "error: not found");
    assert_eq!(client.list(), Vec::<String>::new());
    // A name of 4096 bytes makes a line over the limit: refused, and the connection closed.
    let long = format!("PUT {} 4\n", "a".repeat(4096));
    client.send(long.as_bytes());
    assert_eq!(client.rest(), b"error: line too long\n");
    let mut names: Vec<_> = std::fs::read_dir(&served)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["link", "linkdir"]);
    let outside_names: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert_eq!(outside_names.len(), 1);
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"keep out");
}

#[test]
fn sizes_over_the_limit_and_uploads_past_the_quota_are_refused_before_writing() {
    let dir = TempDir::new("limits");
    let server = serve_files(dir.path(), |files| {
        files.max_file_bytes = 1000;
        files.dir_quota = 1500;
    });
    let mut client = Client::connect(server.addr());
    assert_eq!(
        client.request("PUT big 1001"),
        "error: too large (limit 1000 bytes)"
    );
    assert_eq!(
        dir.names(),
        Vec::<String>::new(),
        "not even an empty partial file"
    );
    assert_eq!(
        client.put("one", &[1; 1000]).split(' ').next(),
        Some("DONE")
    );
    // 500 bytes left; an upload under way reserves what it will still bring.
    let mut writer = Client::connect(server.addr());
    assert_eq!(writer.request("PUT two 400"), "OK 0");
    writer.send(&[2; 100]);
    assert_eq!(
        client.request("PUT three 101"),
        "error: over quota (100 bytes free)"
    );
    assert_eq!(client.request("PUT three 100"), "OK 0");
    client.send(&[3; 100]);
    assert!(client.line().starts_with("DONE 100 "));
    writer.send(&[2; 300]);
    assert!(writer.line().starts_with("DONE 400 "));
    assert_eq!(
        client.request("PUT four 1"),
        "error: over quota (0 bytes free)"
    );
    assert_eq!(dir.names(), ["one", "three", "two"]);
}

// ----- a full disk -----------------------------------------------------------------------------

/// Uploads `size` bytes as `name` and returns the reply line the server sends (an error line, if
/// the disk fills up); sending stops quietly when the server closes.
fn put_until_refused(addr: SocketAddr, name: &str, size: usize) -> String {
    let mut client = Client::connect(addr);
    assert_eq!(client.request(&format!("PUT {name} {size}")), "OK 0");
    let mut sender = client.stream.try_clone().unwrap();
    let body = pseudo_random_bytes(size, 6);
    let sending = std::thread::spawn(move || {
        for chunk in body.chunks(64 * 1024) {
            if sender.write_all(chunk).is_err() {
                return;
            }
        }
    });
    let reply = client.line();
    sending.join().unwrap();
    reply
}

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A disk that fills up takes a filesystem of its own: a 1 MiB tmpfs, which only root may mount.
/// Without root, the RLIMIT_FSIZE test below still covers a write the kernel refuses.
#[test]
#[ignore = "needs root (mounts a tmpfs)"]
fn a_full_disk_is_an_error_line_and_other_clients_go_on() {
    let dir = TempDir::new("tmpfs");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .output()
        .expect("run mount");
    assert!(
        mounted.status.success(),
        "cannot mount a 1 MiB tmpfs (this test needs root): {}",
        String::from_utf8_lossy(&mounted.stderr)
    );
    let _unmount = Mounted(dir.path().to_path_buf());
    let server = serve_files(dir.path(), |_| {});
    let mut other = Client::connect(server.addr());
    assert!(other.put("small", b"still here").starts_with("DONE 10 "));
    assert_eq!(
        put_until_refused(server.addr(), "big", 4 << 20),
        "error: disk full"
    );
    assert_eq!(other.list(), ["10 small"]);
    assert_eq!(other.get("small", 6).1, b"here");
    // The partial file is kept: a resume starts where the disk filled up.
    let (_, reply) = put_when_free(server.addr(), &format!("PUT big {}", 4 << 20));
    let held: u64 = reply.strip_prefix("OK ").unwrap().parse().unwrap();
    assert!(held > 0 && held <= 1 << 20, "{held}");
}

#[test]
fn a_file_size_limit_is_an_error_line_not_the_servers_death() {
    let dir = TempDir::new("fsize");
    let mut command = Command::new(env!("CARGO_BIN_EXE_echoloop"));
    command.args(["serve", "-p", "files", "-l", "127.0.0.1:0", "--dir"]);
    command.arg(dir.path());
    command.stdout(std::process::Stdio::piped());
    command.stderr(std::process::Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; the child only execs afterwards.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            let limit = libc::rlimit {
                rlim_cur: 1 << 20,
                rlim_max: 1 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("start echoloop");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening tcp ")
        .and_then(|rest| rest.split(' ').next()) // the address; the service follows
        .unwrap()
        .parse()
        .unwrap();
    let reply = put_until_refused(addr, "big", 3 << 20);
    assert_eq!(reply, "error: file too large for the filesystem");
    let mut other = Client::connect(addr);
    assert!(other.put("small", b"fine").starts_with("DONE 4 "));
    assert_eq!(other.list(), ["4 small"]);
    assert_eq!(child.try_wait().unwrap(), None, "the server is alive");
    child.kill().unwrap();
    child.wait().unwrap();
}

// ----- many at once ----------------------------------------------------------------------------

#[test]
fn twenty_uploads_and_twenty_downloads_at_once_while_list_is_answered() {
    const SIZE: usize = 8 << 20;
    const EACH: usize = 20;
    let dir = TempDir::new("many");
    let contents: Vec<Vec<u8>> = (0..EACH)
        .map(|i| pseudo_random_bytes(SIZE, 100 + i as u64))
        .collect();
    for (i, content) in contents.iter().enumerate() {
        std::fs::write(dir.join(&format!("down-{i}")), content).unwrap();
    }
    let server = serve_files(dir.path(), |_| {});
    let addr = server.addr();
    let contents = std::sync::Arc::new(contents);
    let mut workers = Vec::new();
    for i in 0..EACH {
        let up = std::sync::Arc::clone(&contents);
        workers.push(std::thread::spawn(move || {
            let reply = Client::connect(addr).put(&format!("up-{i}"), &up[i]);
            assert_eq!(reply, format!("DONE {SIZE} {}", sha256_hex(&up[i])));
        }));
        let down = std::sync::Arc::clone(&contents);
        workers.push(std::thread::spawn(move || {
            let (ok, body) = Client::connect(addr).get(&format!("down-{i}"), 0);
            assert_eq!(ok, format!("OK {SIZE} {}", sha256_hex(&down[i])));
            assert!(body == down[i], "download {i} differs");
        }));
    }
    let mut lister = Client::connect(addr);
    let mut lists = 0;
    while workers.iter().any(|w| !w.is_finished()) || lists == 0 {
        let listed = lister.list();
        for i in 0..EACH {
            assert!(listed.contains(&format!("{SIZE} down-{i}")), "{listed:?}");
        }
        lists += 1;
    }
    for worker in workers {
        worker.join().unwrap();
    }
    let listed = lister.list();
    assert_eq!(listed.len(), 2 * EACH);
    for (i, content) in contents.iter().enumerate() {
        assert!(std::fs::read(dir.join(&format!("up-{i}"))).unwrap() == *content);
    }
}

// ----- Unix sockets and the command line -------------------------------------------------------

#[test]
fn put_and_get_over_a_unix_socket() {
    let dir = TempDir::new("unix");
    let local = TempDir::new("unix-local");
    let socket = local.join("files.sock");
    let mut files = FilesConfig::new(dir.path());
    files.max_file_bytes = 1 << 20;
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Files.into();
        cfg.files = Some(files);
        cfg.listen = vec![echoloop::Address::Unix(socket.clone())];
    });
    let content = pseudo_random_bytes(300_000, 7);
    std::fs::write(local.join("u.bin"), &content).unwrap();
    let addr = format!("unix:{}", socket.display());
    let put = echoloop(&["put", &addr, "u.bin", "--name", "copy.bin"], local.path());
    assert_eq!(
        put.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let get = echoloop(&["get", &addr, "copy.bin", "-o", "back.bin"], local.path());
    assert_eq!(
        get.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(std::fs::read(local.join("back.bin")).unwrap(), content);
    drop(server);
}

#[test]
fn the_command_line_refuses_what_files_cannot_serve() {
    let dir = TempDir::new("cli");
    let d = dir.path().to_str().unwrap();
    let file = dir.join("plain");
    std::fs::write(&file, b"x").unwrap();
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "-p", "files", "-l", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        echoloop(&args, dir.path())
    };
    for extra in [
        &[][..],
        &["--dir", d, "-u", "127.0.0.1:0"],
        &["--dir", d, "--framing", "line"],
        &["--dir", d, "--greeting", "hi"],
        &["--dir", d, "--workers", "2"],
    ] {
        let run = serve(extra);
        assert_eq!(run.status.code(), Some(2), "{extra:?}");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    for missing in [dir.join("nope"), file] {
        // A folder named on the command line that cannot be served: the command line's mistake.
        let run = serve(&["--dir", missing.to_str().unwrap()]);
        assert_eq!(run.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--dir"), "{stderr}");
    }
    let run = echoloop(
        &["put", "127.0.0.1:1", "plain", "--name", "../x"],
        dir.path(),
    );
    assert_eq!(run.status.code(), Some(2));
    let run = echoloop(&["get", "127.0.0.1:1", "a/b"], dir.path());
    assert_eq!(run.status.code(), Some(2));
    let run = echoloop(&["put", "127.0.0.1:1"], dir.path());
    assert_eq!(run.status.code(), Some(2));
}

#[test]
#[ignore = "needs python3"]
fn the_tutorial_python_upload_client_works_unchanged() {
    let python = common::tool("python3", "python3");
    let dir = TempDir::new("python");
    let local = TempDir::new("python-local");
    let content = pseudo_random_bytes(100_000, 8);
    std::fs::write(local.join("photo.jpg"), &content).unwrap();
    let server = serve_files(dir.path(), |_| {});
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/compat/tcp_upload_client.py");
    let run = Command::new(python)
        .arg(script)
        .args(["127.0.0.1", &server.addr().port().to_string()])
        .arg(local.join("photo.jpg"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout), "sent 100000 bytes\n");
    common::wait_for_stats(&server, "the upload's end", |s| {
        s.total().connections_open == 0
    });
    let names = dir.names();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(std::fs::read(dir.join(&names[0])).unwrap(), content);
}
