"""Normalises a raw curl transcript (from session.py) so that real etcd and Cairn give the
same text when they behave the same. Reads stdin, writes stdout.

Usage: normalise.py --client-port P --peer-port Q

Replaced (differs legitimately between servers or runs):
  * member, cluster and lease IDs -> ID1, ID2... by first appearance (0 stays 0): the
    header's cluster_id/member_id, "ID", "memberID", "leader";
  * the header's raft_term, status's version/db sizes/raft index and term, hashes,
    auth tokens, the remaining TTL of a lease in timetolive (not the granted one);
  * the order of lease and member lists (sorted after IDs are replaced);
  * ports; Date headers; Content-Length of a JSON body (its length follows the IDs);
    curl's own timing numbers in its error messages.
Header names are put in canonical case and sorted (their order and case carry no
meaning); trailers are marked "(trailer)". JSON bodies are re-written compactly after
normalising; a body that was not compact JSON gets the line "(json: not compact)".
Kept exactly: status lines, content types, Grpc-* headers, revisions, keys, values,
versions, counts, error messages and codes, text bodies.
"""
import argparse
import json
import re
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--client-port")
ap.add_argument("--peer-port")
opts = ap.parse_args()

ids = {}


def id_placeholder(v):
    if not isinstance(v, (str, int)) or not re.fullmatch(r"-?\d+", str(v)) or int(v) == 0:
        return v
    key = int(v)
    if key not in ids:
        ids[key] = "ID%d" % (len(ids) + 1)
    return ids[key]


def nonzero(name):
    return lambda v: v if v in (0, "0") else name


KEY_RULES = {
    "cluster_id": id_placeholder,
    "member_id": id_placeholder,
    "ID": id_placeholder,
    "memberID": id_placeholder,
    "leader": lambda v: id_placeholder(v) if not isinstance(v, dict) else v,
    "raft_term": nonzero("RAFT_TERM"),
    "raftTerm": nonzero("RAFT_TERM"),
    "raftIndex": nonzero("RAFT_INDEX"),
    "raftAppliedIndex": nonzero("RAFT_APPLIED_INDEX"),
    "dbSize": nonzero("DB_SIZE"),
    "dbSizeInUse": nonzero("DB_SIZE_IN_USE"),
    "dbSizeQuota": nonzero("DB_SIZE_QUOTA"),
    "hash": nonzero("HASH"),
    "token": lambda v: "TOKEN",
}


def norm_json(o):
    if isinstance(o, list):
        return [norm_json(x) for x in o]
    if not isinstance(o, dict):
        return o
    out = {}
    for k, v in o.items():
        if k in KEY_RULES and not isinstance(v, (dict, list)):
            out[k] = KEY_RULES[k](v)
        elif k in ("version", "storageVersion", "etcdserver") and isinstance(v, str) and "." in v:
            out[k] = "VERSION"  # server version in maintenance/status (key versions are ints)
        else:
            out[k] = norm_json(v)
    # Seconds left on a lease depend on timing; the granted TTL does not.
    if "grantedTTL" in out and str(out.get("TTL", "0")).isdigit() and 0 < int(out["TTL"]) <= int(out["grantedTTL"]):
        out["TTL"] = "TTL_LEFT"
    # Lists ordered by ID, which is random for leases and members the server names.
    for k in ("leases", "members"):
        if isinstance(out.get(k), list):
            out[k] = sorted(out[k], key=lambda l: json.dumps(l, sort_keys=True))
    return out


def go_json(o):
    s = json.dumps(o, ensure_ascii=False, separators=(",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def ports(s):
    if opts.client_port:
        s = re.sub(r":%s(?!\d)" % re.escape(opts.client_port), ":CLIENT_PORT", s)
    if opts.peer_port:
        s = re.sub(r":%s(?!\d)" % re.escape(opts.peer_port), ":PEER_PORT", s)
    return s


def canonical_header_name(name):
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def norm_headers(lines, json_body):
    # Keep the last response (drop interim 1xx ones); lines after its blank line are trailers.
    blocks, cur = [], []
    for l in lines:
        if l == "":
            blocks.append(cur)
            cur = []
        else:
            cur.append(l)
    blocks.append(cur)
    responses = [i for i, b in enumerate(blocks) if b and b[0].startswith("HTTP/")]
    if not responses:
        return [l for b in blocks for l in b]
    last = responses[-1]
    status, fields = blocks[last][0].strip(), blocks[last][1:]
    trailers = [l for b in blocks[last + 1:] for l in b]
    out = []
    for l in fields:
        name, _, value = l.partition(":")
        name, value = canonical_header_name(name.strip()), value.strip()
        if name == "Date":
            continue
        if name == "Content-Length" and json_body:
            value = "LEN"
        out.append("%s: %s" % (name, ports(value)))
    out = [status] + sorted(out)
    for l in trailers:
        name, _, value = l.partition(":")
        name = canonical_header_name(name.strip())
        if name == "Grpc-Trailer-Content-Type":
            continue
        out.append("(trailer) %s: %s" % (name, value.strip()))
    return out


def norm_body(lines):
    """Returns (lines, whether the body was JSON)."""
    marker = [l for l in lines if l.startswith("\\ No newline at end of")]
    text = [l for l in lines if not l.startswith("\\ No newline at end of")]
    if not text:
        return lines, False
    docs = []
    for l in text:
        try:
            docs.append((l, json.loads(l)))
        except ValueError:
            return [ports(l) for l in lines], False
    out = []
    for raw, doc in docs:
        if go_json(doc) != raw:
            out.append("(json: not compact)")
        out.append(ports(go_json(norm_json(doc))))
    return out + marker, True


def flush(block, out):
    if not block:
        return
    out.append(block[0])
    sections, cur = {}, None
    for l in block[1:]:
        m = re.match(r"^--- (exit status: .*|curl says|headers|body)$", l)
        if m and (cur != "body" or l == "--- body"):
            if m.group(1).startswith("exit status"):
                out.append(l)
                continue
            cur = m.group(1)
            sections[cur] = []
        elif cur:
            sections[cur].append(l)
    if "curl says" in sections:
        out.append("--- curl says")
        for l in sections["curl says"]:
            l = re.sub(r"after \d+ milliseconds with \d+( out of \d+)? bytes", "after MS milliseconds with N bytes", l)
            out.append(ports(l))
    body, json_body = norm_body(sections.get("body", []))
    out.append("--- headers")
    out.extend(norm_headers(sections.get("headers", []), json_body))
    out.append("--- body")
    out.extend(body)


def main():
    lines = sys.stdin.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out, block = [], []
    for l in lines:
        if l.startswith("=== [") and block:
            flush(block, out)
            block = []
        block.append(l)
    flush(block, out)
    sys.stdout.write("\n".join(out) + "\n")


main()
