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


# ---------------------------------------------------------------- watch/lease
# Watches are created synchronously by python-etcd3 (add_watch_callback waits
# for the "created" response), so writes made after watch()/watch_prefix()
# return are always seen. Events are collected on a thread; the main thread
# waits (bounded) for a marker event, never a fixed sleep.


def ev_text(ev, prev=False):
    kind = type(ev).__name__.replace("Event", "").upper()
    s = "%s key=%r value=%r create=%d mod=%d ver=%d lease=%s" % (
        kind, ev.key, ev.value, ev.create_revision, ev.mod_revision, ev.version,
        lease_name(ev.lease))
    if prev:
        if ev._event.HasField("prev_kv"):
            s += " prev=(value=%r mod=%d ver=%d lease=%s)" % (
                ev.prev_value, ev.prev_mod_revision, ev.prev_version, lease_name(ev.prev_lease))
        else:
            s += " prev=None"
    return s


LEASE_NAMES = {}


def lease_name(lease_id):
    if lease_id == 0:
        return "0"
    return LEASE_NAMES.get(lease_id, "<unnamed lease>")


class Collector(object):
    """Consumes a watch iterator on a thread; wait() blocks (bounded) until a
    predicate over the collected items holds."""

    def __init__(self, iterator):
        self.items = []
        self.error = None
        self.ended = threading.Event()
        self.cond = threading.Condition()
        self.th = threading.Thread(target=self._run, args=(iterator,), daemon=True)
        self.th.start()

    def _run(self, iterator):
        try:
            for x in iterator:
                with self.cond:
                    self.items.append(x)
                    self.cond.notify_all()
        except Exception as e:  # noqa
            self.error = e
        finally:
            self.ended.set()
            with self.cond:
                self.cond.notify_all()

    def wait(self, pred, timeout=15):
        deadline = time.time() + timeout
        with self.cond:
            while not pred(self.items) and not self.ended.is_set():
                left = deadline - time.time()
                if left <= 0:
                    print("timed out waiting (%d s); got %d items" % (timeout, len(self.items)))
                    return False
                self.cond.wait(left)
        return pred(self.items)


def has_value(v):
    def pred(items):
        for x in items:
            evs = x.events if hasattr(x, "events") else [x]
            if any(e.value == v for e in evs):
                return True
        return False
    return pred


@scenario("watch-start-revision-prev-kv")
def _():
    r1 = c.put("wr/k", "a")
    c.put("wr/other", "x")
    c.put("wr/k", "b")
    c.delete("wr/k")
    r5 = c.put("wr/k", "c")
    print("writes at revs %d..%d, watching wr/k from %d" % (
        r1.header.revision, r5.header.revision, r1.header.revision))
    it, cancel = c.watch_response("wr/k", start_revision=r1.header.revision, prev_kv=True)
    col = Collector(it)
    col.wait(has_value(b"c"))
    c.put("wr/k", "end")
    col.wait(has_value(b"end"))
    cancel()
    col.ended.wait(10)
    for resp in col.items:
        print("response header.rev=%d events:" % resp.header.revision)
        for ev in resp.events:
            print("  ", ev_text(ev, prev=True))
    print("iterator ended after cancel:", col.ended.is_set(), "error:", col.error)


@scenario("watch-prefix-iterator-cancel")
def _():
    it, cancel = c.watch_prefix("wp/")
    col = Collector(it)
    c.put("wp/a", "1")
    c.put("wpx", "outside")
    c.put("wp", "outside")
    c.put("wp/b", "2")
    c.delete("wp/a")
    c.put("wp/a", "3")
    c.put("wp/end", "end")
    col.wait(has_value(b"end"))
    cancel()
    ended = col.ended.wait(10)
    c.put("wp/after", "not seen")
    for ev in col.items:
        print("event", ev_text(ev))
    print("iterator ended after cancel:", ended, "error:", col.error)
    print("events after cancel:", [e.key for e in col.items if e.key == b"wp/after"])


@scenario("watch-ids-several-watchers")
def _():
    got = {}
    lock = threading.Lock()

    def cb_for(name):
        def cb(resp):
            with lock:
                if isinstance(resp, Exception):
                    got.setdefault(name, []).append("ERR " + err_text(resp))
                else:
                    got.setdefault(name, []).extend(ev_text(e, prev=True) for e in resp.events)
        return cb
    ids = [c.add_watch_callback("wi/k", cb_for("key")),
           c.add_watch_callback("wi/k", cb_for("key+prev_kv"), prev_kv=True),
           c.add_watch_callback("wi/", cb_for("range wi/..wi/l"), range_end="wi/l"),
           c.add_watch_callback("wi/l", cb_for("from wi/l"), range_end="\0")]
    print("watch ids (one stream):", ids)
    c.put("wi/k", "1")
    c.put("wi/z", "2")
    c.delete("wi/k")
    c.put("wi/k", "end")
    c.put("wi/z", "end")
    deadline = time.time() + 15
    want = {"key": 3, "key+prev_kv": 3, "range wi/..wi/l": 3, "from wi/l": 2}
    while time.time() < deadline:
        with lock:
            if all(len(got.get(k, [])) >= n for k, n in want.items()):
                break
        time.sleep(0.05)
    for i in ids:
        c.cancel_watch(i)
    for name in want:
        for e in got.get(name, []):
            print(name, "|", e)


@scenario("watch-response-grouping")
def _():
    c.put("wg/c", "0")
    it, cancel = c.watch_prefix_response("wg/", prev_kv=True)
    col = Collector(it)
    t = c.transactions
    c.transaction(compare=[], success=[t.put("wg/a", "1"), t.put("wg/b", "2"), t.delete("wg/c")], failure=[])
    c.delete_prefix("wg/")
    lease = c.lease(60)
    LEASE_NAMES[lease.id] = "<Lg>"
    c.put("wg/x", "x", lease=lease)
    c.put("wg/y", "y", lease=lease)
    lease.revoke()
    c.put("wg/end", "end")
    col.wait(has_value(b"end"))
    cancel()
    col.ended.wait(10)
    for resp in col.items:
        print("response header.rev=%d events:" % resp.header.revision)
        for ev in resp.events:
            print("  ", ev_text(ev, prev=True))


@scenario("watch-compacted-revision")
def _():
    r1 = c.put("wc/k", "a")
    c.put("wc/k", "b")
    r3 = c.put("wc/k", "c")
    c.compact(r3.header.revision)
    for name, rev in (("compacted", r1.header.revision), ("compact point", r3.header.revision)):
        it, cancel = c.watch("wc/k", start_revision=rev)
        col = Collector(it)
        col.wait(lambda items: len(items) >= 1, timeout=10)
        cancel()
        col.ended.wait(10)
        print("watch from %s rev -> events %r error %s" % (
            name, [ev_text(e) for e in col.items],
            "None" if col.error is None else "%s compacted_revision=%s" % (
                type(col.error).__name__,
                "r3" if getattr(col.error, "compacted_revision", None) == r3.header.revision
                else getattr(col.error, "compacted_revision", None))))
    try:
        r = c.watch_once("wc/k", timeout=1)
        print("watch_once (no writes) ->", ev_text(r))
    except Exception as e:  # noqa
        print("watch_once (no writes) ->", err_text(e))


@scenario("lease-lifecycle")
def _():
    t0 = time.time()
    lease = c.lease(60)
    LEASE_NAMES[lease.id] = "<L1>"
    print("grant ttl:", lease.ttl, "id nonzero:", lease.id != 0)
    c.put("lc/a", "1", lease=lease)
    c.put("lc/b", "2", lease=lease.id)
    c.put("lc/c", "3")
    for v, m in c.get_prefix("lc/"):
        print("get", v, meta(m).replace("lease=%d" % m.lease_id, "lease=" + lease_name(m.lease_id)))
    info = c.get_lease_info(lease.id)
    el = time.time() - t0
    print("info id ok:", info.ID == lease.id, "grantedTTL:", info.grantedTTL,
          "TTL consistent:", int(60 - el) - 1 <= info.TTL <= 60, "keys:", sorted(info.keys))
    print("~ info TTL", info.TTL, "elapsed %.2f" % el)
    rs = lease.refresh()
    print("refresh ->", [(r.ID == lease.id, r.TTL) for r in rs])
    print("granted_ttl:", lease.granted_ttl, "keys:", sorted(lease.keys))
    lease.revoke()
    for key in ("lc/a", "lc/b", "lc/c"):
        show_get(key)
    info = c.get_lease_info(lease.id)
    print("after revoke: TTL=%d grantedTTL=%d keys=%r" % (info.TTL, info.grantedTTL, list(info.keys)))
    try:
        lease.revoke()
        print("revoke again -> ok")
    except Exception as e:  # noqa
        print("revoke again ->", err_text(e))
    rs = lease.refresh()
    print("refresh revoked ->", [(r.ID == lease.id, r.TTL) for r in rs])


@scenario("lease-explicit-id-and-unknown")
def _():
    lease = c.lease(30, lease_id=4242)
    LEASE_NAMES[4242] = "4242"
    print("grant id=4242 -> id=%d ttl=%d" % (lease.id, lease.ttl))
    try:
        c.lease(30, lease_id=4242)
        print("grant same id again -> ok")
    except Exception as e:  # noqa
        print("grant same id again ->", err_text(e))
    short = c.lease(1)
    LEASE_NAMES[short.id] = "<short>"
    print("grant ttl=1 -> ttl=%d" % short.ttl)
    try:
        c.put("lu/k", "v", lease=999)
        print("put with unknown lease -> ok")
    except Exception as e:  # noqa
        print("put with unknown lease ->", err_text(e))
    show_get("lu/k")
    info = c.get_lease_info(999)
    print("info unknown -> ID=%d TTL=%d grantedTTL=%d keys=%r" % (info.ID, info.TTL, info.grantedTTL, list(info.keys)))
    try:
        print("refresh unknown ->", [(r.ID, r.TTL) for r in c.refresh_lease(999)])
    except Exception as e:  # noqa
        print("refresh unknown ->", err_text(e))
    try:
        c.revoke_lease(999)
        print("revoke unknown -> ok")
    except Exception as e:  # noqa
        print("revoke unknown ->", err_text(e))
    c.revoke_lease(4242)
    print("revoked 4242")


@scenario("lease-expiry-seen-by-watch")
def _():
    lease = c.lease(2)
    LEASE_NAMES[lease.id] = "<L2s>"
    print("grant ttl:", lease.ttl)
    c.put("le/k", "v", lease=lease)
    it, cancel = c.watch("le/k", prev_kv=True)
    col = Collector(it)
    t0 = time.time()
    col.wait(lambda items: len(items) >= 1, timeout=20)
    el = time.time() - t0
    cancel()
    col.ended.wait(10)
    for ev in col.items:
        print("event", ev_text(ev, prev=True))
    print("expired within 1..10 s:", 1 <= el <= 10)
    print("~ expired after %.2f s" % el)
    show_get("le/k")
    info = c.get_lease_info(lease.id)
    print("info after expiry: TTL=%d keys=%r" % (info.TTL, list(info.keys)))



# ---------------------------------------------------------------- auth
# Last: it enables auth (and disables it again at its end). python-etcd3 0.12 has no user or
# role API: users, roles and permissions are made through its generated Auth stub
# (etcdrpc.AuthStub) on the client's channel, as root once auth is on. Its user/password
# client sends the token both as gRPC call credentials, which grpcio refuses on a plaintext
# channel, and as metadata: the scenario shows that refusal once, then drops the call
# credentials so that the metadata alone carries the token. Tokens are never printed.
from etcd3 import etcdrpc  # noqa: E402
from etcd3.etcdrpc import auth_pb2  # noqa: E402

PERM = auth_pb2.Permission


def auth_call(name, method, req, md=None):
    """One Auth RPC (etcdrpc.AuthStub method) with optional token metadata; prints its result."""
    try:
        r = method(req, 10, md)
    except Exception as e:  # noqa
        print(name, "->", err_text(e))
        return None
    fields = []
    for f in ("users", "roles"):
        if hasattr(r, f) and type(r).__name__ != "AuthenticateResponse":
            fields.append("%s=%r" % (f, list(getattr(r, f))))
    if hasattr(r, "perm"):
        fields.append("perm=%r" % [(PERM.Type.Name(x.permType), x.key, x.range_end) for x in r.perm])
    if hasattr(r, "token"):
        fields.append("token non-empty=%s" % bool(r.token))
    print(name, "-> ok", " ".join(fields))
    return r


def token_md(user, password):
    r = etcdrpc.AuthStub(c.channel).Authenticate(
        etcdrpc.AuthenticateRequest(name=user, password=password), 10)
    return (("token", r.token),)


def user_client(user, password):
    """etcd3.client(user=..., password=...) with the call credentials dropped (see above)."""
    cl = etcd3.client(host=host, port=port, timeout=10, user=user, password=password)
    cl.call_credentials = None
    cl.watcher._credentials = None
    return cl


def attempt(name, f, *args, **kw):
    try:
        r = f(*args, **kw)
    except Exception as e:  # noqa
        print(name, "->", err_text(e))
        return None
    if isinstance(r, tuple) and len(r) == 2 and (r[1] is None or hasattr(r[1], "mod_revision")):
        print(name, "->", r[0])
    elif isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], bool):
        print(name, "->", r[0], [repr_op(x) if not isinstance(x, list) else
                                  [(v, m.key) for v, m in x] for x in r[1]])
    elif type(r).__name__ == "generator" or isinstance(r, list):
        print(name, "->", [(m.key, v) for v, m in r])
    elif type(r).__name__ in ("PutResponse", "DeleteRangeResponse"):
        print(name, "-> ok")
    else:
        print(name, "->", r if isinstance(r, (bool, int, str, bytes, type(None))) else type(r).__name__)
    return r


def raw_watch(name, md, key, range_end=b""):
    """The first WatchResponse for a watch on key (created, or cancelled with a reason)."""
    req = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(key=key, range_end=range_end))
    stop = threading.Event()

    def requests():  # the request stream stays open until the answer is in
        yield req
        stop.wait(15)
    call = etcdrpc.WatchStub(c.channel).Watch(requests(), 10, md)
    try:
        r = next(call)
        print(name, "-> created=%s canceled=%s cancel_reason=%r events=%d" % (
            r.created, r.canceled, r.cancel_reason, len(r.events)))
    except Exception as e:  # noqa
        print(name, "->", err_text(e))
    finally:
        stop.set()
        call.cancel()


@scenario("auth", needs="auth")
def _():
    a = etcdrpc.AuthStub(c.channel)
    R = etcdrpc
    auth_call("UserAdd root", a.UserAdd, R.AuthUserAddRequest(name="root", password="rootpw"))
    auth_call("AuthEnable (root lacks the root role)", a.AuthEnable, R.AuthEnableRequest())
    auth_call("RoleAdd root", a.RoleAdd, R.AuthRoleAddRequest(name="root"))
    auth_call("UserGrantRole root root", a.UserGrantRole, R.AuthUserGrantRoleRequest(user="root", role="root"))
    auth_call("UserAdd alice", a.UserAdd, R.AuthUserAddRequest(name="alice", password="apw"))
    auth_call("UserAdd alice again", a.UserAdd, R.AuthUserAddRequest(name="alice", password="x"))
    auth_call("UserAdd ''", a.UserAdd, R.AuthUserAddRequest(name="", password="x"))
    auth_call("RoleAdd r", a.RoleAdd, R.AuthRoleAddRequest(name="r"))
    for perm in (PERM(permType=PERM.READWRITE, key=b"au/rw/", range_end=b"au/rw0"),
                 PERM(permType=PERM.READ, key=b"au/ro"),
                 PERM(permType=PERM.WRITE, key=b"au/wo/a", range_end=b"au/wo/m")):
        auth_call("RoleGrantPermission r %s %r %r" % (PERM.Type.Name(perm.permType), perm.key, perm.range_end),
                  a.RoleGrantPermission, R.AuthRoleGrantPermissionRequest(name="r", perm=perm))
    auth_call("RoleGrantPermission nobody", a.RoleGrantPermission,
              R.AuthRoleGrantPermissionRequest(name="nobody", perm=PERM(key=b"x")))
    auth_call("UserGrantRole alice r", a.UserGrantRole, R.AuthUserGrantRoleRequest(user="alice", role="r"))
    auth_call("UserGrantRole alice nobody", a.UserGrantRole, R.AuthUserGrantRoleRequest(user="alice", role="nobody"))
    auth_call("UserList", a.UserList, R.AuthUserListRequest())
    auth_call("RoleList", a.RoleList, R.AuthRoleListRequest())
    auth_call("UserGet alice", a.UserGet, R.AuthUserGetRequest(name="alice"))
    auth_call("RoleGet r", a.RoleGet, R.AuthRoleGetRequest(role="r"))
    auth_call("UserGet nobody", a.UserGet, R.AuthUserGetRequest(name="nobody"))
    for k, v in (("au/rw/1", "rw1"), ("au/ro", "ro"), ("au/wo/b", "wo"), ("au/secret", "s")):
        c.put(k, v)
    auth_call("AuthEnable", a.AuthEnable, R.AuthEnableRequest())

    print("-- no credentials, wrong ones")
    attempt("get au/ro without a token", c.get, "au/ro")
    auth_call("AuthEnable without a token", a.AuthEnable, R.AuthEnableRequest())
    for user, pw in (("alice", "wrong"), ("nobody", "pw")):
        try:
            etcd3.client(host=host, port=port, timeout=10, user=user, password=pw)
            print("client(user=%r) -> ok" % user)
        except Exception as e:  # noqa
            print("client(user=%r) ->" % user, err_text(e))
    attempt("get au/ro with a made-up token", c.kvstub.Range, R.RangeRequest(key=b"au/ro"), 10,
            (("token", "abcdefghijklmnop.1"),))
    auth_call("Authenticate alice", a.Authenticate, R.AuthenticateRequest(name="alice", password="apw"))
    plain = etcd3.client(host=host, port=port, timeout=10, user="alice", password="apw")
    attempt("get with the token as call credentials on a plaintext channel", plain.get, "au/ro")
    plain.close()

    print("-- alice: what role r allows")
    al = user_client("alice", "apw")
    attempt("get au/rw/1", al.get, "au/rw/1")
    attempt("put au/rw/2", al.put, "au/rw/2", "rw2")
    attempt("get_prefix au/rw/", al.get_prefix, "au/rw/")
    attempt("get au/ro", al.get, "au/ro")
    attempt("put au/ro", al.put, "au/ro", "x")
    attempt("delete au/ro", al.delete, "au/ro")
    attempt("put au/wo/b", al.put, "au/wo/b", "wo2")
    attempt("get au/wo/b", al.get, "au/wo/b")
    attempt("put au/wo/m (range end)", al.put, "au/wo/m", "x")
    attempt("get au/secret", al.get, "au/secret")
    attempt("get_prefix au/", al.get_prefix, "au/")
    attempt("delete_prefix au/rw/", al.delete_prefix, "au/rw/")
    t = al.transactions
    attempt("txn value(au/ro)==ro: put au/rw/t / get au/ro", al.transaction,
            compare=[t.value("au/ro") == "ro"], success=[t.put("au/rw/t", "t")], failure=[t.get("au/ro")])
    attempt("txn ...: put au/rw/t / put au/ro (failure branch denied)", al.transaction,
            compare=[t.value("au/ro") == "ro"], success=[t.put("au/rw/t", "t2")], failure=[t.put("au/ro", "no")])
    attempt("txn value(au/secret)==s (compare denied)", al.transaction,
            compare=[t.value("au/secret") == "s"], success=[], failure=[])
    md = al.metadata
    auth_call("alice UserGet alice", a.UserGet, R.AuthUserGetRequest(name="alice"), md)
    auth_call("alice RoleGet r", a.RoleGet, R.AuthRoleGetRequest(role="r"), md)
    auth_call("alice UserGet root", a.UserGet, R.AuthUserGetRequest(name="root"), md)
    auth_call("alice RoleGet root", a.RoleGet, R.AuthRoleGetRequest(role="root"), md)
    auth_call("alice UserList", a.UserList, R.AuthUserListRequest(), md)
    auth_call("alice UserAdd mallory", a.UserAdd, R.AuthUserAddRequest(name="mallory", password="x"), md)
    auth_call("alice AuthDisable", a.AuthDisable, R.AuthDisableRequest(), md)

    print("-- alice: watches")
    got, done = [], threading.Event()

    def cb(resp):
        if isinstance(resp, Exception):
            got.append("ERR " + err_text(resp))
            done.set()
            return
        for ev in resp.events:
            got.append("%s %s=%s" % (type(ev).__name__, ev.key.decode(), ev.value.decode()))
            if ev.value == b"end":
                done.set()
    wid = attempt("add_watch_prefix_callback au/rw/", al.add_watch_prefix_callback, "au/rw/", cb)
    al.put("au/rw/w", "w")
    al.put("au/rw/w", "end")
    done.wait(15)
    if wid is not None:
        al.cancel_watch(wid)
    print("events:", got)
    raw_watch("watch au/ro", md, b"au/ro")
    raw_watch("watch au/secret", md, b"au/secret")
    raw_watch("watch au/ (a wider range)", md, b"au/", b"au0")
    raw_watch("watch au/ro without a token", None, b"au/ro")

    print("-- leases: revoking needs write access to every key attached")
    lease = attempt("alice lease(60)", al.lease, 60)
    rt = user_client("root", "rootpw")
    if lease is not None:
        attempt("root put au/secret with alice's lease", rt.put, "au/secret", "leased", lease=lease.id)
        attempt("alice put au/rw/l with that lease", al.put, "au/rw/l", "l", lease=lease.id)
        attempt("alice revoke_lease", al.revoke_lease, lease.id)
        attempt("root revoke_lease", rt.revoke_lease, lease.id)
        attempt("get au/secret (root)", rt.get, "au/secret")

    print("-- changes to the auth store: old tokens, passwords, users")
    auth_call("root RoleGrantPermission r READ au/secret", a.RoleGrantPermission,
              R.AuthRoleGrantPermissionRequest(name="r", perm=PERM(permType=PERM.READ, key=b"au/secret")), rt.metadata)
    attempt("alice get au/ro (token from before the change)", al.get, "au/ro")
    al2 = user_client("alice", "apw")
    attempt("alice get au/secret (new token)", al2.get, "au/secret")
    auth_call("root RoleRevokePermission r au/secret", a.RoleRevokePermission,
              R.AuthRoleRevokePermissionRequest(role="r", key=b"au/secret"), rt.metadata)
    rt = user_client("root", "rootpw")
    auth_call("root UserChangePassword alice", a.UserChangePassword,
              R.AuthUserChangePasswordRequest(name="alice", password="apw2"), rt.metadata)
    for pw in ("apw", "apw2"):
        auth_call("Authenticate alice %s" % pw, a.Authenticate, R.AuthenticateRequest(name="alice", password=pw))
    rt = user_client("root", "rootpw")
    auth_call("root UserRevokeRole alice r", a.UserRevokeRole,
              R.AuthUserRevokeRoleRequest(name="alice", role="r"), rt.metadata)
    al3 = user_client("alice", "apw2")
    attempt("alice get au/ro without the role", al3.get, "au/ro")
    rt = user_client("root", "rootpw")
    auth_call("root UserRevokeRole root root", a.UserRevokeRole,
              R.AuthUserRevokeRoleRequest(name="root", role="root"), rt.metadata)
    auth_call("root UserDelete root", a.UserDelete, R.AuthUserDeleteRequest(name="root"), rt.metadata)
    auth_call("root RoleDelete root", a.RoleDelete, R.AuthRoleDeleteRequest(role="root"), rt.metadata)
    auth_call("root UserDelete alice", a.UserDelete, R.AuthUserDeleteRequest(name="alice"), rt.metadata)
    rt = user_client("root", "rootpw")
    auth_call("root RoleDelete r", a.RoleDelete, R.AuthRoleDeleteRequest(role="r"), rt.metadata)
    rt = user_client("root", "rootpw")
    auth_call("Authenticate alice (deleted)", a.Authenticate, R.AuthenticateRequest(name="alice", password="apw2"))
    auth_call("root UserList", a.UserList, R.AuthUserListRequest(), rt.metadata)
    auth_call("root RoleList", a.RoleList, R.AuthRoleListRequest(), rt.metadata)
    auth_call("root AuthDisable", a.AuthDisable, R.AuthDisableRequest(), rt.metadata)

    print("-- disabled again")
    attempt("get au/ro without a token", c.get, "au/ro")
    # (Not a request with a token from before: etcd 3.4 refuses it as an invalid auth token,
    # etcd 3.7 ignores it.)
    auth_call("Authenticate root", a.Authenticate, R.AuthenticateRequest(name="root", password="rootpw"))
    auth_call("AuthDisable again", a.AuthDisable, R.AuthDisableRequest())
    attempt("delete_prefix au/", c.delete_prefix, "au/")


c.close()
