//! What is banned: the domain list files and the compiled matcher over them.
//!
//! Owns: reading and linting the list files (`domains`, the shipped catalogue under `domains/`
//! included), and the matcher that says which app a name belongs to (`matcher`). Feeds and client
//! groups belong here too.
//! Must not touch: answering queries (`resolve`), the cache or attempt records. It imports only
//! `config` and `dns::wire`.

pub mod domains;
pub mod matcher;

pub use matcher::{App, AppEntry, LOCAL_APP_ID, Match, Policy, PolicyBuilder, PolicyError, load};
