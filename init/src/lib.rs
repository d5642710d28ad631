//! smss: a Linux PID 1 modelled on the Windows NT Session Manager (smss.exe).
//!
//! The binary is a thin `main`; everything lives here so the per-session instance
//! (`smss-session`) and the tests can use the same engine.
#![deny(unsafe_code)]

pub mod phases;
pub mod sys;
