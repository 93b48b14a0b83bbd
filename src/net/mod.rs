//! Sockets: how they are named, bound, accepted, registered and timed. No protocol, no server.

pub mod activation;
pub mod address;
pub mod alarm;
pub mod datagrams;
pub mod listener;
pub mod memory;
pub mod notify;
pub mod outbound;
pub mod proxy_header;
pub mod registration;
pub mod stream;
pub mod tls;
