//! Request/response records: redaction, body capture and encoding, and the single writer of
//! `api_responses.jsonl`.
//!
//! Every record is serialized to one line by whoever completes it and sent over an unbounded
//! channel to one blocking writer task, so lines are never interleaved and none is dropped
//! under load. The file is an [`AtomicFile`]: it appears under its final name, complete, when
//! [`RecordWriter::finish`] runs, and a process killed mid-step leaves no half-written file.
//!
//! JSON bodies are recorded as the bytes that came over the wire (a [`RawValue`]), never parsed
//! into numbers and printed again: `0.22593391350628578` stays exactly that, as do big integers,
//! `1.0`, exponents, key order, duplicate keys and string escapes. Redaction edits the text in
//! place ([`redact_json_exact`]). Only line breaks and the whitespace around the value change, so
//! the record stays one line. This is local to the records: the crate's other JSON handling is
//! untouched (serde_json's `arbitrary_precision` would change every module's number handling).

use std::collections::HashSet;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use http::HeaderMap;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::atomic_write::AtomicFile;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Headers that carry credentials in every system; always redacted, whatever the plan says.
pub const ALWAYS_REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// JSON fields (and query/form parameters) redacted unless the plan adds more: Train-Ticket's
/// login request carries `password` and its answer the bearer `token`.
pub const ALWAYS_REDACTED_FIELDS: &[&str] = &["password", "token"];

/// Whether a variable (environment variable, plan var, step `env:` entry) holds a secret by
/// its name: its value must not reach disk, wherever it came from.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "KEY",
        "CREDENTIAL",
        "AUTH",
        "COOKIE",
        "SESSION",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// How bodies and headers are turned into record fields.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Bodies longer than this are cut in the record (never on the wire).
    pub max_body_bytes: usize,
    redact_headers: HashSet<String>,
    redact_fields: HashSet<String>,
    /// Secret values (name, value), longest first: replaced by `<redacted:NAME>` wherever they
    /// appear in a header, query or body, whatever the field is called.
    secret_values: Vec<(String, String)>,
}

impl RecordOptions {
    /// `extra_headers` and `extra_fields` are added to the built-in lists; names match
    /// case-insensitively.
    pub fn new(max_body_bytes: usize, extra_headers: &[String], extra_fields: &[String]) -> Self {
        let lower = |names: &[&str], extra: &[String]| -> HashSet<String> {
            names
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .chain(extra.iter().map(|s| s.to_ascii_lowercase()))
                .collect()
        };
        Self {
            max_body_bytes,
            redact_headers: lower(ALWAYS_REDACTED_HEADERS, extra_headers),
            redact_fields: lower(ALWAYS_REDACTED_FIELDS, extra_fields),
            secret_values: Vec::new(),
        }
    }

    /// Adds secret values (variable name, value) to scrub from every recorded string; values
    /// shorter than 4 characters are ignored (they would match unrelated text).
    pub fn with_secret_values(
        mut self,
        values: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        self.secret_values
            .extend(values.into_iter().filter(|(_, v)| v.chars().count() >= 4));
        self.secret_values
            .sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        self.secret_values.dedup_by(|a, b| a.1 == b.1);
        self
    }

    /// `bytes` with every secret value replaced by `<redacted:NAME>`; `None` when there is
    /// none (bytes that are not UTF-8 are kept as they are).
    pub fn scrub_bytes(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out = bytes.to_vec();
        let mut changed = false;
        for (name, value) in &self.secret_values {
            let needle = value.as_bytes();
            let Some(first) = out.windows(needle.len()).position(|w| w == needle) else {
                continue;
            };
            changed = true;
            let with = format!("<redacted:{name}>").into_bytes();
            let mut next = Vec::with_capacity(out.len());
            let (mut i, mut from) = (first, 0);
            while i + needle.len() <= out.len() {
                if &out[i..i + needle.len()] == needle {
                    next.extend_from_slice(&out[from..i]);
                    next.extend_from_slice(&with);
                    i += needle.len();
                    from = i;
                } else {
                    i += 1;
                }
            }
            next.extend_from_slice(&out[from..]);
            out = next;
        }
        changed.then_some(out)
    }

    /// `text` with every secret value replaced by `<redacted:NAME>`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, value) in &self.secret_values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &format!("<redacted:{name}>"));
            }
        }
        out
    }

    /// Headers as `name → value`; repeated headers are joined with `, `, secrets redacted.
    pub fn headers_json(&self, headers: &HeaderMap) -> Map<String, Value> {
        let mut out = Map::new();
        for name in headers.keys() {
            let value = if self.redact_headers.contains(name.as_str()) {
                REDACTED.to_string()
            } else {
                self.scrub(
                    &headers
                        .get_all(name)
                        .iter()
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            };
            out.insert(name.as_str().to_string(), Value::String(value));
        }
        out
    }

    fn is_secret_field(&self, name: &str) -> bool {
        self.redact_fields.contains(&name.to_ascii_lowercase())
    }

    /// A query string (or form body) with the values of secret parameters redacted.
    pub fn redact_query(&self, query: &str) -> String {
        let redacted = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if self.is_secret_field(&percent_decode_lossy(k)) => {
                    format!("{k}={REDACTED}")
                }
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        self.scrub(&redacted)
    }

    /// A complete JSON text as a record value: every byte kept except line breaks and the
    /// whitespace around the value (a record is one line), the values of secret fields
    /// replaced by `"[REDACTED]"` at any depth, secret values scrubbed. `None` when `text` is
    /// not one JSON value.
    pub fn json_exact(&self, text: &str) -> Option<Box<RawValue>> {
        // Validates without building numbers (serde_json skips them by syntax).
        serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
        let redacted = redact_json_exact(text, &|k| self.is_secret_field(k))?;
        // In valid JSON a raw CR or LF can only be whitespace between tokens.
        let one_line = self.scrub(&redacted).replace(['\r', '\n'], " ");
        RawValue::from_string(one_line.trim().to_string()).ok()
    }

    /// Redacts `"field": value` pairs in text that is not parseable JSON — typically a
    /// truncated JSON body, whose secrets must not leak just because its end was cut.
    pub fn redact_json_text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for field in &self.redact_fields {
            out = redact_field_in_text(&out, field);
        }
        out
    }

    /// The record fields of a body of which `captured` is the (possibly cut) beginning and
    /// `total` the full length on the wire. A gzip/deflate body is recorded decoded.
    pub fn body(&self, captured: &[u8], total: u64, kind: &BodyKind) -> RecordedBody {
        let mut truncated = total > captured.len() as u64;
        if total == 0 {
            return RecordedBody {
                body: raw(&Value::Null),
                body_encoding: "none",
                body_bytes: 0,
                body_truncated: false,
                body_content_encoding: None,
            };
        }
        let decoded = kind
            .content_encoding
            .as_deref()
            .and_then(|enc| decode(enc, captured, self.max_body_bytes));
        let (bytes, coding) = match &decoded {
            Some((coding, bytes, cut)) => {
                truncated |= *cut;
                (&bytes[..], Some(*coding))
            }
            None => (captured, None),
        };
        let (body, encoding) = self.encode(bytes, truncated, kind.content_type.as_deref());
        RecordedBody {
            body,
            body_encoding: encoding,
            body_bytes: total,
            body_truncated: truncated,
            body_content_encoding: coding,
        }
    }

    fn encode(
        &self,
        bytes: &[u8],
        truncated: bool,
        content_type: Option<&str>,
    ) -> (Box<RawValue>, &'static str) {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if !truncated && looks_like_json(bytes, &ct) {
            if let Some(v) = std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| self.json_exact(t))
            {
                return (v, "json");
            }
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => Some(t),
            // A cut can split the last character; that alone does not make the body binary.
            Err(e) if truncated && e.error_len().is_none() => {
                std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        };
        match text {
            Some(t) if ct.contains("x-www-form-urlencoded") => {
                (raw(&Value::String(self.redact_query(t))), "utf8")
            }
            Some(t) => (
                raw(&Value::String(self.scrub(&self.redact_json_text(t)))),
                "utf8",
            ),
            None => (
                raw(&Value::String(
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                )),
                "base64",
            ),
        }
    }
}

/// A value as record text (cannot fail for a `Value`; `null` if it ever did).
fn raw(v: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_else(|_| {
        RawValue::from_string("null".into()).unwrap_or_else(|_| unreachable!("null is JSON"))
    })
}

/// Copies the JSON text `text` (already validated) and replaces the value of every object
/// member whose key `secret` accepts by `"[REDACTED]"`, at any depth; every other byte is
/// kept. `None` on text that is not JSON after all.
pub fn redact_json_exact(text: &str, secret: &dyn Fn(&str) -> bool) -> Option<String> {
    let mut s = ExactRedactor {
        text,
        b: text.as_bytes(),
        i: 0,
        out: String::with_capacity(text.len()),
        copied: 0,
        secret,
    };
    s.value(false)?;
    s.ws();
    if s.i != s.b.len() {
        return None;
    }
    s.out.push_str(&text[s.copied..]);
    Some(s.out)
}

struct ExactRedactor<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    out: String,
    /// `text[..copied]` is in `out` (or replaced).
    copied: usize,
    secret: &'a dyn Fn(&str) -> bool,
}

impl ExactRedactor<'_> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips one value; inside a redacted value (`quiet`) nested secrets need no edit.
    fn value(&mut self, quiet: bool) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'{' => {
                self.i += 1;
                loop {
                    self.ws();
                    match self.peek()? {
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        b',' => self.i += 1,
                        b'"' => self.member(quiet)?,
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                loop {
                    self.ws();
                    match self.peek()? {
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        b',' => self.i += 1,
                        _ => self.value(quiet)?,
                    }
                }
            }
            b'"' => self.string(),
            _ => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
                {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }

    fn string(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
    }

    fn member(&mut self, quiet: bool) -> Option<()> {
        let key_start = self.i;
        self.string()?;
        let key: String = serde_json::from_str(self.text.get(key_start..self.i)?).ok()?;
        self.ws();
        if self.peek()? != b':' {
            return None;
        }
        self.i += 1;
        self.ws();
        let value_start = self.i;
        let redact = !quiet && (self.secret)(&key);
        self.value(quiet || redact)?;
        if redact {
            self.out.push_str(self.text.get(self.copied..value_start)?);
            self.out.push('"');
            self.out.push_str(REDACTED);
            self.out.push('"');
            self.copied = self.i;
        }
        Some(())
    }
}

/// Decodes a (possibly cut) gzip or deflate body to at most `limit` bytes; the flag says
/// whether the decoded body is longer than that or was cut. `None` for other codings or bytes
/// that do not decode at all (the body is then recorded as it is on the wire).
fn decode(encoding: &str, wire: &[u8], limit: usize) -> Option<(&'static str, Vec<u8>, bool)> {
    use std::io::Read;
    let (name, mut reader): (&'static str, Box<dyn Read + '_>) =
        match encoding.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(wire))),
            "deflate" => ("deflate", Box::new(flate2::read::ZlibDecoder::new(wire))),
            _ => return None,
        };
    let mut out = Vec::new();
    // One byte past the limit tells whether there is more.
    match reader.by_ref().take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) => {
            let cut = out.len() > limit;
            out.truncate(limit);
            Some((name, out, cut))
        }
        // A cut wire body ends mid-stream: what decoded so far is the record.
        Err(_) if !out.is_empty() => {
            out.truncate(limit);
            Some((name, out, true))
        }
        Err(_) => None,
    }
}

fn looks_like_json(bytes: &[u8], content_type: &str) -> bool {
    content_type.contains("json")
        || matches!(
            bytes.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        )
}

fn percent_decode_lossy(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Replaces the value after every `"field"\s*:` (field matched case-insensitively); an
/// unterminated string value (cut body) is redacted to the end of the text.
fn redact_field_in_text(text: &str, field: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let needle = format!("\"{field}\"");
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(pos) = lower[from..].find(&needle) {
        let key_end = from + pos + needle.len();
        let mut i = key_end;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b':' {
            from = key_end;
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        let end = if i < bytes.len() && bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(bytes.len())
        } else {
            let mut j = i;
            while j < bytes.len() && !matches!(bytes[j], b',' | b'}' | b']') {
                j += 1;
            }
            j
        };
        if end == start {
            from = key_end;
            continue;
        }
        // `start`/`end` sit on ASCII bytes or the text's end, so both are char boundaries.
        out.push_str(&text[copied..start]);
        out.push('"');
        out.push_str(REDACTED);
        out.push('"');
        copied = end;
        from = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// The first `limit` bytes of a body and its full length.
#[derive(Debug, Default)]
pub struct Capture {
    buf: Vec<u8>,
    total: u64,
    limit: usize,
}

impl Capture {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            total: 0,
            limit,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let room = self.limit.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    pub fn captured(&self) -> &[u8] {
        &self.buf
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

/// A body as it appears in a record.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedBody {
    /// JSON as it came (`json`, see the module doc), text (`utf8`), base64 (`base64`) or null
    /// (`none`: empty body).
    pub body: Box<RawValue>,
    pub body_encoding: &'static str,
    /// Full length of the body on the wire.
    pub body_bytes: u64,
    /// `body` holds only the first `max_body_bytes` bytes.
    pub body_truncated: bool,
    /// `gzip`/`deflate` when `body` was decoded from that content coding (`body_bytes` is
    /// still the encoded length on the wire); null otherwise.
    pub body_content_encoding: Option<&'static str>,
}

/// What the headers say about a body.
#[derive(Debug, Clone, Default)]
pub struct BodyKind {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
}

impl BodyKind {
    pub fn of(headers: &HeaderMap) -> Self {
        let get = |name: http::header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        BodyKind {
            content_type: get(http::header::CONTENT_TYPE),
            content_encoding: get(http::header::CONTENT_ENCODING),
        }
    }
}

/// Headers and body of one side of an exchange.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedMessage {
    pub headers: Map<String, Value>,
    #[serde(flatten)]
    pub body: RecordedBody,
}

/// What is the same for every record of a step attempt.
#[derive(Debug, Clone, Serialize)]
pub struct RecordTags {
    pub run_id: String,
    pub exp_name: String,
    pub step: String,
    pub attempt: u32,
}

/// One line of `api_responses.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct ApiRecord<'a> {
    /// When the proxy received the request (UTC, ISO 8601 with `Z`).
    pub time: String,
    #[serde(flatten)]
    pub tags: &'a RecordTags,
    pub iteration: u32,
    pub suite: u32,
    pub method: String,
    /// The upstream URL the request was forwarded to (secret query parameters redacted).
    pub url: String,
    pub path: String,
    pub query: Option<String>,
    pub request: RecordedMessage,
    /// The status the client got: the upstream's; 502 when the upstream could not be reached
    /// (400 for an unreadable request); null when the exchange was cut before any answer.
    pub status: Option<u16>,
    /// Null when the upstream gave no response (see `upstream_error`).
    pub response: Option<RecordedMessage>,
    /// From receiving the request to the end of the response body.
    pub duration_ms: f64,
    /// Time to the upstream's response headers.
    pub ttfb_ms: Option<f64>,
    /// Why the upstream exchange failed (connect error, reset mid-body, client gone).
    pub upstream_error: Option<String>,
}

struct Line {
    bytes: Vec<u8>,
    upstream_error: bool,
}

/// Sends records to the writer; cheap to clone. The file is complete once every sink is
/// dropped and [`RecordWriter::finish`] returns.
#[derive(Debug, Clone)]
pub struct RecordSink {
    tx: mpsc::UnboundedSender<Line>,
}

impl RecordSink {
    pub fn send(&self, record: &ApiRecord<'_>) {
        let mut bytes = serde_json::to_vec(record).unwrap_or_else(|e| {
            // Unreachable with these types; still, one line per exchange whatever happens.
            serde_json::json!({ "time": record.time, "record_error": e.to_string() })
                .to_string()
                .into_bytes()
        });
        bytes.push(b'\n');
        // The writer lives until every sink is gone, so sending cannot fail.
        let _ = self.tx.send(Line {
            bytes,
            upstream_error: record.upstream_error.is_some(),
        });
    }
}

/// What the writer wrote.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: PathBuf,
    /// Lines written by this writer (not counting lines the file already held).
    pub records: u64,
    pub upstream_errors: u64,
}

/// The single writer of a JSONL file.
#[derive(Debug)]
pub struct RecordWriter {
    task: tokio::task::JoinHandle<io::Result<Recorded>>,
    path: PathBuf,
}

impl RecordWriter {
    /// Opens a temporary file beside `path` and starts the writer. Lines already in `path`
    /// (an earlier attempt, or another step of the run recording to the same file — even one
    /// running at the same time) are kept: see [`merge_into`].
    ///
    /// # Errors
    /// When the folder or the temporary file cannot be created.
    pub fn create(path: &Path) -> io::Result<(RecordWriter, RecordSink)> {
        let file = AtomicFile::create(path)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Line>();
        let final_path = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || -> io::Result<Recorded> {
            let mut out = BufWriter::with_capacity(256 * 1024, file);
            let (mut records, mut upstream_errors) = (0, 0);
            let mut failed = None;
            while let Some(line) = rx.blocking_recv() {
                if failed.is_some() {
                    // Keep draining so senders never block on a dead writer.
                    continue;
                }
                if let Err(e) = out.write_all(&line.bytes) {
                    failed = Some(e);
                    continue;
                }
                records += 1;
                upstream_errors += u64::from(line.upstream_error);
            }
            if let Some(e) = failed {
                return Err(e);
            }
            let file = out.into_inner().map_err(|e| e.into_error())?;
            let path = merge_into(file, &final_path)?;
            Ok(Recorded {
                path,
                records,
                upstream_errors,
            })
        });
        Ok((
            RecordWriter {
                task,
                path: path.to_path_buf(),
            },
            RecordSink { tx },
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until every [`RecordSink`] is dropped, then flushes and renames the file into
    /// place.
    ///
    /// # Errors
    /// When writing, syncing or renaming failed.
    pub async fn finish(self) -> io::Result<Recorded> {
        self.task.await.map_err(io::Error::other)?
    }
}

/// Puts the lines of `new` under `path`, after whatever `path` already holds, atomically.
/// Writers of the same file (concurrent steps, or another ttplan) take turns on an exclusive
/// lock of the folder, so none overwrites lines another one committed in the meantime.
fn merge_into(mut new: AtomicFile, path: &Path) -> io::Result<PathBuf> {
    use std::io::{Seek, SeekFrom};
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let _lock = nix::fcntl::Flock::lock(
        std::fs::File::open(dir)?,
        nix::fcntl::FlockArg::LockExclusive,
    )
    .map_err(|(_, errno)| io::Error::from(errno))?;
    let mut old = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return new.commit(),
        Err(e) => return Err(e),
    };
    let mut merged = AtomicFile::create(path)?;
    io::copy(&mut old, merged.file())?;
    new.file().seek(SeekFrom::Start(0))?;
    io::copy(new.file(), merged.file())?;
    merged.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ct(t: &str) -> BodyKind {
        BodyKind {
            content_type: Some(t.into()),
            content_encoding: None,
        }
    }

    /// The recorded body as a value.
    fn v(b: &RecordedBody) -> Value {
        serde_json::from_str(b.body.get()).unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_bodies_are_recorded_decoded_and_redacted() {
        let o = RecordOptions::new(1 << 16, &[], &[]);
        let wire = gzip(br#"{"data":{"token":"t0p","n":1}}"#);
        let kind = BodyKind {
            content_type: Some("application/json".into()),
            content_encoding: Some("gzip".into()),
        };
        let b = o.body(&wire, wire.len() as u64, &kind);
        assert_eq!(b.body_content_encoding, Some("gzip"));
        assert_eq!(b.body_encoding, "json");
        assert_eq!(v(&b), json!({"data": {"token": REDACTED, "n": 1}}));
        assert_eq!(b.body_bytes, wire.len() as u64);
        assert!(!b.body_truncated);
    }

    #[test]
    fn cut_or_long_gzip_bodies_keep_a_decoded_prefix() {
        let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        let wire = gzip(text.as_bytes());
        let kind = BodyKind {
            content_type: Some("text/plain".into()),
            content_encoding: Some("gzip".into()),
        };
        // Decoded body longer than the limit, wire complete.
        let o = RecordOptions::new(100, &[], &[]);
        let b = o.body(&wire, wire.len() as u64, &kind);
        assert!(b.body_truncated);
        assert_eq!(v(&b), json!(text[..100]));
        // Wire cut mid-stream.
        let o = RecordOptions::new(wire.len() / 2, &[], &[]);
        let b = o.body(&wire[..wire.len() / 2], wire.len() as u64, &kind);
        assert!(b.body_truncated);
        assert_eq!(b.body_content_encoding, Some("gzip"));
        let got = v(&b);
        let got = got.as_str().unwrap();
        assert!(!got.is_empty() && text.starts_with(got));
        // Not actually gzip: recorded as on the wire.
        let b = o.body(b"\xff\xfe", 2, &kind);
        assert_eq!((b.body_encoding, b.body_content_encoding), ("base64", None));
    }

    fn opts() -> RecordOptions {
        RecordOptions::new(16, &["X-Api-Key".into()], &["secret".into()])
    }

    #[test]
    fn secret_headers_are_redacted_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert("Authorization", "Bearer abc".parse().unwrap());
        h.insert("cookie", "a=b".parse().unwrap());
        h.append("set-cookie", "s=1".parse().unwrap());
        h.append("set-cookie", "t=2".parse().unwrap());
        h.insert("x-api-key", "k".parse().unwrap());
        h.append("accept", "a".parse().unwrap());
        h.append("accept", "b".parse().unwrap());
        let j = opts().headers_json(&h);
        for k in ["authorization", "cookie", "set-cookie", "x-api-key"] {
            assert_eq!(j[k], REDACTED, "{k}");
        }
        assert_eq!(j["accept"], "a, b");
    }

    #[test]
    fn json_fields_are_redacted_at_any_depth() {
        let o = RecordOptions::new(1 << 20, &[], &["Secret".into()]);
        let body = br#"{"username":"u","Password":"p","data":{"token":"t","list":[{"secret":1}]}}"#;
        let b = o.body(body, body.len() as u64, &ct("application/json"));
        assert_eq!(b.body_encoding, "json");
        assert_eq!(
            v(&b),
            json!({"username":"u","Password":REDACTED,"data":{"token":REDACTED,"list":[{"secret":REDACTED}]}})
        );
        assert!(!b.body_truncated);
    }

    #[test]
    fn json_bodies_keep_every_byte_but_line_breaks() {
        let o = RecordOptions::new(1 << 20, &[], &[]);
        let body = r#"{"price":0.22593391350628578,"big":12345678901234567890123,"one":1.0,"e":1E+2,"s":"\u00e9\/","k":1,"k":2}"#;
        let b = o.body(body.as_bytes(), body.len() as u64, &ct("application/json"));
        assert_eq!(b.body_encoding, "json");
        assert_eq!(b.body.get(), body);
        // Through the record line too.
        let line = serde_json::to_string(&b).unwrap();
        assert!(line.contains(&format!(r#""body":{body}"#)), "{line}");
        // Pretty bodies: line breaks become spaces, numbers and spacing otherwise kept.
        let pretty = "\n{\r\n  \"a\" : [ 1.50,\n 2 ]\n}\n";
        let b = o.body(
            pretty.as_bytes(),
            pretty.len() as u64,
            &ct("application/json"),
        );
        assert_eq!(b.body.get(), r#"{    "a" : [ 1.50,  2 ] }"#);
        assert!(!serde_json::to_string(&b).unwrap().contains('\n'));
        // Not JSON after all: text.
        let b = o.body(b"{nope", 5, &ct("application/json"));
        assert_eq!((b.body_encoding, v(&b)), ("utf8", json!("{nope")));
    }

    #[test]
    fn exact_redaction_replaces_whole_values_and_nothing_else() {
        let o = RecordOptions::new(1 << 20, &[], &["secret".into()]);
        let body = r#"{"n":0.10000000000000001,"token":{"a":[1,{"password":"x"}]},"list":[{"Secret":-1e-7},"token"],"token":"esc","x":"password"}"#;
        let b = o.body(body.as_bytes(), body.len() as u64, &ct("application/json"));
        assert_eq!(
            b.body.get(),
            r#"{"n":0.10000000000000001,"token":"[REDACTED]","list":[{"Secret":"[REDACTED]"},"token"],"token":"[REDACTED]","x":"password"}"#
        );
    }

    #[test]
    fn secret_values_are_scrubbed_wherever_they_appear() {
        let o = RecordOptions::new(1 << 20, &[], &[]).with_secret_values([
            ("TT_AUTH_TOKEN".to_string(), "eyJhbGciOi.s3cr3t".to_string()),
            ("SHORT_KEY".to_string(), "ab".to_string()),
        ]);
        let body = br#"{"note":"sent eyJhbGciOi.s3cr3t here","ab":1.25}"#;
        let b = o.body(body, body.len() as u64, &ct("application/json"));
        assert_eq!(
            b.body.get(),
            r#"{"note":"sent <redacted:TT_AUTH_TOKEN> here","ab":1.25}"#
        );
        let mut h = HeaderMap::new();
        h.insert("x-trace", "t=eyJhbGciOi.s3cr3t".parse().unwrap());
        assert_eq!(o.headers_json(&h)["x-trace"], "t=<redacted:TT_AUTH_TOKEN>");
        assert_eq!(
            o.redact_query("q=eyJhbGciOi.s3cr3t&ab=1"),
            "q=<redacted:TT_AUTH_TOKEN>&ab=1"
        );
        assert_eq!(
            o.scrub_bytes(b"\xff x eyJhbGciOi.s3cr3t\neyJhbGciOi.s3cr3t")
                .unwrap(),
            b"\xff x <redacted:TT_AUTH_TOKEN>\n<redacted:TT_AUTH_TOKEN>"
        );
        assert_eq!(o.scrub_bytes(b"nothing here"), None);
        let b = o.body(b"plain eyJhbGciOi.s3cr3t", 23, &ct("text/plain"));
        assert_eq!(v(&b), json!("plain <redacted:TT_AUTH_TOKEN>"));
    }

    #[test]
    fn truncated_bodies_keep_a_prefix_and_say_so_and_stay_redacted() {
        let o = RecordOptions::new(30, &[], &[]);
        let body = br#"{"user":"u","password":"hunter2-very-long-secret"}"#;
        let mut c = Capture::new(o.max_body_bytes);
        c.push(&body[..10]);
        c.push(&body[10..]);
        let b = o.body(c.captured(), c.total(), &ct("application/json"));
        assert!(b.body_truncated);
        assert_eq!(b.body_bytes, body.len() as u64);
        assert_eq!(b.body_encoding, "utf8");
        let text = v(&b);
        let text = text.as_str().unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(text, r#"{"user":"u","password":"[REDACTED]""#);
    }

    #[test]
    fn text_redaction_handles_spacing_escapes_and_non_strings() {
        let o = RecordOptions::new(1, &[], &[]);
        assert_eq!(
            o.redact_json_text(r#"{ "Token" : "a\"b", "password": 1234, "x": "password"}"#),
            r#"{ "Token" : "[REDACTED]", "password": "[REDACTED]", "x": "password"}"#
        );
    }

    #[test]
    fn cut_inside_a_utf8_character_is_still_text() {
        let o = RecordOptions::new(3, &[], &[]);
        let body = "aéé".as_bytes(); // 5 bytes; a cut at 3 splits the second é
        let b = o.body(&body[..3], body.len() as u64, &ct("text/plain"));
        assert_eq!(b.body_encoding, "utf8");
        assert_eq!(v(&b), json!("aé"));
    }

    #[test]
    fn binary_bodies_are_base64() {
        let o = RecordOptions::new(1024, &[], &[]);
        let body: Vec<u8> = (0..=255u8).collect();
        let b = o.body(&body, body.len() as u64, &BodyKind::default());
        assert_eq!(b.body_encoding, "base64");
        let back = base64::engine::general_purpose::STANDARD
            .decode(v(&b).as_str().unwrap())
            .unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn empty_bodies_are_null() {
        let b = opts().body(b"", 0, &BodyKind::default());
        assert_eq!((v(&b), b.body_encoding), (Value::Null, "none"));
    }

    #[test]
    fn query_and_form_secrets_are_redacted() {
        let o = opts();
        assert_eq!(
            o.redact_query("a=1&pass%77ord=x&token=y&secret&b"),
            "a=1&pass%77ord=[REDACTED]&token=[REDACTED]&secret&b"
        );
        let form = b"username=u&password=p";
        let b = o.body(
            form,
            form.len() as u64,
            &ct("application/x-www-form-urlencoded"),
        );
        assert_eq!(v(&b), json!("username=u&password=[REDACTED]"));
    }

    #[tokio::test]
    async fn writer_appends_to_an_existing_file_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"old\":1}\n").unwrap();
        let (w, sink) = RecordWriter::create(&path).unwrap();
        let tags = RecordTags {
            run_id: "r".into(),
            exp_name: "e".into(),
            step: "s".into(),
            attempt: 1,
        };
        let o = opts();
        let msg = RecordedMessage {
            headers: Map::new(),
            body: o.body(b"", 0, &BodyKind::default()),
        };
        let rec = ApiRecord {
            time: "t".into(),
            tags: &tags,
            iteration: 1,
            suite: 1,
            method: "GET".into(),
            url: "http://x/".into(),
            path: "/".into(),
            query: None,
            request: msg.clone(),
            status: Some(502),
            response: None,
            duration_ms: 1.0,
            ttfb_ms: None,
            upstream_error: Some("refused".into()),
        };
        let s2 = sink.clone();
        sink.send(&rec);
        s2.send(&rec);
        drop((sink, s2));
        let done = w.finish().await.unwrap();
        assert_eq!((done.records, done.upstream_errors), (2, 2));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["run_id"], "r");
        assert_eq!(lines[1]["request"]["body_encoding"], "none");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_of_one_file_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let tags = RecordTags {
            run_id: "r".into(),
            exp_name: "e".into(),
            step: "s".into(),
            attempt: 1,
        };
        let o = opts();
        let mut writers = Vec::new();
        for w in 0..4u32 {
            let (writer, sink) = RecordWriter::create(&path).unwrap();
            for i in 0..50u32 {
                let rec = ApiRecord {
                    time: format!("{w}-{i}"),
                    tags: &tags,
                    iteration: w,
                    suite: i,
                    method: "GET".into(),
                    url: "u".into(),
                    path: "/".into(),
                    query: None,
                    request: RecordedMessage {
                        headers: Map::new(),
                        body: o.body(b"", 0, &BodyKind::default()),
                    },
                    status: Some(200),
                    response: None,
                    duration_ms: 0.0,
                    ttfb_ms: None,
                    upstream_error: None,
                };
                sink.send(&rec);
            }
            drop(sink);
            writers.push(writer);
        }
        let done =
            futures_util::future::join_all(writers.into_iter().map(RecordWriter::finish)).await;
        assert!(done.iter().all(|d| d.as_ref().unwrap().records == 50));
        let text = std::fs::read_to_string(&path).unwrap();
        let times: std::collections::BTreeSet<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["time"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(times.len(), 200);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
