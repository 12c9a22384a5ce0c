//! Operations: `[metrics]`, `[log]`.

use serde::Deserialize;
use std::net::SocketAddr;

/// The Prometheus and health endpoint: off unless a listen address is given, and meant for a
/// management network (it has no authentication).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// e.g. "127.0.0.1:9153"; serves GET /metrics and GET /health.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "info,nxguard=debug". debug logs every query: not for
    /// production (personal data).
    pub level: String,
    pub format: LogFormat,
}

impl LogConfig {
    /// The tracing filter: `level`'s first word applies to nxguard only; other crates stay at
    /// warn (none of them may log queries with client addresses) unless named explicitly.
    pub fn filter(&self) -> String {
        let (first, rest) = self.level.split_once(',').unwrap_or((&self.level, ""));
        let mut filter = if first.contains('=') { format!("warn,{first}") } else { format!("warn,nxguard={first}") };
        if !rest.is_empty() {
            filter.push(',');
            filter.push_str(rest);
        }
        filter
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text }
    }
}
