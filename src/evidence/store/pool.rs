//! A bounded pool of SQLite connections whose calls run off the async workers.
//!
//! Owns: opening connections lazily (at most `size`), lending one to a closure that runs under
//! `spawn_blocking`, taking it back (or dropping it after an error, so a broken connection is
//! not lent again), and bounding both the wait for a free connection and the call itself
//! (a call past its time is interrupted with `sqlite3_interrupt`).
//! Used for the readers of an SQLite attempt store (`read`) and the console's own database.
//! Does not own what the connections hold or which pragmas they need (the opener given).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use rusqlite::Connection;
use thiserror::Error;
use tokio::sync::Semaphore;

#[derive(Debug, Error)]
pub enum PoolError {
    #[error("{path}: no connection free within {wait_ms} ms ({size} in use)")]
    Busy { path: PathBuf, wait_ms: u128, size: usize },
    #[error("{path}: the database call took longer than {wait_ms} ms and was interrupted")]
    Slow { path: PathBuf, wait_ms: u128 },
    #[error("{path}: the database call ended without an answer (panicked or cancelled)")]
    Lost { path: PathBuf },
}

/// Opens one connection of the pool.
pub type Opener<E> = fn(&Path) -> Result<Connection, E>;

/// At most `size` connections to one SQLite file; each call waits at most `wait` for one and
/// runs at most `wait` (None: unbounded, for the command line).
pub struct SqlitePool<E> {
    path: PathBuf,
    open: Opener<E>,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    size: usize,
    wait: Option<Duration>,
}

impl<E> SqlitePool<E>
where
    E: From<PoolError> + Send + 'static,
{
    pub fn new(path: PathBuf, size: usize, wait: Option<Duration>, open: Opener<E>) -> SqlitePool<E> {
        let size = size.max(1);
        SqlitePool { path, open, idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(size)), size, wait }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `call` with a connection of the pool on a blocking thread.
    pub async fn run<T, F>(&self, call: F) -> Result<T, E>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits).acquire_owned();
        let _permit = match self.wait {
            Some(wait) => tokio::time::timeout(wait, permit).await.map_err(|_| self.busy(wait))?,
            None => permit.await,
        }
        .map_err(|_| self.lost())?;
        let idle = self.idle().pop();
        let (path, open) = (self.path.clone(), self.open);
        let (interrupt_tx, mut interrupt_rx) = tokio::sync::oneshot::channel();
        let mut job = tokio::task::spawn_blocking(move || -> Result<(Option<Connection>, Result<T, E>), E> {
            let mut connection = match idle {
                Some(connection) => connection,
                None => open(&path)?,
            };
            let _ = interrupt_tx.send(connection.get_interrupt_handle());
            let result = call(&mut connection);
            Ok((result.is_ok().then_some(connection), result))
        });
        let joined = match self.wait {
            Some(wait) => match tokio::time::timeout(wait, &mut job).await {
                Ok(joined) => joined,
                Err(_) => {
                    // Not started: cancelled. Running: it ends as soon as SQLite sees the interrupt.
                    job.abort();
                    if let Ok(handle) = interrupt_rx.try_recv() {
                        handle.interrupt();
                    }
                    return Err(PoolError::Slow { path: self.path.clone(), wait_ms: wait.as_millis() }.into());
                }
            },
            None => job.await,
        };
        let (connection, result) = joined.map_err(|_| self.lost())??;
        if let Some(connection) = connection {
            self.idle().push(connection);
        }
        result
    }

    fn busy(&self, wait: Duration) -> E {
        PoolError::Busy { path: self.path.clone(), wait_ms: wait.as_millis(), size: self.size }.into()
    }

    fn lost(&self) -> E {
        PoolError::Lost { path: self.path.clone() }.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum TestError {
        Pool(PoolError),
        Sql,
    }

    impl From<PoolError> for TestError {
        fn from(e: PoolError) -> TestError {
            TestError::Pool(e)
        }
    }

    fn open(path: &Path) -> Result<Connection, TestError> {
        Connection::open(path).map_err(|_| TestError::Sql)
    }

    #[tokio::test]
    async fn connections_are_reused_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let pool: Arc<SqlitePool<TestError>> =
            Arc::new(SqlitePool::new(dir.path().join("p.sqlite"), 2, Some(Duration::from_secs(5)), open));
        let calls = (0..8).map(|i| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                pool.run(move |c| c.query_row("SELECT ?1", [i], |r| r.get::<_, i64>(0)).map_err(|_| TestError::Sql))
                    .await
            })
        });
        for (i, call) in calls.enumerate() {
            assert_eq!(call.await.unwrap().unwrap(), i as i64);
        }
        assert!(pool.idle().len() <= 2, "never more than `size` connections");
    }

    #[tokio::test]
    async fn a_call_past_its_time_is_interrupted_and_the_pool_serves_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let pool: SqlitePool<TestError> =
            SqlitePool::new(dir.path().join("p.sqlite"), 1, Some(Duration::from_millis(200)), open);
        let endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n";
        let slow =
            pool.run(move |c| c.query_row(endless, [], |r| r.get::<_, i64>(0)).map_err(|_| TestError::Sql)).await;
        assert!(matches!(slow, Err(TestError::Pool(PoolError::Slow { .. }))), "{slow:?}");
        let next = pool.run(|c| c.query_row("SELECT 7", [], |r| r.get::<_, i64>(0)).map_err(|_| TestError::Sql));
        assert_eq!(next.await.unwrap(), 7);
    }
}
