//! Container log content and the kubelet's log-serving rules (`tailLines` first, then
//! `sinceTime`/`sinceSeconds`, optional RFC3339Nano `timestamps` prefix, `limitBytes` cut),
//! streamed in chunks so a generated log of millions of lines is never held in memory.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, Stream};

use super::util::rfc3339_nano;

#[derive(Clone, Debug)]
enum Content {
    Lines(Arc<Vec<(DateTime<Utc>, String)>>),
    /// `count` lines of exactly `width` characters (plus newline), see [`LogSource::generated_line`].
    Generated {
        count: u64,
        width: usize,
        start: DateTime<Utc>,
        interval: Duration,
    },
}

/// The log of one container instance. Every line has the timestamp the runtime stored it with.
#[derive(Clone, Debug)]
pub struct LogSource(Content);

impl LogSource {
    pub fn empty() -> Self {
        LogSource(Content::Lines(Arc::new(Vec::new())))
    }

    /// Lines with explicit timestamps (in order).
    pub fn lines(lines: Vec<(DateTime<Utc>, String)>) -> Self {
        LogSource(Content::Lines(Arc::new(lines)))
    }

    /// The lines of `text`, 1 ms apart, the last one stamped "now".
    pub fn text(text: &str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let n = lines.len() as i64;
        let now = Utc::now();
        LogSource::lines(
            lines
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    (
                        now - chrono::Duration::milliseconds(n - 1 - i as i64),
                        l.to_string(),
                    )
                })
                .collect(),
        )
    }

    /// `count` deterministic lines of `width` characters, 1 ms apart, the last one stamped
    /// "now". Generated on the fly while streaming.
    pub fn generated(count: u64, width: usize) -> Self {
        let interval = Duration::from_millis(1);
        let start = Utc::now() - chrono::Duration::milliseconds(count.saturating_sub(1) as i64);
        LogSource(Content::Generated {
            count,
            width,
            start,
            interval,
        })
    }

    /// Re-times a generated log: line `i` is stamped `start + i * interval`.
    pub fn starting_at(self, start: DateTime<Utc>, interval: Duration) -> Self {
        match self.0 {
            Content::Generated { count, width, .. } => LogSource(Content::Generated {
                count,
                width,
                start,
                interval,
            }),
            Content::Lines(lines) => {
                let step = chrono::Duration::from_std(interval).expect("interval");
                LogSource::lines(
                    lines
                        .iter()
                        .enumerate()
                        .map(|(i, (_, l))| (start + step * i as i32, l.clone()))
                        .collect(),
                )
            }
        }
    }

    /// Line `i` of a generated log (without the newline): `line 000000042 ` then the alphabet
    /// repeated, cut to `width`.
    pub fn generated_line(i: u64, width: usize) -> String {
        let mut buf = Vec::with_capacity(width);
        append_generated(i, width, &mut buf);
        String::from_utf8(buf).expect("ascii")
    }

    pub fn line_count(&self) -> u64 {
        match &self.0 {
            Content::Lines(l) => l.len() as u64,
            Content::Generated { count, .. } => *count,
        }
    }

    /// First line index stamped at or after `since` (only computed for generated logs; explicit
    /// lines are filtered one by one).
    fn first_at_or_after(&self, since: DateTime<Utc>) -> u64 {
        match &self.0 {
            Content::Lines(_) => 0,
            Content::Generated {
                count,
                start,
                interval,
                ..
            } => {
                if since <= *start || interval.is_zero() {
                    return 0;
                }
                let delta = (since - *start).to_std().unwrap_or_default().as_nanos();
                let step = interval.as_nanos();
                (delta.div_ceil(step) as u64).min(*count)
            }
        }
    }

    fn at(&self, i: u64) -> DateTime<Utc> {
        match &self.0 {
            Content::Lines(l) => l[i as usize].0,
            Content::Generated {
                start, interval, ..
            } => *start + chrono::Duration::from_std(*interval * i as u32).unwrap_or_default(),
        }
    }

    fn append_text(&self, i: u64, buf: &mut Vec<u8>) {
        match &self.0 {
            Content::Lines(l) => buf.extend_from_slice(l[i as usize].1.as_bytes()),
            Content::Generated { width, .. } => append_generated(i, *width, buf),
        }
    }
}

/// Query options of `GET …/pods/{name}/log` that affect content.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub since: Option<DateTime<Utc>>,
    pub tail_lines: Option<u64>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
}

const CHUNK: usize = 64 * 1024;

/// The response body as a stream of chunks.
pub fn stream(source: LogSource, opts: LogOptions) -> impl Stream<Item = Bytes> + Send + 'static {
    let total = source.line_count();
    // The kubelet seeks `tailLines` back from the end first, then drops lines older than `since`.
    let mut first = opts.tail_lines.map_or(0, |t| total.saturating_sub(t));
    if let Some(since) = opts.since {
        first = first.max(source.first_at_or_after(since));
    }
    let state = (source, first, total, opts, 0u64);
    stream::unfold(
        state,
        |(source, mut next, total, opts, mut sent)| async move {
            let mut buf = Vec::with_capacity(CHUNK + 256);
            let limit = opts.limit_bytes.unwrap_or(u64::MAX);
            while next < total && buf.len() < CHUNK && sent + (buf.len() as u64) < limit {
                // Generated logs were already cut to `since` above; explicit lines are checked
                // one by one. The timestamp is only computed when it is needed.
                let filter_here = opts.since.filter(|_| matches!(source.0, Content::Lines(_)));
                let i = next;
                next += 1;
                if filter_here.is_some() || opts.timestamps {
                    let at = source.at(i);
                    if filter_here.is_some_and(|since| at < since) {
                        continue;
                    }
                    if opts.timestamps {
                        buf.extend_from_slice(rfc3339_nano(at).as_bytes());
                        buf.push(b' ');
                    }
                }
                source.append_text(i, &mut buf);
                buf.push(b'\n');
            }
            let room = limit.saturating_sub(sent) as usize;
            buf.truncate(room);
            if buf.is_empty() {
                return None;
            }
            sent += buf.len() as u64;
            let chunk = Bytes::from(buf);
            let done_by_limit = sent >= limit;
            let next = if done_by_limit { total } else { next };
            Some((chunk, (source, next, total, opts, sent)))
        },
    )
}

/// Writes generated line `i` straight into the response buffer (no per-line allocation: the
/// fake must not be the bottleneck of log-collection benchmarks).
fn append_generated(i: u64, width: usize, buf: &mut Vec<u8>) {
    use std::io::Write;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    let start = buf.len();
    write!(buf, "line {i:09} ").expect("write to Vec");
    let mut need = width.saturating_sub(buf.len() - start);
    while need > 0 {
        let k = need.min(ALPHABET.len());
        buf.extend_from_slice(&ALPHABET[..k]);
        need -= k;
    }
    buf.truncate(start + width);
}
