//! Reading a store, on either backend, off the async workers, and running one SQL text on
//! both: `?` placeholders (numbered `$n` for PostgreSQL), integer and text cells.
//!
//! A `Reader` is a bounded pool of read-only connections (SQLite: `pool::SqlitePool`, each
//! query on a blocking thread; PostgreSQL: deadpool-postgres over tokio-postgres), opened
//! lazily, so a store that is down when the console starts is reached once it is up. Each
//! query borrows one connection for its own length; every wait and query is bounded by
//! `Limits::timeout` (the console's; the command line waits as long as a report takes).
//!
//! The readers (`review`) write SQL both engines accept alike: `string_agg`, `CAST(… AS
//! BIGINT)`, `lower(…)` for case-insensitive matches (ASCII on both: SQLite's `lower`, and
//! PostgreSQL's under the `C` collation of every text column).

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rusqlite::{Connection, params_from_iter, types::ValueRef};
use tokio_postgres::types::{ToSql, Type};

use crate::{
    config::StoreConfig,
    evidence::store::{SCHEMA_VERSION, StoreError, pool::SqlitePool, postgres, sqlite},
};

/// How many connections a reader keeps and how long a query may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    /// Bounds the wait for a connection and each query (None: unbounded).
    pub timeout: Option<Duration>,
}

impl Limits {
    /// `nxguard report`: one connection per store, no time limit.
    pub const COMMAND_LINE: Limits = Limits { connections: 1, timeout: None };
}

/// A query parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Text(String),
}

/// A result cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl Cell {
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(n) => *n,
            Cell::Text(t) => t.parse().unwrap_or(0),
            Cell::Null => 0,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn string(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Null => String::new(),
        }
    }
}

/// A store opened for reading: a pool of connections, shared by its clones.
#[derive(Clone)]
pub struct Reader {
    backend: Backend,
    timeout: Option<Duration>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<SqlitePool<StoreError>>),
    Postgres(Arc<PgReader>),
}

struct PgReader {
    pool: deadpool_postgres::Pool,
    config: StoreConfig,
    /// The schema version was found to be the one this binary reads.
    checked: AtomicBool,
}

fn is_postgres(source: &str) -> bool {
    source.starts_with("postgres://") || source.starts_with("postgresql://")
}

impl Reader {
    /// Opens `source`: a `postgres://` URL (password, TLS and CA from `config`) or an SQLite
    /// file. Connects at the first query.
    pub fn open(source: &str, config: &StoreConfig, limits: Limits) -> Result<Reader, StoreError> {
        let backend = if is_postgres(source) {
            let config = StoreConfig { url: Some(source.to_string()), ..config.clone() };
            Backend::Postgres(Arc::new(pg_reader(config, limits)?))
        } else {
            let path = PathBuf::from(source);
            Backend::Sqlite(Arc::new(SqlitePool::new(path, limits.connections, limits.timeout, sqlite::open_read_only)))
        };
        Ok(Reader { backend, timeout: limits.timeout })
    }

    /// The SQLite file read, when the store is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match &self.backend {
            Backend::Sqlite(pool) => Some(pool.path()),
            Backend::Postgres(_) => None,
        }
    }

    /// The store as errors name it (path or URL).
    pub fn label(&self) -> String {
        match &self.backend {
            Backend::Sqlite(pool) => pool.path().display().to_string(),
            Backend::Postgres(pg) => postgres::label(&pg.config),
        }
    }

    /// Runs `sql` with `?` placeholders; every row as cells. Each query's time is logged at
    /// debug level (`nxguard::evidence::store::read=debug`: the console's profile).
    pub async fn rows(&self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Cell>>, StoreError> {
        let began = std::time::Instant::now();
        let rows = self.run(sql, params).await;
        if tracing::enabled!(tracing::Level::DEBUG) {
            let (count, ms) = (rows.as_ref().map_or(0, Vec::len), began.elapsed().as_secs_f64() * 1e3);
            let head: String = sql.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(160).collect();
            tracing::debug!(rows = count, ms, sql = %head, "store query");
        }
        rows
    }

    async fn run(&self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Cell>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let (sql, params, path) = (sql.to_string(), params.to_vec(), pool.path().to_path_buf());
                pool.run(move |connection| {
                    sqlite_rows(connection, &sql, &params).map_err(|source| StoreError::Sqlite { path, source })
                })
                .await
            }
            Backend::Postgres(pg) => match self.timeout {
                Some(limit) => tokio::time::timeout(limit, pg.rows(sql, params))
                    .await
                    .map_err(|_| StoreError::Timeout { store: self.label(), ms: limit.as_millis() })?,
                None => pg.rows(sql, params).await,
            },
        }
    }
}

fn pg_reader(config: StoreConfig, limits: Limits) -> Result<PgReader, StoreError> {
    let statement_ms = limits.timeout.map_or(0, |t| t.as_millis() as u64);
    let settings = postgres::settings(&config, statement_ms)?;
    let manager = deadpool_postgres::Manager::from_config(
        settings,
        postgres::tls(&config)?,
        deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(limits.connections.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(limits.timeout)
        .create_timeout(limits.timeout)
        .recycle_timeout(limits.timeout)
        .build()
        .map_err(|e| StoreError::Postgres { url: postgres::label(&config), source: Box::new(e) })?;
    Ok(PgReader { pool, config, checked: AtomicBool::new(false) })
}

impl PgReader {
    fn fail(&self, error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Postgres { url: postgres::label(&self.config), source: Box::new(error) }
    }

    async fn rows(&self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Cell>>, StoreError> {
        let client = self.pool.get().await.map_err(|e| self.fail(e))?;
        if !self.checked.load(Ordering::Relaxed) {
            let found = schema_version(&client).await.map_err(|e| self.fail(e))?;
            if found != SCHEMA_VERSION {
                return Err(StoreError::Version { store: postgres::label(&self.config), found });
            }
            self.checked.store(true, Ordering::Relaxed);
        }
        let statement = client.prepare_cached(&numbered(sql)).await.map_err(|e| self.fail(e))?;
        let values: Vec<Box<dyn ToSql + Sync + Send>> = params
            .iter()
            .map(|p| -> Box<dyn ToSql + Sync + Send> {
                match p {
                    Param::Int(n) => Box::new(*n),
                    Param::Text(t) => Box::new(t.clone()),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect();
        let rows = client.query(&statement, &refs).await.map_err(|e| self.fail(e))?;
        Ok(rows.iter().map(pg_cells).collect())
    }
}

/// The schema version a PostgreSQL store holds (0: none yet).
async fn schema_version(client: &tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    let exists: bool = client.query_one("SELECT to_regclass('nxguard_schema') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(0);
    }
    let row = client.query_opt("SELECT version FROM nxguard_schema", &[]).await?;
    Ok(row.map_or(0, |r| r.get::<_, i32>(0).into()))
}

fn pg_cells(row: &tokio_postgres::Row) -> Vec<Cell> {
    (0..row.len())
        .map(|i| match *row.columns()[i].type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).ok().flatten().map_or(Cell::Null, Cell::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i).ok().flatten().map_or(Cell::Null, |n| Cell::Int(n.into())),
            _ => row.try_get::<_, Option<String>>(i).ok().flatten().map_or(Cell::Null, Cell::Text),
        })
        .collect()
}

fn sqlite_rows(connection: &Connection, sql: &str, params: &[Param]) -> Result<Vec<Vec<Cell>>, rusqlite::Error> {
    let mut statement = connection.prepare_cached(sql)?;
    let columns = statement.column_count();
    let values = params.iter().map(|p| match p {
        Param::Int(n) => rusqlite::types::Value::Integer(*n),
        Param::Text(t) => rusqlite::types::Value::Text(t.clone()),
    });
    let mut rows = statement.query(params_from_iter(values))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut cells = Vec::with_capacity(columns);
        for i in 0..columns {
            cells.push(match row.get_ref(i)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(n) => Cell::Int(n),
                ValueRef::Real(f) => Cell::Int(f as i64),
                ValueRef::Text(t) | ValueRef::Blob(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
            });
        }
        out.push(cells);
    }
    Ok(out)
}

/// `?` → `$1`, `$2`, … (the readers' SQL has no `?` inside literals).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered("a = ? AND b IN (?, ?)"), "a = $1 AND b IN ($2, $3)");
    }
}
