//! The SIEM stream: every attempt as one JSON object per line (JSON Lines), to a file or stdout,
//! for municipalities that ship logs to a SIEM.
//!
//! Owns: encoding (serde_json escapes quotes, backslashes and control characters, so a query
//! name can neither end a line nor inject terminal sequences) and a writer thread behind a
//! bounded queue, so a slow disk or pipe never holds up the dispatcher.

use std::{
    io::{BufWriter, Write},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender},
    },
    thread::JoinHandle,
};

use thiserror::Error;

use crate::evidence::attempt::Flat;

#[derive(Debug, Error)]
pub enum SiemError {
    #[error("cannot open SIEM stream {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
}

#[derive(Default)]
pub struct SiemStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Clone)]
pub struct SiemSink {
    queue: SyncSender<String>,
    stats: Arc<SiemStats>,
}

impl SiemSink {
    pub fn stats(&self) -> Arc<SiemStats> {
        Arc::clone(&self.stats)
    }

    pub fn send(&self, record: &Flat<'_>) {
        let Ok(line) = serde_json::to_string(record) else { return };
        if self.queue.try_send(line).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct SiemWriter {
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<SiemStats>,
}

impl SiemWriter {
    /// Opens `path` for appending ("-" is standard output) and starts the writer thread.
    pub fn start(path: &str, capacity: usize) -> Result<(SiemSink, SiemWriter), SiemError> {
        let out: Box<dyn Write + Send> = if path == "-" {
            Box::new(std::io::stdout())
        } else {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| SiemError::Open { path: path.into(), source })?;
            Box::new(file)
        };
        let (queue, lines) = mpsc::sync_channel::<String>(capacity);
        let stats = Arc::new(SiemStats::default());
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("nxguard-siem".into())
            .spawn(move || {
                let mut out = BufWriter::new(out);
                while let Ok(line) = lines.recv() {
                    let mut batch = vec![line];
                    batch.extend(lines.try_iter());
                    let mut ok = true;
                    for line in &batch {
                        ok &= out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")).is_ok();
                    }
                    ok &= out.flush().is_ok();
                    let counter = if ok { &thread_stats.written } else { &thread_stats.errors };
                    counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            })
            .expect("spawning the SIEM thread");
        Ok((SiemSink { queue, stats: Arc::clone(&stats) }, SiemWriter { thread: Some(thread), stats }))
    }

    /// Waits until every queued line is written (after every sink is dropped).
    pub fn close(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
