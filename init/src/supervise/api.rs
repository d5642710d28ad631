//! The control socket's methods (`io.smss.Manager`) served from PID 1's loop.

use super::{Supervisor, Token};

impl Supervisor {
    /// Input on the control listener or a client connection.
    pub(crate) fn on_control_event(&mut self, _token: Token) {}
}
