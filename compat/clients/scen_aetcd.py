"""aetcd 1.0.0 (asyncio) scenarios. Usage: scen_aetcd.py HOST PORT

Same block format as scen_etcd3.py: "## scenario NAME [needs=FEATURE]",
"ERROR ..." for an exception, "~ " lines are informational.
"""
import asyncio
import sys
import traceback

import aetcd
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


async def main():
    c = aetcd.Client(host=host, port=port, timeout=10)
    async with c:
        for name, fn in (("kv-basic", kv_basic), ("kv-txn", kv_txn), ("kv-sort", kv_sort),
                         ("kv-compact", kv_compact), ("status-members", status_members)):
            print("## scenario " + name, flush=True)
            try:
                await fn(c)
            except Exception as e:  # noqa
                print(err_text(e))
            sys.stdout.flush()


asyncio.run(main())
