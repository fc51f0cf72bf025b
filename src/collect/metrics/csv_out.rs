//! The long-format CSV: `metric_name,timestamp,datetime,value,<sorted label names>`, one row per
//! sample.
//!
//! Label cells and the metric name are encoded once per series (quoted as the `csv` crate
//! would; the header goes through the crate itself); the per-sample fields (numbers and Prometheus' value text) never need quoting, so rows are
//! assembled from bytes without a per-field quoting pass.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::chunk::{write_secs, DatetimeFormatter};
use super::spool::SpoolReader;
use crate::atomic_write::AtomicFile;

/// The columns every file starts with.
pub const FIXED_COLUMNS: [&str; 4] = ["metric_name", "timestamp", "datetime", "value"];

/// One query's stitched result: series sorted by labels, each made of per-chunk parts in time
/// order.
#[derive(Debug)]
pub struct QueryData {
    pub name: String,
    pub series: Vec<MergedSeries>,
    /// The query's spool files, one per chunk; [`Part::spool`] indexes this.
    pub spools: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct MergedSeries {
    /// Sorted by name.
    pub labels: Vec<(String, String)>,
    pub parts: Vec<Part>,
}

/// Samples of one series in one chunk's spool file.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub spool: usize,
    pub offset: u64,
    pub samples: u64,
}

/// What a written file holds.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
    /// SHA-256 of the file, computed while writing it (hex).
    pub sha256: String,
}

/// The label Prometheus uses for the metric name. The published CSVs have no such column
/// (`metric_name` holds the query); it still keeps series apart while stitching chunks.
pub const NAME_LABEL: &str = "__name__";

/// The sorted union of label names over `queries`, without [`NAME_LABEL`].
pub fn label_union<'a>(queries: impl IntoIterator<Item = &'a QueryData>) -> Vec<String> {
    let mut names = BTreeSet::new();
    for q in queries {
        for s in &q.series {
            for (k, _) in &s.labels {
                if k != NAME_LABEL && !names.contains(k.as_str()) {
                    names.insert(k.clone());
                }
            }
        }
    }
    names.into_iter().collect()
}

/// Header cells: the fixed columns, then the label names. A label that shares a fixed column's
/// name is written as `label_<name>` so every header cell stays unique.
pub fn header(label_names: &[String]) -> Vec<String> {
    FIXED_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain(label_names.iter().map(|n| {
            if FIXED_COLUMNS.contains(&n.as_str()) {
                format!("label_{n}")
            } else {
                n.clone()
            }
        }))
        .collect()
}

/// The bytes around a series' per-sample fields.
#[derive(Debug)]
pub struct RowFormat {
    /// `<metric_name>,`
    prefix: Vec<u8>,
    /// `,<label cells…>\n` (just `\n` without labels).
    suffix: Vec<u8>,
    datetime: DatetimeFormatter,
}

impl RowFormat {
    /// # Errors
    /// Only if the csv encoder fails, which writing to memory does not.
    pub fn new(
        metric_name: &str,
        labels: &[(String, String)],
        label_names: &[String],
    ) -> io::Result<Self> {
        let mut prefix = Vec::new();
        encode_cell(metric_name, &mut prefix)?;
        prefix.push(b',');
        let mut suffix = Vec::new();
        for name in label_names {
            suffix.push(b',');
            if let Ok(i) = labels.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
                encode_cell(&labels[i].1, &mut suffix)?;
            }
        }
        suffix.push(b'\n');
        Ok(Self {
            prefix,
            suffix,
            datetime: DatetimeFormatter::default(),
        })
    }

    /// Appends one row. `NaN` becomes an empty cell; every other value is written as
    /// Prometheus printed it (`+Inf`, `-Inf`, `1e-05`…).
    pub fn write_row(&mut self, ms: i64, value: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        write_secs(ms, out);
        out.push(b',');
        self.datetime.write(ms, out);
        out.push(b',');
        if value != b"NaN" {
            if value
                .iter()
                .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
            {
                // Never sent by Prometheus; quoted rather than trusted.
                let text = String::from_utf8_lossy(value);
                let _ = encode_cell(&text, out);
            } else {
                out.extend_from_slice(value);
            }
        }
        out.extend_from_slice(&self.suffix);
    }
}

/// One field, quoted as the csv crate quotes with `QuoteStyle::Necessary` (a cell holding a
/// comma, a quote, CR or LF is wrapped in quotes with inner quotes doubled). Empty cells are
/// left empty (the crate quotes a lone empty field). Hand-written because it runs once per
/// label cell of every series: a `csv::Writer` per cell zeroes an 8 KiB buffer each time,
/// which made short series (the dataset's 45-point windows) several times slower.
fn encode_cell(text: &str, out: &mut Vec<u8>) -> io::Result<()> {
    let bytes = text.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    out.push(b'"');
    for &b in bytes {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
    Ok(())
}

/// Rows are formatted into buffers of this size and handed to the writer thread.
const BUF: usize = 256 * 1024;

/// Writes `queries` (in order, series in order) to `path` atomically.
///
/// Formatting and writing overlap: this thread formats rows into buffers while a scoped thread
/// writes and hashes the previous ones (a write into the page cache costs about as much as
/// formatting; hashing here spares the manifest a second read of the file). At most four
/// buffers exist at once.
///
/// # Errors
/// On I/O failure (the final file then does not appear), or [`io::ErrorKind::Interrupted`]
/// when `cancel` fires.
pub fn write_csv(
    path: &Path,
    queries: &[&QueryData],
    cancel: &CancellationToken,
    on_series: impl FnMut(),
) -> io::Result<Written> {
    let label_names = label_union(queries.iter().copied());
    let mut file = AtomicFile::create(path)?;
    let mut head = Vec::with_capacity(BUF + 4096);
    {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(&mut head);
        w.write_record(header(&label_names))
            .map_err(io::Error::other)?;
        w.flush()?;
    }
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let ((file, sha256), rows) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> io::Result<(AtomicFile, String)> {
            let mut hash = Sha256::new();
            for mut buf in full_rx {
                file.write_all(&buf)?;
                hash.update(&buf);
                buf.clear();
                let _ = empty_tx.send(buf);
            }
            Ok((file, format!("{:x}", hash.finalize())))
        });
        let rows = format_rows(queries, &label_names, cancel, on_series, head, |buf| {
            full_tx
                .send(buf)
                .map_err(|_| io::Error::other("the CSV writer stopped"))?;
            Ok(empty_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(BUF + 4096)))
        });
        drop(full_tx);
        // The writer's own error explains a failed send; it comes first.
        let file = writer
            .join()
            .map_err(|_| io::Error::other("the CSV writer panicked"))??;
        Ok::<_, io::Error>((file, rows?))
    })?;
    let path = file.commit()?;
    Ok(Written {
        rows,
        bytes: std::fs::metadata(&path)?.len(),
        sha256,
    })
}

/// Formats every row into buffers starting with `buf`; `flush` takes a full buffer and returns
/// an empty one. Returns the number of rows.
fn format_rows(
    queries: &[&QueryData],
    label_names: &[String],
    cancel: &CancellationToken,
    mut on_series: impl FnMut(),
    mut buf: Vec<u8>,
    mut flush: impl FnMut(Vec<u8>) -> io::Result<Vec<u8>>,
) -> io::Result<u64> {
    let mut rows = 0;
    for q in queries {
        // Readers are opened per query, so open files are bounded by one query's chunks.
        let mut spools = Vec::with_capacity(q.spools.len());
        for p in &q.spools {
            let f = File::open(p)
                .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", p.display())))?;
            spools.push(SpoolReader::new(f));
        }
        for s in &q.series {
            if cancel.is_cancelled() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
            }
            let mut row = RowFormat::new(&q.name, &s.labels, label_names)?;
            for part in &s.parts {
                let reader = spools
                    .get_mut(part.spool)
                    .ok_or_else(|| io::Error::other(format!("no spool file #{}", part.spool)))?;
                reader.for_each(part.offset, part.samples, |ms, v| {
                    row.write_row(ms, v, &mut buf);
                    if buf.len() >= BUF {
                        buf = flush(std::mem::take(&mut buf))?;
                    }
                    Ok(())
                })?;
                rows += part.samples;
            }
            on_series();
        }
    }
    if !buf.is_empty() {
        flush(buf)?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn row(name: &str, l: &[(&str, &str)], names: &[&str], ms: i64, v: &str) -> String {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut f = RowFormat::new(name, &labels(l), &names).unwrap();
        let mut out = Vec::new();
        f.write_row(ms, v.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rows_are_formatted() {
        assert_eq!(
            row(
                "cpu",
                &[("pod", "ts-a"), ("zone", "x")],
                &["node", "pod", "zone"],
                1_700_000_000_000,
                "0.25"
            ),
            "cpu,1700000000,2023-11-14T22:13:20Z,0.25,,ts-a,x\n"
        );
        assert_eq!(
            row("cpu", &[], &["pod"], 1_700_000_000_500, "NaN"),
            "cpu,1700000000.500,2023-11-14T22:13:20.500Z,,\n"
        );
        assert_eq!(
            row("up", &[], &[], 0, "+Inf"),
            "up,0,1970-01-01T00:00:00Z,+Inf\n"
        );
        assert_eq!(
            row("a,b", &[("path", "/x,\"y\"")], &["path"], 0, "-Inf"),
            "\"a,b\",0,1970-01-01T00:00:00Z,-Inf,\"/x,\"\"y\"\"\"\n"
        );
    }

    #[test]
    fn cells_are_quoted_like_the_csv_crate() {
        for text in [
            "plain",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\r",
            " spaced ",
            "ünï",
        ] {
            let mut ours = Vec::new();
            encode_cell(text, &mut ours).unwrap();
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(Vec::new());
            w.write_record([text]).unwrap();
            let mut theirs = w.into_inner().unwrap();
            theirs.pop();
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn header_is_fixed_columns_then_sorted_labels() {
        let q = QueryData {
            name: "q".into(),
            series: vec![
                MergedSeries {
                    labels: labels(&[("pod", "a"), ("value", "v")]),
                    parts: vec![],
                },
                MergedSeries {
                    labels: labels(&[("__name__", "x"), ("instance", "i")]),
                    parts: vec![],
                },
            ],
            spools: vec![],
        };
        let names = label_union([&q]);
        assert_eq!(names, ["instance", "pod", "value"]);
        assert_eq!(
            header(&names).join(","),
            "metric_name,timestamp,datetime,value,instance,pod,label_value"
        );
    }
}
