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

use serde::{Serialize, Serializer, ser::SerializeMap};
use thiserror::Error;

use crate::evidence::store::record::{Record, Value};

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

    pub fn send(&self, record: &Record) {
        let Ok(line) = serde_json::to_string(&Line(record)) else { return };
        if self.queue.try_send(line).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A record as one SIEM line: the stored columns under the log's field names (`time` in RFC
/// 3339 for `ts_ms`, `device`, `client`, `device_name` for `device_key`, `client_ip`, `device`),
/// without `node`, with `resolver` when another resolver reported it.
pub struct Line<'a>(pub &'a Record);

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let record = self.0;
        let mut map = serializer.serialize_map(None)?;
        for (column, value) in record.columns() {
            let name = match column {
                "node" => continue,
                "ts_ms" => {
                    map.serialize_entry("time", &record.time_text())?;
                    continue;
                }
                "device_key" => "device",
                "client_ip" => "client",
                "device" => "device_name",
                other => other,
            };
            match value {
                Value::Int8(v) => map.serialize_entry(name, &v)?,
                Value::Int4(v) => map.serialize_entry(name, &v)?,
                Value::Text(v) => map.serialize_entry(name, v)?,
                Value::OptText(v) => map.serialize_entry(name, &v)?,
            }
        }
        if let Some(resolver) = &record.resolver {
            map.serialize_entry("resolver", &**resolver)?;
        }
        map.end()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(qname: &str) -> Record {
        Record {
            device_key: "dev".into(),
            client_ip: Some("127.0.0.2".into()),
            client_port: Some(5000),
            device_ip: Some("127.0.0.2".into()),
            qname: qname.into(),
            matched_on: "cname".into(),
            cname_alias: Some("x.tiktok.com".into()),
            node: "ns1".into(),
            ..Record::default()
        }
    }

    #[test]
    fn serializes_as_one_json_object() {
        let json = serde_json::to_string(&Line(&record("evil\n\"x\u{1b}[31m.tiktok.com"))).unwrap();
        assert!(!json.contains('\n') && !json.contains('\u{1b}'), "{json}");
        assert!(json.contains(r#""qname":"evil\n\"x\u001b[31m.tiktok.com""#), "{json}");
        assert!(json.contains(r#""matched_on":"cname""#), "{json}");
        assert!(
            json.starts_with(
                r#"{"time":"1970-01-01T00:00:00.000Z","device":"dev","client":"127.0.0.2","client_port":5000,"#
            ),
            "{json}"
        );
        assert!(
            json.contains(r#""device_name":null"#) && !json.contains("ns1") && !json.contains("resolver"),
            "{json}"
        );
        let hidden = Record { client_ip: None, client_port: None, device_ip: None, ..record("a.tiktok.com") };
        let hidden = serde_json::to_string(&Line(&hidden)).unwrap();
        assert!(!hidden.contains("127.0.0.2"), "{hidden}");
    }
}
