"""Counts the commands of two normalised session transcripts that are identical.

Usage: compare_transcripts.py EXPECTED ACTUAL ACTUAL_RUN_STATUS NOT_YET_FILES LABEL

A transcript is a list of blocks, each starting with "=== [N] TOOL ARGS..." (TOOL is the
program run: etcdctl, curl). Blocks are paired by position; a command is identical when
its whole block is. NOT_YET_FILES (separated by ':', empty for none) list commands as
written in the session, each followed by "# not yet: <feature>": those may differ because
Cairn lacks the feature; they are counted and named. A command followed by
"# differs: <reason>" instead may differ for a reason the README's compatibility section
gives (counted and named apart). Prints one line per reason, one per
other difference, then "LABEL: N/M commands identical[; K differ as not yet]". Exits 1
when a command not listed differs or ACTUAL_RUN_STATUS is not 0.
"""
import re
import sys


def blocks(path):
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except FileNotFoundError:
        return []
    out, cur = [], None
    for line in text.split("\n"):
        if line.startswith("=== ["):
            cur = [line]
            out.append(cur)
        elif cur is not None:
            cur.append(line)
    return ["\n".join(b).rstrip("\n") for b in out]


def command(block):
    """(tool, command as written in the session) of a block."""
    m = re.match(r"^=== \[\d+\] (\S+) ?(.*)$", block.split("\n", 1)[0])
    return (m.group(1), m.group(2).strip()) if m else ("", block.split("\n", 1)[0])


def not_yet(paths):
    out = {}
    for path in paths.split(":"):
        if not path:
            continue
        for line in open(path, encoding="utf-8"):
            if line.lstrip().startswith("#"):
                continue
            for kind, marker in (("not yet", "# not yet:"), ("differs", "# differs:")):
                cmd, found, reason = line.partition(marker)
                if found and cmd.strip():
                    out[cmd.strip()] = (kind, reason.strip() or "?")
    return out


def main():
    expected_path, actual_path, actual_status, not_yet_paths, label = sys.argv[1:6]
    exp = blocks(expected_path)
    act = blocks(actual_path) if actual_status == "0" else []
    allowed = not_yet(not_yet_paths)
    same, later, wrong = 0, {}, []
    for i, b in enumerate(exp):
        if i < len(act) and act[i] == b:
            same += 1
            continue
        tool, cmd = command(b)
        if cmd in allowed:
            later.setdefault(allowed[cmd], []).append(cmd)
        else:
            wrong.append("%s %s" % (tool, cmd))
    for (kind, reason), cmds in later.items():
        names = sorted(set(cmds))
        shown = "; ".join(names[:6]) + ("; and %d more" % (len(names) - 6) if len(names) > 6 else "")
        print("%s: %s: %s (%d commands: %s)" % (label, kind, reason, len(cmds), shown))
    for cmd in wrong:
        print("%s: DIFFERS: %s" % (label, cmd))
    counts = ""
    for kind, words in (("not yet", "differ as not yet"), ("differs", "differ as documented")):
        n = sum(len(c) for (k, _), c in later.items() if k == kind)
        if n:
            counts += "; %d %s" % (n, words)
    print("%s: %d/%d commands identical%s" % (label, same, len(exp), counts))
    return 1 if wrong or actual_status != "0" else 0


sys.exit(main())
