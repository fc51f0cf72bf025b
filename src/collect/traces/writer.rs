//! Streams enriched traces to the dataset file in completion order. Only one trace is in the
//! writer at a time, so memory does not grow with the number of traces; the file appears under
//! its final name only when it is complete (see [`crate::atomic_write`]).

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::atomic_write::AtomicFile;

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One trace object per line (the same trace records as `json`, no metadata).
    Jsonl,
    /// The published dataset's document `{"metadata": {...}, "traces": [...]}`, streamed:
    /// metadata is written after the traces because it holds the counts.
    #[default]
    Json,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Json => "json",
        }
    }
}

pub struct TraceWriter {
    out: BufWriter<AtomicFile>,
    format: Format,
    written: u64,
    bytes: u64,
}

impl TraceWriter {
    /// # Errors
    /// When the folder or temporary file cannot be created.
    pub fn create(path: &Path, format: Format) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(256 * 1024, AtomicFile::create(path)?);
        if format == Format::Json {
            out.write_all(b"{\"traces\":[")?;
        }
        Ok(Self {
            out,
            format,
            written: 0,
            bytes: 0,
        })
    }

    /// Appends one serialized trace (a JSON object without a trailing newline).
    ///
    /// # Errors
    /// On write failure.
    pub fn write_trace(&mut self, json: &[u8]) -> io::Result<()> {
        match self.format {
            Format::Jsonl => {
                self.out.write_all(json)?;
                self.out.write_all(b"\n")?;
            }
            Format::Json => {
                self.out
                    .write_all(if self.written == 0 { b"\n" } else { b",\n" })?;
                self.out.write_all(json)?;
            }
        }
        self.written += 1;
        self.bytes += json.len() as u64 + 1;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Closes the document (for `json`, with `metadata`) and renames the file into place.
    ///
    /// # Errors
    /// On write, sync or rename failure; the final path is then untouched.
    pub fn finish(mut self, metadata: &serde_json::Value) -> io::Result<PathBuf> {
        if self.format == Format::Json {
            self.out.write_all(b"\n],\"metadata\":")?;
            serde_json::to_writer(&mut self.out, metadata).map_err(io::Error::other)?;
            self.out.write_all(b"}\n")?;
        }
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.commit()
    }
}

/// `<EXP>_skywalking_failed_traces_<ts>.jsonl` beside `<EXP>_skywalking_traces_<ts>.<ext>`;
/// for another file name, `<stem>_failed_traces.jsonl`.
pub fn failed_traces_path(data: &Path) -> PathBuf {
    let stem = data
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = if stem.contains("_skywalking_traces_") {
        stem.replacen("_skywalking_traces_", "_skywalking_failed_traces_", 1)
    } else {
        format!("{stem}_failed_traces")
    };
    data.with_file_name(format!("{name}.jsonl"))
}

/// One `{trace_id, reason, attempts}` line per lost trace.
///
/// # Errors
/// On write or rename failure.
pub fn write_failed<T: Serialize>(path: &Path, failed: &[T]) -> io::Result<()> {
    let mut out = BufWriter::new(AtomicFile::create(path)?);
    for f in failed {
        serde_json::to_writer(&mut out, f).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.commit().map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn failed_traces_sit_beside_the_data() {
        assert_eq!(
            failed_traces_path(Path::new("d/E_skywalking_traces_20260301_100000.json")),
            Path::new("d/E_skywalking_failed_traces_20260301_100000.jsonl")
        );
        assert_eq!(
            failed_traces_path(Path::new("d/out.jsonl")),
            Path::new("d/out_failed_traces.jsonl")
        );
    }

    use super::*;

    #[test]
    fn json_document_is_valid_with_zero_one_and_many_traces() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0, 1, 3] {
            let path = dir.path().join(format!("t{n}.json"));
            let mut w = TraceWriter::create(&path, Format::Json).unwrap();
            for i in 0..n {
                w.write_trace(format!("{{\"trace_id\":\"{i}\"}}").as_bytes())
                    .unwrap();
            }
            assert!(!path.exists());
            w.finish(&serde_json::json!({"count": n})).unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(v["traces"].as_array().unwrap().len(), n);
            assert_eq!(v["metadata"]["count"], n);
        }
    }

    #[test]
    fn jsonl_is_one_trace_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x/t.jsonl");
        let mut w = TraceWriter::create(&path, Format::Jsonl).unwrap();
        w.write_trace(b"{\"a\":1}").unwrap();
        w.write_trace(b"{\"a\":2}").unwrap();
        w.finish(&serde_json::Value::Null).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
    }
}
