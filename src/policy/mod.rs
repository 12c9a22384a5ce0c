//! What is banned: the domain list files, the feeds, the client groups and the compiled matcher.
//!
//! Owns: reading and linting the list files (`domains`, the shipped catalogue under `domains/`
//! included, and `must-resolve.txt`), feeds (`feeds`: formats, cached copies, status; `fetch`:
//! downloading them in the background), client groups (`groups`), building the policy from the
//! files (`load`) and the matcher that says which app a name belongs to and which list or feed
//! said so (`matcher`).
//! Must not touch: answering queries (`resolve`), the cache or attempt records. It imports only
//! `domain` (the kinds and syntax of listed names), `config` and `dns::wire`; device names in groups are resolved to addresses by the caller.

pub mod domains;
pub mod feeds;
pub mod fetch;
pub mod groups;
pub mod load;
pub mod matcher;

pub use load::{LOCAL_APP_ID, PolicyError, load};
pub use matcher::{App, AppEntry, Entry, Match, Policy, PolicyBuilder};
