//! Interop tests: see below.
