//! Reading the evidence for people: `nxguard report` (and, next, the console and removal cases).
//!
//! Owns: the summary and timeline queries over the store and their table, CSV and JSON output.
//! Must not touch: the query path or the store's writer; readers open the store read-only.

pub mod report;
