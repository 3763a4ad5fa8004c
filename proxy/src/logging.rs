//! Logs: the gateway's own log on stderr, and the writing of access log lines.
//!
//! Gateway log: every line goes through the `log` facade (with its `kv` feature for fields):
//! the gateway's own events (`log::info!(shard = 0, count = 3; "...")`) and library messages
//! (glommio, rustls). [`init`] installs one logger with a level (`--log-level` /
//! `TOLLGATE_LOG`; library messages stay at `warn` and above unless the level is `debug` or
//! `trace`) and a format (`--log-format` / `TOLLGATE_LOG_FORMAT`): `text` lines
//! (`tollgate: info: message key=value`) or `json` lines (`{"time", "level", "message",
//! fields...}`). Each line is built in a buffer and written with one `write` so lines of
//! different shards never interleave. Repeated events (upstream failures, failed accepts) go
//! through [`RateLimited`], one line per interval with the count of the ones held back.
//!
//! Access logs: each shard appends its rendered lines to its own buffer per destination
//! ([`ShardLog`]), with no lock and no system call on a request's path. A full buffer
//! (`CHUNK_BYTES`) or the shard's flush timer (`FLUSH_EVERY`) hands it, as one chunk of whole
//! lines, to that destination's writer thread through a bounded queue (`try_send`, never
//! blocking). The writer thread does the (blocking) writes, so a slow disk, a full pipe or a
//! stalled stdout reader only stops that thread: when its queue is full the shards keep
//! their buffer, and lines that do not fit in it are dropped and counted
//! (`tollgate_access_log_dropped_lines_total`), never stalling a request. File destinations
//! are opened for appending and reopened by their writer after SIGUSR1 ([`reopen`]).
//!
//! Across reloads: writers live in numbered slots ([`Writers`], shared by the main thread and
//! the reloader); a reload opens the destinations it adds in new slots. A shard's buffer for a
//! destination ([`Sink`]) is held by the generations that log to it (`Gen::log`, through
//! [`ShardLog::sinks_for`]), so a kept destination keeps its buffer and line order; the last
//! generation to let go hands what is left to the writer and drops the shard's sender. A
//! retired slot's writer ends, closing its file, once every sender is gone and it wrote what
//! was queued.

use crate::metrics::ShardMetrics;
use log::kv::{Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_core::gateway::access_log::Destination;
use tollgate_core::gateway::Gateway;

/// The gateway log's line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `tollgate: <level>: <message> key=value ...`
    Text,
    /// One JSON object per line: `time`, `level`, `message`, then the event's fields.
    Json,
}

/// Our own events' target prefix (module paths of this crate).
const OURS: &str = "tollgate";

struct Stderr {
    level: AtomicUsize,
    json: AtomicBool,
}

static LOGGER: Stderr = Stderr {
    level: AtomicUsize::new(LevelFilter::Info as usize),
    json: AtomicBool::new(false),
};

fn filter_from(n: usize) -> LevelFilter {
    match n {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Whether a record of `level` from `target` passes `max`: ours at `max`, libraries' at
/// `warn` and above unless `max` is `debug` or `trace`.
fn passes(max: LevelFilter, level: Level, target: &str) -> bool {
    let cap = if target.starts_with(OURS) || max >= LevelFilter::Debug {
        max
    } else {
        max.min(LevelFilter::Warn)
    };
    level <= cap
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        passes(
            filter_from(self.level.load(Ordering::Relaxed)),
            metadata.level(),
            metadata.target(),
        )
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if self.json.load(Ordering::Relaxed) {
            json_line(record, SystemTime::now())
        } else {
            text_line(record)
        };
        // One write per line so lines from different shards do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the stderr logger with `level` and `format`. Call once, first thing in `main`.
pub fn init(level: LevelFilter, format: Format) {
    LOGGER.level.store(level as usize, Ordering::Relaxed);
    LOGGER.json.store(format == Format::Json, Ordering::Relaxed);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// One info line without fields (the events that have none).
pub fn event(line: std::fmt::Arguments<'_>) {
    log::info!(target: OURS, "{line}");
}

/// An error message written as `tollgate: ...` (start-up and run errors) as an error line.
pub fn error(msg: &str) {
    log::error!(target: OURS, "{}", msg.strip_prefix("tollgate: ").unwrap_or(msg));
}

/// `tollgate: <level>: [<target>: ]<message>[ key=value]...`
fn text_line(record: &Record<'_>) -> String {
    let mut line = String::with_capacity(128);
    let _ = write!(
        line,
        "tollgate: {}: ",
        record.level().as_str().to_ascii_lowercase()
    );
    if !record.target().starts_with(OURS) {
        let _ = write!(line, "{}: ", record.target());
    }
    let _ = write!(line, "{}", record.args());
    let mut fields = TextFields(&mut line);
    let _ = record.key_values().visit(&mut fields);
    line.push('\n');
    line
}

struct TextFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for TextFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = value.to_string();
        if v.is_empty() || v.contains(|c: char| c == ' ' || c == '"' || c == '=' || c.is_control())
        {
            let _ = write!(self.0, " {key}={v:?}");
        } else {
            let _ = write!(self.0, " {key}={v}");
        }
        Ok(())
    }
}

/// `{"time":"...Z","level":"info",["target":"...",]"message":"...",<fields>}`
fn json_line(record: &Record<'_>, now: SystemTime) -> String {
    let mut line = String::with_capacity(192);
    line.push_str("{\"time\":\"");
    rfc3339_millis(now, &mut line);
    let _ = write!(
        line,
        "\",\"level\":\"{}\"",
        record.level().as_str().to_ascii_lowercase()
    );
    if !record.target().starts_with(OURS) {
        line.push_str(",\"target\":");
        json_string(record.target(), &mut line);
    }
    line.push_str(",\"message\":");
    match record.args().as_str() {
        Some(s) => json_string(s, &mut line),
        None => json_string(&record.args().to_string(), &mut line),
    }
    let mut fields = JsonFields(&mut line);
    let _ = record.key_values().visit(&mut fields);
    line.push_str("}\n");
    line
}

struct JsonFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        self.0.push(',');
        json_string(key.as_str(), self.0);
        self.0.push(':');
        if let Some(n) = value.to_u64() {
            let _ = write!(self.0, "{n}");
        } else if let Some(n) = value.to_i64() {
            let _ = write!(self.0, "{n}");
        } else if let Some(b) = value.to_bool() {
            let _ = write!(self.0, "{b}");
        } else if let Some(f) = value.to_f64().filter(|f| f.is_finite()) {
            let _ = write!(self.0, "{f}");
        } else if let Some(s) = value.to_borrowed_str() {
            json_string(s, self.0);
        } else {
            json_string(&value.to_string(), self.0);
        }
        Ok(())
    }
}

/// `s` as a JSON string (quotes, backslashes and control characters escaped).
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn rfc3339_millis(t: SystemTime, out: &mut String) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = tollgate_core::civil::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    );
}

/// An event line printed at most once per `every`, with the count of the ones held back.
pub struct RateLimited {
    every: Duration,
    last: Cell<Option<Instant>>,
    held: Cell<u64>,
}

impl RateLimited {
    pub const fn new(every: Duration) -> RateLimited {
        RateLimited {
            every,
            last: Cell::new(None),
            held: Cell::new(0),
        }
    }

    /// Counts one occurrence; returns how many occurred since the last printed line (this
    /// one included) when a line is due now.
    pub fn due(&self, now: Instant) -> Option<u64> {
        let held = self.held.get() + 1;
        match self.last.get() {
            Some(t) if now.duration_since(t) < self.every => {
                self.held.set(held);
                None
            }
            _ => {
                self.last.set(Some(now));
                self.held.set(0);
                Some(held)
            }
        }
    }
}

/// A shard hands its buffer to the writer once it holds this much.
const CHUNK_BYTES: usize = 32 * 1024;
/// A shard's buffer per destination holds at most this much; lines beyond are dropped.
const BUFFER_BYTES: usize = 1024 * 1024;
/// Chunks queued per destination before shards keep (then drop) lines themselves.
const QUEUE_CHUNKS: usize = 64;
/// How often a shard hands over what it has.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Bumped by SIGUSR1: writers reopen their files when they see a new value.
static REOPEN: AtomicU64 = AtomicU64::new(0);

/// Asks every file writer to reopen its file (after logrotate renamed it).
pub fn reopen() {
    REOPEN.fetch_add(1, Ordering::Relaxed);
}

/// The writer threads, one per destination slot, shared by the main thread (start, exit)
/// and the reloader (which opens new destinations and retires unused ones). Shards get the
/// senders ([`Writers::senders`]) and keep one per destination a generation of theirs uses
/// ([`ShardLog::sinks_for`]): a writer whose destination was retired ends, closing its file,
/// once every shard dropped its sender (its last generation using it ended) and it wrote
/// what was queued.
#[derive(Clone)]
pub struct Writers {
    slots: Arc<Mutex<Vec<Slot>>>,
}

/// One destination's writer. Slots are never reused: a stage's `sink` is its slot's index.
struct Slot {
    dest: Destination,
    /// `None` once retired (no configuration in force uses it).
    tx: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

/// Opens `dest` (a file that cannot be opened is an error) and starts its writer.
fn start_writer(slot: usize, dest: &Destination) -> Result<Slot, String> {
    let out = match dest {
        Destination::Stdout => Out::Stdout,
        Destination::File(path) => Out::File {
            path: path.clone(),
            file: open_checked(path)
                .map_err(|e| format!("tollgate: cannot open the access log {path}: {e}"))?,
        },
    };
    let (tx, rx) = mpsc::sync_channel(QUEUE_CHUNKS);
    let thread = std::thread::Builder::new()
        .name(format!("tollgate-log{slot}"))
        .spawn(move || write_loop(out, rx))
        .map_err(|e| format!("tollgate: cannot start the access log writer: {e}"))?;
    Ok(Slot {
        dest: dest.clone(),
        tx: Some(tx),
        thread: Some(thread),
    })
}

impl Writers {
    /// Opens every destination (a file that cannot be opened is an error to report before
    /// starting) and starts its writer; destination `i` gets slot `i`.
    pub fn start(dests: &[Destination]) -> Result<Writers, String> {
        let mut slots = Vec::with_capacity(dests.len());
        for (i, dest) in dests.iter().enumerate() {
            slots.push(start_writer(i, dest)?);
        }
        Ok(Writers {
            slots: Arc::new(Mutex::new(slots)),
        })
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A sender per slot (`None`: retired), for the shards.
    pub fn senders(&self) -> Vec<Option<SyncSender<Vec<u8>>>> {
        self.slots().iter().map(|s| s.tx.clone()).collect()
    }

    /// Points every stage's access log of `gw` at the writer of its destination, opening and
    /// starting the destinations no running writer has (a reload). A file that cannot be
    /// opened is an error; writers this call started stay until [`Writers::retire_unused`].
    pub fn assign(&self, gw: &mut Gateway) -> Result<(), String> {
        let mut slots = self.slots();
        for api in &mut gw.apis {
            for stage in &mut api.stages {
                let Some(log) = stage.access_log.as_deref_mut() else {
                    continue;
                };
                let found = slots
                    .iter()
                    .position(|s| s.tx.is_some() && s.dest == log.destination);
                log.sink = match found {
                    Some(i) => i,
                    None => {
                        let i = slots.len();
                        let slot = start_writer(i, &log.destination).map_err(|e| {
                            format!("api `{}` stage `{}`: {e}", api.name, stage.name)
                        })?;
                        slots.push(slot);
                        i
                    }
                };
            }
        }
        Ok(())
    }

    /// Retires the destinations no stage of `running` (the configuration in force) writes
    /// to: their writers end once the shards' generations using them are gone. Also reaps
    /// writers that ended.
    pub fn retire_unused(&self, running: &Gateway) {
        let used: Vec<usize> = running
            .apis
            .iter()
            .flat_map(|a| a.stages.iter())
            .filter_map(|s| s.access_log.as_deref().map(|l| l.sink))
            .collect();
        for (i, slot) in self.slots().iter_mut().enumerate() {
            if !used.contains(&i) {
                slot.tx = None;
            }
            if slot.thread.as_ref().is_some_and(|t| t.is_finished()) {
                if let Some(t) = slot.thread.take() {
                    let _ = t.join();
                }
            }
        }
    }

    /// Closes the queues (the shards' senders must be gone) and waits up to `limit` for the
    /// writers to write what is queued; a writer stuck on its destination is left behind.
    pub fn finish(self, limit: Duration) {
        let threads: Vec<JoinHandle<()>> = self
            .slots()
            .iter_mut()
            .filter_map(|s| {
                s.tx = None;
                s.thread.take()
            })
            .collect();
        let deadline = Instant::now() + limit;
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

enum Out {
    Stdout,
    File { path: Box<str>, file: Option<File> },
}

/// Opens a log file for appending. A FIFO with no reader yet is not an error: its writer
/// opens it (blocking only itself) when it has lines.
fn open_checked(path: &str) -> io::Result<Option<File>> {
    match open(path, true) {
        Ok(f) => {
            // Writes block only the writer thread.
            // SAFETY: plain fcntl on a descriptor we own.
            unsafe {
                let fd = std::os::unix::io::AsRawFd::as_raw_fd(&f);
                let flags = libc::fcntl(fd, libc::F_GETFL);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
                }
            }
            Ok(Some(f))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(e) => Err(e),
    }
}

fn open(path: &str, nonblocking: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.append(true).create(true).mode(0o640);
    if nonblocking {
        o.custom_flags(libc::O_NONBLOCK);
    }
    o.open(path)
}

fn write_loop(mut out: Out, rx: Receiver<Vec<u8>>) {
    let mut seen = REOPEN.load(Ordering::Relaxed);
    loop {
        let chunk = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let now = REOPEN.load(Ordering::Relaxed);
        if let Out::File { path, file } = &mut out {
            if now != seen || file.is_none() {
                seen = now;
                match open(path, false) {
                    Ok(f) => *file = Some(f),
                    Err(e) => log::error!(
                        path = &**path, error:% = e;
                        "cannot reopen the access log"
                    ),
                }
            }
        }
        let Some(chunk) = chunk else { continue };
        let r = match &mut out {
            Out::Stdout => std::io::stdout().lock().write_all(&chunk),
            Out::File { file: Some(f), .. } => f.write_all(&chunk),
            Out::File { file: None, .. } => Ok(()),
        };
        if let Err(e) = r {
            log::error!(error:% = e; "access log write failed");
        }
    }
}

/// A shard's access log buffers, one per destination its generations use, and what every
/// generation shares: the counters.
pub struct ShardLog {
    /// Per slot, the shard's buffer when a generation still holds it (for the flush timer).
    sinks: RefCell<Vec<Weak<Sink>>>,
    metrics: Arc<ShardMetrics>,
}

/// A shard's buffer for one destination, held by the generations that log to it: the last
/// one to end hands what is left to the writer and drops the shard's sender.
pub struct Sink {
    tx: SyncSender<Vec<u8>>,
    buf: RefCell<Vec<u8>>,
    metrics: Arc<ShardMetrics>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let buf = self.buf.get_mut();
        if buf.is_empty() {
            return;
        }
        if let Err(TrySendError::Full(chunk)) | Err(TrySendError::Disconnected(chunk)) =
            self.tx.try_send(std::mem::take(buf))
        {
            // The destination is too far behind to take the last lines: they are dropped.
            let lines = chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            let d = &self.metrics.access_log_dropped;
            d.store(d.load(Ordering::Relaxed) + lines, Ordering::Relaxed);
        }
    }
}

/// One generation's access log buffers, by destination slot (`Gen::log`).
#[derive(Default)]
pub struct Sinks(Box<[Option<Rc<Sink>>]>);

impl ShardLog {
    pub fn new(metrics: Arc<ShardMetrics>) -> ShardLog {
        ShardLog {
            sinks: RefCell::new(Vec::new()),
            metrics,
        }
    }

    /// The buffers of the destinations `gw`'s stages log to (their `sink` slots): the ones
    /// this shard already has (so lines keep their order across a reload), new ones with
    /// the slot's sender from `senders` (by slot) otherwise.
    pub fn sinks_for(&self, gw: &Gateway, senders: &[Option<SyncSender<Vec<u8>>>]) -> Sinks {
        let used: Vec<usize> = gw
            .apis
            .iter()
            .flat_map(|a| a.stages.iter())
            .filter_map(|s| s.access_log.as_deref().map(|l| l.sink))
            .collect();
        let Some(&top) = used.iter().max() else {
            return Sinks::default();
        };
        let mut known = self.sinks.borrow_mut();
        if known.len() <= top {
            known.resize_with(top + 1, Weak::new);
        }
        let mut out: Vec<Option<Rc<Sink>>> = vec![None; top + 1];
        for slot in used {
            if out[slot].is_some() {
                continue;
            }
            let sink = known[slot].upgrade().or_else(|| {
                let tx = senders.get(slot)?.clone()?;
                let sink = Rc::new(Sink {
                    tx,
                    buf: RefCell::new(Vec::new()),
                    metrics: self.metrics.clone(),
                });
                known[slot] = Rc::downgrade(&sink);
                Some(sink)
            });
            out[slot] = sink;
        }
        Sinks(out.into_boxed_slice())
    }

    /// Hands every non-empty buffer to its writer (the shard's flush timer).
    pub fn flush(&self) {
        for s in self.sinks.borrow().iter().filter_map(Weak::upgrade) {
            let mut buf = s.buf.borrow_mut();
            if !buf.is_empty() {
                hand_over(&s, &mut buf);
            }
        }
    }

    /// One generation's view: its sinks with the shard's counters.
    pub fn with<'a>(&'a self, sinks: &'a Sinks) -> GenLog<'a> {
        GenLog { log: self, sinks }
    }
}

/// What a request writes its access log line through (`Turn::log`).
pub struct GenLog<'a> {
    log: &'a ShardLog,
    sinks: &'a Sinks,
}

impl GenLog<'_> {
    /// Appends one rendered line (with its `\n`) for destination `sink`, or drops and
    /// counts it when that destination is too far behind.
    #[cfg(test)]
    pub fn append(&self, sink: usize, line: &[u8]) {
        self.write(sink, |buf| {
            buf.extend_from_slice(line);
            true
        });
    }

    /// Renders one line with `render` straight into the shard's buffer for destination
    /// `sink` (no copy), or drops and counts it when that destination is too far behind
    /// (the buffer would pass `BUFFER_BYTES`). `render` returning `false` appends nothing.
    pub fn write(&self, sink: usize, render: impl FnOnce(&mut Vec<u8>) -> bool) {
        let Some(Some(s)) = self.sinks.0.get(sink) else {
            return;
        };
        let mut buf = s.buf.borrow_mut();
        if buf.len() >= CHUNK_BYTES {
            hand_over(s, &mut buf);
        }
        if buf.capacity() == 0 {
            buf.reserve(CHUNK_BYTES * 2);
        }
        let start = buf.len();
        if !render(&mut buf) {
            buf.truncate(start);
            return;
        }
        if buf.len() > BUFFER_BYTES {
            buf.truncate(start);
            ShardMetrics::inc(&self.log.metrics.access_log_dropped);
            return;
        }
        ShardMetrics::inc(&self.log.metrics.access_log_lines);
    }
}

/// Queues `buf` for the writer if there is room; otherwise keeps it.
fn hand_over(s: &Sink, buf: &mut Vec<u8>) {
    let chunk = std::mem::take(buf);
    match s.tx.try_send(chunk) {
        Ok(()) => {}
        Err(TrySendError::Full(chunk)) | Err(TrySendError::Disconnected(chunk)) => *buf = chunk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_parse_with_their_fields() {
        let kvs: [(&str, Value<'_>); 4] = [
            ("shard", Value::from(1u64)),
            ("upstream", Value::from("10.0.0.1:80")),
            ("ok", Value::from(false)),
            ("quote", Value::from("a \"b\"\n")),
        ];
        let args = format_args!("upstream {} failed", "connect");
        let record = Record::builder()
            .level(Level::Warn)
            .target("tollgate::conn")
            .args(args)
            .key_values(&kvs)
            .build();
        let t = UNIX_EPOCH + Duration::from_millis(1_764_500_000_123);
        let line = json_line(&record, t);
        assert!(line.ends_with("}\n"), "{line}");
        let v: serde_json::Value =
            serde_json::from_str(line.trim_end()).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["time"], "2025-11-30T10:53:20.123Z");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["message"], "upstream connect failed");
        assert_eq!(v["shard"], 1);
        assert_eq!(v["upstream"], "10.0.0.1:80");
        assert_eq!(v["ok"], false);
        assert_eq!(v["quote"], "a \"b\"\n");
        assert!(v.get("target").is_none(), "our own target is left out");

        let foreign = Record::builder()
            .level(Level::Warn)
            .target("glommio::sys")
            .args(format_args!("x"))
            .build();
        let v: serde_json::Value =
            serde_json::from_str(json_line(&foreign, t).trim_end()).unwrap_or_default();
        assert_eq!(v["target"], "glommio::sys");
    }

    #[test]
    fn text_lines_carry_level_and_fields() {
        let kvs: [(&str, Value<'_>); 2] = [
            ("count", Value::from(3u64)),
            ("error", Value::from("Too many open files")),
        ];
        let record = Record::builder()
            .level(Level::Warn)
            .target("tollgate::runtime")
            .args(format_args!("accept failed"))
            .key_values(&kvs)
            .build();
        assert_eq!(
            text_line(&record),
            "tollgate: warn: accept failed count=3 error=\"Too many open files\"\n"
        );
    }

    #[test]
    fn levels_filter_ours_and_libraries() {
        use LevelFilter as F;
        assert!(passes(F::Info, Level::Info, "tollgate::runtime"));
        assert!(!passes(F::Info, Level::Debug, "tollgate::runtime"));
        assert!(!passes(F::Error, Level::Warn, "tollgate::conn"));
        assert!(passes(F::Error, Level::Error, "tollgate::conn"));
        // Libraries: warn and above, unless asked for debug or trace.
        assert!(!passes(F::Info, Level::Info, "glommio"));
        assert!(passes(F::Info, Level::Warn, "rustls"));
        assert!(passes(F::Debug, Level::Debug, "glommio"));
        assert!(!passes(F::Error, Level::Warn, "glommio"));
    }

    #[test]
    fn rate_limited_lines() {
        let r = RateLimited::new(Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(r.due(t), Some(1));
        assert_eq!(r.due(t + Duration::from_secs(1)), None);
        assert_eq!(r.due(t + Duration::from_secs(2)), None);
        assert_eq!(r.due(t + Duration::from_secs(11)), Some(3));
        assert_eq!(r.due(t + Duration::from_secs(12)), None);
    }

    #[test]
    fn a_stuck_destination_drops_and_counts() {
        let m = Arc::new(ShardMetrics::new(0));
        // A queue of one chunk that nobody reads.
        let (tx, rx) = mpsc::sync_channel(1);
        let log = ShardLog::new(m.clone());
        let sinks = one_sink(&log, tx);
        let gen = log.with(&sinks);
        let mut line = [b'x'; 1000];
        line[999] = b'\n';
        let total = 3000;
        for _ in 0..total {
            gen.append(0, &line);
        }
        log.flush();
        let kept = m.access_log_lines.load(Ordering::Relaxed);
        let dropped = m.access_log_dropped.load(Ordering::Relaxed);
        assert_eq!(kept + dropped, total);
        assert!(dropped > 0 && kept > 0, "kept {kept}, dropped {dropped}");
        let left = sinks.0[0].as_ref().map_or(0, |s| s.buf.borrow().len());
        assert!(left > 0 && left <= BUFFER_BYTES);
        // The last generation holding the sink ends with the queue still full: the lines it
        // still buffered are counted as dropped.
        drop(sinks);
        let lost = m.access_log_dropped.load(Ordering::Relaxed) - dropped;
        assert_eq!(
            lost,
            left as u64 / 1000,
            "the buffered lines count as dropped"
        );
        // Only one chunk made it to the queue; the rest stayed in the shard's bounded buffer.
        let first = rx.try_recv().expect("one chunk");
        assert!(first.len() >= CHUNK_BYTES);
        assert!(rx.try_recv().is_err());
    }

    /// A generation's sinks with one destination (slot 0) sending to `tx`.
    fn one_sink(log: &ShardLog, tx: SyncSender<Vec<u8>>) -> Sinks {
        let gw = tollgate_core::config::load_str(
            "t",
            r#"
[[listeners]]
address = "127.0.0.1"
port = 8080
[[apis]]
name = "a"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  access_log = { destination = "stdout", format = "clf" }
  [[apis.routes]]
  key = "GET /x"
  integration = { type = "mock", status = 200 }
"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        log.sinks_for(&gw, &[Some(tx)])
    }

    #[test]
    fn generations_share_a_destination_and_the_last_one_closes_it() {
        let m = Arc::new(ShardMetrics::new(0));
        let (tx, rx) = mpsc::sync_channel(8);
        let log = ShardLog::new(m.clone());
        let old = one_sink(&log, tx);
        // The next generation finds the same buffer (no sender needed for it).
        let (unused, _) = mpsc::sync_channel(8);
        let new = one_sink(&log, unused);
        log.with(&old).append(0, b"1\n");
        log.with(&new).append(0, b"2\n");
        drop(old);
        assert!(rx.try_recv().is_err(), "still held by the new generation");
        drop(new);
        assert_eq!(rx.try_recv().ok().as_deref(), Some(&b"1\n2\n"[..]));
        // Every sender is gone: the writer would see the end of its queue.
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::TryRecvError::Disconnected)
        ));
    }
}
