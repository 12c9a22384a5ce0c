//! Reading the evidence for people: `nxguard report` and the security officer's console.
//!
//! Owns: the summary, timeline and shadow queries over one or more stores on either backend
//! (`report`) and their table, CSV and JSON output (`render`); the board report in HTML
//! (`board`); the web console with its users, audit log and removal cases (`console`), which
//! reads the evidence only through `report` and its own `console::queries`.
//! Must not touch: the query path or the store's writer; readers open the stores read-only.

pub mod board;
pub mod console;
pub mod render;
pub mod report;
