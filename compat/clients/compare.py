"""Compare etcd vs Cairn client outputs. Usage: compare.py OUT_DIR CLIENT...

Reads OUT_DIR/{etcd,cairn}.CLIENT.out, split into "## scenario NAME
[needs=FEATURE]" blocks; lines starting with "~ " are informational and not
compared. A differing scenario tagged needs=... whose Cairn output says
Unimplemented counts as "not yet"; one whose etcd output says Unimplemented (an older
etcd, without the feature) and Cairn's does not counts as "beyond" (Cairn serves a later
etcd's API). Exit 1 if any other scenario differs.
"""
import difflib
import os
import re
import sys

out_dir, clients = sys.argv[1], sys.argv[2:]


def blocks(path):
    res, cur = {}, None
    order = []
    if not os.path.exists(path):
        return res, order
    for line in open(path, encoding="utf-8", errors="replace").read().splitlines():
        m = re.match(r"^## scenario (.*)$", line)
        if m:
            cur = m.group(1).strip()
            res[cur] = []
            order.append(cur)
        elif cur is not None:
            res[cur].append(line)
        else:
            res.setdefault("(preamble)", []).append(line)
            if "(preamble)" not in order:
                order.append("(preamble)")
    return res, order


failed = False
totals = [0, 0, 0, 0]  # identical, all, not yet, beyond
summary = []
for cl in clients:
    e, eorder = blocks(os.path.join(out_dir, "etcd.%s.out" % cl))
    c, corder = blocks(os.path.join(out_dir, "cairn.%s.out" % cl))
    names = eorder + [n for n in corder if n not in e]
    same = notyet = beyond = 0
    for n in names:
        el = [l for l in e.get(n, ["<missing scenario>"]) if not l.startswith("~ ")]
        cl_ = [l for l in c.get(n, ["<missing scenario>"]) if not l.startswith("~ ")]
        estate = "error" if any(l.startswith("ERROR builtins") for l in el) else "ok"
        if el == cl_:
            same += 1
            state = "ok"
        elif "needs=" in n and any(re.search(r"unimplemented", l, re.I) for l in cl_):
            notyet += 1
            state = "not yet"
        elif "needs=" in n and any(re.search(r"unimplemented", l, re.I) for l in el):
            beyond += 1
            state = "beyond (this etcd lacks the feature)"
        else:
            state = "DIFF"
            failed = True
        print("clients/%s [%s]: etcd: %s / cairn: %s" % (cl, n, estate, state))
        if state == "DIFF":
            for d in difflib.unified_diff(el, cl_, "etcd", "cairn", lineterm="", n=2):
                print("    " + d)
    print("clients/%s: %d/%d scenarios identical (%d not yet, %d beyond this etcd)" % (
        cl, same, len(names), notyet, beyond))
    summary.append("%s %d/%d" % (cl, same, len(names)))
    totals[0] += same
    totals[1] += len(names)
    totals[2] += notyet
    totals[3] += beyond
print("clients: %d/%d scenarios identical (%d not yet, %d beyond this etcd, %d differ): %s" % (
    totals[0], totals[1], totals[2], totals[3], totals[1] - totals[0] - totals[2] - totals[3],
    ", ".join(summary)))
sys.exit(1 if failed else 0)
