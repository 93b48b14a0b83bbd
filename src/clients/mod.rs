//! The other side: a load generator, an interactive client, and file transfer clients.

pub mod interactive;
pub mod load;
pub mod transfer;
