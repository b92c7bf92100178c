//! Log capture: each service's stdout/stderr read line by line with a timestamp into a ring
//! that survives restarts, and appended to `logs/NAME.log` (rotated) by one writer thread, so
//! file IO never blocks the async runtime.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Lines kept in memory per service.
pub const RING_LINES: usize = 10_000;
/// Bytes of line text kept in memory per service (a guard against huge lines filling RAM).
pub const RING_BYTES: usize = 4 * 1024 * 1024;
/// Longer lines are cut to this many bytes (and marked).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// A log file is rotated when it would grow past this.
pub const LOG_FILE_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept: `NAME.log.1` (newest) … `NAME.log.5` (oldest).
pub const LOG_FILES_KEPT: u32 = 5;
/// Lines queued for the writer thread before new ones are dropped (and counted).
const WRITER_QUEUE: usize = 16 * 1024;
/// Appended to a cut line.
const CUT_MARK: &str = " …[cut]";

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// When it was read (RFC 3339, UTC, milliseconds).
    pub at: String,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The text, without the line break.
    pub line: String,
}

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

struct Entry {
    seq: u64,
    at_ms: i64,
    stream: Stream,
    line: Box<str>,
}

/// The last lines of one service, bounded by count and bytes.
pub(crate) struct LogRing {
    entries: VecDeque<Entry>,
    max_lines: usize,
    max_bytes: usize,
    bytes: usize,
    next_seq: u64,
}

impl LogRing {
    pub(crate) fn new(max_lines: usize, max_bytes: usize) -> Self {
        LogRing { entries: VecDeque::new(), max_lines: max_lines.max(1), max_bytes, bytes: 0, next_seq: 0 }
    }

    /// Appends a line, dropping the oldest ones beyond the limits; returns its sequence number.
    pub(crate) fn push(&mut self, at_ms: i64, stream: Stream, line: String) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += line.len();
        self.entries.push_back(Entry { seq, at_ms, stream, line: line.into_boxed_str() });
        while self.entries.len() > self.max_lines || (self.bytes > self.max_bytes && self.entries.len() > 1) {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.line.len();
            }
        }
        seq
    }

    /// The sequence number the next line will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last `n` lines, oldest first.
    pub(crate) fn tail(&self, n: usize) -> Vec<LogLine> {
        self.tail_since(0, n)
    }

    /// The last `n` lines whose sequence number is at least `seq`, oldest first.
    pub(crate) fn tail_since(&self, seq: u64, n: usize) -> Vec<LogLine> {
        let mut out: Vec<LogLine> = self
            .entries
            .iter()
            .rev()
            .take_while(|e| e.seq >= seq)
            .take(n)
            .map(|e| LogLine {
                at: gateway_core::format_unix_ms(e.at_ms),
                stream: e.stream.as_str(),
                line: e.line.to_string(),
            })
            .collect();
        out.reverse();
        out
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A log file rotated by size: `NAME.log`, then `NAME.log.1` … `NAME.log.{keep}`.
pub(crate) struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<BufWriter<File>>,
    size: u64,
}

impl RotatingFile {
    pub(crate) fn new(path: PathBuf, max_bytes: u64, keep: u32) -> Self {
        RotatingFile { path, max_bytes, keep, file: None, size: 0 }
    }

    fn open(&mut self) -> io::Result<&mut BufWriter<File>> {
        if self.file.is_none() {
            let f = OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(BufWriter::with_capacity(64 * 1024, f));
        }
        self.file.as_mut().ok_or_else(|| io::Error::other("log file not open"))
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        if self.keep == 0 {
            fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            fs::remove_file(self.numbered(self.keep)).or_else(ignore_missing)?;
            for n in (1..self.keep).rev() {
                fs::rename(self.numbered(n), self.numbered(n + 1)).or_else(ignore_missing)?;
            }
            fs::rename(&self.path, self.numbered(1)).or_else(ignore_missing)?;
        }
        self.size = 0;
        Ok(())
    }

    /// Appends one line (with its newline), rotating first when it would pass the limit.
    pub(crate) fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.open()?;
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        let f = self.open()?;
        f.write_all(line)?;
        self.size += len;
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}

/// A line for the writer thread: which file, and the formatted text.
type FileLine = (usize, Vec<u8>);

/// The thread that appends to every service's log file. It ends when every sender is gone.
pub(crate) fn spawn_writer(files: Vec<RotatingFile>) -> io::Result<SyncSender<FileLine>> {
    let (tx, rx) = sync_channel::<FileLine>(WRITER_QUEUE);
    std::thread::Builder::new().name("supervisor-logs".into()).spawn(move || writer_loop(files, rx))?;
    Ok(tx)
}

fn writer_loop(mut files: Vec<RotatingFile>, rx: Receiver<FileLine>) {
    let mut failed = vec![false; files.len()];
    let mut write = |files: &mut Vec<RotatingFile>, (i, line): FileLine| {
        if let Some(f) = files.get_mut(i) {
            match f.write_line(&line) {
                Ok(()) => failed[i] = false,
                Err(e) => {
                    if !failed[i] {
                        log::warn!("cannot write {}: {e}", f.path.display());
                    }
                    failed[i] = true;
                }
            }
        }
    };
    while let Ok(first) = rx.recv() {
        write(&mut files, first);
        // Drain what is queued, then flush once.
        while let Ok(next) = rx.try_recv() {
            write(&mut files, next);
        }
        for f in &mut files {
            if let Err(e) = f.flush() {
                log::warn!("cannot flush {}: {e}", f.path.display());
            }
        }
    }
}

/// One service's captured output: the ring, and its file through the writer thread.
pub(crate) struct ServiceLogs {
    ring: Mutex<LogRing>,
    writer: Option<(usize, SyncSender<FileLine>)>,
    dropped: AtomicU64,
}

impl ServiceLogs {
    pub(crate) fn new(writer: Option<(usize, SyncSender<FileLine>)>) -> Self {
        ServiceLogs { ring: Mutex::new(LogRing::new(RING_LINES, RING_BYTES)), writer, dropped: AtomicU64::new(0) }
    }

    /// Records one line read from the process.
    pub(crate) fn push(&self, stream: Stream, line: String) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        if let Some((index, tx)) = &self.writer {
            let mut text = String::with_capacity(line.len() + 32);
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                text.push_str(&format!(
                    "{} supervisor [{dropped} lines not written: the log writer fell behind]\n",
                    gateway_core::format_unix_ms(at_ms)
                ));
            }
            text.push_str(&gateway_core::format_unix_ms(at_ms));
            text.push(' ');
            text.push_str(stream.as_str());
            text.push(' ');
            text.push_str(&line);
            text.push('\n');
            match tx.try_send((*index, text.into_bytes())) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(dropped + 1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        self.ring.lock().push(at_ms, stream, line);
    }

    pub(crate) fn tail(&self, n: usize) -> Vec<LogLine> {
        self.ring.lock().tail(n)
    }

    pub(crate) fn tail_since(&self, seq: u64, n: usize) -> Vec<LogLine> {
        self.ring.lock().tail_since(seq, n)
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.ring.lock().next_seq()
    }
}

/// Reads a pipe line by line into the service's logs until it closes. Lines longer than
/// [`MAX_LINE_BYTES`] are cut; invalid UTF-8 is replaced; a trailing `\r` is dropped.
pub(crate) async fn capture<R: AsyncRead + Unpin>(pipe: R, stream: Stream, logs: Arc<ServiceLogs>) {
    let mut reader = BufReader::with_capacity(16 * 1024, pipe);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let (consumed, complete) = match reader.fill_buf().await {
            Ok([]) => {
                if !line.is_empty() || cut {
                    logs.push(stream, finish_line(&line, cut));
                }
                return;
            }
            Ok(buf) => {
                let (chunk, consumed, complete) = match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => (&buf[..i], i + 1, true),
                    None => (buf, buf.len(), false),
                };
                let room = MAX_LINE_BYTES.saturating_sub(line.len());
                if chunk.len() > room {
                    line.extend_from_slice(&chunk[..room]);
                    cut = true;
                } else {
                    line.extend_from_slice(chunk);
                }
                (consumed, complete)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::debug!("reading {}: {e}", stream.as_str());
                return;
            }
        };
        reader.consume(consumed);
        if complete {
            logs.push(stream, finish_line(&line, cut));
            line.clear();
            cut = false;
        }
    }
}

fn finish_line(raw: &[u8], cut: bool) -> String {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let mut s = String::from_utf8_lossy(raw).into_owned();
    if cut {
        s.push_str(CUT_MARK);
    }
    s
}

/// `dir/NAME.log`.
pub(crate) fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn ring_capacity_and_tail() {
        let mut ring = LogRing::new(3, 1 << 20);
        for i in 0..5 {
            ring.push(i, if i % 2 == 0 { Stream::Stdout } else { Stream::Stderr }, format!("line {i}"));
        }
        assert_eq!(ring.len(), 3);
        let tail = ring.tail(10);
        assert_eq!(tail.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["line 2", "line 3", "line 4"]);
        assert_eq!(tail[1].stream, "stderr");
        assert_eq!(tail[0].at, "1970-01-01T00:00:00.002Z");
        assert_eq!(ring.tail(1)[0].line, "line 4");
        assert!(ring.tail(0).is_empty());
        // Only the lines of the current instance.
        let mark = ring.next_seq();
        ring.push(9, Stream::Stdout, "new".into());
        assert_eq!(ring.tail_since(mark, 10).len(), 1);
        assert_eq!(ring.tail_since(mark + 1, 10).len(), 0);
    }

    #[test]
    fn ring_is_bounded_by_bytes() {
        let mut ring = LogRing::new(1000, 100);
        for _ in 0..10 {
            ring.push(0, Stream::Stdout, "x".repeat(30));
        }
        assert_eq!(ring.len(), 3);
        // A single line larger than the byte limit is still kept.
        ring.push(0, Stream::Stdout, "y".repeat(500));
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn full_ring_holds_ten_thousand_lines() {
        let mut ring = LogRing::new(RING_LINES, RING_BYTES);
        for i in 0..RING_LINES + 500 {
            ring.push(0, Stream::Stdout, format!("{i}"));
        }
        assert_eq!(ring.len(), RING_LINES);
        assert_eq!(ring.tail(1)[0].line, format!("{}", RING_LINES + 499));
        assert_eq!(ring.tail(RING_LINES)[0].line, "500");
    }

    #[test]
    fn file_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "svc");
        let mut f = RotatingFile::new(path.clone(), 100, 3);
        // 10 lines of 40 bytes: two lines per file.
        for i in 0..10 {
            f.write_line(format!("{i:039}\n").as_bytes()).unwrap();
        }
        f.flush().unwrap();
        let read = |p: PathBuf| fs::read_to_string(p).unwrap();
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        assert_eq!(read(path.clone()).lines().count(), 2);
        assert!(read(path.clone()).starts_with(&format!("{:039}", 8)));
        assert!(read(numbered(1)).starts_with(&format!("{:039}", 6)));
        assert!(read(numbered(2)).starts_with(&format!("{:039}", 4)));
        assert!(read(numbered(3)).starts_with(&format!("{:039}", 2)));
        assert!(!numbered(4).exists(), "only 3 rotated files are kept");
        for p in [path.clone(), numbered(1), numbered(2), numbered(3)] {
            assert!(fs::metadata(&p).unwrap().len() <= 100);
        }
        // Reopening appends to the existing file and knows its size.
        drop(f);
        let mut f = RotatingFile::new(path.clone(), 100, 3);
        f.write_line(format!("{:039}\n", 10).as_bytes()).unwrap();
        f.flush().unwrap();
        assert!(read(path.clone()).starts_with(&format!("{:039}", 10)));
        assert!(read(numbered(1)).starts_with(&format!("{:039}", 8)));
    }

    #[test]
    fn writer_thread_appends_formatted_lines() {
        let dir = tempfile::tempdir().unwrap();
        let tx = spawn_writer(vec![RotatingFile::new(log_path(dir.path(), "a"), LOG_FILE_MAX_BYTES, 5)]).unwrap();
        let logs = ServiceLogs::new(Some((0, tx)));
        logs.push(Stream::Stdout, "hello".into());
        logs.push(Stream::Stderr, "oops".into());
        drop(logs); // closes the channel; the writer drains and ends
        let path = log_path(dir.path(), "a");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 2 {
                let lines: Vec<&str> = text.lines().collect();
                assert!(lines[0].ends_with(" stdout hello"), "{text}");
                assert!(lines[1].ends_with(" stderr oops"), "{text}");
                assert!(lines[0].starts_with("20") && lines[0].as_bytes()[23] == b'Z', "{text}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "log file not written: {text:?}");
            std::thread::yield_now();
        }
    }

    #[tokio::test]
    async fn capture_splits_cuts_and_cleans_lines() {
        let logs = Arc::new(ServiceLogs::new(None));
        let long = "z".repeat(MAX_LINE_BYTES + 100);
        let input = format!("one\r\ntwo\n{long}\nbad \u{fffd}\nlast without newline");
        let mut bytes = input.into_bytes();
        bytes.extend_from_slice(b"\xff");
        capture(&bytes[..], Stream::Stderr, logs.clone()).await;
        let lines = logs.tail(10);
        let text: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(text.len(), 5, "{text:?}");
        assert_eq!(text[0], "one");
        assert_eq!(text[1], "two");
        assert_eq!(text[2].len(), MAX_LINE_BYTES + CUT_MARK.len());
        assert!(text[2].ends_with(CUT_MARK));
        assert_eq!(text[4], "last without newline\u{fffd}");
        assert!(lines.iter().all(|l| l.stream == "stderr"));
    }
}
