//! Domain names as nxguard lists them, at the ground floor so that both `config` (feeds, groups,
//! `policy.extra`) and `policy` (the list files) use them without importing each other.
//!
//! Owns: the syntax every listed domain follows (`check_domain`) and what a listed domain is
//! used for (`Kind`). Imports no other room. Does not own: reading list files (`policy::domains`)
//! or the wire format (`dns`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest domain name in presentation form, without the final dot (RFC 1035 §2.3.4:
/// 255 octets on the wire). The same as `dns::wire::MAX_NAME_TEXT` (tested).
pub const MAX_NAME_TEXT: usize = 253;

/// What a domain is used for: tells the security officer how strong a hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// App backend: API, login, messaging, configuration. A hit means the app runs.
    Api,
    /// SDK analytics and logging the app sends in the background. A hit means the app runs.
    Telemetry,
    /// Static, image and video content, used by the app and by web pages alike.
    Cdn,
    /// Public website, storefront or short link: a hit may be one clicked link.
    Web,
    /// A CDN alias seen only inside CNAME chains.
    Alias,
    /// Not stated (lists added by the operator).
    #[default]
    Unspecified,
}

impl Kind {
    /// The kind named by a list file's or feed's word (`api`, `telemetry`, `cdn`, `web`, `alias`).
    pub fn parse(word: &str) -> Option<Kind> {
        Some(match word {
            "api" => Kind::Api,
            "telemetry" => Kind::Telemetry,
            "cdn" => Kind::Cdn,
            "web" => Kind::Web,
            "alias" => Kind::Alias,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Telemetry => "telemetry",
            Kind::Cdn => "cdn",
            Kind::Web => "web",
            Kind::Alias => "alias",
            Kind::Unspecified => "unspecified",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a name cannot be listed; its text names the domain and, for a bad label, the label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0:?} is longer than 253 characters")]
    TooLong(String),
    #[error("{0:?} has a single label; a whole top-level domain is never listed")]
    SingleLabel(String),
    #[error("{name:?} is not a valid lowercase domain name (label {label:?})")]
    BadLabel { name: String, label: String },
}

/// Checks a domain in presentation form: lowercase letters, digits, '-' and '_', labels of
/// 1–63 octets not starting or ending with '-', at most 253 octets, at least two labels.
pub fn check_domain(name: &str) -> Result<(), DomainError> {
    if name.len() > MAX_NAME_TEXT {
        return Err(DomainError::TooLong(name.to_string()));
    }
    if !name.contains('.') {
        return Err(DomainError::SingleLabel(name.to_string()));
    }
    for label in name.split('.') {
        let ok_chars = label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars || label.starts_with('-') || label.ends_with('-') {
            return Err(DomainError::BadLabel { name: name.to_string(), label: label.to_string() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_limit_is_the_wire_format_s() {
        assert_eq!(MAX_NAME_TEXT, crate::dns::wire::MAX_NAME_TEXT);
    }

    #[test]
    fn kinds_parse_from_their_own_words() {
        for kind in [Kind::Api, Kind::Telemetry, Kind::Cdn, Kind::Web, Kind::Alias] {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("unspecified"), None);
    }
}
