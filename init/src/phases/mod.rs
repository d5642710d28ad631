//! One module per boot phase, named after the Session Manager value it implements. Each is
//! written against the [`crate::sys::Sys`] seam; the supervisor's boot runner calls them in
//! BootPlan order.
