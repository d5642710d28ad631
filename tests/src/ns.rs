//! Tier 3 harness: run the real smss as PID 1 of a fresh PID + mount namespace.
