"""Normalise etcdctl output (stdin -> stdout) for the clients suite.

Replaced: cluster/member ids (hex or decimal) -> ID; raft term/index,
db size, server version in endpoint status; JSON header fields except
revision; zap log timestamps. Revisions, keys, values, counts, errors kept.
"""
import json
import re
import sys

stderr = "--stderr" in sys.argv
HDR_KEEP = {"revision"}
NORM = {"raft_term": "TERM", "raftTerm": "TERM", "raftIndex": "INDEX",
        "raftAppliedIndex": "INDEX", "dbSize": "SIZE", "dbSizeInUse": "SIZE",
        "version": "VERSION", "leader": "ID", "ID": "ID", "member_id": "ID",
        "cluster_id": "ID", "memberID": "ID"}


def walk(o, parent=None):
    if isinstance(o, dict):
        out = {}
        for k, v in o.items():
            if stderr and k == "ts":
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


for line in sys.stdin.read().splitlines():
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
    line = re.sub(r'^"(ClusterID|MemberID|RaftTerm)" : \d+$', r'"\1" : <\1>', line)
    line = re.sub(r"took = [0-9.]+[µmn]?s", "took = <T>", line)
    if stderr:
        line = re.sub(r'^\{"level".*?"ts":"[^"]*"', '{"level"...<ts>', line)
    print(("stderr: " if stderr else "") + line)
