//! The Session Manager configuration: TOML -> typed config -> validated config -> BootPlan.
#![deny(unsafe_code)]
