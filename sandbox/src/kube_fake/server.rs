//! HTTP/1.1 front end: request log, bearer-token check, routing of the REST paths
//! (`/api/v1/...`, `/apis/<group>/<version>/...`, namespaced and cluster-scoped), verbs and
//! content types, and `Status` bodies for every error.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::discovery::{self, ResourceDef};
use super::logs::{self, LogOptions};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{delete_success, ApiError};
use super::store::merge_patch;
use super::{pods, portforward, RecordedRequest, Shared};

pub type Body = BoxBody<Bytes, std::io::Error>;

pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        }
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn json_response(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(v).expect("json")))
        .expect("response")
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_json())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn flag(&self, k: &str) -> bool {
        self.get(k) == Some("true")
    }
    fn num(&self, k: &str) -> Result<Option<i64>, ApiError> {
        self.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(&format!("invalid value for {k}: {v:?}")))
            })
            .transpose()
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(String::from);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let content_type = header("content-type");
    let authorized =
        header("authorization").as_deref() == Some(format!("Bearer {}", shared.token).as_str());
    let is_upgrade = header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let accept = header("accept").unwrap_or_default();

    let (req, body) = if is_upgrade {
        (Some(req), Bytes::new())
    } else {
        (
            None,
            req.into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default(),
        )
    };
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Utc::now(),
        });

    let public = matches!(
        path.as_str(),
        "/version" | "/healthz" | "/livez" | "/readyz"
    );
    if !authorized && !public {
        return Ok(error_response(&ApiError::unauthorized()));
    }
    let q = Query(query_pairs(query.as_deref().unwrap_or("")));
    if let Some(req) = req {
        return Ok(portforward::handle(&shared, &path, &q.all("ports"), req)
            .await
            .unwrap_or_else(|e| error_response(&e)));
    }
    if accept.contains("apidiscovery.k8s.io") && (path == "/api" || path == "/apis") {
        // Aggregated discovery is not implemented: a server without it answers 406.
        return Ok(error_response(&ApiError {
            code: 406,
            reason: "NotAcceptable",
            message: "only the following media types are accepted: application/json".into(),
            details: None,
        }));
    }
    let resp = route(
        &shared,
        &method,
        &path,
        &q,
        content_type.as_deref().unwrap_or(""),
        body,
    )
    .await
    .unwrap_or_else(|e| error_response(&e));
    Ok(resp)
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    q: &Query,
    ct: &str,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let server = shared.addr.to_string();
    let get_only = |v: Value| {
        if method == Method::GET {
            Ok(json_response(200, &v))
        } else {
            Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    match segs.as_slice() {
        ["version"] => get_only(discovery::version()),
        ["healthz"] | ["livez"] | ["readyz"] => Ok(Response::builder()
            .status(200)
            .body(full("ok"))
            .expect("response")),
        ["api"] => get_only(discovery::api_versions(&server)),
        ["apis"] => get_only(discovery::api_group_list(&shared.defs)),
        ["api", "v1"] => get_only(
            discovery::api_resource_list(&shared.defs, "", "v1")
                .ok_or_else(ApiError::unknown_path)?,
        ),
        ["apis", group] => {
            get_only(discovery::api_group(&shared.defs, group).ok_or_else(ApiError::unknown_path)?)
        }
        ["apis", group, version] => get_only(
            discovery::api_resource_list(&shared.defs, group, version)
                .ok_or_else(ApiError::unknown_path)?,
        ),
        ["api", "v1", rest @ ..] => resource(shared, method, "", "v1", rest, q, ct, body).await,
        ["apis", group, version, rest @ ..] => {
            resource(shared, method, group, version, rest, q, ct, body).await
        }
        _ => Err(ApiError::unknown_path()),
    }
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml_ng::from_slice::<Value>(body))
        .map_err(|e| ApiError::bad_request(&format!("error decoding request body: {e}")))
}

/// Runs a write against the store, or — with `dryRun=All` — against a throwaway copy, so the
/// answer is the same but nothing is stored and no controller reacts.
fn write<R>(shared: &Arc<Shared>, q: &Query, f: impl FnOnce(&mut super::store::Store) -> R) -> R {
    if q.get("dryRun").is_some_and(|d| !d.is_empty()) {
        let mut copy = shared.lock().store.clone();
        f(&mut copy)
    } else {
        shared.mutate(|st| f(&mut st.store))
    }
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    shared: &Arc<Shared>,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    q: &Query,
    ct: &str,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let (ns, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(*ns), tail),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::unknown_path()),
    };
    let def = shared
        .defs
        .iter()
        .find(|d| d.group == group && d.version == version && d.plural == plural)
        .cloned()
        .ok_or_else(ApiError::unknown_path)?;
    if (def.namespaced && ns.is_none() && name.is_some()) || (!def.namespaced && ns.is_some()) {
        return Err(ApiError::unknown_path());
    }
    let ns = if def.namespaced { ns } else { None };
    if def.group == "events.k8s.io" {
        return events_v1(shared, method, &def, ns, name, sub, q);
    }
    let Some(name) = name else {
        return match *method {
            Method::GET => list(shared, &def, ns, q),
            Method::POST => {
                let obj = parse_body(&body)?;
                let created = write(shared, q, |store| store.create(&def, ns, obj))?;
                Ok(json_response(201, &created))
            }
            _ => Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            )),
        };
    };
    match (method.clone(), sub) {
        (Method::GET, None) => Ok(json_response(
            200,
            &shared.lock().store.get(&def, ns, name)?,
        )),
        (Method::GET, Some("status")) if def.status_subresource => Ok(json_response(
            200,
            &shared.lock().store.get(&def, ns, name)?,
        )),
        (Method::GET, Some("log")) if def.plural == "pods" => {
            pod_log(shared, &def, ns.unwrap_or(""), name, q)
        }
        (Method::PUT, None) => {
            let obj = parse_body(&body)?;
            Ok(json_response(
                200,
                &write(shared, q, |store| store.replace(&def, ns, name, obj, false))?,
            ))
        }
        (Method::PUT, Some("status")) if def.status_subresource => {
            let obj = parse_body(&body)?;
            Ok(json_response(
                200,
                &write(shared, q, |store| store.replace(&def, ns, name, obj, true))?,
            ))
        }
        (Method::PATCH, None) => patch(shared, &def, ns, name, q, ct, &body, false),
        (Method::PATCH, Some("status")) if def.status_subresource => {
            patch(shared, &def, ns, name, q, ct, &body, true)
        }
        (Method::DELETE, None) => {
            let (obj, gone) = write(shared, q, |store| store.delete(&def, ns, name))?;
            if gone && def.plural != "pods" {
                let uid = obj["metadata"]["uid"].as_str().unwrap_or("");
                return Ok(json_response(200, &delete_success(&def, name, uid)));
            }
            let mut obj = obj;
            if def.plural == "pods" && obj["metadata"]["deletionTimestamp"].is_null() {
                // The pod as the server returns it when graceful deletion starts.
                obj["metadata"]["deletionTimestamp"] = json!(super::util::now_rfc3339());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(30);
            }
            Ok(json_response(200, &obj))
        }
        (_, Some(_)) => Err(ApiError::unknown_path()),
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn list(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    ns: Option<&str>,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), def.field_selectors)?;
    if q.flag("watch") {
        let filter = super::watch::Filter {
            def: def.clone(),
            ns: ns.map(String::from),
            labels,
            fields,
        };
        let timeout = q
            .num("timeoutSeconds")?
            .map(|s| std::time::Duration::from_secs(s.max(0) as u64));
        let events = super::watch::stream(shared, filter, q.get("resourceVersion"), timeout);
        let body = StreamBody::new(events.map(|b| Ok::<_, std::io::Error>(Frame::data(b))));
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(BodyExt::boxed(body))
            .expect("response"));
    }
    let limit = q.num("limit")?.map(|l| l.max(0) as usize);
    let v = shared
        .lock()
        .store
        .list(def, ns, &labels, &fields, limit, q.get("continue"))?;
    Ok(json_response(200, &v))
}

/// Read-only events.k8s.io/v1 view of the stored core events.
fn events_v1(
    shared: &Arc<Shared>,
    method: &Method,
    def: &ResourceDef,
    ns: Option<&str>,
    name: Option<&str>,
    sub: Option<&str>,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    if *method != Method::GET || sub.is_some() {
        return Err(ApiError::method_not_allowed(
            "the fake serves events.k8s.io/v1 read-only; write core/v1 events",
        ));
    }
    let core = shared.def("", "events").expect("core events").clone();
    if let Some(name) = name {
        let e = shared
            .lock()
            .store
            .get(&core, ns, name)
            .map_err(|_| ApiError::not_found(def, name))?;
        return Ok(json_response(200, &super::controller::event_v1(&e)));
    }
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), def.field_selectors)?;
    if q.flag("watch") {
        let filter = super::watch::Filter {
            def: def.clone(),
            ns: ns.map(String::from),
            labels,
            fields,
        };
        let timeout = q
            .num("timeoutSeconds")?
            .map(|s| std::time::Duration::from_secs(s.max(0) as u64));
        let events = super::watch::stream(shared, filter, q.get("resourceVersion"), timeout);
        let body = StreamBody::new(events.map(|b| Ok::<_, std::io::Error>(Frame::data(b))));
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(BodyExt::boxed(body))
            .expect("response"));
    }
    let (items, rv) = {
        let st = shared.lock();
        (st.store.all(&core, ns), st.store.current_rv())
    };
    let items: Vec<Value> = items
        .iter()
        .map(super::controller::event_v1)
        .filter(|e| labels.matches(e.pointer("/metadata/labels")) && fields.matches(e))
        .map(|mut e| {
            if let Some(o) = e.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            e
        })
        .collect();
    let list = json!({
        "kind": "EventList",
        "apiVersion": "events.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "items": items,
    });
    Ok(json_response(200, &list))
}

#[allow(clippy::too_many_arguments)]
fn patch(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    q: &Query,
    ct: &str,
    body: &[u8],
    status_only: bool,
) -> Result<Response<Body>, ApiError> {
    let media = ct.split(';').next().unwrap_or("").trim();
    let is_apply = media == "application/apply-patch+yaml";
    if !is_apply && q.get("force").is_some() {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    match media {
        "application/apply-patch+yaml" => {
            let manager = q
                .get("fieldManager")
                .filter(|m| !m.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid_options(
                        "PatchOptions",
                        "fieldManager: Required value: is required for apply patch",
                    )
                })?;
            let mut obj = parse_body(body)?;
            if status_only {
                let status = obj.get("status").cloned().unwrap_or(Value::Null);
                let updated = write(shared, q, |store| {
                    store.update_with(def, ns, name, |o| {
                        merge_patch(&mut o["status"], &status);
                        Ok(())
                    })
                })?;
                return Ok(json_response(200, &updated));
            }
            if let Some(o) = obj.as_object_mut() {
                o.entry("metadata").or_insert(json!({}));
            }
            let (v, created) = write(shared, q, |store| store.apply(def, ns, name, obj, manager))?;
            Ok(json_response(if created { 201 } else { 200 }, &v))
        }
        // Strategic merge is served as a JSON merge patch: identical for the maps ttplan patches
        // (annotations, labels, finalizers lists are replaced whole).
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(&format!("error decoding patch: {e}")))?;
            let updated = write(shared, q, |store| {
                store.update_with(def, ns, name, |o| {
                    if status_only {
                        merge_patch(&mut o["status"], &p["status"]);
                    } else {
                        merge_patch(o, &p);
                    }
                    Ok(())
                })
            })?;
            Ok(json_response(200, &updated))
        }
        "application/json-patch+json" => {
            let ops: Vec<Value> = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(&format!("error decoding patch: {e}")))?;
            let updated = write(shared, q, |store| {
                store.update_with(def, ns, name, |o| json_patch(o, &ops))
            })?;
            Ok(json_response(200, &updated))
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// RFC 6902 `add`, `remove`, `replace`, `test`.
fn json_patch(doc: &mut Value, ops: &[Value]) -> Result<(), ApiError> {
    let invalid = |m: String| ApiError {
        code: 422,
        reason: "Invalid",
        message: m,
        details: None,
    };
    for op in ops {
        let path = op["path"].as_str().unwrap_or("");
        let (parent_path, last) = path
            .rsplit_once('/')
            .ok_or_else(|| invalid(format!("invalid JSON pointer {path:?}")))?;
        let last = last.replace("~1", "/").replace("~0", "~");
        let kind = op["op"].as_str().unwrap_or("");
        if kind == "test" {
            if doc.pointer(path) != Some(&op["value"]) {
                return Err(invalid(format!("the server rejected our request due to an error in our request: testing value {path} failed")));
            }
            continue;
        }
        let parent = doc
            .pointer_mut(parent_path)
            .ok_or_else(|| invalid(format!("doc is missing path: {path:?}")))?;
        match (kind, parent) {
            ("add", Value::Array(a)) => {
                if last == "-" {
                    a.push(op["value"].clone());
                } else {
                    let i: usize = last
                        .parse()
                        .map_err(|_| invalid(format!("invalid index {last}")))?;
                    if i > a.len() {
                        return Err(invalid(format!("index out of range: {path}")));
                    }
                    a.insert(i, op["value"].clone());
                }
            }
            ("add" | "replace", Value::Object(m)) => {
                if kind == "replace" && !m.contains_key(&last) {
                    return Err(invalid(format!("doc is missing key: {path:?}")));
                }
                m.insert(last, op["value"].clone());
            }
            ("replace", Value::Array(a)) => {
                let i: usize = last
                    .parse()
                    .map_err(|_| invalid(format!("invalid index {last}")))?;
                *a.get_mut(i)
                    .ok_or_else(|| invalid(format!("index out of range: {path}")))? =
                    op["value"].clone();
            }
            ("remove", Value::Object(m)) => {
                m.remove(&last)
                    .ok_or_else(|| invalid(format!("doc is missing key: {path:?}")))?;
            }
            ("remove", Value::Array(a)) => {
                let i: usize = last
                    .parse()
                    .map_err(|_| invalid(format!("invalid index {last}")))?;
                if i >= a.len() {
                    return Err(invalid(format!("index out of range: {path}")));
                }
                a.remove(i);
            }
            _ => {
                return Err(invalid(format!(
                    "unsupported JSON patch operation {kind:?} at {path:?}"
                )))
            }
        }
    }
    Ok(())
}

fn pod_log(
    shared: &Arc<Shared>,
    pods_def: &ResourceDef,
    ns: &str,
    name: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let since = match (q.num("sinceSeconds")?, q.get("sinceTime")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_options(
                "PodLogOptions",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            ))
        }
        (Some(s), None) => Some(Utc::now() - chrono::Duration::seconds(s)),
        (None, Some(t)) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|_| ApiError::bad_request(&format!("invalid sinceTime {t:?}")))?
                .with_timezone(&Utc),
        ),
        (None, None) => None,
    };
    let opts = LogOptions {
        since,
        tail_lines: q.num("tailLines")?.map(|t| t.max(0) as u64),
        timestamps: q.flag("timestamps"),
        limit_bytes: q.num("limitBytes")?.map(|b| b.max(0) as u64),
    };
    let (source, disappear, (container, previous)) = {
        let mut st = shared.lock();
        pods::resolve_log(
            &mut st,
            pods_def,
            ns,
            name,
            q.get("container"),
            q.flag("previous"),
        )?
    };
    // A simulation's log lines replace the seeded content (outside the lock: the feed reads
    // the cluster's history).
    let feed = shared
        .log_feed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let source = feed
        .and_then(|f| {
            f(&super::LogRequest {
                namespace: ns,
                pod: name,
                container: &container,
                previous,
            })
        })
        .unwrap_or(source);
    if disappear {
        // Configured to vanish mid-collection: this request is still served, later ones 404.
        shared.mutate(|st| {
            let _ = st.store.delete(pods_def, Some(ns), name);
        });
    }
    let body = StreamBody::new(
        logs::stream(source, opts).map(|chunk| Ok::<_, std::io::Error>(Frame::data(chunk))),
    );
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(BodyExt::boxed(body))
        .expect("response"))
}
