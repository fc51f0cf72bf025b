//! The on-disk spool between fetching and writing the CSV.
//!
//! Each response is parsed as it streams in and its samples go straight to a spool file, so
//! memory holds only series labels and offsets, never samples. The CSV is written in a second
//! pass, once the union of label names (the header) is known. A sample is stored as
//! `i64 ms (LE) | u16 len (LE) | value text`, keeping Prometheus' value text verbatim.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

/// One series of one response: its labels and where its samples sit in the spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesMeta {
    /// Sorted by name.
    pub labels: Vec<(String, String)>,
    pub offset: u64,
    pub samples: u64,
}

/// Appends samples to a spool file and tracks the position.
pub struct SpoolWriter {
    w: BufWriter<File>,
    pos: u64,
}

impl SpoolWriter {
    pub fn new(file: File) -> Self {
        Self {
            w: BufWriter::with_capacity(64 * 1024, file),
            pos: 0,
        }
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    /// # Errors
    /// On write failure, or a value longer than 65,535 bytes (no float prints that long).
    pub fn push(&mut self, ms: i64, value: &str) -> io::Result<()> {
        let len = u16::try_from(value.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("sample value of {} bytes", value.len()),
            )
        })?;
        self.w.write_all(&ms.to_le_bytes())?;
        self.w.write_all(&len.to_le_bytes())?;
        self.w.write_all(value.as_bytes())?;
        self.pos += 10 + u64::from(len);
        Ok(())
    }

    /// # Errors
    /// When the buffered bytes cannot be written.
    pub fn finish(mut self) -> io::Result<File> {
        self.w.flush()?;
        self.w.into_inner().map_err(|e| e.into_error())
    }
}

/// Reads series back from a spool file, seeking only when the next series is not adjacent.
pub struct SpoolReader {
    r: BufReader<File>,
    pos: u64,
    value: Vec<u8>,
}

impl SpoolReader {
    pub fn new(file: File) -> Self {
        Self {
            r: BufReader::with_capacity(64 * 1024, file),
            pos: u64::MAX,
            value: Vec::new(),
        }
    }

    /// Calls `f(ms, value)` for each of the `samples` samples stored at `offset`.
    ///
    /// # Errors
    /// On read failure or a truncated spool, and whatever `f` returns.
    pub fn for_each(
        &mut self,
        offset: u64,
        samples: u64,
        mut f: impl FnMut(i64, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        if self.pos != offset {
            self.r.seek(SeekFrom::Start(offset))?;
            self.pos = offset;
        }
        let mut head = [0u8; 10];
        for _ in 0..samples {
            self.r.read_exact(&mut head)?;
            let mut ms = [0u8; 8];
            ms.copy_from_slice(&head[..8]);
            let len = usize::from(u16::from_le_bytes([head[8], head[9]]));
            self.value.resize(len, 0);
            self.r.read_exact(&mut self.value)?;
            self.pos += 10 + len as u64;
            f(i64::from_le_bytes(ms), &self.value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_seeks() {
        let file = tempfile::tempfile().unwrap();
        let mut w = SpoolWriter::new(file);
        w.push(1, "0.5").unwrap();
        w.push(2, "NaN").unwrap();
        let second = w.position();
        w.push(-3, "+Inf").unwrap();
        w.push(4, "").unwrap();
        let file = w.finish().unwrap();
        let mut r = SpoolReader::new(file);
        let mut got = Vec::new();
        let mut collect = |off, n| {
            r.for_each(off, n, |ms, v| {
                got.push((ms, String::from_utf8(v.to_vec()).unwrap()));
                Ok(())
            })
            .unwrap();
        };
        collect(second, 2);
        collect(0, 2);
        assert_eq!(
            got,
            [(-3, "+Inf"), (4, ""), (1, "0.5"), (2, "NaN")].map(|(a, b)| (a, b.to_string()))
        );
    }
}
