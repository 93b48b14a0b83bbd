//! A client that half-closes (FIN) right after its request is still owed the whole answer, even
//! when the answer is produced bit by bit as it reads (a file download); chargen, which would
//! talk forever, stops at the FIN.

use std::io::Write;
use std::net::Shutdown;

use crate::common::{connect, pseudo_random_bytes, read_to_end, serve};
use echoloop::ProtocolKind;
use echoloop::protocol::FilesConfig;

#[test]
fn a_download_requested_then_half_closed_arrives_whole() {
    let dir = std::env::temp_dir().join(format!("echoloop-half-close-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body = pseudo_random_bytes(3_000_000, 5);
    std::fs::write(dir.join("big.bin"), &body).unwrap();
    let server = serve(|cfg| {
        cfg.protocol = ProtocolKind::Files.into();
        cfg.files = Some(FilesConfig::new(&dir));
    });
    let mut client = connect(&server);
    client.write_all(b"GET big.bin\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap(); // like `nc -N`
    let answer = read_to_end(&mut client);
    let header_end = answer.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert!(
        answer.starts_with(b"OK 3000000 "),
        "{:?}",
        &answer[..header_end]
    );
    assert!(
        answer[header_end..] == body[..],
        "got {} body bytes",
        answer.len() - header_end
    );
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn chargen_stops_at_the_clients_fin() {
    let server = serve(|cfg| cfg.protocol = ProtocolKind::Chargen.into());
    let mut client = connect(&server);
    client.shutdown(Shutdown::Write).unwrap();
    let pattern = read_to_end(&mut client); // ends: the server closes after the FIN
    assert!(pattern.starts_with(b" !\"#$%&'()*+,-./0123456789"));
}
