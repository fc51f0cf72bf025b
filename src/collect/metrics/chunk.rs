//! Splitting a range query into requests Prometheus accepts, and the time arithmetic shared by
//! the request parameters and the CSV.
//!
//! Prometheus refuses a range whose `(end - start) / step` exceeds 11,000. Chunks start on the
//! query's step grid and the next chunk starts one step after the previous one ends, so the
//! stitched series has exactly the samples a single request would have returned.

/// Points per series that one request may return (Prometheus' resolution limit).
pub const MAX_POINTS: i64 = 11_000;

/// One request's window, in epoch milliseconds, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Windows covering `[start_ms, end_ms]` on the grid `start_ms + k * step_ms`, each with at most
/// `max_points` grid points. Empty when `end_ms < start_ms`; `step_ms` and `max_points` must
/// be positive (callers validate them).
pub fn chunks(start_ms: i64, end_ms: i64, step_ms: i64, max_points: i64) -> Vec<Chunk> {
    if end_ms < start_ms || step_ms <= 0 || max_points <= 0 {
        return Vec::new();
    }
    let span = max_points.saturating_mul(step_ms);
    let mut out = Vec::new();
    let mut start = start_ms;
    while start <= end_ms {
        let end = start.saturating_add(span - step_ms).min(end_ms);
        out.push(Chunk {
            start_ms: start,
            end_ms: end,
        });
        start = match start.checked_add(span) {
            Some(s) => s,
            None => break,
        };
    }
    out
}

/// Grid points in `[start_ms, end_ms]`: the samples per series a full range returns.
pub fn points(start_ms: i64, end_ms: i64, step_ms: i64) -> i64 {
    if end_ms < start_ms || step_ms <= 0 {
        0
    } else {
        (end_ms - start_ms) / step_ms + 1
    }
}

/// Epoch milliseconds as Prometheus prints timestamps: seconds, plus a three-digit fraction
/// only when it is not zero (`1700000000`, `1700000000.250`).
pub fn write_secs(ms: i64, out: &mut Vec<u8>) {
    let mut buf = itoa::Buffer::new();
    if ms < 0 {
        out.push(b'-');
    }
    let abs = ms.unsigned_abs();
    out.extend_from_slice(buf.format(abs / 1000).as_bytes());
    let frac = abs % 1000;
    if frac != 0 {
        out.push(b'.');
        if frac < 100 {
            out.push(b'0');
        }
        if frac < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(buf.format(frac).as_bytes());
    }
}

/// [`write_secs`] as a string, for request parameters.
pub fn secs_string(ms: i64) -> String {
    let mut v = Vec::with_capacity(16);
    write_secs(ms, &mut v);
    String::from_utf8_lossy(&v).into_owned()
}

/// A timestamp as Prometheus sent it (float seconds) to epoch milliseconds. Prometheus works in
/// milliseconds, so rounding recovers the exact value.
pub fn secs_to_ms(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

/// Formats epoch milliseconds as ISO 8601 UTC `YYYY-MM-DDTHH:MM:SSZ` (`.mmm` before the `Z`
/// only when not zero) without a general formatter: this runs once per CSV row. The last
/// day's date part is cached.
#[derive(Debug, Default)]
pub struct DatetimeFormatter {
    day: Option<i64>,
    date: Vec<u8>,
}

impl DatetimeFormatter {
    pub fn write(&mut self, ms: i64, out: &mut Vec<u8>) {
        let day = ms.div_euclid(86_400_000);
        let in_day = ms.rem_euclid(86_400_000);
        if self.day != Some(day) {
            self.day = Some(day);
            self.date.clear();
            let (y, m, d) = civil_from_days(day);
            if (0..=9999).contains(&y) {
                push_digits(&mut self.date, y as u64, 4);
            } else {
                self.date.extend_from_slice(format!("{y:+05}").as_bytes());
            }
            self.date.push(b'-');
            push_digits(&mut self.date, u64::from(m), 2);
            self.date.push(b'-');
            push_digits(&mut self.date, u64::from(d), 2);
            self.date.push(b'T');
        }
        out.extend_from_slice(&self.date);
        let secs = in_day / 1000;
        push_digits(out, (secs / 3600) as u64, 2);
        out.push(b':');
        push_digits(out, (secs / 60 % 60) as u64, 2);
        out.push(b':');
        push_digits(out, (secs % 60) as u64, 2);
        // Like `timestamp`: a fraction only when there is one (`…T19:21:41Z`).
        if in_day % 1000 != 0 {
            out.push(b'.');
            push_digits(out, (in_day % 1000) as u64, 3);
        }
        out.push(b'Z');
    }
}

fn push_digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for i in (0..width).rev() {
        out[start + i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(start: i64, end: i64, step: i64) -> Vec<i64> {
        (0..points(start, end, step))
            .map(|k| start + k * step)
            .collect()
    }

    #[test]
    fn chunks_cover_the_grid_exactly_once() {
        for (start, end, step, max) in [
            (0, 0, 15_000, 11_000),
            (0, 14_999, 15_000, 11_000),
            (1_000, 1_000 + 10_999 * 15_000, 15_000, 11_000),
            (1_000, 1_000 + 11_000 * 15_000, 15_000, 11_000),
            (1_000, 1_000 + 11_000 * 15_000 + 7, 15_000, 11_000),
            (5, 5 + 100 * 7, 7, 3),
            (5, 5 + 100 * 7 - 1, 7, 10),
            (-3_000, 40_000, 1_000, 11_000),
        ] {
            let cs = chunks(start, end, step, max);
            let mut got = Vec::new();
            for (i, c) in cs.iter().enumerate() {
                assert!(c.start_ms <= c.end_ms);
                assert!(c.end_ms <= end);
                assert_eq!((c.start_ms - start) % step, 0, "chunk starts on the grid");
                assert!(points(c.start_ms, c.end_ms, step) <= max);
                // What Prometheus checks: (end - start) / step must not exceed the limit.
                assert!((c.end_ms - c.start_ms) / step < max);
                if i > 0 {
                    assert_eq!(
                        c.start_ms,
                        grid(cs[i - 1].start_ms, cs[i - 1].end_ms, step)
                            .last()
                            .unwrap()
                            + step
                    );
                }
                got.extend(grid(c.start_ms, c.end_ms, step));
            }
            assert_eq!(got, grid(start, end, step), "{start} {end} {step} {max}");
        }
    }

    #[test]
    fn chunk_counts() {
        assert_eq!(chunks(0, 10_999 * 15, 15, 11_000).len(), 1);
        assert_eq!(chunks(0, 11_000 * 15, 15, 11_000).len(), 2);
        assert_eq!(chunks(0, 22_000 * 15 - 1, 15, 11_000).len(), 2);
        assert_eq!(chunks(0, 22_000 * 15, 15, 11_000).len(), 3);
        assert!(chunks(10, 9, 1, 5).is_empty());
        assert_eq!(
            chunks(10, 10, 1, 5),
            vec![Chunk {
                start_ms: 10,
                end_ms: 10
            }]
        );
    }

    #[test]
    fn seconds_are_printed_like_prometheus() {
        for (ms, s) in [
            (1_700_000_000_000, "1700000000"),
            (1_700_000_000_250, "1700000000.250"),
            (1_700_000_000_005, "1700000000.005"),
            (1_700_000_000_050, "1700000000.050"),
            (0, "0"),
            (-1_500, "-1.500"),
        ] {
            assert_eq!(secs_string(ms), s);
        }
        assert_eq!(secs_to_ms(1_700_000_000.005), 1_700_000_000_005);
        assert_eq!(secs_to_ms(1_700_000_000.25), 1_700_000_000_250);
    }

    #[test]
    fn datetimes_match_chrono() {
        let mut f = DatetimeFormatter::default();
        for ms in [
            0,
            1_700_000_000_000,
            1_700_000_000_123,
            951_782_400_000, // 2000-02-29
            4_107_542_399_999,
            -1,
            -86_400_000 * 365,
            253_402_300_799_999,
        ] {
            let mut out = Vec::new();
            f.write(ms, &mut out);
            let t = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            let want = if ms % 1000 == 0 {
                t.format("%Y-%m-%dT%H:%M:%SZ")
            } else {
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ")
            }
            .to_string();
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
