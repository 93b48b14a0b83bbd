//! The other side: a load generator, an interactive client, and file transfer clients, with
//! TLS for all of them (`tls.rs`).

pub mod interactive;
pub mod load;
pub mod tls;
pub mod transfer;
