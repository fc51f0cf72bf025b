//! `api_responses.jsonl`, one exchange per line, read line by line (bodies are skipped
//! unparsed). Per bin: requests per status class; per endpoint: requests and failures.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::run::parse_time;
use super::timeline::{Ms, Phase, Timeline};

/// Status classes in plot order: 2xx, 3xx, 4xx, 5xx, no answer.
pub const CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "no answer"];
pub const TOP_ENDPOINTS: usize = 10;

#[derive(Debug, Deserialize)]
struct Exchange {
    #[serde(default)]
    time: Option<serde_json::Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    #[allow(dead_code)]
    request: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    response: Option<IgnoredAny>,
}

pub fn class_of(status: Option<u16>) -> usize {
    match status {
        Some(200..=299) => 0,
        Some(300..=399) => 1,
        Some(400..=499) => 2,
        Some(500..=599) => 3,
        // 1xx never reach a recorder as final answers; anything else is no real answer.
        _ => 4,
    }
}

fn is_failure(status: Option<u16>) -> bool {
    class_of(status) >= 2
}

/// Ids in a path (numbers, UUIDs, long hex or mixed tokens) become `{id}`, so one endpoint is
/// one row however many orders it was called for.
pub fn endpoint_of(method: &str, path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let segs: Vec<&str> = path
        .split('/')
        .map(|s| {
            let digits = s.chars().filter(char::is_ascii_digit).count();
            let hexish = s.len() >= 16 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
            if !s.is_empty()
                && (digits == s.len() || hexish || (s.len() >= 8 && digits * 2 >= s.len()))
            {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    format!("{method} {}", segs.join("/"))
}

#[derive(Debug, Clone, Default)]
pub struct EndpointRow {
    pub endpoint: String,
    pub requests: u64,
    pub failures: u64,
    pub by_class: [u64; 5],
    pub fault_failures: u64,
}

#[derive(Debug, Default)]
pub struct ApiAgg {
    pub files: Vec<PathBuf>,
    pub requests: u64,
    pub per_bin: Vec<[u64; 5]>,
    pub phase_requests: [u64; 3],
    pub phase_failures: [u64; 3],
    pub endpoints: Vec<EndpointRow>,
    pub bad_lines: u64,
    pub problems: Vec<String>,
}

impl ApiAgg {
    pub fn from_files(files: &[PathBuf], tl: &Timeline) -> Self {
        let mut agg = ApiAgg {
            files: files.to_vec(),
            per_bin: vec![[0; 5]; tl.bins],
            ..Default::default()
        };
        let mut endpoints: HashMap<String, EndpointRow> = HashMap::new();
        let mut line = Vec::new();
        for path in files {
            let file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) => {
                    agg.problems.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            let mut r = std::io::BufReader::with_capacity(1 << 20, file);
            let mut n = 0u64;
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        agg.problems
                            .push(format!("{}:{}: {e}", path.display(), n + 1));
                        break;
                    }
                }
                n += 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let parsed: Result<Exchange, _> = serde_json::from_slice(&line);
                let x = match parsed {
                    Ok(x) => x,
                    Err(e) => {
                        agg.bad_lines += 1;
                        if agg.problems.len() < 5 {
                            agg.problems.push(format!("{}:{n}: {e}", path.display()));
                        }
                        continue;
                    }
                };
                let Some(t) = parse_time(x.time.as_ref()) else {
                    agg.bad_lines += 1;
                    if agg.problems.len() < 5 {
                        agg.problems
                            .push(format!("{}:{n}: no `time`", path.display()));
                    }
                    continue;
                };
                agg.count(x, t, tl, &mut endpoints);
            }
        }
        agg.endpoints = top_failing(endpoints);
        agg
    }

    /// One exchange: its status class per bin and phase, and its endpoint's counts.
    fn count(
        &mut self,
        x: Exchange,
        t: Ms,
        tl: &Timeline,
        endpoints: &mut HashMap<String, EndpointRow>,
    ) {
        self.requests += 1;
        let c = class_of(x.status);
        self.per_bin[tl.bin(t)][c] += 1;
        let phase = tl.phase(t);
        self.phase_requests[phase as usize] += 1;
        let path = x
            .path
            .or_else(|| x.url.map(|u| url_path(&u).to_string()))
            .unwrap_or_default();
        let key = endpoint_of(x.method.as_deref().unwrap_or("?"), &path);
        let e = endpoints.entry(key).or_default();
        e.requests += 1;
        e.by_class[c] += 1;
        if is_failure(x.status) {
            self.phase_failures[phase as usize] += 1;
            e.failures += 1;
            if phase == Phase::Fault {
                e.fault_failures += 1;
            }
        }
    }

    pub fn failure_rate(&self, phase: Phase) -> Option<f64> {
        let i = phase as usize;
        (self.phase_requests[i] > 0)
            .then(|| self.phase_failures[i] as f64 / self.phase_requests[i] as f64)
    }
}

/// The endpoints with failures, most first (by name on ties), at most [`TOP_ENDPOINTS`].
fn top_failing(endpoints: HashMap<String, EndpointRow>) -> Vec<EndpointRow> {
    let mut rows: Vec<EndpointRow> = endpoints
        .into_iter()
        .map(|(k, mut v)| {
            v.endpoint = k;
            v
        })
        .filter(|e| e.failures > 0)
        .collect();
    rows.sort_by(|a, b| {
        b.failures
            .cmp(&a.failures)
            .then(a.endpoint.cmp(&b.endpoint))
    });
    rows.truncate(TOP_ENDPOINTS);
    rows
}

fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::timeline::Window;

    #[test]
    fn ids_in_paths_collapse() {
        assert_eq!(
            endpoint_of(
                "GET",
                "/api/v1/orderservice/order/5ad7750b-a68b-49c0-a8c0-32776b067703?x=1"
            ),
            "GET /api/v1/orderservice/order/{id}"
        );
        assert_eq!(
            endpoint_of("GET", "/api/v1/users/42"),
            "GET /api/v1/users/{id}"
        );
        assert_eq!(
            endpoint_of("POST", "/api/v1/preserveservice/preserve"),
            "POST /api/v1/preserveservice/preserve"
        );
        assert_eq!(url_path("http://h:8080/a/b?c"), "/a/b?c");
    }

    #[test]
    fn classes_bins_and_failing_endpoints() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("api_responses.jsonl");
        let mut s = String::new();
        for i in 0..30 {
            // 00:00 + i minutes; minutes 10..20 are the fault.
            let fault = (10..20).contains(&i);
            let status = if fault { "503" } else { "200" };
            s.push_str(&format!(
                "{{\"time\":\"2025-01-01T00:{i:02}:30Z\",\"method\":\"POST\",\"path\":\"/api/v1/preserveservice/preserve\",\"status\":{status},\"request\":{{\"body\":{{\"a\":[1,2]}}}},\"response\":null}}\n"
            ));
        }
        s.push_str("{\"time\":\"2025-01-01T00:05:00Z\",\"method\":\"GET\",\"url\":\"http://x/api/v1/a/123\",\"status\":null}\n");
        s.push_str("not json\n\n");
        std::fs::write(&p, s).unwrap();
        let t0 = 1_735_689_600_000;
        let tl = Timeline::new(
            t0,
            t0 + 1_800_000,
            vec![Window {
                start: t0 + 600_000,
                end: t0 + 1_200_000,
            }],
        );
        let a = ApiAgg::from_files(&[p], &tl);
        assert_eq!((a.requests, a.bad_lines), (31, 1));
        assert!(a.problems[0].contains(":32:"), "{:?}", a.problems);
        assert_eq!(a.per_bin.iter().map(|b| b[3]).sum::<u64>(), 10);
        assert_eq!(a.per_bin[tl.bin(t0 + 300_000)][4], 1);
        assert_eq!(a.failure_rate(Phase::Fault), Some(1.0));
        assert_eq!(
            a.endpoints[0].endpoint,
            "POST /api/v1/preserveservice/preserve"
        );
        assert_eq!(
            (a.endpoints[0].failures, a.endpoints[0].fault_failures),
            (10, 10)
        );
        assert_eq!(a.endpoints[1].endpoint, "GET /api/v1/a/{id}");
    }
}
