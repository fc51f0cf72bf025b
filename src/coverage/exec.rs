//! The JaCoCo `.exec` format (the same blocks the tcpserver agent sends): reading, writing and
//! the primitive encodings shared with the wire protocol — Java `DataOutputStream` big-endian
//! numbers, modified UTF-8 strings and var-int-prefixed boolean arrays.

use std::io::Write;

use super::CoverageError;

/// Block types (first byte of every block).
pub const BLOCK_HEADER: u8 = 0x01;
pub const BLOCK_SESSION_INFO: u8 = 0x10;
pub const BLOCK_EXECUTION_DATA: u8 = 0x11;
pub const BLOCK_CMD_OK: u8 = 0x20;
pub const BLOCK_CMD_DUMP: u8 = 0x40;

/// Magic 0xC0C0 then format version 0x1007 (unchanged since JaCoCo 0.7.5).
pub const MAGIC: u16 = 0xC0C0;
pub const FORMAT_VERSION: u16 = 0x1007;
/// A complete header block.
pub const HEADER: [u8; 5] = [BLOCK_HEADER, 0xC0, 0xC0, 0x10, 0x07];

/// One `sessioninfo` block: who dumped, when the session started, when it was dumped
/// (epoch milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    pub start_ms: i64,
    pub dump_ms: i64,
}

/// One class's probes. `id` is the CRC64 of the class file, so two builds of a class with the
/// same name have different ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassData {
    pub id: u64,
    pub name: String,
    pub probes: Vec<bool>,
}

impl ClassData {
    pub fn has_hits(&self) -> bool {
        self.probes.iter().any(|&p| p)
    }
}

/// The content of an exec file or of one dump: sessions and class records in stream order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecData {
    pub sessions: Vec<SessionInfo>,
    pub classes: Vec<ClassData>,
}

impl ExecData {
    /// Parses a whole exec file. An empty input is valid (an agent that saw no session yet);
    /// header blocks may reappear anywhere, as appending dumps to one file produces them.
    ///
    /// # Errors
    /// On a missing or wrong header, an unknown block or truncated data.
    pub fn parse(bytes: &[u8]) -> Result<ExecData, CoverageError> {
        let mut r = Cursor { bytes, pos: 0 };
        let mut out = ExecData::default();
        if bytes.is_empty() {
            return Ok(out);
        }
        if bytes[0] != BLOCK_HEADER {
            return Err(CoverageError::Format(format!(
                "not an exec file: first byte is {:#04x}, expected the header block 0x01",
                bytes[0]
            )));
        }
        while let Some(block) = r.next_byte() {
            match block {
                BLOCK_HEADER => check_header(r.u16()?, r.u16()?)?,
                BLOCK_SESSION_INFO => out.sessions.push(SessionInfo {
                    id: r.utf()?,
                    start_ms: r.i64()?,
                    dump_ms: r.i64()?,
                }),
                BLOCK_EXECUTION_DATA => out.classes.push(ClassData {
                    id: r.i64()? as u64,
                    name: r.utf()?,
                    probes: r.bools()?,
                }),
                other => {
                    return Err(CoverageError::Format(format!(
                        "unknown block type {other:#04x} at byte {}",
                        r.pos - 1
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Encodes as an exec file: header, sessions, then classes with at least one hit (JaCoCo's
    /// writer skips the others too).
    ///
    /// # Errors
    /// When a string is longer than the format allows (65535 bytes).
    pub fn to_bytes(&self) -> Result<Vec<u8>, CoverageError> {
        let mut out = Vec::with_capacity(64 + self.classes.len() * 64);
        out.extend_from_slice(&HEADER);
        for s in &self.sessions {
            out.push(BLOCK_SESSION_INFO);
            put_utf(&mut out, &s.id)?;
            out.extend_from_slice(&s.start_ms.to_be_bytes());
            out.extend_from_slice(&s.dump_ms.to_be_bytes());
        }
        for c in self.classes.iter().filter(|c| c.has_hits()) {
            out.push(BLOCK_EXECUTION_DATA);
            out.extend_from_slice(&c.id.to_be_bytes());
            put_utf(&mut out, &c.name)?;
            put_bools(&mut out, &c.probes);
        }
        Ok(out)
    }

    /// Writes [`ExecData::to_bytes`] to `w`.
    ///
    /// # Errors
    /// On encoding or I/O failure.
    pub fn write_to(&self, w: &mut impl Write) -> Result<(), CoverageError> {
        let bytes = self.to_bytes()?;
        w.write_all(&bytes)
            .map_err(CoverageError::io("writing exec data"))
    }
}

/// # Errors
/// When magic or version are not JaCoCo's.
pub fn check_header(magic: u16, version: u16) -> Result<(), CoverageError> {
    if magic != MAGIC {
        return Err(CoverageError::Format(format!(
            "bad magic {magic:#06x} in header block, expected 0xc0c0"
        )));
    }
    if version != FORMAT_VERSION {
        return Err(CoverageError::Format(format!(
            "unsupported exec format version {version:#06x}; this reader knows 0x1007 (JaCoCo 0.7.5 and later)"
        )));
    }
    Ok(())
}

/// Java's `writeUTF`: u16 byte length, then modified UTF-8 (U+0000 as `C0 80`, characters
/// outside the BMP as two 3-byte surrogates).
///
/// # Errors
/// When the encoding is longer than 65535 bytes.
pub fn put_utf(out: &mut Vec<u8>, s: &str) -> Result<(), CoverageError> {
    let mut enc = Vec::with_capacity(s.len());
    for unit in s.encode_utf16() {
        match unit {
            0x0001..=0x007F => enc.push(unit as u8),
            0x0000 | 0x0080..=0x07FF => {
                enc.push(0xC0 | (unit >> 6) as u8);
                enc.push(0x80 | (unit & 0x3F) as u8);
            }
            _ => {
                enc.push(0xE0 | (unit >> 12) as u8);
                enc.push(0x80 | ((unit >> 6) & 0x3F) as u8);
                enc.push(0x80 | (unit & 0x3F) as u8);
            }
        }
    }
    let len = u16::try_from(enc.len()).map_err(|_| {
        CoverageError::Format(format!(
            "string of {} bytes is too long for the exec format (max 65535)",
            enc.len()
        ))
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&enc);
    Ok(())
}

/// Decodes modified UTF-8 (the bytes after the length prefix).
///
/// # Errors
/// On malformed sequences or unpaired surrogates.
pub fn decode_modified_utf8(bytes: &[u8]) -> Result<String, CoverageError> {
    let bad = |at: usize| CoverageError::Format(format!("malformed modified UTF-8 at byte {at}"));
    let mut units = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let cont = |k: usize| -> Result<u16, CoverageError> {
            match bytes.get(i + k) {
                Some(&c) if c & 0xC0 == 0x80 => Ok(u16::from(c & 0x3F)),
                _ => Err(bad(i + k)),
            }
        };
        if b & 0x80 == 0 {
            units.push(u16::from(b));
            i += 1;
        } else if b & 0xE0 == 0xC0 {
            units.push((u16::from(b & 0x1F) << 6) | cont(1)?);
            i += 2;
        } else if b & 0xF0 == 0xE0 {
            units.push((u16::from(b & 0x0F) << 12) | (cont(1)? << 6) | cont(2)?);
            i += 3;
        } else {
            return Err(bad(i));
        }
    }
    String::from_utf16(&units)
        .map_err(|_| CoverageError::Format("unpaired surrogate in modified UTF-8 string".into()))
}

/// JaCoCo's boolean array: var-int length (7 bits per byte, low group first, 0x80 = more),
/// then the bits packed LSB first, 8 per byte.
pub fn put_bools(out: &mut Vec<u8>, probes: &[bool]) {
    put_varint(out, probes.len() as u32);
    for chunk in probes.chunks(8) {
        let mut byte = 0u8;
        for (bit, &p) in chunk.iter().enumerate() {
            if p {
                byte |= 1 << bit;
            }
        }
        out.push(byte);
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v & !0x7F != 0 {
        out.push(0x80 | (v & 0x7F) as u8);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Unpacks `n` probes from packed bytes (`bytes.len() == n.div_ceil(8)`).
pub fn unpack_bools(bytes: &[u8], n: usize) -> Vec<bool> {
    (0..n).map(|i| bytes[i / 8] & (1 << (i % 8)) != 0).collect()
}

/// Java ints are 32-bit, so a var-int longer than five groups is corrupt data.
pub const MAX_VARINT_BYTES: usize = 5;

/// A read position in a byte slice; every read checks the length.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn next_byte(&mut self) -> Option<u8> {
        let b = self.bytes.get(self.pos).copied();
        if b.is_some() {
            self.pos += 1;
        }
        b
    }

    fn take(&mut self, n: usize) -> Result<&[u8], CoverageError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(CoverageError::Format(format!(
                "truncated: needed {n} bytes at offset {}, only {} left",
                self.pos,
                self.bytes.len() - self.pos
            )));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, CoverageError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn i64(&mut self) -> Result<i64, CoverageError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn utf(&mut self) -> Result<String, CoverageError> {
        let n = usize::from(self.u16()?);
        decode_modified_utf8(self.take(n)?)
    }

    fn varint(&mut self) -> Result<u32, CoverageError> {
        let mut v: u32 = 0;
        for k in 0..MAX_VARINT_BYTES {
            let b = self.take(1)?[0];
            v |= u32::from(b & 0x7F) << (7 * k);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CoverageError::Format("var-int longer than 5 bytes".into()))
    }

    fn bools(&mut self) -> Result<Vec<bool>, CoverageError> {
        let n = self.varint()? as usize;
        let packed = self.take(n.div_ceil(8))?;
        Ok(unpack_bools(packed, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bools(v: &[bool]) -> Vec<u8> {
        let mut out = Vec::new();
        put_bools(&mut out, v);
        out
    }

    #[test]
    fn boolean_arrays_match_jacoco_bytes() {
        assert_eq!(bools(&[true, false, true]), [0x03, 0x05]);
        assert_eq!(bools(&[]), [0x00]);
        let mut nine = vec![false; 9];
        nine[0] = true;
        nine[8] = true;
        assert_eq!(bools(&nine), [0x09, 0x01, 0x01]);
        // 200 probes: var-int 200 = 0xC8 → C8 01; 25 bytes follow.
        let b = bools(&[true; 200]);
        assert_eq!(&b[..2], &[0xC8, 0x01]);
        assert_eq!(b.len(), 2 + 25);
        assert!(b[2..].iter().all(|&x| x == 0xFF));
    }

    #[test]
    fn varints_follow_javas_seven_bit_groups() {
        let enc = |v| {
            let mut o = Vec::new();
            put_varint(&mut o, v);
            o
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(127), [0x7F]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xAC, 0x02]);
        assert_eq!(enc(u32::MAX), [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
    }

    #[test]
    fn modified_utf8_matches_java_write_utf() {
        let enc = |s: &str| {
            let mut o = Vec::new();
            put_utf(&mut o, s).unwrap();
            o
        };
        assert_eq!(enc("a/B"), [0x00, 0x03, b'a', b'/', b'B']);
        // U+0000 is two bytes in modified UTF-8.
        assert_eq!(enc("\0"), [0x00, 0x02, 0xC0, 0x80]);
        assert_eq!(enc("é"), [0x00, 0x02, 0xC3, 0xA9]);
        // U+1F600 is a surrogate pair, 3 bytes each (not 4-byte UTF-8).
        assert_eq!(enc("😀"), [0x00, 0x06, 0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80]);
        for s in ["", "fdse/microservice/Foo$1", "\0x", "é€😀"] {
            let e = enc(s);
            assert_eq!(decode_modified_utf8(&e[2..]).unwrap(), s);
        }
        assert!(decode_modified_utf8(&[0xC3]).is_err());
        assert!(decode_modified_utf8(&[0xFF]).is_err());
    }

    /// A hand-built file in the layout `jacoco:dump` writes: header, one session, one class.
    const RECORDED: &[u8] = &[
        0x01, 0xC0, 0xC0, 0x10, 0x07, // header
        0x10, 0x00, 0x04, b't', b'e', b's', b't', // session "test"
        0, 0, 0, 0, 0, 0, 0, 1, // start 1
        0, 0, 0, 0, 0, 0, 0, 2, // dump 2
        0x11, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0, // class id
        0x00, 0x05, b'a', b'/', b'M', b'a', b'i', // "a/Mai"
        0x03, 0x05, // [true, false, true]
    ];

    #[test]
    fn reads_a_recorded_exec_file_and_writes_it_back_identically() {
        let d = ExecData::parse(RECORDED).unwrap();
        assert_eq!(
            d.sessions,
            [SessionInfo {
                id: "test".into(),
                start_ms: 1,
                dump_ms: 2
            }]
        );
        assert_eq!(d.classes.len(), 1);
        assert_eq!(d.classes[0].id, 0x1234_5678_9ABC_DEF0);
        assert_eq!(d.classes[0].name, "a/Mai");
        assert_eq!(d.classes[0].probes, [true, false, true]);
        assert_eq!(d.to_bytes().unwrap(), RECORDED);
    }

    #[test]
    fn repeated_headers_and_empty_files_are_valid() {
        assert_eq!(ExecData::parse(&[]).unwrap(), ExecData::default());
        let mut twice = RECORDED.to_vec();
        twice.extend_from_slice(RECORDED);
        let d = ExecData::parse(&twice).unwrap();
        assert_eq!(d.sessions.len(), 2);
        assert_eq!(d.classes.len(), 2);
    }

    #[test]
    fn bad_input_is_reported_with_what_is_wrong() {
        let e = ExecData::parse(&[0x10]).unwrap_err().to_string();
        assert!(e.contains("first byte is 0x10"), "{e}");
        let e = ExecData::parse(&[0x01, 0xC0, 0xC0, 0x10, 0x06])
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 0x1006"), "{e}");
        let e = ExecData::parse(&RECORDED[..RECORDED.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        let mut unknown = HEADER.to_vec();
        unknown.push(0x77);
        let e = ExecData::parse(&unknown).unwrap_err().to_string();
        assert!(e.contains("unknown block type 0x77 at byte 5"), "{e}");
    }

    #[test]
    fn writer_skips_classes_without_hits() {
        let d = ExecData {
            sessions: vec![],
            classes: vec![
                ClassData {
                    id: 1,
                    name: "a/Hit".into(),
                    probes: vec![false, true],
                },
                ClassData {
                    id: 2,
                    name: "a/Miss".into(),
                    probes: vec![false, false],
                },
            ],
        };
        let back = ExecData::parse(&d.to_bytes().unwrap()).unwrap();
        assert_eq!(back.classes, d.classes[..1]);
    }
}
