//! Listing a window's traces page by page, in slices that each fit the OAP's result window
//! (docs/collect-traces.md, "Slicing").

use chrono::FixedOffset;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::client::Failure;
use super::query::{self, QueryDuration, QueryStep};
use super::{Ctx, QueryOrder, TraceError, TracesV2};

/// Page requests of one slice in flight at once.
pub(super) const LIST_CONCURRENCY: usize = 4;

impl Ctx<'_> {
    fn condition(&self, slice: &Slice, page: u32) -> Value {
        let mut c = json!({
            "queryDuration": slice.duration.to_json(),
            "traceState": self.s.trace_state,
            "queryOrder": self.s.query_order,
            "paging": { "pageNum": page, "pageSize": self.s.page_size },
        });
        // The OAP reads 0 as "no bound" for both (TraceQueryEsDAO.queryBasicTraces).
        if slice.min_latency > 0 {
            c["minTraceDuration"] = json!(slice.min_latency);
        }
        if let Some(m) = slice.max_latency {
            c["maxTraceDuration"] = json!(m);
        }
        json!({ "condition": c })
    }

    async fn page<P: ListPage>(&self, slice: &Slice, n: u32) -> Result<P, Failure> {
        self.client
            .call(P::DOCUMENT, self.condition(slice, n), self.cancel)
            .await
    }

    /// Lists every row of the window into `tx`, slice by slice, pages of a slice in order.
    ///
    /// Only an empty or short page ends a slice: with segment rows (one per segment of a
    /// cross-service trace) a full page of already-seen traces is normal. A slice whose rows
    /// would pass the OAP's result window (`from + size` ≤ `result_window` on Elasticsearch) is
    /// bisected — by time down to one second (the finest `Duration` step), then by latency —
    /// before it is paged; see docs/collect-traces.md.
    pub(super) async fn list<P: ListPage>(
        &self,
        top: &QueryDuration,
        tz: FixedOffset,
        tx: mpsc::Sender<P>,
    ) -> Result<ListOutcome, TraceError> {
        let mut l = Listing {
            ctx: self,
            tz,
            tx,
            rows: self.s.page_size as usize,
            max_pages: (self.s.result_window / self.s.page_size).max(1),
            stack: vec![Slice {
                duration: top.clone(),
                min_latency: self.s.min_trace_duration.unwrap_or(0),
                max_latency: self.s.max_trace_duration,
            }],
            out: ListOutcome::default(),
        };
        while let Some(slice) = l.stack.pop() {
            l.out.slices += 1;
            if let Flow::Stop = l.list_slice(&slice).await? {
                return Ok(l.out);
            }
        }
        l.out.exhausted = true;
        Ok(l.out)
    }
}

/// One part of the window, listed on its own so that its rows stay within the OAP's result
/// window. Latency bounds use the protocol's convention: 0 / `None` is no bound.
#[derive(Debug, Clone)]
struct Slice {
    duration: QueryDuration,
    min_latency: u32,
    max_latency: Option<u32>,
}

impl Slice {
    /// Halves at a whole second, in SECOND steps: the finest the `Duration` type has, and the
    /// granularity of the segment `time_bucket` the OAP filters on. Later half first.
    fn split_time(&self, tz: FixedOffset) -> Option<(Slice, Slice)> {
        let (a, b) = (self.duration.covers_from, self.duration.covers_until);
        let span_s = (b - a).num_seconds();
        if span_s < 2 {
            return None;
        }
        let mid = a + chrono::Duration::seconds(span_s / 2);
        let half = |from, until| Slice {
            duration: QueryDuration::bucket(from, until, QueryStep::Second, tz),
            ..self.clone()
        };
        Some((half(mid, b), half(a, mid)))
    }

    /// Halves the latency range `[min, max]` (`longest` bounds an open `max`); longer half
    /// first. `[0, 0]` cannot be expressed (0 means "no bound"), so a lower half must end ≥ 1.
    fn split_latency(&self, longest: Option<u32>) -> Option<(Slice, Slice)> {
        let lo = self.min_latency;
        let hi = self
            .max_latency
            .or(longest)
            .unwrap_or(i32::MAX as u32)
            .min(i32::MAX as u32);
        if lo >= hi {
            return None;
        }
        let mid = lo + (hi - lo) / 2;
        if mid == 0 {
            return None;
        }
        let upper = Slice {
            min_latency: mid + 1,
            max_latency: Some(hi),
            ..self.clone()
        };
        let lower = Slice {
            min_latency: lo,
            max_latency: Some(mid),
            ..self.clone()
        };
        Some((upper, lower))
    }
}

/// Whether the consumer still takes pages.
enum Flow {
    Continue,
    Stop,
}

/// One listing's state: the slices still to list (the next on top), how many pages the
/// result window allows, and what was done so far.
struct Listing<'c, P> {
    ctx: &'c Ctx<'c>,
    tz: FixedOffset,
    tx: mpsc::Sender<P>,
    /// A page with fewer rows than this ends its slice.
    rows: usize,
    max_pages: u32,
    stack: Vec<Slice>,
    out: ListOutcome,
}

impl<P: ListPage> Listing<'_, P> {
    fn what(slice: &Slice, n: u32) -> String {
        format!(
            "{} page {n} of [{} .. {}]",
            P::ROOT,
            slice.duration.start,
            slice.duration.end
        )
    }

    async fn send(&self, page: P) -> Flow {
        if self.tx.send(page).await.is_err() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// A page answered with the OAP's "Result window is too large": the slice is split, and
    /// a window smaller than configured is adopted for the remaining slices.
    fn shrink(&mut self, f: &Failure) -> bool {
        let Some(limit) = f.error.result_window() else {
            return false;
        };
        let fits = limit.map_or(self.max_pages / 2, |l| l / self.ctx.s.page_size);
        self.max_pages = fits.clamp(1, self.max_pages.max(1));
        true
    }

    /// Page 1, then either the slice ends there, or is bisected, or is paged through.
    async fn list_slice(&mut self, slice: &Slice) -> Result<Flow, TraceError> {
        let first: P = match self.ctx.page(slice, 1).await {
            Ok(p) => p,
            Err(f) if self.shrink(&f) => {
                self.split(slice, None)?;
                return Ok(Flow::Continue);
            }
            Err(f) => return Err(self.ctx.call_error(&Self::what(slice, 1), f)),
        };
        self.out.pages += 1;
        if first.rows() < self.rows {
            return Ok(self.send(first).await);
        }
        let Some(probe) = self.probe_last_page(slice).await? else {
            let longest = (self.ctx.s.query_order == QueryOrder::ByDuration)
                .then(|| first.max_latency())
                .flatten();
            self.split(slice, longest)?;
            return Ok(Flow::Continue);
        };
        if let Flow::Stop = self.send(first).await {
            return Ok(Flow::Stop);
        }
        self.list_middle_pages(slice, probe).await
    }

    /// After a full first page: asks for the last page the result window allows. `None` when
    /// that one is full too (or there is no such page), so the slice may hold more rows than
    /// the OAP will page through.
    async fn probe_last_page(&mut self, slice: &Slice) -> Result<Option<P>, TraceError> {
        let last = self.max_pages;
        if last <= 1 {
            return Ok(None);
        }
        match self.ctx.page(slice, last).await {
            Ok(p) => {
                self.out.pages += 1;
                Ok(Some(p).filter(|p: &P| p.rows() < self.rows))
            }
            Err(f) if self.shrink(&f) => Ok(None),
            Err(f) => Err(self.ctx.call_error(&Self::what(slice, last), f)),
        }
    }

    /// Pages 2 up to the first short one, then the probed last page. Offset paging is
    /// stateless on the OAP, so these pages are requested concurrently and consumed in order.
    async fn list_middle_pages(&mut self, slice: &Slice, probe: P) -> Result<Flow, TraceError> {
        let ctx = self.ctx;
        let mut pages = stream::iter(2..self.max_pages)
            .map(|n| async move { (n, ctx.page::<P>(slice, n).await) })
            .buffered(LIST_CONCURRENCY);
        while let Some((n, r)) = pages.next().await {
            let p = match r {
                Ok(p) => p,
                Err(f) if self.shrink(&f) => {
                    drop(pages);
                    // Rows already listed are listed again and de-duplicated by id.
                    self.split(slice, None)?;
                    return Ok(Flow::Continue);
                }
                Err(f) => return Err(ctx.call_error(&Self::what(slice, n), f)),
            };
            self.out.pages += 1;
            let short = p.rows() < self.rows;
            if let Flow::Stop = self.send(p).await {
                return Ok(Flow::Stop);
            }
            if short {
                return Ok(Flow::Continue);
            }
        }
        Ok(self.send(probe).await)
    }

    /// Replaces an overflowing slice by two halves, the half to list first on top: the later
    /// half for BY_START_TIME (newest first, as the OAP orders), the longer half for
    /// BY_DURATION, so `size` keeps the same traces it would without slicing.
    fn split(&mut self, slice: &Slice, longest: Option<u32>) -> Result<(), TraceError> {
        let s = self.ctx.s;
        let halves = if s.query_order == QueryOrder::ByDuration {
            slice
                .split_latency(longest)
                .or_else(|| slice.split_time(self.tz))
        } else {
            slice
                .split_time(self.tz)
                .or_else(|| slice.split_latency(None))
        };
        let Some((first, second)) = halves else {
            return Err(TraceError::Config(format!(
                "more segment rows than the OAP's result window ({} rows) within one second \
                 ({} .. {}) and one trace duration: raise the storage's result window \
                 (Elasticsearch `index.max_result_window`) and `result_window` to match",
                s.result_window, slice.duration.start, slice.duration.end
            )));
        };
        self.stack.push(second);
        self.stack.push(first);
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(super) struct ListOutcome {
    pub(super) pages: u32,
    pub(super) slices: u32,
    /// Every slice was paged to its end (not stopped by `size` or the consumer).
    pub(super) exhausted: bool,
}

/// A list page, as the pager needs to see it.
pub(super) trait ListPage: serde::de::DeserializeOwned + Send + 'static {
    const DOCUMENT: &'static str;
    const ROOT: &'static str;
    fn rows(&self) -> usize;
    /// The first row's latency: the slice's longest under BY_DURATION.
    fn max_latency(&self) -> Option<u32>;
}

/// `data` of `BASIC_TRACES`: one row per segment.
#[derive(Deserialize)]
pub(super) struct BasicPage {
    #[serde(rename = "queryBasicTraces")]
    pub(super) query_basic_traces: BasicList,
}

#[derive(Deserialize)]
pub(super) struct BasicList {
    pub(super) traces: Vec<Value>,
}

impl ListPage for BasicPage {
    const DOCUMENT: &'static str = query::BASIC_TRACES;
    const ROOT: &'static str = "queryBasicTraces";
    fn rows(&self) -> usize {
        self.query_basic_traces.traces.len()
    }
    fn max_latency(&self) -> Option<u32> {
        let d = self.query_basic_traces.traces.first()?.get("duration")?;
        d.as_u64().and_then(|d| u32::try_from(d).ok())
    }
}

impl ListPage for TracesV2 {
    const DOCUMENT: &'static str = query::TRACES_V2;
    const ROOT: &'static str = "queryTraces";
    fn rows(&self) -> usize {
        self.query_traces.traces.len()
    }
    fn max_latency(&self) -> Option<u32> {
        let spans = self.query_traces.traces.first()?.spans.as_ref()?;
        let start = spans.iter().map(|s| s.start_time).min()?;
        let end = spans.iter().map(|s| s.end_time).max()?;
        u32::try_from((end - start).max(0)).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{TimeZone, Utc};
    use tokio_util::sync::CancellationToken;

    use super::super::client::{CallError, GraphQlClient, RetryPolicy};
    use super::super::writer::Format;
    use super::super::{Protocol, Settings, Timezone, TraceState};
    use super::*;

    fn settings(order: QueryOrder) -> Settings {
        Settings {
            endpoint: "http://127.0.0.1:9".into(),
            from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            until: Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap(),
            step: QueryStep::Second,
            timezone: Timezone::Fixed(FixedOffset::east_opt(0).unwrap()),
            trace_state: TraceState::All,
            query_order: order,
            min_trace_duration: None,
            max_trace_duration: None,
            page_size: 100,
            result_window: 10_000,
            experiment_name: "e".into(),
            size: None,
            workers: 1,
            request_timeout: Duration::from_secs(1),
            retry: RetryPolicy {
                retries: 0,
                backoff: Duration::ZERO,
                max_backoff: Duration::ZERO,
            },
            protocol: Protocol::V1,
            format: Format::Jsonl,
            path: "unused".into(),
        }
    }

    fn slice(from_s: u32, until_s: u32) -> Slice {
        let at = |s| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, s).unwrap();
        let tz = FixedOffset::east_opt(0).unwrap();
        Slice {
            duration: QueryDuration::bucket(at(from_s), at(until_s), QueryStep::Second, tz),
            min_latency: 0,
            max_latency: None,
        }
    }

    /// Runs `f` on a fresh listing of the settings' window (no request is made).
    fn with_listing(s: &Settings, f: impl FnOnce(&mut Listing<'_, BasicPage>)) {
        let client =
            GraphQlClient::new(&s.endpoint, s.request_timeout, s.retry, 1).expect("client");
        let cancel = CancellationToken::new();
        let ctx = Ctx {
            s,
            client: &client,
            cancel: &cancel,
        };
        let (tx, _rx) = mpsc::channel(1);
        let mut l = Listing {
            ctx: &ctx,
            tz: FixedOffset::east_opt(0).unwrap(),
            tx,
            rows: 100,
            max_pages: 100,
            stack: Vec::new(),
            out: ListOutcome::default(),
        };
        f(&mut l);
    }

    fn refusal(limit: &str) -> Failure {
        Failure {
            error: CallError::GraphQl(format!(
                "Result window is too large, from + size must be less than or equal to: {limit}"
            )),
            attempts: 1,
        }
    }

    #[test]
    fn a_refusal_adopts_the_oap_window_and_never_grows_it() {
        with_listing(&settings(QueryOrder::ByStartTime), |l| {
            let other = Failure {
                error: CallError::GraphQl("timeout".into()),
                attempts: 1,
            };
            assert!(!l.shrink(&other));
            assert_eq!(l.max_pages, 100);
            assert!(l.shrink(&refusal("[5000] but was [5100]")));
            assert_eq!(l.max_pages, 50);
            assert!(l.shrink(&refusal("[20000] but was [20100]")));
            assert_eq!(l.max_pages, 50, "a larger window is not adopted");
            assert!(l.shrink(&refusal("(no number)")));
            assert_eq!(l.max_pages, 25, "without a number, the pages are halved");
            assert!(l.shrink(&refusal("[50] but was [150]")));
            assert_eq!(l.max_pages, 1, "at least one page");
        });
    }

    #[test]
    fn splits_put_the_half_to_list_first_on_top() {
        with_listing(&settings(QueryOrder::ByStartTime), |l| {
            l.split(&slice(0, 10), None).unwrap();
            let top = l.stack.pop().unwrap();
            let next = l.stack.pop().unwrap();
            assert!(
                top.duration.covers_from > next.duration.covers_from,
                "later half first"
            );
            assert_eq!(top.duration.covers_from, next.duration.covers_until);
        });
        with_listing(&settings(QueryOrder::ByDuration), |l| {
            l.split(&slice(0, 10), Some(800)).unwrap();
            let top = l.stack.pop().unwrap();
            let next = l.stack.pop().unwrap();
            assert_eq!((top.min_latency, top.max_latency), (401, Some(800)));
            assert_eq!((next.min_latency, next.max_latency), (0, Some(400)));
            assert_eq!(top.duration.covers_from, next.duration.covers_from);
        });
    }

    #[test]
    fn one_second_at_one_latency_cannot_be_split() {
        with_listing(&settings(QueryOrder::ByStartTime), |l| {
            let mut s = slice(0, 1);
            (s.min_latency, s.max_latency) = (7, Some(7));
            let e = l.split(&s, None).unwrap_err().to_string();
            assert!(e.contains("raise the storage's result window"), "{e}");
            assert!(l.stack.is_empty());
        });
    }
}
