//! The control socket (the SM API port, `\SmApiPort`): the varlink wire format, the
//! `io.smss.Manager` methods, the non-blocking server's connections, a blocking client for
//! `smctl`, and the hand-off between PID 1 and a session instance.
//!
//! The methods themselves run in PID 1's loop (`supervise::api`, `supervise::sessions`).

pub mod client;
pub mod instance;
pub mod manager;
pub mod server;
pub mod users;
pub mod wire;
