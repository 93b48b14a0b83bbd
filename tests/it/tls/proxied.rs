//! A load balancer passing TLS through (HAProxy's `send-proxy-v2`): the PROXY v2 header in
//! clear, then the handshake; the carried address is the one `--deny` judges, and the handshake
//! has its own deadline once the header is read.

use std::net::SocketAddr;
use std::time::Duration;

use echoloop::server::sources::balancers::parse_balancer;
use echoloop::server::stats::{HeaderRefusal, RefusalReason, TlsFailure};
use rustls::ClientConnection;

use super::client::TlsClient;
use super::{any_version, failed, handshakes, tls_server, try_ping};
use crate::common::{self, read_to_end, wait_for_stats};

/// A PROXY v2 header (command PROXY, TCP over IPv4) for a client at `source`.
fn proxy_v2(source: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(source) = source else {
        panic!("IPv4 only")
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&source.ip().octets());
    header.extend_from_slice(&[198, 51, 100, 1]);
    header.extend_from_slice(&source.port().to_be_bytes());
    header.extend_from_slice(&7443u16.to_be_bytes());
    header
}

/// HAProxy's TLS passthrough with `send-proxy-v2`: the header in clear, then the handshake,
/// both in one write. The carried address is the one `--deny` judges.
#[test]
fn a_proxy_v2_header_before_the_handshake_carries_the_address_deny_judges() {
    let server = tls_server(|cfg| {
        cfg.sources.trusted = Vec::new();
        cfg.sources.proxy_protocol.balancers = vec![parse_balancer("127.0.0.1/32").unwrap()];
        cfg.sources.deny = vec!["192.0.2.7/32".parse().unwrap()];
    });
    let header = proxy_v2("192.0.2.8:4000".parse().unwrap());
    let mut allowed = TlsClient::connect_after(server.addr(), any_version(), &header);
    assert_eq!(try_ping(&mut allowed).unwrap(), b"ping");

    let header = proxy_v2("192.0.2.7:4000".parse().unwrap());
    let mut denied = TlsClient::connect_after(server.addr(), any_version(), &header);
    let refused = try_ping(&mut denied);
    assert!(refused.is_err(), "a denied address was served");
    assert!(
        denied.conn.peer_certificates().is_none(),
        "the denied client got a ServerHello"
    );
    let stats = wait_for_stats(&server, "the refusal counted", |s| {
        s.total().headers_refused_for(HeaderRefusal::Denied) == 1
    });
    assert_eq!(stats.total().refused_for(RefusalReason::Acl), 1);
    assert_eq!(stats.total().proxy_headers_accepted, 1);
    assert_eq!(handshakes(&stats), 1);
}

/// The header in a read of its own, the ClientHello in a later one; and a header followed by
/// nothing, closed at the handshake deadline (which starts again once the header is read).
#[test]
fn a_proxy_v2_header_alone_then_the_handshake_and_one_never_followed() {
    let server = tls_server(|cfg| {
        cfg.sources.trusted = Vec::new();
        cfg.sources.proxy_protocol.balancers = vec![parse_balancer("127.0.0.1/32").unwrap()];
        cfg.tls.handshake_timeout = Duration::from_secs(1);
    });
    let mut balancer = common::connect(&server);
    common::send(&mut balancer, &proxy_v2("192.0.2.9:4000".parse().unwrap()));
    wait_for_stats(&server, "the header read", |s| {
        s.total().proxy_headers_accepted == 1
    });
    // The rest of the connection is a TLS client's, on the same socket.
    let mut conn = ClientConnection::new(any_version(), "localhost".try_into().unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    common::send(&mut balancer, &hello);
    let mut client = TlsClient::over(balancer, conn);
    assert_eq!(try_ping(&mut client).unwrap(), b"ping");

    let mut silent = common::connect(&server);
    common::send(&mut silent, &proxy_v2("192.0.2.10:4000".parse().unwrap()));
    let said = read_to_end(&mut silent);
    assert!(said.is_empty() || said[0] == 21, "sent {said:?}");
    let stats = wait_for_stats(&server, "the timeout counted", |s| {
        failed(s, TlsFailure::Timeout) == 1
    });
    assert_eq!(stats.total().proxy_headers_accepted, 2);
    assert_eq!(handshakes(&stats), 1);
}
