//! Users, roles, passwords (argon2id), lockout, sessions, API tokens, and the extractor that
//! turns a request into the signed-in user or a redirect to `/login`; the client's address and
//! scheme (from a trusted reverse proxy's headers, `console.trust_proxy`).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::SystemTime,
};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use axum::{
    extract::{ConnectInfo, FromRequestParts, connect_info::Connected},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
    serve::IncomingStream,
};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Console, ConsoleError, state};
use crate::evidence::store::millis;

pub const COOKIE: &str = "nxguard_session";

/// What a user may see and do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Role {
    /// Aggregates, with pseudonymous device keys only.
    Viewer,
    /// Device identities, timelines, exports and cases.
    Officer,
    /// Users, API tokens and the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Officer => "officer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Viewer, Role::Officer, Role::Admin].into_iter().find(|r| r.as_str() == text)
    }
}

/// Adds a user (or replaces the password and role of an existing one: a reset, which ends every
/// session of that user).
pub fn add_user(db: &Connection, name: &str, role: Role, password: &str, now: SystemTime) -> Result<(), ConsoleError> {
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ConsoleError::Input(format!("{name:?} is not a user name (1..64 characters, no spaces)")));
    }
    if password.chars().count() < 12 {
        return Err(ConsoleError::Input("a password needs at least 12 characters".into()));
    }
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| ConsoleError::Input(format!("salt: {e}")))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| ConsoleError::Input(format!("cannot hash the password: {e}")))?
        .to_string();
    db.execute(
        "INSERT INTO users (name, role, hash, created_ms) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (name) DO UPDATE SET role = excluded.role, hash = excluded.hash, failures = 0, locked_until_ms = 0",
        params![name, role.as_str(), hash, millis(now)],
    )?;
    db.execute("DELETE FROM sessions WHERE user = ?1", [name])?;
    Ok(())
}

/// Disables (or enables again) a user; disabling ends the user's sessions.
pub fn set_disabled(db: &Connection, name: &str, disabled: bool) -> Result<(), ConsoleError> {
    if db.execute("UPDATE users SET disabled = ?2 WHERE name = ?1", params![name, disabled])? == 0 {
        return Err(ConsoleError::NotFound);
    }
    db.execute("DELETE FROM sessions WHERE user = ?1", [name])?;
    Ok(())
}

/// Deletes a user and the user's sessions (the audit log keeps the name).
pub fn delete_user(db: &Connection, name: &str) -> Result<(), ConsoleError> {
    db.execute("DELETE FROM sessions WHERE user = ?1", [name])?;
    if db.execute("DELETE FROM users WHERE name = ?1", [name])? == 0 {
        return Err(ConsoleError::NotFound);
    }
    Ok(())
}

/// An argon2id hash no password matches in practice, checked for names that are not users.
fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).ok();
        let secret = state::random_hex();
        salt.and_then(|salt| Argon2::default().hash_password(secret.as_bytes(), &salt).ok().map(|h| h.to_string()))
            .unwrap_or_default()
    })
}

/// How a login attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    Ok(Role),
    Wrong,
    /// Too many wrong passwords: refused until the lock ends.
    Locked,
    /// The account is disabled.
    Disabled,
}

/// Verifies `password` against `hash` (false when the hash is unreadable).
fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Checks a password; counts failures and locks the account after `max_failures` in a row.
pub fn check_password(
    db: &Connection,
    name: &str,
    password: &str,
    now: SystemTime,
    max_failures: u32,
    lock_mins: u64,
) -> Result<Login, ConsoleError> {
    let row: Option<(String, String, i64, i64, bool)> = db
        .query_row("SELECT role, hash, failures, locked_until_ms, disabled FROM users WHERE name = ?1", [name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let Some((role, hash, failures, locked_until, disabled)) = row else {
        // The same work as for a real user, so the answer time does not tell which names exist.
        verify(unknown_user_hash(), password);
        return Ok(Login::Wrong);
    };
    let now_ms = millis(now);
    // Locked and disabled accounts cost the same work too, and the sign-in page says the same
    // for every refusal: neither the time nor the words tell which accounts exist.
    let good = verify(&hash, password);
    if disabled {
        return Ok(Login::Disabled);
    }
    if locked_until > now_ms {
        return Ok(Login::Locked);
    }
    match Role::parse(&role) {
        Some(role) if good => {
            db.execute("UPDATE users SET failures = 0, locked_until_ms = 0 WHERE name = ?1", [name])?;
            Ok(Login::Ok(role))
        }
        _ => {
            let failures = failures + 1;
            let locked = failures >= i64::from(max_failures);
            let until = if locked { now_ms + (lock_mins as i64) * 60_000 } else { 0 };
            let failures = if locked { 0 } else { failures };
            db.execute(
                "UPDATE users SET failures = ?2, locked_until_ms = ?3 WHERE name = ?1",
                params![name, failures, until],
            )?;
            Ok(if locked { Login::Locked } else { Login::Wrong })
        }
    }
}

/// Starts a session; returns its id (for the cookie) and its CSRF token.
pub fn start_session(db: &Connection, user: &str, now: SystemTime) -> Result<(String, String), ConsoleError> {
    let (id, csrf) = (state::random_hex(), state::random_hex());
    db.execute(
        "INSERT INTO sessions (id_hash, user, csrf, created_ms, last_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![state::digest_hex(&id), user, csrf, millis(now)],
    )?;
    Ok((id, csrf))
}

pub fn end_session(db: &Connection, id: &str) -> Result<(), ConsoleError> {
    db.execute("DELETE FROM sessions WHERE id_hash = ?1", [state::digest_hex(id)])?;
    Ok(())
}

/// The session's user, role and CSRF token, when it exists and was used within `idle_mins`;
/// touching it restarts the idle clock. Idle sessions are deleted.
pub fn resume_session(
    db: &Connection,
    id: &str,
    now: SystemTime,
    idle_mins: u64,
) -> Result<Option<(String, Role, String)>, ConsoleError> {
    let now_ms = millis(now);
    let oldest = now_ms - (idle_mins as i64) * 60_000;
    db.execute("DELETE FROM sessions WHERE last_ms < ?1", [oldest])?;
    let hash = state::digest_hex(id);
    let row: Option<(String, String, String)> = db
        .query_row(
            "SELECT s.user, u.role, s.csrf FROM sessions s JOIN users u ON u.name = s.user \
             WHERE s.id_hash = ?1 AND u.disabled = 0",
            [&hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((user, role, csrf)) = row else { return Ok(None) };
    db.execute("UPDATE sessions SET last_ms = ?2 WHERE id_hash = ?1", params![hash, now_ms])?;
    Ok(Role::parse(&role).map(|role| (user, role, csrf)))
}

/// Makes an API token for `name`, valid until `expires` (None: until revoked); the token is
/// shown once and stored only hashed. A token of the same name is replaced.
pub fn add_token(
    db: &Connection,
    name: &str,
    role: Role,
    expires: Option<SystemTime>,
    now: SystemTime,
) -> Result<String, ConsoleError> {
    if expires.is_some_and(|at| at <= now) {
        return Err(ConsoleError::Input("a token's expiry must lie in the future".into()));
    }
    let token = format!("nxg_{}", state::random_hex());
    db.execute(
        "INSERT INTO tokens (name, role, hash, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (name) DO UPDATE SET role = excluded.role, hash = excluded.hash, \
         created_ms = excluded.created_ms, expires_ms = excluded.expires_ms",
        params![name, role.as_str(), state::digest_hex(&token), millis(now), expires.map(millis)],
    )?;
    Ok(token)
}

/// Revokes (deletes) the API token `name`.
pub fn revoke_token(db: &Connection, name: &str) -> Result<(), ConsoleError> {
    if db.execute("DELETE FROM tokens WHERE name = ?1", [name])? == 0 {
        return Err(ConsoleError::NotFound);
    }
    Ok(())
}

/// The name and role of an API token that exists and has not expired at `now`.
fn token_owner(db: &Connection, token: &str, now: SystemTime) -> Result<Option<(String, Role)>, ConsoleError> {
    let row: Option<(String, String)> = db
        .query_row(
            "SELECT name, role FROM tokens WHERE hash = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)",
            params![state::digest_hex(token), millis(now)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(name, role)| Role::parse(&role).map(|role| (name, role))))
}

/// A user or API token as the admin page lists it (never the hash).
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub name: String,
    pub role: String,
    /// Locked until this time (users only; empty when not locked).
    pub locked_until: String,
    pub created: String,
    /// When the token expires (tokens only; empty: never).
    pub expires: String,
    /// The user is disabled.
    pub disabled: bool,
}

/// Users (`tokens` false) or API tokens, by name.
pub fn accounts(db: &Connection, tokens: bool, now: SystemTime) -> Result<Vec<Account>, ConsoleError> {
    let sql = if tokens {
        "SELECT name, role, 0, created_ms, expires_ms, 0 FROM tokens ORDER BY name"
    } else {
        "SELECT name, role, locked_until_ms, created_ms, NULL, disabled FROM users ORDER BY name"
    };
    let now_ms = millis(now);
    let mut statement = db.prepare(sql)?;
    let rows = statement.query_map([], |r| {
        let locked: i64 = r.get(2)?;
        Ok(Account {
            name: r.get(0)?,
            role: r.get(1)?,
            locked_until: if locked > now_ms { super::queries::time_text(locked) } else { String::new() },
            created: super::queries::time_text(r.get(3)?),
            expires: r.get::<_, Option<i64>>(4)?.map(super::queries::time_text).unwrap_or_default(),
            disabled: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The signed-in user of a request (by session cookie, or by API bearer token).
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: String,
    pub role: Role,
    /// The session's CSRF token (empty for API tokens, which send no cookies).
    pub csrf: String,
    /// The client's address, for the audit log.
    pub address: String,
    /// Signed in by API token.
    pub api: bool,
}

impl SignedIn {
    /// 403 unless the user holds `role` or more.
    pub fn require(&self, role: Role) -> Result<(), ConsoleError> {
        if self.role >= role { Ok(()) } else { Err(ConsoleError::Forbidden) }
    }

    /// 403 unless `sent` is this session's CSRF token.
    pub fn check_csrf(&self, sent: &str) -> Result<(), ConsoleError> {
        if same_secret(sent, &self.csrf) { Ok(()) } else { Err(ConsoleError::Csrf) }
    }
}

/// `sent` is the non-empty `secret`, compared in constant time: every byte is looked at
/// whatever differs.
pub fn same_secret(sent: &str, secret: &str) -> bool {
    let (a, b) = (sent.as_bytes(), secret.as_bytes());
    !b.is_empty() && a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The TCP peer of a connection, as the console's connect info (plain or TLS listener).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

fn peer(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<Peer>>().map(|c| c.0.0.ip())
}

fn trusted(address: IpAddr, proxies: &[ipnet::IpNet]) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    };
    proxies.iter().any(|net| net.contains(&address))
}

/// The client address of a request: the TCP peer, or, when the peer is a trusted proxy
/// (`console.trust_proxy`), the nearest untrusted address in its X-Forwarded-For (read from
/// the right: each proxy appends the address it saw, and only trusted ones are believed).
pub fn address(parts: &Parts, proxies: &[ipnet::IpNet]) -> String {
    let Some(peer) = peer(parts) else { return String::new() };
    if !trusted(peer, proxies) {
        return peer.to_string();
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map_while(|hop| hop.trim().parse().ok())
        .collect();
    let client = forwarded.iter().rev().find(|hop| !trusted(**hop, proxies)).or(forwarded.first());
    client.copied().unwrap_or(peer).to_string()
}

/// The request came over HTTPS: the console serves TLS itself (`tls`), or a trusted proxy says
/// so in X-Forwarded-Proto.
pub fn https(parts: &Parts, proxies: &[ipnet::IpNet], tls: bool) -> bool {
    let proxied = peer(parts).is_some_and(|p| trusted(p, proxies));
    let proto = parts.headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
    let last = proto.and_then(|v| v.rsplit(',').next()).map(str::trim);
    tls || (proxied && last.is_some_and(|p| p.eq_ignore_ascii_case("https")))
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Arc<Console>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Self, Response> {
        let address = address(parts, &console.config.trust_proxy);
        let now = console.now();
        let bearer = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if let Some(token) = bearer.and_then(|v| v.strip_prefix("Bearer ")) {
            // A token opens the JSON API only, never the pages or the CSV exports.
            if !parts.uri.path().starts_with("/api/v1/") {
                return Err((StatusCode::UNAUTHORIZED, "API tokens open only /api/v1/\n").into_response());
            }
            let token = token.trim().to_string();
            return match console.state(move |db| token_owner(db, &token, now)).await {
                Ok(Some((user, role))) => Ok(SignedIn { user, role, csrf: String::new(), address, api: true }),
                Ok(None) => Err((StatusCode::UNAUTHORIZED, "unknown, expired or revoked API token\n").into_response()),
                Err(error) => Err(error.into_response()),
            };
        }
        let login = Redirect::to("/login").into_response();
        let Some(id) = cookie(parts, COOKIE).map(String::from) else { return Err(login) };
        let idle_mins = console.config.session_idle_mins;
        match console.state(move |db| resume_session(db, &id, now, idle_mins)).await {
            Ok(Some((user, role, csrf))) => Ok(SignedIn { user, role, csrf, address, api: false }),
            Ok(None) => Err(login),
            Err(error) => Err(error.into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// A console database in a directory that lives as long as the returned guard.
    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = state::open(&dir.path().join("console.sqlite"), 730).unwrap();
        (dir, db)
    }

    #[test]
    fn sessions_end_after_the_idle_timeout() {
        let (_dir, db) = db();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        add_user(&db, "ann", Role::Officer, "correct horse battery", t0).unwrap();
        let (id, csrf) = start_session(&db, "ann", t0).unwrap();
        let later = t0 + Duration::from_secs(29 * 60);
        assert_eq!(resume_session(&db, &id, later, 30).unwrap(), Some(("ann".into(), Role::Officer, csrf)));
        assert_eq!(resume_session(&db, &id, later + Duration::from_secs(31 * 60), 30).unwrap(), None);
    }

    #[test]
    fn the_lock_ends_after_its_time() {
        let (_dir, db) = db();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        add_user(&db, "ann", Role::Viewer, "correct horse battery", t0).unwrap();
        for _ in 0..2 {
            assert_eq!(check_password(&db, "ann", "wrong", t0, 3, 15).unwrap(), Login::Wrong);
        }
        assert_eq!(check_password(&db, "ann", "wrong", t0, 3, 15).unwrap(), Login::Locked);
        assert_eq!(check_password(&db, "ann", "correct horse battery", t0, 3, 15).unwrap(), Login::Locked);
        let later = t0 + Duration::from_secs(16 * 60);
        assert_eq!(check_password(&db, "ann", "correct horse battery", later, 3, 15).unwrap(), Login::Ok(Role::Viewer));
    }
}
