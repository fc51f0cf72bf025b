//! Request-level simulation of Train-Ticket: each request that reaches the sandbox's API is run
//! through the call graph of [`traffic_model`](super::traffic_model) at its arrival time, and
//! every hop asks the [`World`] what the faults do to the pods involved:
//!
//! - no Ready pod of the callee → the caller's connection is refused (the gateway: 503);
//! - NetworkChaos on either side (limited to its `target` apps): `delay` adds latency, `loss`
//!   makes the call time out with that probability (and slows the others by retransmissions);
//! - HTTPChaos `abort` on the callee for the request's method and path → the connection is
//!   closed before an answer;
//! - DNSChaos `error` on the caller for a pattern matching the callee's host → an
//!   `UnknownHostException`;
//! - a ChaosBlade JVM fault on the `class#method` the endpoint runs: `throwCustomException`
//!   throws it (HTTP 500), `return` answers the value (`Response(0, msg, null)`: a refusal the
//!   callers pass on; `null`: an empty body the callers dereference), `delay` waits.
//!
//! Failures propagate as Spring does: a `RestTemplate` call that fails or gets a 5xx throws, and
//! the servlet answers 500 with Spring Boot's error body. Every hop records the classes and
//! methods it ran ([`World::record_call`]). The outcome is a pure function of the world at the
//! arrival time, the seed and the request (its method, path, body and how many identical
//! requests came before it), so the same seed and the same traffic give the same answers. The
//! simulated requests are kept: the sandbox's traces and pod logs are derived from them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::traffic_model::{self, OnRefusal, Op};
use crate::kube_fake::PodLife;
use crate::train_ticket;
use crate::world::{Effects, JvmFault, World};

/// How long a call whose packets are lost waits before giving up (ms).
pub const TIMEOUT_MS: i64 = 3_000;

/// The services' database (Train-Ticket's quick start: one MySQL for all).
const DATABASE: &str = "tsdb-mysql";

/// How long a query waits for a connection before it fails (the services' HikariCP
/// `connectionTimeout`, shortened like [`TIMEOUT_MS`]).
pub const DB_TIMEOUT_MS: i64 = 5_000;
/// A hop slower than this logs a WARN line (ms).
pub const SLOW_MS: i64 = 1_000;

/// Why a call got no answer from the callee's application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unreached {
    /// No live pod behind the Service.
    NoPod,
    /// The caller's DNS lookup failed (DNSChaos).
    Dns,
    /// Packets lost: the read timed out (NetworkChaos loss).
    Timeout,
    /// The callee's proxy closed the connection (HTTPChaos abort).
    Aborted,
}

/// An exception, as the JVM names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    pub class: String,
    pub message: String,
}

impl Exception {
    fn new(class: &str, message: impl Into<String>) -> Exception {
        Exception {
            class: class.to_string(),
            message: message.into(),
        }
    }

    /// `Throwable.toString()`: the class, then `: message` when there is one.
    pub fn text(&self) -> String {
        if self.message.is_empty() {
            self.class.clone()
        } else {
            format!("{}: {}", self.class, self.message)
        }
    }
}

/// What one endpoint answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// `Response(1, msg, data)`.
    Ok { msg: String, data: Value },
    /// `Response(0, msg, null)`: a business failure, HTTP 200.
    Refused { msg: String },
    /// The controller returned `null`: HTTP 200, empty body.
    Empty,
    /// An exception escaped the controller: HTTP 500 with Spring Boot's error body.
    Error(Exception),
}

impl Outcome {
    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::Error(_))
    }
}

impl Hop {
    /// An exception of this hop's own: not the gateway passing on a service's 500.
    pub fn threw(&self) -> Option<&Exception> {
        match &self.outcome {
            Outcome::Error(_)
                if self.class.is_empty() && self.calls.iter().all(|c| c.unreached.is_none()) =>
            {
                None
            }
            Outcome::Error(ex) => Some(ex),
            _ => None,
        }
    }
}

/// One endpoint served by one pod (a SkyWalking segment).
#[derive(Clone, Debug)]
pub struct Hop {
    pub app: String,
    pub pod: String,
    /// The endpoint name SkyWalking gives the entry span.
    pub endpoint: String,
    pub method: String,
    pub path: String,
    /// The Java class of the business code (the logger name) and the method the endpoint
    /// runs in it; empty for the gateway.
    pub class: String,
    pub java_method: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub outcome: Outcome,
    pub calls: Vec<CallRecord>,
    /// INFO lines the service logged, with the time they were logged at.
    pub info: Vec<(i64, String)>,
}

/// One outgoing call of a hop (a SkyWalking exit span).
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub app: String,
    pub method: String,
    pub path: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Set when the call threw in the caller: never answered, or answered 5xx.
    pub failed: Option<Exception>,
    pub unreached: Option<Unreached>,
    /// The callee's hop, when the request got to its application.
    pub callee: Option<Box<Hop>>,
}

/// One request the sandbox's API answered.
#[derive(Clone, Debug)]
pub struct SimRequest {
    pub seq: u64,
    pub trace_id: String,
    pub at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// The simulated time to the answer (ms); the real answer is not delayed that long.
    pub latency_ms: i64,
    /// The gateway's hop; `None` when the front (the UI dashboard's nginx) answered alone.
    pub gateway: Option<Hop>,
    /// Its SkyWalking trace, built when first read.
    pub trace: std::sync::OnceLock<Option<crate::skywalking::FedTrace>>,
}

/// The simulated system's request side: answers requests and keeps them (traces, logs).
#[derive(Clone)]
pub struct Traffic {
    inner: Arc<Inner>,
}

struct Inner {
    world: World,
    namespace: String,
    requests: Mutex<Vec<Arc<SimRequest>>>,
    /// Identical requests seen so far, by key (the noise's second coordinate).
    seen: Mutex<HashMap<String, i64>>,
}

/// A small stable hash (FNV-1a), for keys and ids.
pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One request being simulated: its noise key, a counter for the hops' keys.
struct Run<'a> {
    world: &'a World,
    ns: &'a str,
    at: DateTime<Utc>,
    key: String,
    n: i64,
    draws: u32,
    pods: Vec<PodLife>,
    body: Value,
}

impl Run<'_> {
    fn noise(&mut self, what: &str) -> f64 {
        self.draws += 1;
        self.world
            .noise(&format!("{}|{}|{what}", self.key, self.draws), self.n)
    }

    fn id(&mut self) -> String {
        let a = (self.noise("id") * (1u64 << 52) as f64) as u64;
        let b = (self.noise("id") * (1u64 << 52) as f64) as u64;
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 20,
            a & 0xffff,
            b >> 40,
            (b >> 28) & 0xfff,
            b & 0xffff_ffff_ffff
        )
    }

    /// A live pod of `app` at the arrival time, chosen as kube-proxy would (at random).
    fn pick_pod(&mut self, app: &str) -> Option<String> {
        let live: Vec<String> = self
            .pods
            .iter()
            .filter(|p| {
                p.namespace == self.ns && p.labels.get("app").map(String::as_str) == Some(app)
            })
            .map(|p| p.name.clone())
            .collect();
        if live.is_empty() {
            return None;
        }
        let i = (self.noise("pod") * live.len() as f64) as usize;
        Some(live[i.min(live.len() - 1)].clone())
    }

    /// The added latency of `app`'s database queries, `None` when nothing slows them (or the
    /// app has no database: the gateway and the non-Java services).
    fn db_latency(&self, app: &str) -> Option<f64> {
        if app == "ts-gateway-service" || crate::train_ticket::package(app).is_none() {
            return None;
        }
        self.pods
            .iter()
            .filter(|p| {
                p.namespace == self.ns && p.labels.get("app").map(String::as_str) == Some(DATABASE)
            })
            .map(|p| self.effects(&p.name))
            .filter(|e| e.latency_ms > 0.0 && towards(e, app))
            .map(|e| e.latency_ms)
            .reduce(f64::max)
    }

    fn effects(&self, pod: &str) -> Effects {
        self.world.effects(self.ns, pod, self.at)
    }
}

/// Applies to traffic with `peer` (NetworkChaos `target` limits it to some apps).
fn towards(e: &Effects, peer: &str) -> bool {
    e.peers.is_empty() || e.peers.iter().any(|p| p == peer)
}

/// `*` wildcards (HTTPChaos `path`, DNSChaos `patterns`).
pub fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(k) => rest = &rest[k + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// The classes an endpoint runs: its controller's handler and the service method.
fn classes_of(op: &Op) -> (String, String, String) {
    let pkg = train_ticket::package(op.app).unwrap_or("");
    let name = train_ticket::camel(op.app);
    (
        format!("{pkg}.controller.{name}Controller"),
        format!("handle{}", train_ticket::camel(op.service_method)),
        format!("{pkg}.service.{name}ServiceImpl"),
    )
}

fn flag<'a>(f: &'a JvmFault, name: &str) -> Option<&'a str> {
    f.flags
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// ChaosBlade's `return` value as the method's result: `null`, or
/// `new edu.fudan.common.util.Response(0, "MSG", null)`, or a literal.
fn returned(value: &str) -> Outcome {
    let v = value.trim();
    if v == "null" {
        return Outcome::Empty;
    }
    if let Some(args) = v
        .strip_prefix("new ")
        .and_then(|r| r.split_once('('))
        .map(|(_, a)| a.trim_end_matches(')'))
    {
        let mut it = args.splitn(3, ',');
        let status: i64 = it.next().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let msg = it
            .next()
            .map(|s| s.trim().trim_matches('"').to_string())
            .unwrap_or_default();
        return if status == 1 {
            Outcome::Ok {
                msg,
                data: Value::Null,
            }
        } else {
            Outcome::Refused { msg }
        };
    }
    Outcome::Ok {
        msg: "Success".into(),
        data: serde_json::from_str(v).unwrap_or_else(|_| json!(v)),
    }
}

fn url(app: &str, path: &str) -> String {
    format!("http://{app}:{}{path}", traffic_model::port(app))
}

/// What a `RestTemplate` throws in the caller for a failed call.
fn thrown(rec: &CallRecord, cause: &Exception) -> Exception {
    if rec.unreached.is_some() {
        Exception::new(
            "org.springframework.web.client.ResourceAccessException",
            format!(
                "I/O error on {} request for \"{}\": {}; nested exception is {}",
                rec.method,
                url(&rec.app, &rec.path),
                cause.message,
                cause.text()
            ),
        )
    } else {
        cause.clone()
    }
}

impl Run<'_> {
    /// The callee's side of a call that reached pod `pod`: its endpoint run at `start`.
    fn serve(&mut self, op: &'static Op, pod: &str, path: &str, start: i64) -> Hop {
        let e = self.effects(pod);
        let (controller, handler, service) = classes_of(op);
        self.world.record_call(pod, &controller, &handler);
        self.world.record_call(pod, &service, op.service_method);
        let cpu = 1.0 + e.cpu_cores;
        // The service's own work, half before its calls and half after; CPU contention
        // stretches it.
        let self_ms = ((3.0 + 12.0 * self.noise("self")) * cpu).round() as i64;
        let mut t = start + self_ms / 2;
        let mut info: Vec<(i64, String)> = Vec::new();
        let mut calls = Vec::new();
        let fault = e.jvm.iter().find(|f| {
            (f.class == service && f.method == op.service_method)
                || (f.class == controller && f.method == handler)
        });
        let mut outcome = None;
        if let Some(f) = fault {
            match f.action.as_str() {
                "throwCustomException" | "throwDeclaredException" => {
                    outcome = Some(Outcome::Error(Exception::new(
                        flag(f, "exception").unwrap_or("java.lang.Exception"),
                        flag(f, "exception-message").unwrap_or("chaosblade-mock-exception"),
                    )));
                }
                "return" => outcome = Some(returned(flag(f, "value").unwrap_or("null"))),
                "delay" => {
                    t += flag(f, "time").and_then(|v| v.parse().ok()).unwrap_or(0);
                }
                _ => {}
            }
        }
        if outcome.is_none() {
            // The service's queries to its database (the deployment's shared `tsdb-mysql`): a
            // NetworkChaos on the database's pods towards this service slows them; past the
            // connection pool's wait the query fails (HikariCP's message).
            if let Some(db_ms) = self.db_latency(op.app) {
                if db_ms > DB_TIMEOUT_MS as f64 {
                    t += DB_TIMEOUT_MS;
                    outcome = Some(Outcome::Error(Exception::new(
                        "java.sql.SQLTransientConnectionException",
                        format!(
                            "HikariPool-1 - Connection is not available, request timed out after {DB_TIMEOUT_MS}ms."
                        ),
                    )));
                } else {
                    t += db_ms.round() as i64;
                }
            }
        }
        if outcome.is_none() {
            // INFO line i is logged before call i (the steps of `PreserveServiceImpl.preserve`),
            // the rest when the calls are done.
            let mut lines = op.info.iter();
            for c in op.calls {
                if let Some(l) = lines.next() {
                    info.push((t, l.to_string()));
                }
                let callee = traffic_model::op(c.op).expect("the model's calls name its endpoints");
                let rec = self.call(op.app, &e, callee, c.path, t);
                t = rec.end_ms;
                let stop = match (&rec.failed, rec.callee.as_ref().map(|h| &h.outcome)) {
                    (Some(ex), _) => Some(Outcome::Error(thrown(&rec, ex))),
                    (None, Some(Outcome::Refused { msg })) => match c.on_refusal {
                        OnRefusal::Propagate => Some(Outcome::Refused { msg: msg.clone() }),
                        OnRefusal::Dereference => Some(Outcome::Error(Exception::new(
                            "java.lang.NullPointerException",
                            "",
                        ))),
                        OnRefusal::Ignore => None,
                    },
                    (None, Some(Outcome::Empty)) if c.on_refusal != OnRefusal::Ignore => Some(
                        Outcome::Error(Exception::new("java.lang.NullPointerException", "")),
                    ),
                    _ => None,
                };
                calls.push(rec);
                if stop.is_some() {
                    outcome = stop;
                    break;
                }
            }
            if outcome.is_none() {
                info.extend(lines.map(|l| (t, l.to_string())));
            }
        }
        let outcome = outcome.unwrap_or_else(|| {
            let id = self.id();
            match traffic_model::answer(op, path, &self.body, &id) {
                Ok((msg, data)) => Outcome::Ok { msg, data },
                Err(msg) => Outcome::Refused { msg },
            }
        });
        Hop {
            app: op.app.to_string(),
            pod: pod.to_string(),
            endpoint: format!("{{{}}}{}", op.method, op.pattern),
            method: op.method.to_string(),
            path: path.to_string(),
            class: service,
            java_method: op.service_method.to_string(),
            start_ms: start,
            end_ms: t + self_ms - self_ms / 2,
            outcome,
            calls,
            info,
        }
    }

    /// A call from `caller` (its effects `fe`) to endpoint `op` at `path`.
    fn call(
        &mut self,
        caller: &str,
        fe: &Effects,
        op: &'static Op,
        path: &str,
        start: i64,
    ) -> CallRecord {
        let mut rec = CallRecord {
            app: op.app.to_string(),
            method: op.method.to_string(),
            path: path.to_string(),
            start_ms: start,
            end_ms: start + 1,
            failed: None,
            unreached: None,
            callee: None,
        };
        let unreached = |rec: &mut CallRecord, why: Unreached, ex: Exception, took: i64| {
            rec.unreached = Some(why);
            rec.failed = Some(ex);
            rec.end_ms = start + took;
        };
        if fe.dns_errors.iter().any(|p| {
            glob(p, op.app) || glob(p, &format!("{}.{}.svc.cluster.local", op.app, self.ns))
        }) {
            unreached(
                &mut rec,
                Unreached::Dns,
                Exception::new("java.net.UnknownHostException", op.app),
                2,
            );
            return rec;
        }
        let Some(pod) = self.pick_pod(op.app) else {
            unreached(
                &mut rec,
                Unreached::NoPod,
                Exception::new(
                    "java.net.ConnectException",
                    "Connection refused (Connection refused)",
                ),
                1,
            );
            return rec;
        };
        let te = self.effects(&pod);
        let mut net = 1.0;
        let mut keep = 1.0;
        if towards(fe, op.app) {
            net += fe.latency_ms;
            keep *= 1.0 - fe.loss;
        }
        if towards(&te, caller) {
            net += te.latency_ms;
            keep *= 1.0 - te.loss;
        }
        let loss = 1.0 - keep;
        if loss > 0.0 && self.noise("loss") < loss {
            unreached(
                &mut rec,
                Unreached::Timeout,
                Exception::new("java.net.SocketTimeoutException", "Read timed out"),
                TIMEOUT_MS,
            );
            return rec;
        }
        // Lost packets that got through on a retransmission.
        net += loss * 600.0 * self.noise("retransmit");
        let aborted = te.http_aborts.iter().any(|a| {
            a.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(op.method))
                && glob(&a.path, path)
        });
        if aborted {
            unreached(
                &mut rec,
                Unreached::Aborted,
                Exception::new(
                    "java.net.SocketException",
                    "Unexpected end of file from server",
                ),
                net.round() as i64,
            );
            return rec;
        }
        let half = (net / 2.0).round() as i64;
        let hop = self.serve(op, &pod, path, start + half);
        rec.end_ms = hop.end_ms + (net.round() as i64 - half);
        if let Outcome::Error(ex) = &hop.outcome {
            rec.failed = Some(Exception::new(
                "org.springframework.web.client.HttpServerErrorException",
                format!("500 null: [{}]", ex.text()),
            ));
        }
        rec.callee = Some(Box::new(hop));
        rec
    }
}

/// An HTTP answer of the simulated API.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub latency_ms: i64,
}

const GATEWAY: &str = "ts-gateway-service";
const FRONT: &str = "ts-ui-dashboard";

/// Spring Boot's error body (`DefaultErrorAttributes`: an exception without a message gives
/// "No message available").
fn spring_error(at: DateTime<Utc>, status: u16, error: &str, message: &str, path: &str) -> String {
    let message = if message.is_empty() {
        "No message available"
    } else {
        message
    };
    json!({
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, false),
        "status": status, "error": error, "message": message, "path": path
    })
    .to_string()
}

const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.19.6</center>\r\n</body>\r\n</html>\r\n";
const INDEX: &str = "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>Train Ticket</title></head>\n<body><div id=\"app\"></div><script src=\"js/index.js\"></script></body>\n</html>\n";

impl Traffic {
    pub fn new(world: World, namespace: &str) -> Traffic {
        Traffic {
            inner: Arc::new(Inner {
                world,
                namespace: namespace.to_string(),
                requests: Mutex::default(),
                seen: Mutex::default(),
            }),
        }
    }

    pub fn world(&self) -> &World {
        &self.inner.world
    }

    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Every request answered so far, in arrival order.
    pub fn requests(&self) -> Vec<Arc<SimRequest>> {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Answers `method target` (path and query) with `body`, arriving now.
    pub fn handle(&self, method: &str, target: &str, body: &[u8]) -> Answer {
        self.handle_at(method, target, body, Utc::now())
    }

    /// [`handle`](Self::handle) for a request arriving at `at`.
    pub fn handle_at(&self, method: &str, target: &str, body: &[u8], at: DateTime<Utc>) -> Answer {
        let path = target.split('?').next().unwrap_or("").to_string();
        let text = String::from_utf8_lossy(body);
        let key = format!("{method} {target} {:016x}", fnv(&text));
        let n = {
            let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
            let c = seen.entry(key.clone()).or_insert(0);
            *c += 1;
            *c - 1
        };
        let world = &self.inner.world;
        let mut run = Run {
            world,
            ns: &self.inner.namespace,
            at,
            key,
            n,
            draws: 0,
            pods: world.serving_at(at),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        };
        let start = at.timestamp_millis();
        let (status, content_type, body, gateway): (u16, &'static str, String, Option<Hop>) =
            if run.pick_pod(FRONT).is_none() {
                (503, "text/plain", "Service Unavailable\n".into(), None)
            } else if !path.starts_with("/api/") {
                if path == "/" || path == "/index.html" {
                    (200, "text/html", INDEX.into(), None)
                } else {
                    (
                        404,
                        "text/html",
                        "<html><body><h1>404 Not Found</h1></body></html>\n".into(),
                        None,
                    )
                }
            } else {
                match run.pick_pod(GATEWAY) {
                    None => (502, "text/html", NGINX_502.into(), None),
                    Some(gw) => {
                        let (status, ct, body, hop) = gateway(&mut run, &gw, method, &path, start);
                        (status, ct, body, Some(hop))
                    }
                }
            };
        let end = gateway.as_ref().map_or(start + 1, |h| h.end_ms + 1);
        let mut requests = self
            .inner
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let seq = requests.len() as u64;
        let h = fnv(&format!("{}|{}|{n}", world.seed(), run.key));
        let trace_id = format!(
            "{h:016x}{:016x}.{}.{}",
            fnv(&format!("{h}")),
            40 + seq % 80,
            start * 10_000 + (seq % 10_000) as i64
        );
        requests.push(Arc::new(SimRequest {
            seq,
            trace_id,
            at,
            method: method.to_string(),
            path,
            status,
            content_type,
            body: body.clone(),
            latency_ms: end - start,
            gateway,
            trace: std::sync::OnceLock::new(),
        }));
        Answer {
            status,
            content_type,
            body,
            latency_ms: end - start,
        }
    }
}

/// The gateway (Spring Cloud Gateway) routes the request to its service and passes the
/// answer on; it answers itself when the route fails (503 no instance, 504 timeout, 500 other
/// I/O errors, 404 no route).
fn gateway(
    run: &mut Run,
    pod: &str,
    method: &str,
    path: &str,
    start: i64,
) -> (u16, &'static str, String, Hop) {
    let mut hop = Hop {
        app: GATEWAY.into(),
        pod: pod.to_string(),
        endpoint: path.to_string(),
        method: method.to_string(),
        path: path.to_string(),
        class: String::new(),
        java_method: String::new(),
        start_ms: start,
        end_ms: start + 2,
        outcome: Outcome::Empty,
        calls: Vec::new(),
        info: Vec::new(),
    };
    let json_ct = "application/json";
    let Some(op) = traffic_model::route(method, path) else {
        // The service is there but maps the path to another method: Spring MVC's 405.
        if ["GET", "POST", "PUT", "DELETE"]
            .iter()
            .any(|m| traffic_model::route(m, path).is_some())
        {
            let message = format!("Request method '{method}' not supported");
            let body = spring_error(run.at, 405, "Method Not Allowed", &message, path);
            hop.outcome = Outcome::Error(Exception::new(
                "org.springframework.web.HttpRequestMethodNotSupportedException",
                message,
            ));
            return (405, json_ct, body, hop);
        }
        let body = spring_error(run.at, 404, "Not Found", "", path);
        hop.outcome = Outcome::Error(Exception::new(
            "org.springframework.web.server.ResponseStatusException",
            "404 NOT_FOUND",
        ));
        return (404, json_ct, body, hop);
    };
    let fe = run.effects(pod);
    let rec = run.call(GATEWAY, &fe, op, path, start + 1);
    hop.end_ms = rec.end_ms + 1;
    let (status, body) = match (&rec.unreached, rec.callee.as_ref().map(|h| &h.outcome)) {
        (Some(why), _) => {
            let (status, error, message, class) = match why {
                Unreached::NoPod => (
                    503,
                    "Service Unavailable",
                    format!("Unable to find instance for {}", op.app),
                    "org.springframework.cloud.gateway.support.NotFoundException",
                ),
                Unreached::Timeout => (
                    504,
                    "Gateway Timeout",
                    format!(
                        "Response took longer than timeout: PT{}S",
                        TIMEOUT_MS / 1000
                    ),
                    "org.springframework.cloud.gateway.support.TimeoutException",
                ),
                Unreached::Aborted => (
                    500,
                    "Internal Server Error",
                    "Connection prematurely closed BEFORE response".to_string(),
                    "reactor.netty.http.client.PrematureCloseException",
                ),
                Unreached::Dns => (
                    500,
                    "Internal Server Error",
                    format!("Failed to resolve '{}'", op.app),
                    "java.net.UnknownHostException",
                ),
            };
            hop.outcome = Outcome::Error(Exception::new(class, message.clone()));
            (status, spring_error(run.at, status, error, &message, path))
        }
        (None, Some(Outcome::Error(ex))) => {
            hop.outcome = Outcome::Error(ex.clone());
            (
                500,
                spring_error(run.at, 500, "Internal Server Error", &ex.message, path),
            )
        }
        (None, Some(Outcome::Ok { msg, data })) => {
            hop.outcome = Outcome::Ok {
                msg: msg.clone(),
                data: data.clone(),
            };
            (
                200,
                json!({"status": 1, "msg": msg, "data": data}).to_string(),
            )
        }
        (None, Some(Outcome::Refused { msg })) => {
            hop.outcome = Outcome::Refused { msg: msg.clone() };
            (
                200,
                json!({"status": 0, "msg": msg, "data": null}).to_string(),
            )
        }
        (None, Some(Outcome::Empty)) | (None, None) => (200, String::new()),
    };
    hop.calls.push(rec);
    (status, json_ct, body, hop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_chaos_mesh_patterns_do() {
        assert!(glob(
            "/api/v1/preserveservice/*",
            "/api/v1/preserveservice/preserve"
        ));
        assert!(!glob(
            "/api/v1/preserveservice/*",
            "/api/v1/orderservice/order"
        ));
        assert!(glob("ts-order-service*", "ts-order-service"));
        assert!(!glob("ts-order-service*", "ts-order-other-service"));
        assert!(glob("*", "anything"));
        assert!(glob("a*c*e", "abcde"));
    }

    #[test]
    fn blade_return_values_become_answers() {
        assert_eq!(
            returned(
                "new edu.fudan.common.util.Response(0, \"CHAOS_SECURITY_CHECK_FAILURE\", null)"
            ),
            Outcome::Refused {
                msg: "CHAOS_SECURITY_CHECK_FAILURE".into()
            }
        );
        assert_eq!(returned("null"), Outcome::Empty);
        assert_eq!(
            returned("true"),
            Outcome::Ok {
                msg: "Success".into(),
                data: json!(true)
            }
        );
    }
}
