//! The durable attempt store.
//!
//! Owns: the schema and its version, the writer thread (batched, off the query path), the
//! retention purge, pseudonyms, and opening the store read-only for readers. Today one backend,
//! the embedded SQLite database (`sqlite`).
//! Must not touch: what a record contains (`evidence::attempt`) or how reports read and present
//! it (`review`).

pub mod sqlite;

pub use sqlite::{
    Pseudonymizer, SCHEMA_VERSION, StoreError, StoreSink, StoreStats, StoreWriter, check_writable, insert_all, millis,
    open, purge,
};
