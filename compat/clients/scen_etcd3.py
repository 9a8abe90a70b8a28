"""python-etcd3 0.12.0 scenarios. Usage: scen_etcd3.py HOST PORT

Prints "## scenario NAME [needs=FEATURE]" blocks of stable text. An exception
ends its scenario with "ERROR <class> <grpc code> <details>". Lines starting
with "~ " are informational and not compared.
"""
import sys
import threading
import time

import etcd3
import etcd3.exceptions
import grpc

host, port = sys.argv[1], int(sys.argv[2])
threading.excepthook = lambda args: None  # watch thread noise at close
c = etcd3.client(host=host, port=port, timeout=10)


def err_text(e):
    code = getattr(e, "code", None)
    det = getattr(e, "details", None)
    parts = ["ERROR", type(e).__module__ + "." + type(e).__name__]
    if callable(code):
        parts.append(str(code()))
    if callable(det):
        parts.append(repr(det()))
    elif not isinstance(e, grpc.RpcError):
        parts.append(repr(str(e)))
    if type(e).__module__ == "builtins":
        import traceback
        tb = traceback.extract_tb(e.__traceback__)[-1]
        parts.append("at line %d" % tb.lineno)
    if isinstance(e, etcd3.exceptions.Etcd3Exception) and e.__context__ is not None:
        ctx = e.__context__
        if isinstance(ctx, grpc.RpcError):
            parts += ["from", str(ctx.code()), repr(ctx.details())]
    return " ".join(parts)


def scenario(name, needs=None):
    def deco(f):
        print("## scenario %s%s" % (name, " needs=" + needs if needs else ""), flush=True)
        try:
            f()
        except Exception as e:  # noqa
            print(err_text(e), flush=True)
        return f
    return deco


def meta(m):
    return "key=%r create=%d mod=%d ver=%d lease=%d" % (
        m.key, m.create_revision, m.mod_revision, m.version, m.lease_id)


def range_at(prefix, rev):
    from etcd3 import etcdrpc, utils
    req = etcdrpc.RangeRequest(key=prefix.encode(),
                               range_end=utils.increment_last_byte(prefix.encode()),
                               revision=rev)
    return c.kvstub.Range(req, 10)


def show_get(key):
    v, m = c.get(key)
    print("get %r -> %r %s" % (key, v, meta(m) if m else "None"))


def repr_op(x):
    # RangeResponse-like list of (value, meta) tuples, or protobuf responses.
    if isinstance(x, list):
        return [(v, meta(m)) for v, m in x]
    name = type(x).__name__
    if name == "PutResponse":
        return "put(rev=%d)" % x.header.revision
    if name == "DeleteRangeResponse":
        return "delete(deleted=%d rev=%d)" % (x.deleted, x.header.revision)
    return name


@scenario("kv-put-get-delete")
def _():
    c.put("a/1", "one")
    c.put("a/2", "two")
    c.put("a/3", "three")
    c.put("b/1", "bee")
    show_get("a/1")
    show_get("missing")
    r = c.put("a/1", "uno", prev_kv=True)
    print("put prev_kv -> header.rev=%d prev=%r" % (r.header.revision, r.prev_kv.value))
    for v, m in c.get_prefix("a/"):
        print("prefix a/:", v, meta(m))
    print("delete a/2 ->", c.delete("a/2"))
    print("delete a/2 again ->", c.delete("a/2"))
    r = c.delete("a/3", prev_kv=True, return_response=True)
    print("delete prev_kv -> deleted=%d prev=%r rev=%d" % (
        r.deleted, [kv.value for kv in r.prev_kvs], r.header.revision))
    print("delete_prefix b/ -> deleted=%d" % c.delete_prefix("b/").deleted)
    print("get_all:", [(m.key, v) for v, m in c.get_all()])
    print("put_if_not_exists a/1 ->", c.put_if_not_exists("a/1", "x"))
    print("put_if_not_exists a/9 ->", c.put_if_not_exists("a/9", "nine"))
    print("replace a/9 nine->neuf ->", c.replace("a/9", "nine", "neuf"))
    print("replace a/9 nine->x ->", c.replace("a/9", "nine", "x"))
    show_get("a/9")
    r = c.get_range_response("a/", "a/5", count_only=True)
    print("count_only a/..a/5 -> count=%d kvs=%d" % (r.count, len(r.kvs)))
    r = c.get_prefix_response("a/", keys_only=True, limit=1)
    print("keys_only limit=1 -> count=%d more=%s kvs=%r" % (
        r.count, r.more, [(kv.key, kv.value) for kv in r.kvs]))


@scenario("kv-txn")
def _():
    c.put("t/k", "v1")
    c.put("t/k", "v2")
    _, m = c.get("t/k")
    t = c.transactions
    ok, resp = c.transaction(
        compare=[t.value("t/k") == "v2", t.version("t/k") == 2],
        success=[t.put("t/k", "v3"), t.get("t/k")],
        failure=[t.put("t/failed", "yes")])
    print("txn value==v2 & version==2 ->", ok, [repr_op(x) for x in resp])
    ok, resp = c.transaction(
        compare=[t.mod("t/k") < m.mod_revision],
        success=[t.put("t/k", "nope")],
        failure=[t.get("t/k"), t.delete("t/none")])
    print("txn mod<old ->", ok, [repr_op(x) for x in resp])
    ok, resp = c.transaction(
        compare=[t.create("t/k") > 0, t.value("t/k") != "zzz"],
        success=[t.get("t/k")],
        failure=[])
    print("txn create>0 & value!=zzz ->", ok, [repr_op(x) for x in resp])
    ok, resp = c.transaction(compare=[t.version("t/absent") == 0],
                             success=[t.put("t/absent", "created"), t.delete("t/k")],
                             failure=[])
    print("txn version(absent)==0 ->", ok, [repr_op(x) for x in resp])
    for v, m in c.get_prefix("t/"):
        print("t/:", v, meta(m))
    try:
        c.transaction(compare=[], success=[t.put("t/x", "1"), t.put("t/x", "2")], failure=[])
        print("txn duplicate put -> ok")
    except Exception as e:
        print("txn duplicate put ->", err_text(e))


@scenario("kv-sort")
def _():
    for k, v in [("s/c", "1"), ("s/a", "3"), ("s/b", "2"), ("s/a", "33")]:
        c.put(k, v)
    for order in ("ascend", "descend"):
        for target in ("key", "value", "version", "create", "mod"):
            r = c.get_prefix_response("s/", sort_order=order, sort_target=target)
            print("sort %s %s -> %s" % (order, target, [kv.key.decode() for kv in r.kvs]))
    print("get_all descend value ->", [m.key for v, m in c.get_all(sort_order="descend", sort_target="value")])


@scenario("kv-compact")
def _():
    r1 = c.put("c/k", "old")
    c.put("c/k", "new")
    r3 = c.put("c/k", "newer")
    old = r1.header.revision
    print("read rev before compact ->", [kv.value for kv in range_at("c/", old).kvs])
    c.compact(r3.header.revision)
    print("compacted to latest put")
    for rev in (old, r3.header.revision):
        try:
            r = range_at("c/", rev)
            print("read rev=put%s ->" % ("1" if rev == old else "3"), [kv.value for kv in r.kvs])
        except Exception as e:
            print("read rev=put%s ->" % ("1" if rev == old else "3"), err_text(e))
    try:
        c.compact(old)
        print("compact older again -> ok")
    except Exception as e:
        print("compact older again ->", err_text(e))
    try:
        c.compact(r3.header.revision + 1000)
        print("compact future -> ok")
    except Exception as e:
        print("compact future ->", err_text(e))


@scenario("status-members")
def _():
    s = c.status()
    print("~ status version=%s db_size=%d raft_index=%d raft_term=%d" % (
        s.version, s.db_size, s.raft_index, s.raft_term))
    print("status version looks like 3.x:", s.version.startswith("3."))
    print("status leader is a member:", s.leader is not None)
    print("status db_size>0:", s.db_size > 0, "raft_index>0:", s.raft_index > 0,
          "raft_term>0:", s.raft_term > 0)
    ms = list(c.members)
    print("members:", len(ms))
    for m in ms:
        print("member name=%r peer_urls=%r client_urls=%r id_nonzero=%s" % (
            m.name, m.peer_urls, m.client_urls, m.id != 0))
        print("leader id == member id:", s.leader is not None and s.leader.id == m.id)


@scenario("watch", needs="watch")
def _():
    events = []
    done = threading.Event()

    def cb(resp):
        if isinstance(resp, Exception):
            events.append("ERR " + err_text(resp))
            done.set()
            return
        for ev in resp.events:
            events.append("%s %s=%s" % (type(ev).__name__, ev.key.decode(), ev.value.decode()))
        if len(events) >= 3:
            done.set()

    holder = {}

    def add():
        try:
            holder["id"] = c.add_watch_prefix_callback("w/", cb)
        except Exception as e:  # noqa
            holder["err"] = e
        finally:
            holder["done"] = True

    th = threading.Thread(target=add, daemon=True)
    th.start()
    th.join(10)
    if "err" in holder:
        raise holder["err"]
    if "id" not in holder:
        print("ERROR watch create hung (10 s)")
        return
    c.put("w/1", "a")
    c.put("w/2", "b")
    c.delete("w/1")
    done.wait(10)
    c.cancel_watch(holder["id"])
    for e in events:
        print("event", e)


@scenario("lease", needs="lease")
def _():
    lease = c.lease(30)
    print("lease ttl:", lease.granted_ttl)
    c.put("l/k", "v", lease=lease)
    _, m = c.get("l/k")
    print("key has lease:", m.lease_id == lease.id)
    print("remaining ttl in (0,30]:", 0 < lease.remaining_ttl <= 30)
    print("keys:", lease.keys)
    lease.refresh()
    lease.revoke()
    show_get("l/k")


c.close()
