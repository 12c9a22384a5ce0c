//! Reading the evidence for people: `nxguard report` (and, next, the console and removal cases).
//!
//! Owns: the summary, timeline and shadow queries over one or more stores on either backend
//! (`report`), and their table, CSV and JSON output (`render`).
//! Must not touch: the query path or the store's writer; readers open the stores read-only.

pub mod render;
pub mod report;
