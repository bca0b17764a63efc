//! `MemoryStore`: the session store over plain maps behind a lock, for tests and ephemeral use.
//!
//! This crate is part of the workspace layout from the start; the store itself arrives with the
//! `SessionStore` trait (see ARCHITECTURE.md, "Status").
#![forbid(unsafe_code)]
