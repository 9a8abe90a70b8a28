"""aetcd 1.0.0 (asyncio) scenarios. Usage: scen_aetcd.py HOST PORT

Same block format as scen_etcd3.py: "## scenario NAME [needs=FEATURE]",
"ERROR ..." for an exception, "~ " lines are informational.
"""
import asyncio
import sys
import traceback

import aetcd
import aetcd.rtypes
from aetcd import rpc

host, port = sys.argv[1], int(sys.argv[2])


def err_text(e):
    parts = ["ERROR", type(e).__module__ + "." + type(e).__name__, repr(str(e))]
    cause = e.__cause__
    if cause is not None and hasattr(cause, "code"):
        parts += ["from", str(cause.code())]
    if type(e).__module__ == "builtins":
        parts.append("at line %d" % traceback.extract_tb(e.__traceback__)[-1].lineno)
    return " ".join(parts)


def kv(x):
    return "key=%r value=%r create=%d mod=%d ver=%d lease=%d" % (
        x.key, x.value, x.create_revision, x.mod_revision, x.version, x.lease)


async def kv_basic(c):
    for k, v in [(b"a/1", b"one"), (b"a/2", b"two"), (b"a/3", b"three"), (b"b/1", b"bee")]:
        r = await c.put(k, v)
        print("put %r -> rev=%d" % (k, r.header.revision))
    g = await c.get(b"a/1")
    print("get a/1 ->", kv(g), "header.rev=%d" % g.header.revision)
    print("get missing ->", await c.get(b"missing"))
    r = await c.put(b"a/1", b"uno", prev_kv=True)
    print("put prev_kv -> rev=%d prev=%s" % (r.header.revision, kv(r.prev_kv)))
    r = await c.get_prefix(b"a/")
    print("get_prefix a/ -> count=%d more=%s" % (r.count, r.more))
    for x in r:
        print("  ", kv(x))
    r = await c.get_range(b"a/2", b"b/2")
    print("get_range a/2..b/2 ->", [x.key for x in r])
    r = await c.get_all()
    print("get_all ->", [x.key for x in r])
    r = await c.delete(b"a/2", prev_kv=True)
    print("delete a/2 -> deleted=%d prev=%s rev=%d" % (r.deleted, kv(r.prev_kv), r.header.revision))
    print("delete a/2 again ->", await c.delete(b"a/2"))
    r = await c.delete_prefix(b"b/")
    print("delete_prefix b/ -> deleted=%d" % r.deleted)
    r = await c.delete_range(b"a/", b"a/3")
    print("delete_range a/..a/3 -> deleted=%d" % r.deleted)
    r = await c.get_all()
    print("get_all ->", [kv(x) for x in r])
    print("replace a/3 three->drei ->", await c.replace(b"a/3", b"three", b"drei"))
    print("replace a/3 three->x ->", await c.replace(b"a/3", b"three", b"x"))


async def kv_txn(c):
    await c.put(b"t/k", b"v1")
    r = await c.put(b"t/k", b"v2")
    old_mod = r.header.revision
    t = c.transactions
    ok, resp = await c.transaction(
        compare=[t.value(b"t/k") == b"v2", t.version(b"t/k") == 2, t.mod(b"t/k") == old_mod],
        success=[t.put(b"t/k", b"v3"), t.get(b"t/k")],
        failure=[t.put(b"t/fail", b"1")])
    print("txn value/version/mod eq ->", ok, show_resp(resp))
    ok, resp = await c.transaction(
        compare=[t.mod(b"t/k") < old_mod],
        success=[],
        failure=[t.get(b"t/", b"t0"), t.delete(b"t/k", prev_kv=True)])
    print("txn mod<old ->", ok, show_resp(resp))
    ok, resp = await c.transaction(
        compare=[t.create(b"t/k") == 0, t.value(b"t/zz") != b"q"],
        success=[t.put(b"t/k", b"again")],
        failure=[t.get(b"t/k")])
    print("txn create==0 ->", ok, show_resp(resp))


def show_resp(resp):
    out = []
    for x in resp:
        if isinstance(x, list):
            out.append([kv(y[1]) for y in x])
        elif hasattr(x, "kvs") or type(x).__name__ == "RangeResponse":
            out.append(["range", [kv(y) for y in x.kvs]])
        elif type(x).__name__ == "ResponseOp":
            w = x.WhichOneof("response")
            r = getattr(x, w)
            if w == "response_put":
                out.append("put(rev=%d)" % r.header.revision)
            else:
                out.append("%s(deleted=%d prev=%r)" % (w, r.deleted, [kv(y) for y in r.prev_kvs]))
        elif type(x).__name__ == "PutResponse":
            out.append("put(rev=%d)" % x.header.revision)
        elif type(x).__name__ == "DeleteRangeResponse":
            out.append("delete(deleted=%d prev=%r)" % (x.deleted, [kv(y) for y in x.prev_kvs]))
        else:
            out.append(type(x).__name__)
    return out


async def kv_sort(c):
    for k, v in [(b"s/c", b"1"), (b"s/a", b"3"), (b"s/b", b"2"), (b"s/a", b"33")]:
        await c.put(k, v)
    for order in ("ascend", "descend"):
        for target in ("key", "value", "version", "create", "mod"):
            r = await c.get_prefix(b"s/", sort_order=order, sort_target=target)
            print("sort %s %s -> %s" % (order, target, [x.key.decode() for x in r]))
    r = await c.get_prefix(b"s/", keys_only=True)
    print("keys_only ->", [(x.key, x.value) for x in r])


async def kv_compact(c):
    r1 = await c.put(b"c/k", b"old")
    await c.put(b"c/k", b"new")
    r3 = await c.put(b"c/k", b"newer")
    await c.compact(r3.header.revision)
    print("compacted")
    for name, rev in (("put1", r1.header.revision), ("put3", r3.header.revision)):
        try:
            resp = await c.kvstub.Range(rpc.RangeRequest(key=b"c/k", revision=rev), timeout=10)
            print("read rev=%s ->" % name, [x.value for x in resp.kvs])
        except Exception as e:
            print("read rev=%s -> ERROR" % name, type(e).__name__, e.code(), repr(e.details()))
    try:
        await c.compact(r1.header.revision)
        print("compact older -> ok")
    except Exception as e:
        print("compact older ->", err_text(e))


async def status_members(c):
    s = await c.status()
    print("~ status version=%s db_size=%d raft_index=%d raft_term=%d" % (
        s.version, s.db_size, s.raft_index, s.raft_term))
    print("version 3.x:", s.version.startswith("3."), "leader found:", s.leader is not None)
    async for m in c.members():
        print("member name=%r peer_urls=%r client_urls=%r" % (m.name, m.peer_urls, m.client_urls))


# ---------------------------------------------------------------- watch/lease
# aetcd creates a watch synchronously (watch() returns after the "created"
# response), so writes made afterwards are always seen. Events are consumed
# by a task; the scenario waits (bounded) for a marker value, never a sleep.
LEASE_NAMES = {}


def ev_text(ev):
    s = "%s key=%r value=%r create=%d mod=%d ver=%d lease=%s" % (
        ev.kind, ev.kv.key, ev.kv.value, ev.kv.create_revision, ev.kv.mod_revision,
        ev.kv.version, LEASE_NAMES.get(ev.kv.lease, ev.kv.lease))
    if ev.prev_kv is not None:
        s += " prev=(value=%r mod=%d ver=%d lease=%s)" % (
            ev.prev_kv.value, ev.prev_kv.mod_revision, ev.prev_kv.version,
            LEASE_NAMES.get(ev.prev_kv.lease, ev.prev_kv.lease))
    return s


class Collector:
    def __init__(self, w):
        self.w = w
        self.events = []
        self.error = None
        self.changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self):
        try:
            async for ev in self.w:
                self.events.append(ev)
                self.changed.set()
        except Exception as e:  # noqa
            self.error = e
        self.changed.set()

    async def wait(self, pred, timeout=15):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred(self.events) and not self.task.done():
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - loop.time()))
            except asyncio.TimeoutError:
                print("timed out waiting (%d s); got %d events" % (timeout, len(self.events)))
                return False
        return pred(self.events)

    async def stop(self):
        await self.w.cancel()
        try:
            await asyncio.wait_for(self.task, 10)
            return True
        except asyncio.TimeoutError:
            self.task.cancel()
            return False


def has_value(v):
    return lambda evs: any(e.kv.value == v for e in evs)


def show_err(e):
    if e is None:
        return "None"
    return err_text(e)


async def watch(c):
    r1 = await c.put(b"w/k", b"a")
    await c.put(b"w/other", b"x")
    await c.put(b"w/k", b"b")
    await c.delete(b"w/k")
    r5 = await c.put(b"w/k", b"c")
    print("writes at revs %d..%d" % (r1.header.revision, r5.header.revision))
    col = Collector(await c.watch(b"w/k", start_revision=r1.header.revision, prev_kv=True))
    await col.wait(has_value(b"c"))
    await c.put(b"w/k", b"end")
    await col.wait(has_value(b"end"))
    print("stopped:", await col.stop(), "error:", show_err(col.error))
    for ev in col.events:
        print("key+start_revision+prev_kv |", ev_text(ev))

    col = Collector(await c.watch_prefix(b"wp/"))
    puts = Collector(await c.watch_prefix(b"wp/", kind=aetcd.rtypes.EventKind.PUT))
    dels = Collector(await c.watch_prefix(b"wp/", kind=aetcd.rtypes.EventKind.DELETE))
    await c.put(b"wp/a", b"1")
    await c.put(b"wpx", b"outside")
    await c.put(b"wp/b", b"2")
    await c.delete(b"wp/a")
    await c.delete_prefix(b"wp/")
    await c.put(b"wp/end", b"end")
    await c.delete(b"wp/end")
    for name, cl, n in (("prefix", col, 6), ("prefix PUT only", puts, 3), ("prefix DELETE only", dels, 3)):
        await cl.wait(lambda evs: len(evs) >= n)
        print("stopped:", await cl.stop(), "error:", show_err(cl.error))
        for ev in cl.events:
            print(name, "|", ev_text(ev))
    await c.put(b"wp/after", b"after cancel")
    print("events after cancel:", sum(1 for cl in (col, puts, dels) for e in cl.events if e.kv.key == b"wp/after"))

    try:
        ev = await c.watch_once(b"w/once", timeout=1)
        print("watch_once (no writes) ->", ev_text(ev))
    except Exception as e:  # noqa
        print("watch_once (no writes) ->", err_text(e))


async def watch_compacted(c):
    r1 = await c.put(b"wc/k", b"a")
    await c.put(b"wc/k", b"b")
    r3 = await c.put(b"wc/k", b"c")
    await c.compact(r3.header.revision)
    for name, rev in (("compacted", r1.header.revision), ("compact point", r3.header.revision)):
        try:
            col = Collector(await c.watch(b"wc/k", start_revision=rev))
            await col.wait(lambda evs: len(evs) >= 1, timeout=10)
            await col.stop()
            print("watch from %s rev -> events %r error %s" % (
                name, [ev_text(e) for e in col.events], show_err(col.error)))
        except Exception as e:  # noqa
            print("watch from %s rev ->" % name, err_text(e))


async def lease(c):
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    ls = await c.lease(60)
    LEASE_NAMES[ls.id] = "<L1>"
    print("grant ttl:", ls.ttl, "id nonzero:", ls.id != 0)
    await c.put(b"lc/a", b"1", lease=ls.id)
    await c.put(b"lc/b", b"2", lease=ls.id)
    await c.put(b"lc/c", b"3")
    for x in await c.get_prefix(b"lc/"):
        print("get", kv(x).replace("lease=%d" % x.lease, "lease=" + LEASE_NAMES.get(x.lease, str(x.lease))))
    info = await c.get_lease_info(ls.id)
    el = loop.time() - t0
    print("info id ok:", info.ID == ls.id, "grantedTTL:", info.grantedTTL,
          "TTL consistent:", int(60 - el) - 1 <= info.TTL <= 60, "keys:", sorted(info.keys))
    print("~ info TTL", info.TTL, "elapsed %.2f" % el)
    r = await ls.refresh()
    print("refresh -> id ok:", r.ID == ls.id, "TTL:", r.TTL)
    print("granted_ttl:", await ls.granted_ttl(), "keys:", sorted(await ls.keys()))
    info = await c.get_lease_info(ls.id, keys=False)
    print("info keys=False -> keys:", list(info.keys))
    col = Collector(await c.watch_prefix(b"lc/", prev_kv=True))
    await ls.revoke()
    await c.put(b"lc/z", b"end")
    await col.wait(has_value(b"end"))
    await col.stop()
    for ev in col.events:
        print("watch lc/ |", ev_text(ev))
    for key in (b"lc/a", b"lc/b", b"lc/c"):
        g = await c.get(key)
        print("get %r ->" % key, g if g is None else kv(g))
    info = await c.get_lease_info(ls.id)
    print("after revoke: TTL=%d grantedTTL=%d keys=%r" % (info.TTL, info.grantedTTL, list(info.keys)))
    for name, coro in (("revoke again", ls.revoke()), ("refresh revoked", ls.refresh()),
                       ("put with revoked lease", c.put(b"lc/d", b"4", lease=ls.id)),
                       ("grant id=4242", c.lease(30, lease_id=4242)),
                       ("grant id=4242 again", c.lease(30, lease_id=4242)),
                       ("info unknown", c.get_lease_info(999)),
                       ("refresh unknown", c.refresh_lease(999)),
                       ("revoke unknown", c.revoke_lease(999)),
                       ("revoke 4242", c.revoke_lease(4242))):
        try:
            r = await coro
            if r is None:
                print(name, "-> None")
            elif type(r).__name__ == "Lease":
                print(name, "-> id=%d ttl=%d" % (r.id, r.ttl))
            elif hasattr(r, "grantedTTL"):
                print(name, "-> ID=%d TTL=%d grantedTTL=%d keys=%r" % (r.ID, r.TTL, r.grantedTTL, list(r.keys)))
            elif hasattr(r, "TTL"):
                print(name, "-> ID=%s TTL=%d" % (LEASE_NAMES.get(r.ID, r.ID), r.TTL))
            else:
                print(name, "->", type(r).__name__)
        except Exception as e:  # noqa
            print(name, "->", err_text(e))



# ---------------------------------------------------------------- auth
# Last: it enables auth and disables it again at its end. aetcd 1.0 has no user or role API:
# users, roles and permissions are made through its generated Auth stub (aetcd.rpc.AuthStub)
# on the client's channel, as root once auth is on; aetcd.Client(username=, password=)
# authenticates on connect and sends the token as metadata. Tokens are never printed.
async def acall(name, method, req, md=None):
    """One Auth RPC with optional token metadata; prints its result."""
    try:
        r = await method(req, timeout=10, metadata=md)
    except Exception as e:  # noqa
        print(name, "-> ERROR", type(e).__name__, e.code(), repr(e.details()))
        return None
    fields = []
    for f in ("users", "roles"):
        if hasattr(r, f):
            fields.append("%s=%r" % (f, list(getattr(r, f))))
    if hasattr(r, "perm"):
        fields.append("perm=%r" % [(rpc.Permission.Type.Name(x.permType), x.key, x.range_end) for x in r.perm])
    if hasattr(r, "token"):
        fields.append("token non-empty=%s" % bool(r.token))
    if hasattr(r, "enabled"):
        fields.append("enabled=%s" % r.enabled)
    print(name, "-> ok", " ".join(fields))
    return r


async def attempt(name, coro):
    try:
        r = await coro
    except Exception as e:  # noqa
        print(name, "->", err_text(e))
        return None
    if r is None:
        print(name, "-> None")
    elif type(r).__name__ == "GetRange" or isinstance(r, list):
        print(name, "->", [(x.key, x.value) for x in r])
    elif hasattr(r, "kv") or type(r).__name__ == "Get":
        print(name, "->", r.value)
    elif isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], bool):
        print(name, "->", r[0], show_resp(r[1]))
    elif type(r).__name__ in ("Put", "Delete", "DeleteRange"):
        print(name, "-> ok")
    else:
        print(name, "->", type(r).__name__)
    return r


async def user_client(user, password):
    cl = aetcd.Client(host=host, port=port, timeout=10, username=user, password=password)
    try:
        await cl.connect()
    except Exception as e:  # noqa
        print("Client(username=%r) connect ->" % user, err_text(e))
        return None
    return cl


async def auth(c):
    a = rpc.AuthStub(c.channel)
    P = rpc.Permission
    await acall("UserAdd root", a.UserAdd, rpc.AuthUserAddRequest(name="root", password="rootpw"))
    await acall("RoleAdd root", a.RoleAdd, rpc.AuthRoleAddRequest(name="root"))
    await acall("UserGrantRole root root", a.UserGrantRole, rpc.AuthUserGrantRoleRequest(user="root", role="root"))
    await acall("UserAdd alice", a.UserAdd, rpc.AuthUserAddRequest(name="alice", password="apw"))
    await acall("UserAdd cn (no password)", a.UserAdd, rpc.AuthUserAddRequest(
        name="cn", options=rpc.UserAddOptions(no_password=True)))
    await acall("UserAdd bob (no password given)", a.UserAdd, rpc.AuthUserAddRequest(name="bob"))
    await acall("RoleAdd r", a.RoleAdd, rpc.AuthRoleAddRequest(name="r"))
    await acall("RoleAdd ''", a.RoleAdd, rpc.AuthRoleAddRequest(name=""))
    for perm in (P(permType=P.READWRITE, key=b"au/rw/", range_end=b"au/rw0"),
                 P(permType=P.READ, key=b"au/ro"),
                 P(permType=P.WRITE, key=b"au/z", range_end=b"\0")):
        await acall("RoleGrantPermission r %s %r %r" % (P.Type.Name(perm.permType), perm.key, perm.range_end),
                    a.RoleGrantPermission, rpc.AuthRoleGrantPermissionRequest(name="r", perm=perm))
    await acall("UserGrantRole alice r", a.UserGrantRole, rpc.AuthUserGrantRoleRequest(user="alice", role="r"))
    await acall("UserGrantRole cn r", a.UserGrantRole, rpc.AuthUserGrantRoleRequest(user="cn", role="r"))
    await acall("RoleGet r", a.RoleGet, rpc.AuthRoleGetRequest(role="r"))
    await acall("UserList", a.UserList, rpc.AuthUserListRequest())
    for k, v in ((b"au/rw/1", b"rw1"), (b"au/ro", b"ro"), (b"au/secret", b"s")):
        await c.put(k, v)
    await acall("AuthEnable", a.AuthEnable, rpc.AuthEnableRequest())

    print("-- no credentials, wrong ones")
    await attempt("get au/ro without a token", c.get(b"au/ro"))
    for user, pw in (("alice", "wrong"), ("nobody", "pw"), ("cn", "pw")):
        cl = await user_client(user, pw)
        if cl is not None:
            print("Client(username=%r) connect -> ok" % user)
            await cl.close()
    await acall("Authenticate cn ''", a.Authenticate, rpc.AuthenticateRequest(name="cn", password=""))
    await acall("Authenticate bob ''", a.Authenticate, rpc.AuthenticateRequest(name="bob", password=""))
    await acall("Authenticate alice", a.Authenticate, rpc.AuthenticateRequest(name="alice", password="apw"))

    print("-- alice")
    al = await user_client("alice", "apw")
    rt = await user_client("root", "rootpw")
    if al is None or rt is None:
        return
    await attempt("get au/rw/1", al.get(b"au/rw/1"))
    await attempt("put au/rw/2", al.put(b"au/rw/2", b"rw2"))
    await attempt("get_prefix au/rw/", al.get_prefix(b"au/rw/"))
    await attempt("get au/ro", al.get(b"au/ro"))
    await attempt("put au/ro", al.put(b"au/ro", b"x"))
    await attempt("get au/secret", al.get(b"au/secret"))
    await attempt("get_range au/ .. au/s", al.get_range(b"au/", b"au/s"))
    await attempt("put au/zz (from-key write)", al.put(b"au/zz", b"zz"))
    await attempt("get au/zz", al.get(b"au/zz"))
    await attempt("put au/y", al.put(b"au/y", b"y"))
    await attempt("delete_range au/z .. (from key)", al.delete_range(b"au/z", b"\0"))
    t = al.transactions
    await attempt("txn value(au/ro)==ro: put au/rw/t / get au/ro", al.transaction(
        compare=[t.value(b"au/ro") == b"ro"], success=[t.put(b"au/rw/t", b"t")], failure=[t.get(b"au/ro")]))
    await attempt("txn ...: get au/secret in the success branch", al.transaction(
        compare=[t.value(b"au/ro") == b"ro"], success=[t.get(b"au/secret")], failure=[]))
    await acall("alice UserGet alice", a.UserGet, rpc.AuthUserGetRequest(name="alice"), al.metadata)
    await acall("alice RoleList", a.RoleList, rpc.AuthRoleListRequest(), al.metadata)
    await acall("alice RoleRevokePermission r au/ro", a.RoleRevokePermission,
                rpc.AuthRoleRevokePermissionRequest(role="r", key=b"au/ro"), al.metadata)

    print("-- alice: watches")
    col = Collector(await al.watch_prefix(b"au/rw/", prev_kv=True))
    await al.put(b"au/rw/w", b"w")
    await al.put(b"au/rw/w", b"end")
    await col.wait(has_value(b"end"))
    print("stopped:", await col.stop(), "error:", show_err(col.error))
    for ev in col.events:
        print("au/rw/ |", ev_text(ev))
    try:
        w = await al.watch(b"au/secret")
        print("watch au/secret -> watch_id=%d" % w.watch_id)
        await w.cancel()
    except Exception as e:  # noqa
        print("watch au/secret ->", err_text(e))

    print("-- changes take effect for later requests")
    await acall("root RoleRevokePermission r au/ro", a.RoleRevokePermission,
                rpc.AuthRoleRevokePermissionRequest(role="r", key=b"au/ro"), rt.metadata)
    await attempt("alice get au/ro", al.get(b"au/ro"))
    await acall("root RoleGrantPermission r READ au/secret", a.RoleGrantPermission,
                rpc.AuthRoleGrantPermissionRequest(name="r", perm=P(permType=P.READ, key=b"au/secret")), rt.metadata)
    await attempt("alice get au/secret", al.get(b"au/secret"))
    await acall("root UserRevokeRole alice r", a.UserRevokeRole,
                rpc.AuthUserRevokeRoleRequest(name="alice", role="r"), rt.metadata)
    await attempt("alice get au/rw/1", al.get(b"au/rw/1"))
    await acall("root UserDelete alice", a.UserDelete, rpc.AuthUserDeleteRequest(name="alice"), rt.metadata)
    await acall("root UserDelete alice again", a.UserDelete, rpc.AuthUserDeleteRequest(name="alice"), rt.metadata)
    await acall("root RoleDelete r", a.RoleDelete, rpc.AuthRoleDeleteRequest(role="r"), rt.metadata)
    await acall("root UserGet cn", a.UserGet, rpc.AuthUserGetRequest(name="cn"), rt.metadata)
    await acall("root UserDelete root", a.UserDelete, rpc.AuthUserDeleteRequest(name="root"), rt.metadata)
    await acall("root AuthDisable", a.AuthDisable, rpc.AuthDisableRequest(), rt.metadata)
    await al.close()
    await rt.close()

    print("-- disabled again")
    await attempt("get au/ro without a token", c.get(b"au/ro"))
    await acall("UserList", a.UserList, rpc.AuthUserListRequest())
    await acall("RoleList", a.RoleList, rpc.AuthRoleListRequest())
    await attempt("delete_prefix au/", c.delete_prefix(b"au/"))


async def main():
    c = aetcd.Client(host=host, port=port, timeout=10)
    async with c:
        for name, fn in (("kv-basic", kv_basic), ("kv-txn", kv_txn), ("kv-sort", kv_sort),
                         ("kv-compact", kv_compact), ("status-members", status_members),
                         ("watch", watch), ("watch-compacted", watch_compacted), ("lease", lease),
                         ("auth needs=auth", auth)):
            print("## scenario " + name, flush=True)
            try:
                await fn(c)
            except Exception as e:  # noqa
                print(err_text(e))
            sys.stdout.flush()


asyncio.run(main())
