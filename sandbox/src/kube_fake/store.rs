//! Generic object store: every resource (core, apps, CRDs) is kept as JSON, keyed by
//! resource + namespace + name, with the metadata bookkeeping the API server does
//! (uid, resourceVersion, creationTimestamp, generation, finalizers, deletionTimestamp).
//!
//! The store never talks to controllers itself: each mutation appends a [`Change`] that the
//! caller drains *after* releasing the lock and dispatches (see `controller::dispatch`), so
//! controllers never run under the store lock.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::discovery::ResourceDef;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::util::{now_rfc3339, random_uid};

/// What happened to an object; controllers react to these.
#[derive(Clone, Debug)]
pub enum Change {
    Created(Value),
    Updated {
        old: Value,
        new: Value,
    },
    /// `deletionTimestamp` was just set; finalizers keep the object.
    Deleting(Value),
    /// The object is gone from the store.
    Deleted(Value),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    group: String,
    plural: String,
    namespace: String,
    name: String,
}

#[derive(Clone, Default)]
pub struct Store {
    objects: BTreeMap<Key, Value>,
    resource_version: u64,
    changes: Vec<(ResourceDef, Change)>,
}

fn key(def: &ResourceDef, ns: Option<&str>, name: &str) -> Key {
    Key {
        group: def.group.to_string(),
        plural: def.plural.to_string(),
        namespace: if def.namespaced {
            ns.unwrap_or("").to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}

/// Recursive RFC 7386 JSON merge patch (also used for server-side apply, see `apply`).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        let t = target.as_object_mut().expect("object");
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

impl Store {
    pub fn take_changes(&mut self) -> Vec<(ResourceDef, Change)> {
        std::mem::take(&mut self.changes)
    }

    fn next_rv(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    pub fn current_rv(&self) -> String {
        self.resource_version.to_string()
    }

    pub fn get(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&key(def, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))
    }

    pub fn peek(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> Option<&Value> {
        self.objects.get(&key(def, ns, name))
    }

    /// All objects of a resource, optionally restricted to one namespace, in name order.
    pub fn all(&self, def: &ResourceDef, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.group == def.group && k.plural == def.plural)
            .filter(|(k, _)| ns.is_none_or(|ns| !def.namespaced || k.namespace == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// LIST with selectors and simple `limit`/`continue` paging (the continue token is an offset).
    pub fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        cont: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut items: Vec<Value> = self
            .all(def, ns)
            .into_iter()
            .filter(|o| labels.matches(o.pointer("/metadata/labels")))
            .filter(|o| fields.matches(o))
            .collect();
        let offset: usize = match cont {
            Some(c) if !c.is_empty() => c
                .parse()
                .map_err(|_| ApiError::bad_request("invalid continue token"))?,
            _ => 0,
        };
        items = items.into_iter().skip(offset).collect();
        let mut meta = json!({ "resourceVersion": self.current_rv() });
        if let Some(limit) = limit.filter(|l| *l > 0) {
            if items.len() > limit {
                let remaining = items.len() - limit;
                items.truncate(limit);
                meta["continue"] = json!((offset + limit).to_string());
                meta["remainingItemCount"] = json!(remaining);
            }
        }
        // Like the real server: typed (built-in) lists omit kind/apiVersion on items,
        // custom-resource lists (unstructured) keep them.
        if !def.custom {
            for it in &mut items {
                if let Some(o) = it.as_object_mut() {
                    o.remove("kind");
                    o.remove("apiVersion");
                }
            }
        }
        Ok(json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.api_version(),
            "metadata": meta,
            "items": items,
        }))
    }

    /// POST: create a new object. `generateName` is honoured.
    pub fn create(
        &mut self,
        def: &ResourceDef,
        ns: Option<&str>,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        check_type(def, &obj)?;
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let mut name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            match obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
            {
                Some(prefix) => name = format!("{prefix}{}", super::util::random_suffix()),
                None => {
                    return Err(ApiError::invalid(
                        def,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ))
                }
            }
        }
        if def.namespaced {
            let ns = ns.ok_or_else(|| ApiError::bad_request("a namespace is required"))?;
            match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
                Some(body_ns) if body_ns != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => obj["metadata"]["namespace"] = json!(ns),
            }
        }
        obj["metadata"]["name"] = json!(name);
        let k = key(def, ns, &name);
        if self.objects.contains_key(&k) {
            return Err(ApiError::already_exists(def, &name));
        }
        let rv = self.next_rv();
        let meta = obj["metadata"].as_object_mut().expect("metadata object");
        meta.insert("uid".into(), json!(random_uid()));
        meta.insert("resourceVersion".into(), json!(rv));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        self.objects.insert(k, obj.clone());
        self.changes
            .push((def.clone(), Change::Created(obj.clone())));
        Ok(obj)
    }

    /// Server-side apply. Create-or-update; the applied configuration is merged into the live
    /// object (objects merge recursively, everything else is replaced). Field ownership is not
    /// tracked, so there are never apply conflicts; `managedFields` holds one entry per manager.
    /// Status is left alone for resources with a status subresource, as the real server does.
    pub fn apply(
        &mut self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        mut body: Value,
        manager: &str,
    ) -> Result<(Value, bool), ApiError> {
        check_type(def, &body)?;
        match body.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) if n == name => {}
            Some(n) => {
                return Err(ApiError::bad_request(&format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            None => {
                return Err(ApiError::invalid(
                    def,
                    name,
                    "metadata.name: Required value: name is required",
                ))
            }
        }
        if def.status_subresource {
            if let Some(o) = body.as_object_mut() {
                o.remove("status");
            }
        }
        let managed = json!([{
            "manager": manager,
            "operation": "Apply",
            "apiVersion": def.api_version(),
            "time": now_rfc3339(),
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        }]);
        if self.peek(def, ns, name).is_none() {
            body["metadata"]["managedFields"] = managed;
            let created = self.create(def, ns, body)?;
            return Ok((created, true));
        }
        let new = self.update_with(def, ns, name, |obj| {
            // Bookkeeping fields are the server's, not the applier's.
            if let Some(m) = body["metadata"].as_object_mut() {
                for f in [
                    "uid",
                    "resourceVersion",
                    "creationTimestamp",
                    "generation",
                    "deletionTimestamp",
                    "managedFields",
                ] {
                    m.remove(f);
                }
            }
            merge_patch(obj, &body);
            let mut fields: Vec<Value> = obj["metadata"]["managedFields"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            fields.retain(|f| f["manager"] != json!(manager));
            fields.extend(managed.as_array().cloned().unwrap_or_default());
            obj["metadata"]["managedFields"] = Value::Array(fields);
            Ok(())
        })?;
        Ok((new, false))
    }

    /// Mutates an object in place and does the server's bookkeeping: a new resourceVersion,
    /// `generation` bumped when `spec` changed, and removal once `deletionTimestamp` is set and
    /// the last finalizer is gone. Returns the object as it is after the update.
    pub fn update_with(
        &mut self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let k = key(def, ns, name);
        let old = self
            .objects
            .get(&k)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let mut new = old.clone();
        f(&mut new)?;
        // Identity and deletion state cannot be changed by an update (only DELETE sets
        // deletionTimestamp).
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
        ] {
            match old["metadata"].get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        if new == old {
            return Ok(new);
        }
        if new.get("spec") != old.get("spec") {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        new["metadata"]["resourceVersion"] = json!(self.next_rv());
        let finalizers_empty = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        if new.pointer("/metadata/deletionTimestamp").is_some() && finalizers_empty {
            self.objects.remove(&k);
            self.changes
                .push((def.clone(), Change::Deleted(new.clone())));
        } else {
            self.objects.insert(k, new.clone());
            self.changes.push((
                def.clone(),
                Change::Updated {
                    old,
                    new: new.clone(),
                },
            ));
        }
        Ok(new)
    }

    /// PUT: full replacement with optimistic concurrency on `metadata.resourceVersion`.
    pub fn replace(
        &mut self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        body: Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        check_type(def, &body)?;
        let current = self.get(def, ns, name)?;
        if let Some(rv) = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            if Some(rv)
                != current
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
            {
                return Err(ApiError::conflict(
                    def,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
        }
        self.update_with(def, ns, name, |obj| {
            if status_only {
                obj["status"] = body.get("status").cloned().unwrap_or(Value::Null);
            } else {
                let status = obj.get("status").cloned();
                *obj = body;
                if def.status_subresource {
                    match status {
                        Some(s) => obj["status"] = s,
                        None => {
                            if let Some(o) = obj.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// DELETE. With finalizers the object only gets `deletionTimestamp` and stays (200 + object);
    /// without, it is gone at once. Returns (object, gone).
    pub fn delete(
        &mut self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(Value, bool), ApiError> {
        let k = key(def, ns, name);
        let mut obj = self
            .objects
            .get(&k)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let has_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if has_finalizers {
            if obj.pointer("/metadata/deletionTimestamp").is_none() {
                obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                obj["metadata"]["resourceVersion"] = json!(self.next_rv());
                self.objects.insert(k, obj.clone());
                self.changes
                    .push((def.clone(), Change::Deleting(obj.clone())));
            }
            return Ok((obj, false));
        }
        self.objects.remove(&k);
        // The DELETED watch event carries the resourceVersion of the deletion.
        obj["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.changes
            .push((def.clone(), Change::Deleted(obj.clone())));
        Ok((obj, true))
    }
}

fn check_type(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was not a JSON/YAML object",
        ));
    }
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    let kind = obj.get("kind").and_then(Value::as_str);
    if api_version.is_some_and(|v| v != def.api_version()) || kind.is_some_and(|k| k != def.kind) {
        return Err(ApiError::bad_request(&format!(
            "the API version in the data ({}) does not match the expected API version ({}) or kind {} != {}",
            api_version.unwrap_or(""),
            def.api_version(),
            kind.unwrap_or(""),
            def.kind
        )));
    }
    Ok(())
}

/// Adds `finalizer` to an object unless present.
pub fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let list = obj["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !list.iter().any(|f| f == finalizer) {
        let mut list = list;
        list.push(json!(finalizer));
        obj["metadata"]["finalizers"] = Value::Array(list);
    }
}

pub fn remove_finalizer(obj: &mut Value, finalizer: &str) {
    if let Some(list) = obj["metadata"]["finalizers"].as_array_mut() {
        list.retain(|f| f != finalizer);
    }
}
