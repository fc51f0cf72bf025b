#!/usr/bin/env python3
"""A `blade` stand-in for tests: chaosblade's CLI for `k8s` experiments, as read in
chaosblade-io/chaosblade (commit d8c5473): cli/cmd/create.go (`actionRunEFunc`),
cli/cmd/command.go (`recordExpModel`), cli/cmd/destroy.go (`runDestroyWithUid`,
`destroyK8sExperimentWithoutRecord`, `checkAndForceRemoveForK8sExp`) and
exec/kubernetes/executor.go (`Exec`, `create`, `QueryStatus`).

- `create k8s <scope>-<target> <action> --flag value … [--uid U] [--waiting-time 20s]
  [--kubeconfig K]`: records the experiment locally (status Created) under `--uid` or 16 random
  hex digits *before* talking to the cluster, creates a ChaosBlade named after the uid (one
  experiment, every flag a matcher), then polls it once a second for up to `--waiting-time`
  (default 20s): Running → `{"code":200,"success":true,"result":"<uid>"}`; Error → a failure with
  the experiment's error; still Initialized → a failure "unexpected status". Killed while it
  polls (SIGINT/SIGTERM/SIGKILL), it leaves the ChaosBlade in the cluster, as the real one does.
- `destroy UID [--target k8s] [--kubeconfig K] [--force-remove]`: deletes the ChaosBlade and polls
  until it is gone (a 404 is success); with `--force-remove` the finalizer is removed too.
  Without a local record it needs `--target k8s --kubeconfig K`.
- `status UID`: the local record.

Every call's arguments are appended as one JSON line to $BLADE_LOG; the local records (the real
CLI's sqlite database) are kept in $BLADE_LOG.db.
"""
import json, os, re, secrets, sys, time, urllib.error, urllib.request

LOG = os.environ["BLADE_LOG"]
DB = LOG + ".db"


def answer(code, ok, result=None, error=None):
    body = {"code": code, "success": ok}
    if ok:
        body["result"] = result
    else:
        body["error"] = error
    (sys.stdout if ok else sys.stderr).write(json.dumps(body) + "\n")
    sys.exit(0 if ok else 1)


def flags(argv):
    out, rest, i = {}, [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            key = a[2:]
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            else:
                value = "true"
            out[key] = value
        else:
            rest.append(a)
        i += 1
    return out, rest


def load_db():
    try:
        with open(DB) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save_db(db):
    with open(DB + ".tmp", "w") as f:
        json.dump(db, f)
    os.replace(DB + ".tmp", DB)


def duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text or "")
    if not m:
        return 20.0
    n = float(m.group(1))
    return {"ms": n / 1000, "m": n * 60}.get(m.group(2), n)


class Cluster:
    def __init__(self, kubeconfig):
        path = kubeconfig or os.environ.get("KUBECONFIG", "")
        text = open(path).read()
        self.server = re.search(r"server:\s*(\S+)", text).group(1).rstrip("/")
        token = re.search(r"token:\s*(\S+)", text)
        self.token = token.group(1) if token else None

    def call(self, method, path, body=None, content_type="application/json"):
        req = urllib.request.Request(self.server + path, method=method)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, data, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


BLADES = "/apis/chaosblade.io/v1alpha1/chaosblades"


def create(argv):
    f, rest = flags(argv)
    if len(rest) < 3 or rest[0] != "k8s":
        answer(45000, False, error="less action command")
    scope, _, target = rest[1].partition("-")
    action = rest[2]
    uid = f.pop("uid", None) or secrets.token_hex(8)
    waiting = duration(f.pop("waiting-time", "20s"))
    kubeconfig = f.pop("kubeconfig", None)
    db = load_db()
    db[uid] = {"uid": uid, "command": "k8s", "subCommand": rest[1] + " " + action,
               "flag": " ".join(f"--{k} {v}" for k, v in f.items()), "status": "Created",
               "kubeconfig": kubeconfig, "waiting": waiting}
    save_db(db)
    cluster = Cluster(kubeconfig)
    blade = {"apiVersion": "chaosblade.io/v1alpha1", "kind": "ChaosBlade", "metadata": {"name": uid},
             "spec": {"experiments": [{"scope": scope, "target": target, "action": action,
                                       "desc": "created by blade command",
                                       "matchers": [{"name": k, "value": [v]} for k, v in f.items()]}]}}
    code, body = cluster.call("POST", BLADES, blade)
    if code >= 300:
        answer(53003, False, error=f"create failed: {body.get('message') if body else code}")
    deadline = time.monotonic() + waiting
    while True:
        code, cb = cluster.call("GET", f"{BLADES}/{uid}")
        phase = (cb or {}).get("status", {}).get("phase", "") if code == 200 else ""
        if phase == "Running":
            db = load_db()
            db[uid]["status"] = "Success"
            save_db(db)
            answer(200, True, result=uid)
        if phase == "Error":
            exps = cb.get("status", {}).get("expStatuses") or [{}]
            db = load_db()
            db[uid]["status"] = "Error"
            save_db(db)
            answer(53004, False, error=exps[0].get("error", "experiment failed"))
        if time.monotonic() >= deadline:
            answer(56000, False, error=f"unexpected status, expected status: running, but the real status: {phase}")
        time.sleep(1)


def destroy(argv):
    f, rest = flags(argv)
    if not rest:
        answer(45000, False, error="less parameter: uid")
    uid = rest[0]
    record = load_db().get(uid)
    k8s = f.get("target", "").lower() in ("k8s", "kubernetes")
    if record is None and not k8s:
        answer(47000, False, error=f"data not found: {uid}")
    kubeconfig = f.get("kubeconfig") or (record or {}).get("kubeconfig")
    if record is None and not kubeconfig:
        answer(45000, False, error="usage: blade destroy UID --target k8s --kubeconfig KUBECONFIG")
    cluster = Cluster(kubeconfig)
    code, body = cluster.call("DELETE", f"{BLADES}/{uid}")
    if code not in (200, 202, 404):
        answer(53005, False, error=f"delete failed: {body}")
    if f.get("force-remove") == "true":
        cluster.call("PATCH", f"{BLADES}/{uid}", {"metadata": {"finalizers": []}},
                     "application/merge-patch+json")
    deadline = time.monotonic() + float((record or {}).get("waiting", 20.0))
    while True:
        code, cb = cluster.call("GET", f"{BLADES}/{uid}")
        if code == 404:
            if record is not None:
                db = load_db()
                db[uid]["status"] = "Destroyed"
                save_db(db)
            answer(200, True, result={"uid": uid, "success": True, "statuses": [{"state": "Destroyed", "success": True}]})
        if time.monotonic() >= deadline:
            phase = (cb or {}).get("status", {}).get("phase", "")
            answer(56000, False, error=f"unexpected status, expected status: destroyed, but the real status: {phase}")
        time.sleep(1)


def status(argv):
    _, rest = flags(argv)
    record = load_db().get(rest[0]) if rest else None
    if record is None:
        answer(47000, False, error=f"data not found: {rest[0] if rest else ''}")
    answer(200, True, result=record)


with open(LOG, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
command = sys.argv[1] if len(sys.argv) > 1 else ""
{"create": create, "c": create, "destroy": destroy, "d": destroy, "status": status}.get(
    command, lambda _: answer(45000, False, error=f"unknown command {command}"))(sys.argv[2:])
