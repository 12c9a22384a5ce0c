//! The local spool of the PostgreSQL backend: every record is appended here first (one JSON
//! line each, in segment files), and the shipper moves it to the database in order. What is in
//! the spool survives a database outage and a `kill -9`; the database keeps how far it has read
//! (`spool_positions`), in the transaction that wrote the rows, so nothing is written twice.
//!
//! Layout of `store.spool_dir`: `id` (this spool's random name, so a wiped spool never
//! matches an old position) and `000000000001.jsonl`, `000000000002.jsonl`, … A new segment is
//! started at every start and every `SEGMENT_BYTES`; a segment is deleted once shipped.

use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::evidence::store::{StoreError, record::Record};

/// A segment grows to about this size before the next one is started.
const SEGMENT_BYTES: u64 = 8 << 20;

/// Where the shipper has read up to: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: i64,
    pub offset: i64,
}

/// A batch read from the spool, and the position after it.
pub struct Batch {
    pub records: Vec<Record>,
    pub next: Position,
    /// Lines that could not be read (a torn last line after a crash); skipped.
    pub unreadable: u64,
}

struct Appender {
    segment: i64,
    file: Option<File>,
    written: u64,
}

/// The spool directory, shared by the thread that appends and the thread that ships.
pub struct Spool {
    dir: PathBuf,
    pub id: String,
    max_bytes: u64,
    appender: Mutex<Appender>,
    /// Bytes in the segment files not yet deleted (the depth, to within one segment).
    pub bytes: AtomicU64,
}

fn segment_name(segment: i64) -> String {
    format!("{segment:012}.jsonl")
}

impl Spool {
    /// Opens (creating) the spool directory; appends go to a new segment after the last one.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, StoreError> {
        let fail = |e: std::io::Error| StoreError::Spool { path: dir.into(), source: e };
        // The spool holds what the database would: only the service may read it.
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(fail)?;
        let id_path = dir.join("id");
        let id = match fs::read_to_string(&id_path) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
            _ => {
                let id: String = rand::random::<[u8; 8]>().iter().map(|b| format!("{b:02x}")).collect();
                fs::write(&id_path, &id).map_err(fail)?;
                id
            }
        };
        let segments = segments(dir).map_err(fail)?;
        let bytes = segments.iter().map(|(_, size)| size).sum();
        let next = segments.last().map_or(1, |(n, _)| n + 1);
        Ok(Spool {
            dir: dir.to_path_buf(),
            id,
            max_bytes,
            appender: Mutex::new(Appender { segment: next, file: None, written: 0 }),
            bytes: AtomicU64::new(bytes),
        })
    }

    /// Appends records; returns how many did not fit under `spool_max_bytes` (dropped).
    pub fn append(&self, records: &[Record]) -> Result<usize, StoreError> {
        let mut text = Vec::with_capacity(records.len() * 400);
        let mut kept = 0;
        let room = self.max_bytes.saturating_sub(self.bytes.load(Ordering::Relaxed));
        for record in records {
            let before = text.len();
            serde_json::to_writer(&mut text, record).map_err(|e| self.fail(e.into()))?;
            text.push(b'\n');
            if text.len() as u64 > room {
                text.truncate(before);
                break;
            }
            kept += 1;
        }
        if text.is_empty() {
            return Ok(records.len() - kept);
        }
        let mut appender = self.appender.lock().unwrap_or_else(|e| e.into_inner());
        if appender.written >= SEGMENT_BYTES {
            appender.segment += 1;
            appender.file = None;
            appender.written = 0;
        }
        if appender.file.is_none() {
            let path = self.dir.join(segment_name(appender.segment));
            let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| self.fail(e))?;
            appender.file = Some(file);
        }
        let file = appender.file.as_mut().expect("opened above");
        // One write per batch: a kill -9 can tear at most the last line, which the reader skips.
        file.write_all(&text).map_err(|e| self.fail(e))?;
        appender.written += text.len() as u64;
        self.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
        Ok(records.len() - kept)
    }

    fn fail(&self, source: std::io::Error) -> StoreError {
        StoreError::Spool { path: self.dir.clone(), source }
    }

    /// The first position holding records: the oldest segment left, or `from` if later.
    pub fn start(&self, from: Option<Position>) -> Result<Position, StoreError> {
        let first = segments(&self.dir).map_err(|e| self.fail(e))?.first().map_or(1, |(n, _)| *n);
        Ok(match from {
            Some(p) if p.segment >= first => p,
            _ => Position { segment: first, offset: 0 },
        })
    }

    /// Reads up to `max` records from `at`.
    pub fn read(&self, at: Position, max: usize) -> Result<Batch, StoreError> {
        let current = self.appender.lock().unwrap_or_else(|e| e.into_inner()).segment;
        let mut batch = Batch { records: Vec::new(), next: at, unreadable: 0 };
        while batch.records.len() < max && batch.next.segment <= current {
            let path = self.dir.join(segment_name(batch.next.segment));
            let file = match File::open(&path) {
                Ok(file) => Some(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(self.fail(e)),
            };
            let sealed = batch.next.segment < current;
            let at_end = match file {
                Some(file) => self.read_segment(file, &mut batch, max, sealed)?,
                None => true,
            };
            if !(at_end && sealed) {
                break;
            }
            batch.next = Position { segment: batch.next.segment + 1, offset: 0 };
        }
        Ok(batch)
    }

    /// Reads complete lines of one segment into `batch`; true when the segment is read to its
    /// end. In a sealed segment a torn last line is skipped; in the current one it is left
    /// for the next read (the appender may be writing it).
    fn read_segment(&self, mut file: File, batch: &mut Batch, max: usize, sealed: bool) -> Result<bool, StoreError> {
        file.seek(SeekFrom::Start(batch.next.offset as u64)).map_err(|e| self.fail(e))?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut line = Vec::new();
        while batch.records.len() < max {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(|e| self.fail(e))?;
            if n == 0 {
                return Ok(true);
            }
            if line.last() != Some(&b'\n') {
                if sealed {
                    batch.unreadable += 1;
                    batch.next.offset += n as i64;
                }
                return Ok(true);
            }
            batch.next.offset += n as i64;
            match serde_json::from_slice(&line) {
                Ok(record) => batch.records.push(record),
                Err(_) => batch.unreadable += 1,
            }
        }
        Ok(false)
    }

    /// Deletes the segments wholly before `shipped` (their records are in the database).
    pub fn release(&self, shipped: Position) -> Result<(), StoreError> {
        for (segment, size) in segments(&self.dir).map_err(|e| self.fail(e))? {
            if segment >= shipped.segment {
                break;
            }
            fs::remove_file(self.dir.join(segment_name(segment))).map_err(|e| self.fail(e))?;
            self.bytes.fetch_sub(size.min(self.bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The segment files, oldest first, with their sizes.
fn segments(dir: &Path) -> std::io::Result<Vec<(i64, u64)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(number) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")).and_then(|n| n.parse().ok()) else {
            continue;
        };
        found.push((number, entry.metadata()?.len()));
    }
    found.sort_unstable();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts_ms: i64) -> Record {
        Record { ts_ms, device_key: "d".into(), app: "tiktok".into(), ..Record::default() }
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        spool.append(&[record(1), record(2)]).unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        spool.append(&[record(3)]).unwrap();
        let start = spool.start(None).unwrap();
        let batch = spool.read(start, 2).unwrap();
        assert_eq!(batch.records.iter().map(|r| r.ts_ms).collect::<Vec<_>>(), [1, 2]);
        let rest = spool.read(batch.next, 10).unwrap();
        assert_eq!(rest.records.iter().map(|r| r.ts_ms).collect::<Vec<_>>(), [3]);
        spool.release(rest.next).unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 1, "the shipped first segment is gone");
    }

    #[test]
    fn a_torn_last_line_is_skipped_once_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        spool.append(&[record(1)]).unwrap();
        let path = dir.path().join(segment_name(1));
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"ts_ms\":").unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        spool.append(&[record(2)]).unwrap();
        let batch = spool.read(spool.start(None).unwrap(), 10).unwrap();
        assert_eq!(batch.records.iter().map(|r| r.ts_ms).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(batch.unreadable, 1);
    }

    #[test]
    fn the_bound_drops_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1000).unwrap();
        let dropped = spool.append(&(0..10).map(record).collect::<Vec<_>>()).unwrap();
        assert!(dropped > 0 && dropped < 10, "{dropped}");
    }
}
