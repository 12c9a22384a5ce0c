//! The PostgreSQL backend: one database shared by every node (schema in `store`'s header).
//!
//! Owns: connecting (password from `store.password_file` or `PGPASSWORD`, TLS with rustls),
//! the schema migrations on PostgreSQL (table `nxguard_schema`, under an advisory lock so two
//! nodes starting together migrate once), shipping a spooled batch (binary COPY of the raw
//! rows, one multi-row upsert of the rollups, and the spool position, in one transaction), and
//! the incremental purge.
//! Does not own: the spool file (`spool`) or the threads that feed it (`shipper`).

use std::{
    path::Path,
    sync::{Arc, OnceLock},
    time::Duration,
};

use ::postgres::{
    Client, Config, NoTls, Transaction,
    binary_copy::BinaryCopyInWriter,
    types::{IsNull, ToSql, Type, to_sql_checked},
};
use bytes::BytesMut;
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use crate::{
    config::{StoreConfig, StoreTls},
    evidence::store::{
        FileError, SCHEMA_VERSION, StoreError,
        record::{Record, Value, column_names},
        rollup::Rollups,
        spool::{Batch, Position},
    },
};

/// Version 2 on PostgreSQL (the first there). Text columns compare bytewise (`COLLATE "C"`), as
/// SQLite does, so both give the same MAX, ORDER BY and GROUP BY.
const SCHEMA_V2: &str = r#"
CREATE TABLE IF NOT EXISTS attempts (
    id              BIGSERIAL PRIMARY KEY,
    ts_ms           BIGINT NOT NULL,
    node            TEXT COLLATE "C" NOT NULL,
    device_key      TEXT COLLATE "C" NOT NULL,
    client_ip       TEXT COLLATE "C",
    client_port     INTEGER,
    transport       TEXT COLLATE "C" NOT NULL,
    device_ip       TEXT COLLATE "C",
    mac             TEXT COLLATE "C",
    hostname        TEXT COLLATE "C",
    device          TEXT COLLATE "C",
    owner           TEXT COLLATE "C",
    identity_source TEXT COLLATE "C" NOT NULL,
    qname           TEXT COLLATE "C" NOT NULL,
    qtype           TEXT COLLATE "C" NOT NULL,
    app             TEXT COLLATE "C" NOT NULL,
    app_name        TEXT COLLATE "C" NOT NULL,
    vendor          TEXT COLLATE "C" NOT NULL,
    domain          TEXT COLLATE "C" NOT NULL,
    kind            TEXT COLLATE "C" NOT NULL,
    matched_on      TEXT COLLATE "C" NOT NULL,
    cname_alias     TEXT COLLATE "C",
    mode            TEXT COLLATE "C" NOT NULL,
    policy_version  TEXT COLLATE "C" NOT NULL,
    rule            TEXT COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_ts ON attempts (ts_ms);
CREATE INDEX IF NOT EXISTS attempts_device ON attempts (device_key, ts_ms);
CREATE INDEX IF NOT EXISTS attempts_app ON attempts (app, ts_ms);
CREATE INDEX IF NOT EXISTS attempts_owner ON attempts (owner, ts_ms);
CREATE TABLE IF NOT EXISTS rollups (
    device_key  TEXT COLLATE "C" NOT NULL,
    app         TEXT COLLATE "C" NOT NULL,
    day         BIGINT NOT NULL,
    node        TEXT COLLATE "C" NOT NULL,
    mode        TEXT COLLATE "C" NOT NULL,
    owner       TEXT COLLATE "C",
    app_name    TEXT COLLATE "C" NOT NULL,
    attempts    BIGINT NOT NULL,
    api         BIGINT NOT NULL,
    telemetry   BIGINT NOT NULL,
    cdn         BIGINT NOT NULL,
    web         BIGINT NOT NULL,
    alias       BIGINT NOT NULL,
    unspecified BIGINT NOT NULL,
    first_ms    BIGINT NOT NULL,
    last_ms     BIGINT NOT NULL,
    domains     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (day, device_key, app, node, mode)
);
CREATE INDEX IF NOT EXISTS rollups_device ON rollups (device_key, day);
CREATE TABLE IF NOT EXISTS spool_positions (
    node        TEXT NOT NULL,
    spool_id    TEXT NOT NULL,
    segment     BIGINT NOT NULL,
    byte_offset BIGINT NOT NULL,
    PRIMARY KEY (node, spool_id)
);
"#;

/// Version 4 (3 is the read side's summary table): the indexes no reader uses go (see
/// `sqlite::SCHEMA_V4`); each cost every shipped row a b-tree insert.
const SCHEMA_V4: &str = "DROP INDEX IF EXISTS attempts_app; DROP INDEX IF EXISTS attempts_owner;";

/// The advisory lock key migrations hold ("nxguard" in ASCII).
const MIGRATION_LOCK: i64 = 0x006e_7867_7561_7264;

/// `store.url` without anything secret (it never holds a password; validation refuses one).
pub(crate) fn label(config: &StoreConfig) -> String {
    config.url.clone().unwrap_or_default()
}

/// The error and every cause, on one line ("error connecting to server: Connection refused").
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(crate) fn db_error(config: &StoreConfig, source: ::postgres::Error) -> StoreError {
    StoreError::Postgres { url: label(config), source: Box::new(source) }
}

/// The password: `store.password_file` (first line), else `PGPASSWORD`, else none.
fn password(config: &StoreConfig) -> Result<Option<String>, StoreError> {
    if let Some(path) = &config.password_file {
        let text =
            std::fs::read_to_string(path).map_err(|e| StoreError::Password { path: path.clone(), source: e.into() })?;
        let line = text.lines().next().unwrap_or_default().to_string();
        if line.is_empty() {
            return Err(StoreError::Password { path: path.clone(), source: FileError::Empty });
        }
        return Ok(Some(line));
    }
    Ok(std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()))
}

fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, StoreError> {
    let Some(path) = ca_file else {
        return Ok(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
    };
    let fail = |source: FileError| StoreError::Ca { path: path.into(), source };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.into()))? {
        roots.add(cert.map_err(|e| fail(e.into()))?).map_err(|e| fail(e.into()))?;
    }
    if roots.is_empty() {
        return Err(fail(FileError::NoCertificate));
    }
    Ok(roots)
}

/// Accepts any server certificate: `tls = "require"` (encrypted, not authenticated), as
/// libpq's sslmode=require.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector(config: &StoreConfig) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let fail = |e: rustls::Error| StoreError::Postgres { url: label(config), source: Box::new(e) };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(fail)?;
    let tls = match config.tls {
        StoreTls::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        _ => builder.with_root_certificates(roots(config.ca_file.as_deref())?).with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
}

/// The connection settings: URL, password, connect timeout `store.timeout_ms`, TLS mode, and
/// every statement bounded by `statement_timeout_ms` (0: unbounded).
pub(crate) fn settings(config: &StoreConfig, statement_timeout_ms: u64) -> Result<tokio_postgres::Config, StoreError> {
    let url = config.url.as_deref().unwrap_or_default();
    let mut pg: tokio_postgres::Config =
        url.parse().map_err(|e: ::postgres::Error| StoreError::Url { url: url.to_string(), source: e })?;
    if let Some(password) = password(config)? {
        pg.password(password);
    }
    pg.connect_timeout(Duration::from_millis(config.timeout_ms));
    pg.application_name("nxguard");
    pg.options(format!("-c statement_timeout={statement_timeout_ms} -c lock_timeout={}", config.timeout_ms));
    pg.ssl_mode(match config.tls {
        StoreTls::Disable => tokio_postgres::config::SslMode::Disable,
        StoreTls::Require | StoreTls::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    Ok(pg)
}

/// The TLS connector of `store.tls` (unused under `tls = "disable"`).
pub(crate) fn tls(config: &StoreConfig) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    tls_connector(config)
}

/// Connects with the configured URL, password and TLS, and bounds every statement by
/// `store.timeout_ms` (a slow database fails the batch, which stays in the spool).
pub fn connect(config: &StoreConfig) -> Result<Client, StoreError> {
    let pg = Config::from(settings(config, config.timeout_ms)?);
    let client = match config.tls {
        StoreTls::Disable => pg.connect(NoTls),
        StoreTls::Require | StoreTls::VerifyFull => pg.connect(tls_connector(config)?),
    };
    client.map_err(|e| db_error(config, e))
}

/// The schema version the database holds (0: none yet).
pub(crate) fn version(client: &mut Client) -> Result<i64, ::postgres::Error> {
    let exists: bool = client.query_one("SELECT to_regclass('nxguard_schema') IS NOT NULL", &[])?.get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client.query_opt("SELECT version FROM nxguard_schema", &[])?.map_or(0, |r| r.get::<_, i32>(0).into()))
}

/// Creates or migrates the schema; refuses a database whose schema is newer than this binary.
pub fn migrate(client: &mut Client, config: &StoreConfig) -> Result<(), StoreError> {
    let db = |e: ::postgres::Error| db_error(config, e);
    let newer = |found| StoreError::Version { store: label(config), found };
    let found = version(client).map_err(db)?;
    if found > SCHEMA_VERSION {
        return Err(newer(found));
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let mut tx = client.transaction().map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(db)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS nxguard_schema (version INTEGER NOT NULL)").map_err(db)?;
    let found: i64 =
        tx.query_opt("SELECT version FROM nxguard_schema", &[]).map_err(db)?.map_or(0, |r| r.get::<_, i32>(0).into());
    if found > SCHEMA_VERSION {
        return Err(newer(found));
    }
    if found < 2 {
        tx.batch_execute(SCHEMA_V2).map_err(db)?;
    }
    if found < 4 {
        tx.batch_execute(SCHEMA_V4).map_err(db)?;
    }
    tx.execute("DELETE FROM nxguard_schema", &[]).map_err(db)?;
    tx.execute("INSERT INTO nxguard_schema (version) VALUES ($1)", &[&(SCHEMA_VERSION as i32)]).map_err(db)?;
    tx.commit().map_err(db)
}

/// Checks that the schema is the one this binary reads (readers never migrate).
pub fn check_version(client: &mut Client, config: &StoreConfig) -> Result<(), StoreError> {
    let found = version(client).map_err(|e| db_error(config, e))?;
    if found != SCHEMA_VERSION {
        return Err(StoreError::Version { store: label(config), found });
    }
    Ok(())
}

/// Where this node's spool `spool_id` was shipped up to.
pub fn position(client: &mut Client, node: &str, spool_id: &str) -> Result<Option<Position>, ::postgres::Error> {
    let row = client.query_opt(
        "SELECT segment, byte_offset FROM spool_positions WHERE node = $1 AND spool_id = $2",
        &[&node, &spool_id],
    )?;
    Ok(row.map(|r| Position { segment: r.get(0), offset: r.get(1) }))
}

/// `COPY attempts (…) FROM STDIN BINARY` over `record::columns`, in their order.
fn copy_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| format!("COPY attempts ({}) FROM STDIN BINARY", column_names().join(", ")))
}

fn column_type(value: &Value<'_>) -> Type {
    match value {
        Value::Int8(_) => Type::INT8,
        Value::Int4(_) => Type::INT4,
        Value::Text(_) | Value::OptText(_) => Type::TEXT,
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Int8(v) => v.to_sql(ty, out),
            Value::Int4(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::OptText(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty) || <i32 as ToSql>::accepts(ty) || <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// Adds the deltas to the stored rollups in one statement; domain sets are merged by the
/// database (distinct, sorted bytewise).
const UPSERT_ROLLUPS: &str = r#"
INSERT INTO rollups (device_key, app, day, node, mode, owner, app_name, attempts, api, telemetry, cdn, web,
                     alias, unspecified, first_ms, last_ms, domains)
SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::int8[],
                     $15::int8[], $16::int8[], $17::text[])
ON CONFLICT (day, device_key, app, node, mode) DO UPDATE SET
    owner = GREATEST(rollups.owner, EXCLUDED.owner),
    app_name = GREATEST(rollups.app_name, EXCLUDED.app_name),
    attempts = rollups.attempts + EXCLUDED.attempts,
    api = rollups.api + EXCLUDED.api,
    telemetry = rollups.telemetry + EXCLUDED.telemetry,
    cdn = rollups.cdn + EXCLUDED.cdn,
    web = rollups.web + EXCLUDED.web,
    alias = rollups.alias + EXCLUDED.alias,
    unspecified = rollups.unspecified + EXCLUDED.unspecified,
    first_ms = LEAST(rollups.first_ms, EXCLUDED.first_ms),
    last_ms = GREATEST(rollups.last_ms, EXCLUDED.last_ms),
    domains = CASE WHEN rollups.domains = EXCLUDED.domains THEN rollups.domains ELSE
              (SELECT string_agg(d, ' ' ORDER BY d) FROM
               (SELECT DISTINCT unnest(string_to_array(rollups.domains || ' ' || EXCLUDED.domains, ' ')) AS d) s) END
"#;

fn copy_rows(tx: &mut Transaction, records: &[Record]) -> Result<(), ::postgres::Error> {
    let types = Record::default().columns().map(|(_, value)| column_type(&value));
    let mut writer = BinaryCopyInWriter::new(tx.copy_in(copy_sql())?, &types);
    for record in records {
        let columns = record.columns();
        let values = columns.each_ref().map(|(_, value)| value as &(dyn ToSql + Sync));
        writer.write(&values)?;
    }
    writer.finish()?;
    Ok(())
}

fn upsert_rollups(tx: &mut Transaction, rollups: &Rollups) -> Result<(), ::postgres::Error> {
    let rows = rollups.sorted();
    if rows.is_empty() {
        return Ok(());
    }
    let text = |f: &dyn Fn(usize) -> String| (0..rows.len()).map(f).collect::<Vec<String>>();
    let int = |f: &dyn Fn(usize) -> i64| (0..rows.len()).map(f).collect::<Vec<i64>>();
    let owners: Vec<Option<String>> = rows.iter().map(|(_, c)| c.owner.clone()).collect();
    let (device_keys, apps) = (text(&|i| rows[i].0.device_key.clone()), text(&|i| rows[i].0.app.clone()));
    let days = int(&|i| rows[i].0.day);
    let (nodes, modes) = (text(&|i| rows[i].0.node.clone()), text(&|i| rows[i].0.mode.clone()));
    let app_names = text(&|i| rows[i].1.app_name.clone());
    let attempts = int(&|i| rows[i].1.attempts);
    let kinds: Vec<Vec<i64>> = (0..6).map(|k| int(&|i| rows[i].1.kinds[k])).collect();
    let (firsts, lasts) = (int(&|i| rows[i].1.first_ms), int(&|i| rows[i].1.last_ms));
    let domains = text(&|i| rows[i].1.domains_text());
    tx.execute(
        UPSERT_ROLLUPS,
        &[
            &device_keys,
            &apps,
            &days,
            &nodes,
            &modes,
            &owners,
            &app_names,
            &attempts,
            &kinds[0],
            &kinds[1],
            &kinds[2],
            &kinds[3],
            &kinds[4],
            &kinds[5],
            &firsts,
            &lasts,
            &domains,
        ],
    )?;
    Ok(())
}

/// Writes a spooled batch: its raw rows, their rollups (`rollups`, the batch's own deltas) and
/// the new spool position, in one transaction (so a batch is in the database exactly once,
/// whatever fails when).
pub fn ship(
    client: &mut Client,
    node: &str,
    spool_id: &str,
    batch: &Batch,
    rollups: &Rollups,
) -> Result<(), ::postgres::Error> {
    let mut tx = client.transaction()?;
    if !batch.records.is_empty() {
        copy_rows(&mut tx, &batch.records)?;
        upsert_rollups(&mut tx, rollups)?;
    }
    tx.execute(
        "INSERT INTO spool_positions (node, spool_id, segment, byte_offset) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (node, spool_id) DO UPDATE SET segment = EXCLUDED.segment, byte_offset = EXCLUDED.byte_offset",
        &[&node, &spool_id, &batch.next.segment, &batch.next.offset],
    )?;
    tx.commit()
}

/// Adds rollups directly (benchmarks: rollups of a long history without its raw rows).
pub fn add_rollups(client: &mut Client, rollups: &Rollups) -> Result<(), ::postgres::Error> {
    let mut tx = client.transaction()?;
    upsert_rollups(&mut tx, rollups)?;
    tx.commit()
}

/// Writes records directly (tests, benchmarks, imports): rows and rollups in one transaction.
pub fn insert(client: &mut Client, records: &[Record]) -> Result<(), ::postgres::Error> {
    let mut tx = client.transaction()?;
    copy_rows(&mut tx, records)?;
    upsert_rollups(&mut tx, &Rollups::of(records))?;
    tx.commit()
}

/// Deletes at most `limit` raw rows older than `raw_before_ms` and rollups of days before
/// `rollups_before_day`; returns how many rows went.
pub fn purge_chunk(
    client: &mut Client,
    raw_before_ms: i64,
    rollups_before_day: i64,
    limit: i64,
) -> Result<u64, ::postgres::Error> {
    let raw = client.execute(
        "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE ts_ms < $1 ORDER BY ts_ms LIMIT $2)",
        &[&raw_before_ms, &limit],
    )?;
    let rollups = client.execute(
        "DELETE FROM rollups WHERE ctid IN (SELECT ctid FROM rollups WHERE day < $1 LIMIT $2)",
        &[&rollups_before_day, &limit],
    )?;
    Ok(raw + rollups)
}
