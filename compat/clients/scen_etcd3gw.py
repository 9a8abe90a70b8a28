"""etcd3gw 2.7.0 scenarios (OpenStack's client of etcd's JSON gateway, over HTTP).
Usage: scen_etcd3gw.py HOST PORT

Prints "## scenario NAME" blocks of stable text. An exception ends its scenario with
"ERROR <class> <args>". Lines starting with "~ " are informational and not compared.
Watches start from a known revision (history is replayed), so no step waits on time,
except watch_once's own timeout on a key that never changes.
"""
import os
import json
import sys
import warnings

import etcd3gw
from etcd3gw import exceptions

warnings.simplefilter("ignore")  # etcd3gw's DeprecationWarnings are not behaviour
host, port = sys.argv[1], int(sys.argv[2])
c = etcd3gw.client(host=host, port=port, timeout=10)


def body_message(body):
    """The message of an error body. etcd 3.4 writes {"error","message","code"},
    etcd 3.6+ {"code","message"} (and a JSON 404 where 3.4 writes the text
    "Not Found"); the HTTP status is in the exception's args, and compat/curl
    compares whole bodies against 3.4."""
    try:
        return json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        return body.strip()


def err_text(e):
    parts = ["ERROR", type(e).__module__ + "." + type(e).__name__]
    for a in e.args:
        parts.append(repr(a))
    if getattr(e, "detail_text", None) is not None:
        parts.append(repr(body_message(e.detail_text)))
    if type(e).__module__ == "builtins":
        import traceback
        parts.append("at line %d" % traceback.extract_tb(e.__traceback__)[-1].lineno)
    return " ".join(parts)


def scenario(name):
    def deco(f):
        print("## scenario %s" % name, flush=True)
        try:
            f()
        except Exception as e:  # noqa
            print(err_text(e), flush=True)
        return f
    return deco


def meta(m):
    """Metadata of a key as etcd3gw returns it (decoded key, string revisions)."""
    return "key=%r create=%s mod=%s ver=%s lease=%s" % (
        m.get("key"), m.get("create_revision"), m.get("mod_revision"), m.get("version"),
        "yes" if m.get("lease") else "no")


def revision():
    return int(c.status()["header"]["revision"])


def event_text(ev):
    kv = ev["kv"]
    return "%s key=%r value=%r mod=%s" % (ev.get("type", "PUT"), kv["key"], kv.get("value"), kv.get("mod_revision"))


@scenario("kv")
def _():
    print("api_path", c.api_path)
    print("put", c.put("foo", "bar"))
    print("get", c.get("foo"))
    print("get missing", c.get("missing"))
    for value, m in c.get("foo", metadata=True):
        print("get metadata", value, meta(m))
    print("put bytes", c.put(b"bin\x00key", b"\xff\x00v"))
    print("get bytes", c.get(b"bin\x00key"))
    for k, v in (("p/a", "1"), ("p/b", "2"), ("p/c", "3"), ("q", "4")):
        c.put(k, v)
    print("get_prefix", [(v, meta(m)) for v, m in c.get_prefix("p/")])
    print("get_prefix descend by key", [v for v, _ in c.get_prefix("p/", sort_order="descend", sort_target="key")])
    print("get_all", [v for v, _ in c.get_all()])
    print("delete", c.delete("p/a"))
    print("delete missing", c.delete("p/a"))
    print("delete_prefix", c.delete_prefix("p/"))
    print("get_prefix after", c.get_prefix("p/"))
    print("revision", revision())


@scenario("transactions")
def _():
    print("create new", c.create("t/new", "v1"))
    print("create existing", c.create("t/new", "v2"))
    print("get", c.get("t/new"))
    print("replace matching", c.replace("t/new", "v1", "v3"))
    print("replace stale", c.replace("t/new", "v1", "v4"))
    print("replace missing key", c.replace("t/none", "v1", "v4"))
    print("get", c.get("t/new"))
    r = c.transaction({
        "compare": [{"key": "dC9uZXc=", "result": "EQUAL", "target": "VALUE", "value": "djM="}],
        "success": [{"request_range": {"key": "dC9uZXc="}}, {"request_put": {"key": "dC9vdGhlcg==", "value": "eA=="}}],
        "failure": [],
    })
    print("transaction succeeded", r.get("succeeded"), "responses", [sorted(x) for x in r.get("responses", [])])
    print("transaction range", r["responses"][0]["response_range"]["kvs"][0]["value"])
    print("revision", revision())


@scenario("lease")
def _():
    lease = c.lease(60)
    print("lease id positive", lease.id > 0)
    ttl = lease.ttl()
    print("ttl in (0, 60]", 0 < ttl <= 60)
    print("put with lease", c.put("l/k1", "v", lease=lease), c.put("l/k2", "v", lease=lease))
    print("keys", sorted(lease.keys()))
    print("refresh", lease.refresh())
    for _, m in c.get("l/k1", metadata=True):
        print("key has the lease", m.get("lease") == str(lease.id))
    print("create with lease", c.create("l/k3", "v", lease=lease))
    print("keys", sorted(lease.keys()))
    print("revoke", lease.revoke())
    print("ttl after revoke", lease.ttl())
    print("keys after revoke", lease.keys())
    print("get after revoke", c.get_prefix("l/"))
    print("refresh after revoke", lease.refresh())


@scenario("lease errors")
def _():
    lease = c.lease(60)
    lease.revoke()
    try:
        lease.revoke()
    except exceptions.Etcd3Exception as e:
        print("second revoke:", err_text(e))
    try:
        c.put("l/x", "v", lease=lease)
    except exceptions.Etcd3Exception as e:
        print("put with revoked lease:", err_text(e))


@scenario("watch")
def _():
    c.put("w/a", "1")
    start = revision()
    c.put("w/a", "2")
    c.put("w/b", "3")
    c.delete("w/a")
    print("watch_once", event_text(c.watch_once("w/a", timeout=10, start_revision=start)))
    print("watch_once from next", event_text(c.watch_once("w/a", timeout=10, start_revision=start + 1)))
    events, cancel = c.watch_prefix("w/", start_revision=start)
    got = []
    for ev in events:
        got.append(event_text(ev))
        if len(got) == 4:
            cancel()
    print("watch_prefix", got)
    events, cancel = c.watch("w/a", start_revision=start + 1, prev_kv=True)
    for ev in events:
        print("watch prev_kv", event_text(ev), "prev value (base64)", ev.get("prev_kv", {}).get("value"))
        cancel()
    try:
        c.watch_once("w/never", timeout=1)
    except exceptions.WatchTimedOut as e:
        print("watch_once timed out", type(e).__name__)


@scenario("watch_prefix_once")
def _():
    c.put("wp/a", "1")
    start = revision()
    try:
        print("watch_prefix_once", event_text(c.watch_prefix_once("wp/", timeout=2, start_revision=start)))
    except exceptions.WatchTimedOut:
        print("watch_prefix_once timed out (etcd3gw encodes range_end twice)")


@scenario("lock")
def _():
    first = c.lock(id="job", ttl=60)
    second = c.lock(id="job", ttl=60)
    print("acquire", first.acquire())
    print("is_acquired", first.is_acquired())
    print("second acquire", second.acquire())
    print("second is_acquired", second.is_acquired())
    print("refresh", first.refresh())
    print("second release (not holder)", second.release())
    print("release", first.release())
    print("release again", first.release())
    print("second acquire", second.acquire())
    print("second release", second.release())
    with c.lock(id="ctx", ttl=60) as lk:
        print("context is_acquired", lk.is_acquired())
    print("after context", c.get("/locks/ctx"))


@scenario("status and members")
def _():
    s = c.status()
    # 3.6's fields (README: not yet on Cairn) are shown, not compared: the scenario holds
    # for 3.4 and 3.7 alike.
    newer = {"dbSizeQuota", "downgradeInfo", "storageVersion"}
    print("status fields", sorted(k for k in s if k not in newer))
    print("~ status fields of etcd 3.6+", sorted(k for k in s if k in newer))
    print("header fields", sorted(s["header"]))
    print("leader is member", s["leader"] == s["header"]["member_id"])
    ms = c.members()
    print("members", len(ms))
    for m in ms:
        print("member", m.get("name"), m.get("peerURLs"), m.get("clientURLs"), "learner" if m.get("isLearner") else "voter")
        print("member id matches header", m["ID"] == s["header"]["member_id"])


@scenario("errors")
def _():
    for what, f in (
        ("get empty key", lambda: c.get("")),
        ("put empty key", lambda: c.put("", "v")),
        ("post unknown path", lambda: c.post(c.get_url("/kv/nothing"), json={})),
        ("range compacted", lambda: c.post(c.get_url("/kv/range"), json={"key": "Zm9v", "revision": 1})),
    ):
        if what == "range compacted":
            c.post(c.get_url("/kv/compaction"), json={"revision": revision()})
        try:
            print(what, f())
        except exceptions.Etcd3Exception as e:
            print(what, err_text(e))


# A watcher's reader thread can outlive its cancel (etcd3gw does not join it): leave now.
sys.stdout.flush()
os._exit(0)
