//! Streaming parser for `query_range` responses.
//!
//! The body is never held whole and no `serde_json::Value` of it is built: a byte-level splitter
//! cuts out one series at a time, serde's visitor API parses it from a borrowed slice, and each
//! sample goes to the spool as soon as it is parsed. Memory holds one series of one chunk (at
//! most 11,000 points) and the label sets.

use std::fmt;
use std::io::{self, Read};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::chunk::secs_to_ms;
use super::spool::{SeriesMeta, SpoolWriter};

/// What a successful response held besides the spooled samples.
#[derive(Debug, Default)]
pub struct Parsed {
    pub series: Vec<SeriesMeta>,
    /// Prometheus' `warnings` (and `infos`), kept for the step outputs.
    pub warnings: Vec<String>,
    /// Series that carried only native histograms, which a CSV of floats cannot hold.
    pub histogram_series: u64,
}

/// Why a body could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The body said `"status":"error"` (normally such bodies come with a 4xx/5xx status).
    #[error("{error_type}: {error}")]
    Prometheus { error_type: String, error: String },
    #[error("unexpected response: {0}")]
    Malformed(String),
    #[error("writing the spool: {0}")]
    Spool(io::Error),
}

/// Parses a `query_range` body from `reader`, appending samples to `spool`.
///
/// A byte-level [`Splitter`] cuts each series object (`{"metric":…,"values":[…]}`) out of the
/// stream and parses it with serde_json's borrowing slice parser, which is several times faster
/// than its reader parser; one series holds at most 11,000 points per chunk, so that buffer is
/// bounded. The rest of the body (status, errors, warnings) is kept as a small envelope, with
/// `{}` in place of each series, and parsed at the end.
///
/// # Errors
/// A body that is not a successful matrix result, or a spool write failure.
pub fn parse_matrix<R: Read>(mut reader: R, spool: &mut SpoolWriter) -> Result<Parsed, ParseError> {
    let mut state = State {
        spool,
        io_error: None,
        parsed: Parsed::default(),
        status: None,
        error_type: None,
        error: None,
        result_type: None,
        saw_result: false,
    };
    let mut splitter = Splitter::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut outcome = Ok(());
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ParseError::Malformed(format!("reading the body: {e}"))),
        };
        if let Err(e) = splitter.feed(&buf[..n], &mut |series: &[u8]| {
            let mut de = serde_json::Deserializer::from_slice(series);
            SeriesSeed(&mut state)
                .deserialize(&mut de)
                .and_then(|()| de.end())
        }) {
            outcome = Err(e);
            break;
        }
    }
    if outcome.is_ok() {
        let mut de = serde_json::Deserializer::from_slice(&splitter.envelope);
        outcome = TopSeed(&mut state)
            .deserialize(&mut de)
            .and_then(|()| de.end());
    }
    if let Some(e) = state.io_error.take() {
        return Err(ParseError::Spool(e));
    }
    outcome.map_err(|e| ParseError::Malformed(e.to_string()))?;
    match state.status.as_deref() {
        Some("success") => {}
        Some("error") => {
            return Err(ParseError::Prometheus {
                error_type: state.error_type.unwrap_or_default(),
                error: state.error.unwrap_or_default(),
            })
        }
        other => {
            return Err(ParseError::Malformed(format!(
                "`status` is {other:?}, expected \"success\""
            )))
        }
    }
    match state.result_type.as_deref() {
        Some("matrix") if state.saw_result => Ok(state.parsed),
        Some("matrix") => Err(ParseError::Malformed("no `data.result`".into())),
        Some(t) => Err(ParseError::Malformed(format!(
            "`resultType` is \"{t}\", expected \"matrix\""
        ))),
        None => Err(ParseError::Malformed("no `data.resultType`".into())),
    }
}

/// Tracks JSON structure byte by byte (strings, escapes, nesting, the keys on the way to
/// `data.result`) to cut each element of `data.result` out of the stream.
#[derive(Default)]
struct Splitter {
    depth: usize,
    in_str: bool,
    esc: bool,
    /// The key whose value is being read, for the top-level and the `data` object.
    keys: [Vec<u8>; 3],
    /// The string being read at depth <= 2 (only keys matter; capped).
    text: Vec<u8>,
    in_data: bool,
    in_result: bool,
    capturing: bool,
    series: Vec<u8>,
    envelope: Vec<u8>,
}

impl Splitter {
    fn feed<E>(
        &mut self,
        bytes: &[u8],
        on_series: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut i = 0;
        while i < bytes.len() {
            if self.capturing {
                i += self.capture(&bytes[i..], on_series)?;
            } else {
                self.envelope_byte(bytes[i]);
                i += 1;
            }
        }
        Ok(())
    }

    /// Copies the start of `rest` into the series being captured; returns how many bytes it
    /// took. At the series' closing brace the series goes to `on_series`.
    #[inline]
    fn capture<E>(
        &mut self,
        rest: &[u8],
        on_series: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        // Copy runs of bytes that cannot change the structure.
        let run = rest
            .iter()
            .position(|b| matches!(b, b'"' | b'\\' | b'{' | b'}' | b'[' | b']'))
            .unwrap_or(rest.len());
        if run > 0 && !self.esc {
            self.series.extend_from_slice(&rest[..run]);
            return Ok(run);
        }
        let b = rest[0];
        self.series.push(b);
        if self.in_str {
            self.string_byte(b);
            return Ok(1);
        }
        match b {
            b'"' => self.in_str = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 3 {
                    self.capturing = false;
                    on_series(&self.series)?;
                    self.series.clear();
                    self.envelope.extend_from_slice(b"{}");
                }
            }
            _ => {}
        }
        Ok(1)
    }

    /// Tracks escapes and the closing quote of a string. Returns whether `b` closed it.
    #[inline]
    fn string_byte(&mut self, b: u8) -> bool {
        if self.esc {
            self.esc = false;
        } else if b == b'\\' {
            self.esc = true;
        } else if b == b'"' {
            self.in_str = false;
            return true;
        }
        false
    }

    /// One byte outside the series: kept in the envelope (a series' opening brace starts a
    /// capture instead), with the keys on the way to `data.result` tracked.
    #[inline]
    fn envelope_byte(&mut self, b: u8) {
        if self.in_str {
            self.envelope.push(b);
            if !self.string_byte(b) && self.depth <= 2 && self.text.len() < 32 {
                self.text.push(b);
            }
            return;
        }
        match b {
            b'"' => {
                self.in_str = true;
                self.text.clear();
            }
            b':' if self.depth <= 2 => self.keys[self.depth] = std::mem::take(&mut self.text),
            b',' if self.depth <= 2 => self.keys[self.depth].clear(),
            b'{' if self.depth == 3 && self.in_result => {
                self.capturing = true;
                self.depth += 1;
                self.series.clear();
                self.series.push(b);
                return;
            }
            b'{' | b'[' => {
                if b == b'{' && self.depth == 1 && self.keys[1] == b"data" {
                    self.in_data = true;
                }
                if b == b'[' && self.depth == 2 && self.in_data && self.keys[2] == b"result" {
                    self.in_result = true;
                }
                self.depth += 1;
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                match self.depth {
                    2 => self.in_result = false,
                    1 => self.in_data = false,
                    _ => {}
                }
            }
            _ => {}
        }
        self.envelope.push(b);
    }
}

struct State<'a> {
    spool: &'a mut SpoolWriter,
    /// The spool's own error, kept because serde only carries a message.
    io_error: Option<io::Error>,
    parsed: Parsed,
    status: Option<String>,
    error_type: Option<String>,
    error: Option<String>,
    result_type: Option<String>,
    saw_result: bool,
}

impl State<'_> {
    fn push(&mut self, ms: i64, value: &str) -> Result<(), String> {
        self.spool.push(ms, value).map_err(|e| {
            let msg = e.to_string();
            self.io_error = Some(e);
            msg
        })
    }
}

struct TopSeed<'s, 'a>(&'s mut State<'a>);

impl<'de> DeserializeSeed<'de> for TopSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Prometheus API response object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<KeyBuf>()? {
            match key.0.as_str() {
                "status" => self.0.status = Some(map.next_value()?),
                "errorType" => self.0.error_type = Some(map.next_value()?),
                "error" => self.0.error = Some(map.next_value()?),
                "warnings" | "infos" => {
                    let w: Option<Vec<String>> = map.next_value()?;
                    self.0.parsed.warnings.extend(w.unwrap_or_default());
                }
                "data" => map.next_value_seed(DataSeed(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A map key, owned: keys are short and few.
struct KeyBuf(String);

impl<'de> serde::Deserialize<'de> for KeyBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(KeyBuf)
    }
}

struct DataSeed<'s, 'a>(&'s mut State<'a>);

impl<'de> DeserializeSeed<'de> for DataSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a `data` object")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<KeyBuf>()? {
            match key.0.as_str() {
                "resultType" => {
                    let t: String = map.next_value()?;
                    if t != "matrix" {
                        return Err(de::Error::custom(format!(
                            "`resultType` is \"{t}\", expected \"matrix\""
                        )));
                    }
                    self.0.result_type = Some(t);
                }
                "result" => {
                    map.next_value_seed(ResultSeed(&mut *self.0))?;
                    self.0.saw_result = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct ResultSeed<'s, 'a>(&'s mut State<'a>);

impl<'de> DeserializeSeed<'de> for ResultSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ResultSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of series")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(SeriesSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct SeriesSeed<'s, 'a>(&'s mut State<'a>);

impl<'de> DeserializeSeed<'de> for SeriesSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SeriesSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a series object {metric, values}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut labels: Option<Vec<(String, String)>> = None;
        let offset = self.0.spool.position();
        let mut samples = 0u64;
        let mut histograms = false;
        while let Some(key) = map.next_key::<KeyBuf>()? {
            match key.0.as_str() {
                "metric" => {
                    let m: std::collections::BTreeMap<String, String> = map.next_value()?;
                    labels = Some(m.into_iter().collect());
                }
                "values" => samples += map.next_value_seed(ValuesSeed(&mut *self.0))?,
                "histograms" => {
                    histograms = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if labels.is_none() && samples == 0 && !histograms {
            // `{}`: where the splitter took a series out of the envelope.
            return Ok(());
        }
        if samples == 0 && histograms {
            self.0.parsed.histogram_series += 1;
            return Ok(());
        }
        self.0.parsed.series.push(SeriesMeta {
            labels: labels.unwrap_or_default(),
            offset,
            samples,
        });
        Ok(())
    }
}

struct ValuesSeed<'s, 'a>(&'s mut State<'a>);

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_, '_> {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_, '_> {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of [timestamp, \"value\"] pairs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut n = 0;
        while seq.next_element_seed(SampleSeed(&mut *self.0))?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

struct SampleSeed<'s, 'a>(&'s mut State<'a>);

impl<'de> DeserializeSeed<'de> for SampleSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SampleSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a [timestamp, \"value\"] pair")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ts: f64 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let state = self.0;
        seq.next_element_seed(ValueSeed {
            state,
            ms: secs_to_ms(ts),
        })?
        .ok_or_else(|| de::Error::custom("a sample without a value"))?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a sample with more than two elements"));
        }
        Ok(())
    }
}

/// Receives the value string without allocating (serde_json lends it from its scratch buffer).
struct ValueSeed<'s, 'a> {
    state: &'s mut State<'a>,
    ms: i64,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sample value string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.state.push(self.ms, v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::super::spool::SpoolReader;
    use super::*;

    fn parse(body: &str) -> (Result<Parsed, ParseError>, Vec<(i64, String)>) {
        let mut w = SpoolWriter::new(tempfile::tempfile().unwrap());
        let r = parse_matrix(body.as_bytes(), &mut w);
        let file = w.finish().unwrap();
        let mut all = Vec::new();
        if let Ok(p) = &r {
            let mut rd = SpoolReader::new(file);
            for s in &p.series {
                rd.for_each(s.offset, s.samples, |ms, v| {
                    all.push((ms, String::from_utf8(v.to_vec()).unwrap()));
                    Ok(())
                })
                .unwrap();
            }
        }
        (r, all)
    }

    #[test]
    fn matrix_samples_go_to_the_spool() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"pod":"a","__name__":"up"},"values":[[1700000000,"1"],[1700000015.5,"NaN"]]},
            {"values":[[1700000000.005,"+Inf"]],"metric":{}}
        ]},"warnings":["w1"]}"#;
        let (r, samples) = parse(body);
        let p = r.unwrap();
        assert_eq!(p.series.len(), 2);
        assert_eq!(
            p.series[0].labels,
            vec![("__name__".into(), "up".into()), ("pod".into(), "a".into())]
        );
        assert_eq!(p.series[0].samples, 2);
        assert!(p.series[1].labels.is_empty());
        assert_eq!(p.warnings, ["w1"]);
        assert_eq!(
            samples,
            [
                (1_700_000_000_000, "1"),
                (1_700_000_015_500, "NaN"),
                (1_700_000_000_005, "+Inf")
            ]
            .map(|(a, b)| (a, b.to_string()))
        );
    }

    /// Feeds `body` in pieces of every size from 1 byte, so the splitter sees every cut.
    fn parse_in_pieces(body: &str, piece: usize) -> (Parsed, Vec<(i64, String)>) {
        struct Pieces<'a>(&'a [u8], usize);
        impl Read for Pieces<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut w = SpoolWriter::new(tempfile::tempfile().unwrap());
        let p = parse_matrix(Pieces(body.as_bytes(), piece), &mut w).unwrap();
        let mut rd = SpoolReader::new(w.finish().unwrap());
        let mut all = Vec::new();
        for s in &p.series {
            rd.for_each(s.offset, s.samples, |ms, v| {
                all.push((ms, String::from_utf8(v.to_vec()).unwrap()));
                Ok(())
            })
            .unwrap();
        }
        (p, all)
    }

    #[test]
    fn the_splitter_survives_tricky_json() {
        // Braces, brackets, quotes and the word "result" inside label values; whitespace; keys
        // in another order; `data` after `warnings`.
        let body = r#" { "warnings" : ["a \"result\": [ {"] , "status" : "success",
            "data" : { "result" : [
              { "values" : [ [ 1 , "1" ] ] , "metric" : { "path" : "/x{\"a\":[1]}\\" } } ,
              {"metric":{"result":"]}{["},"values":[[2,"NaN"],[3.5,"+Inf"]]}
            ] , "resultType" : "matrix" } } "#;
        for piece in [1, 2, 3, 7, 64, 1 << 16] {
            let (p, samples) = parse_in_pieces(body, piece);
            assert_eq!(p.warnings, ["a \"result\": [ {"]);
            assert_eq!(p.series.len(), 2, "piece {piece}");
            assert_eq!(
                p.series[0].labels,
                vec![("path".to_string(), "/x{\"a\":[1]}\\".to_string())]
            );
            assert_eq!(
                p.series[1].labels,
                vec![("result".to_string(), "]}{[".to_string())]
            );
            assert_eq!(
                samples,
                [(1000, "1"), (2000, "NaN"), (3500, "+Inf")].map(|(a, b)| (a, b.to_string()))
            );
        }
    }

    #[test]
    fn error_bodies_and_wrong_shapes_are_reported() {
        let (r, _) = parse(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#);
        assert_eq!(r.unwrap_err().to_string(), "bad_data: parse error");
        let (r, _) = parse(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#);
        assert!(r.unwrap_err().to_string().contains("expected \"matrix\""));
        let (r, _) = parse(
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2"]"#,
        );
        assert!(matches!(r, Err(ParseError::Malformed(_))));
        let (r, _) = parse(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#);
        assert!(r.unwrap().series.is_empty());
    }
}
