"""Runs the curl session against one server and writes the raw transcript.

Usage: session.py SESSION_FILE CLIENT_URL WORK_DIR RAW_OUT

Session line format (see session.txt): curl arguments with shell quoting (POSIX shlex: no
expansion). An argument starting with "/" is a path on the server: the client URL is put in
front. "${NAME}" in an argument is replaced by a value saved by an earlier line. A line may
end with one directive after " => ":
    => NAME=a.b.0.c ...  save that field of the JSON response body as NAME (several allowed)
    => metrics N1 N2 ... replace the body by "present: N" / "missing: N" for each metric name
Every command gets -sS, the response headers (and trailers) in a dump file, the body in
another file, "Expect:" emptied (no 100-continue round trip) and --max-time CMD_TIMEOUT
unless the line gives its own --max-time. Transcript block per command:
    === [N] curl <line as written>
    --- exit status: RC
    --- headers
    <header dump, CRs removed>
    --- body
    <body>  (then "\\ No newline at end of body" when it lacks one)
"""
import json
import os
import re
import shlex
import subprocess
import sys

session_file, client_url, work, raw_out = sys.argv[1:5]
cmd_timeout_s = os.environ.get("CMD_TIMEOUT", "30")
curl_bin = os.environ.get("CURL", "curl")
saved = {}


def parse(path):
    for lineno, line in enumerate(open(path, encoding="utf-8").read().splitlines(), 1):
        if re.match(r"^\s*(#|$)", line):
            continue
        text, _, directive = line.partition(" => ")
        try:
            args = shlex.split(text)
        except ValueError as e:
            sys.exit("session: %s:%d: cannot parse (%s)" % (path, lineno, e))
        yield lineno, line.strip(), args, directive.strip()


def field(obj, path):
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def substitute(arg, lineno):
    def one(m):
        if m.group(1) not in saved:
            sys.exit("session: line %d: ${%s} was not saved by an earlier line" % (lineno, m.group(1)))
        return str(saved[m.group(1)])

    arg = re.sub(r"\$\{([A-Z0-9_]+)\}", one, arg)
    return client_url + arg if arg.startswith("/") else arg


def metric_presence(body, names):
    present = set()
    for line in body.decode("utf-8", "replace").splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", line)
        if m:
            present.add(m.group(1))
    return "".join("%s: %s\n" % ("present" if n in present else "missing", n) for n in names).encode()


# A put whose body is over etcd's default --max-request-bytes (1.5 MiB) but under the gRPC
# limit (2 MiB): too long for a command-line argument, so it is a file.
saved["LARGE_PUT_FILE"] = os.path.join(work, "large-put.json")
with open(saved["LARGE_PUT_FILE"], "w") as f:
    f.write('{"key":"bGFyZ2U=","value":"%s"}' % ("eHh4" * (1600 * 1024 // 3)))
headers_file = os.path.join(work, "headers")
body_file = os.path.join(work, "body")
n = 0
with open(raw_out, "wb") as out:
    for lineno, line, args, directive in parse(session_file):
        n += 1
        args = [substitute(a, lineno) for a in args]
        base = ["-sS", "-D", headers_file, "-o", body_file, "-H", "Expect:"]
        if "--max-time" not in args and "-m" not in args:
            base += ["--max-time", cmd_timeout_s]
        for f in (headers_file, body_file):
            if os.path.exists(f):
                os.remove(f)
        proc = subprocess.run([curl_bin] + base + args, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        headers = open(headers_file, "rb").read() if os.path.exists(headers_file) else b""
        body = open(body_file, "rb").read() if os.path.exists(body_file) else b""
        if directive.startswith("metrics "):
            body = metric_presence(body, directive.split()[1:])
        elif directive:
            for assignment in directive.split():
                name, _, path = assignment.partition("=")
                try:
                    saved[name] = field(json.loads(body), path)
                except (ValueError, KeyError, IndexError, TypeError):
                    saved[name] = "UNSAVED-" + name
        out.write(b"=== [%d] curl %s\n" % (n, line.encode()))
        out.write(b"--- exit status: %d\n" % proc.returncode)
        if proc.stdout:
            out.write(b"--- curl says\n" + proc.stdout.replace(client_url.encode(), b"CLIENT_URL"))
            if not proc.stdout.endswith(b"\n"):
                out.write(b"\n")
        out.write(b"--- headers\n" + headers.replace(b"\r", b""))
        out.write(b"--- body\n" + body)
        if body and not body.endswith(b"\n"):
            out.write(b"\n\\ No newline at end of body\n")
print("session: %d commands against %s" % (n, client_url), file=sys.stderr)
