//! Opening a store read-only for readers, on either backend, and running one SQL text on both:
//! `?` placeholders (numbered `$n` for PostgreSQL), integer and text cells.
//!
//! The readers (`review`) write SQL both engines accept alike: `string_agg`, `CAST(… AS
//! BIGINT)`, `lower(…)` for case-insensitive matches (ASCII on both: SQLite's `lower`, and
//! PostgreSQL's under the `C` collation of every text column).

use std::path::PathBuf;

use ::postgres::{Client, types::Type};
use rusqlite::{Connection, params_from_iter, types::ValueRef};

use crate::{
    config::StoreConfig,
    evidence::store::{StoreError, postgres, sqlite},
};

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

/// A store opened for reading.
pub enum Reader {
    Sqlite { connection: Connection, path: PathBuf },
    Postgres { client: Box<Client>, config: Box<StoreConfig> },
}

impl Reader {
    /// Opens `source`: a `postgres://` URL (password, TLS and CA from `config`) or an SQLite
    /// file.
    pub fn open(source: &str, config: &StoreConfig) -> Result<Reader, StoreError> {
        if source.starts_with("postgres://") || source.starts_with("postgresql://") {
            let config = StoreConfig { url: Some(source.to_string()), ..config.clone() };
            let mut client = postgres::connect(&config)?;
            postgres::check_version(&mut client, &config)?;
            return Ok(Reader::Postgres { client: Box::new(client), config: Box::new(config) });
        }
        let path = PathBuf::from(source);
        Ok(Reader::Sqlite { connection: sqlite::open_read_only(&path)?, path })
    }

    /// Runs `sql` with `?` placeholders; every row as cells.
    pub fn rows(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Cell>>, StoreError> {
        match self {
            Reader::Sqlite { connection, path } => {
                let wrap = |source| StoreError::Sqlite { path: path.clone(), source };
                sqlite_rows(connection, sql, params).map_err(wrap)
            }
            Reader::Postgres { client, config } => {
                pg_rows(client, sql, params).map_err(|e| postgres::db_error(config, &e))
            }
        }
    }
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

fn pg_rows(client: &mut Client, sql: &str, params: &[Param]) -> Result<Vec<Vec<Cell>>, ::postgres::Error> {
    let values: Vec<Box<dyn ::postgres::types::ToSql + Sync>> = params
        .iter()
        .map(|p| -> Box<dyn ::postgres::types::ToSql + Sync> {
            match p {
                Param::Int(n) => Box::new(*n),
                Param::Text(t) => Box::new(t.clone()),
            }
        })
        .collect();
    let refs: Vec<&(dyn ::postgres::types::ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
    let rows = client.query(&numbered(sql), &refs)?;
    Ok(rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| match *row.columns()[i].type_() {
                    Type::INT8 => row.try_get::<_, Option<i64>>(i).ok().flatten().map_or(Cell::Null, Cell::Int),
                    Type::INT4 => {
                        row.try_get::<_, Option<i32>>(i).ok().flatten().map_or(Cell::Null, |n| Cell::Int(n.into()))
                    }
                    _ => row.try_get::<_, Option<String>>(i).ok().flatten().map_or(Cell::Null, Cell::Text),
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered("a = ? AND b IN (?, ?)"), "a = $1 AND b IN ($2, $3)");
    }
}
