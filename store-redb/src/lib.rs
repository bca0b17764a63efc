//! `RedbStore`: the durable session store on redb, Mooring's default.
//!
//! This crate is part of the workspace layout from the start; the store itself arrives with the
//! `SessionStore` trait (see ARCHITECTURE.md, "Status").
#![forbid(unsafe_code)]
