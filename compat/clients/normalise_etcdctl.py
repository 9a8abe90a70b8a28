"""Normalise etcdctl output (stdin -> stdout) for the clients suite.

Replaced: cluster/member ids (hex or decimal) -> ID; raft term/index,
db size, server version in endpoint status; JSON header fields except
revision; zap log timestamps. Revisions, keys, values, counts, errors kept.

Leases: the environment variable LEASES lists the lease ids the scenario
granted so far ("HEX=T0,T1" space separated: 16-digit hex id, and the wall
clock before and after the grant or the last successful keep-alive); the
n-th one is printed as <Ln> wherever it appears (hex in text, decimal in
JSON). A remaining TTL consistent with the time since T0/T1 (QUERY_T0 is
when the query started, the end is now; etcd truncates to whole seconds;
1 s slack either way) becomes "~TTL-elapsed" ("remaining(~60s-elapsed)",
JSON "ttl": "~60-elapsed"); any other value is kept. Lists whose order etcd
does not define (a lease's attached keys, `lease list`) are sorted.
"""
import json
import os
import re
import sys
import time

stderr = "--stderr" in sys.argv
NOW = time.time()
QUERY_T0 = float(os.environ.get("QUERY_T0") or NOW)
LEASE_HEX = {}
LEASE_DEC = {}
LEASE_TIMES = {}
for i, item in enumerate(os.environ.get("LEASES", "").split()):
    h, _, times = item.partition("=")
    name = "<L%d>" % (i + 1)
    LEASE_HEX[h.lower().rjust(16, "0")] = name
    LEASE_DEC[int(h, 16)] = name
    if times:
        LEASE_TIMES[name] = [float(t) for t in times.split(",")]


def near_ttl(ttl, granted, name, suffix=""):
    """ttl as "~GRANTED-elapsed" if it matches the time since the lease's T0/T1."""
    if name not in LEASE_TIMES or not isinstance(ttl, int) or not isinstance(granted, int) or granted <= 0:
        return ttl
    t0, t1 = LEASE_TIMES[name]
    lo = int(granted - (NOW - t0)) - 1
    hi = int(granted - (QUERY_T0 - t1)) + 1
    if lo <= ttl <= min(hi, granted):
        return "~%d%s-elapsed" % (granted, suffix)
    return ttl


def lease_text(line):
    line = re.sub(r"\b[0-9a-f]{16}\b", lambda m: LEASE_HEX.get(m.group(0), m.group(0)), line)
    m = re.match(r"^(lease (\S+) granted with TTL\((-?\d+)s\), remaining\()(-?\d+)(s\))(.*)$", line)
    if m:
        rest = m.group(6)
        k = re.match(r"^(, attached keys\(\[)(.*)(\]\))$", rest)
        if k:
            rest = k.group(1) + " ".join(sorted(k.group(2).split())) + k.group(3)
        ttl = near_ttl(int(m.group(4)), int(m.group(3)), m.group(2), "s")
        line = "%s%s%s" % (m.group(1), ttl, ")" + rest if isinstance(ttl, str) else m.group(5) + rest)
    return line


HDR_KEEP = {"revision"}
NORM = {"raft_term": "TERM", "raftTerm": "TERM", "raftIndex": "INDEX",
        "raftAppliedIndex": "INDEX", "dbSize": "SIZE", "dbSizeInUse": "SIZE",
        "version": "VERSION", "leader": "ID", "ID": "ID", "member_id": "ID",
        "cluster_id": "ID", "memberID": "ID"}


def walk(o, parent=None):
    if isinstance(o, dict):
        out = {}
        for k, v in o.items():
            if isinstance(v, int) and not isinstance(v, bool) and v in LEASE_DEC:
                out[k] = LEASE_DEC[v]
            elif k == "ttl" and "granted-ttl" in o:
                out[k] = near_ttl(v, o["granted-ttl"], LEASE_DEC.get(o.get("id")))
            elif k in ("keys", "leases") and isinstance(v, list):
                out[k] = sorted(walk(v, k), key=lambda x: json.dumps(x, sort_keys=True))
            elif stderr and k == "ts":
                out[k] = "<ts>"
            elif stderr and k == "target" and isinstance(v, str):
                out[k] = re.sub(r"0x[0-9a-f]+", "0x<ptr>", v)
            elif k == "header" and isinstance(v, dict):
                out[k] = {hk: (hv if hk in HDR_KEEP else "<%s>" % hk) for hk, hv in v.items()}
            elif k in NORM and not isinstance(v, (dict, list)) and not (k == "version" and parent == "kvs"):
                out[k] = "<%s>" % NORM[k] if v not in (0, "0", "") else v
            else:
                out[k] = walk(v, k)
        return out
    if isinstance(o, list):
        return [walk(x, parent) for x in o]
    return o


lines = sys.stdin.read().splitlines()
if not stderr and lines and re.match(r"^found \d+ leases$", lines[0]):
    lines = lines[:1] + sorted(lease_text(l) for l in lines[1:])
for line in lines:
    s = line.strip()
    if s.startswith(("{", "[")):
        try:
            print(("stderr: " if stderr else "") + json.dumps(walk(json.loads(s)), sort_keys=True))
            continue
        except ValueError:
            pass
    # endpoint status (simple): ep, id, version, size, leader?, learner?, term, index, applied, errors
    m = re.match(r"^(\S+:\S+), ([0-9a-f]{1,16}), ([0-9.]+), ([0-9.]+ [kMG]?B), (true|false), (true|false), (\d+), (\d+), (\d+), (.*)$", line)
    if m:
        print("%s, <ID>, <VERSION>, <SIZE>, %s, %s, <TERM>, <INDEX>, <INDEX>, %s" % (
            m.group(1), m.group(5), m.group(6), m.group(10)))
        continue
    # member list (simple): id, status, name, peers, clients, learner
    m = re.match(r"^([0-9a-f]{1,16}), (.*)$", line)
    if m:
        print("<ID>, " + m.group(2))
        continue
    line = lease_text(line)
    line = re.sub(r'^"(ClusterID|MemberID|RaftTerm)" : \d+$', r'"\1" : <\1>', line)
    line = re.sub(r"took = [0-9.]+[µmn]?s", "took = <T>", line)
    if stderr:
        line = re.sub(r'^\{"level".*?"ts":"[^"]*"', '{"level"...<ts>', line)
    print(("stderr: " if stderr else "") + line)
