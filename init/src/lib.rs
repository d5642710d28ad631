//! smss: a Linux PID 1 modelled on the Windows NT Session Manager (smss.exe).
//!
//! The binary is a thin `main`; everything lives here so the per-session instance
//! (`smss-session`) and the tests can use the same engine.
#![deny(unsafe_code)]
// PID 1 must never panic by accident.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bugcheck;
pub mod cli;
pub mod control;
pub mod devices;
pub mod import_reg;
pub mod logging;
pub mod mode;
pub mod phases;
pub mod shutdown;
pub mod supervise;
pub mod sys;
