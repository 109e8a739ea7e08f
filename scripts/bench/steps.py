#!/usr/bin/env python3
"""steps.py: what a batch of Mounts spent where, from the plugin's lines in dockerd's log (make bench, part
concurrent).

usage: steps.py DOCKERD_LOG FIRST_LINE

Reads the plugin's "request done" lines of op=mount and its "mount steps" lines (volume/rollback.go) from FIRST_LINE
(1-based) on, and prints one line: how many Mounts answered, their median and longest time, and the median and
longest time of each step. A Mount dockerd gave up on still logs its line when it ends.
"""
import re
import statistics
import sys

from godur import seconds

log, first = sys.argv[1], int(sys.argv[2])
mounts, steps = [], {}
with open(log, errors="replace") as f:
    for i, line in enumerate(f, 1):
        if i < first or " plugin=" not in line:
            continue
        line = line.replace('\\"', '"')
        if 'msg="request done"' in line and " op=mount " in line:
            d = re.search(r"\bduration=(\S+)", line)
            if d:
                mounts.append(seconds(d.group(1)))
        m = re.search(r'msg="mount steps".*\bsteps="([^"]*)"', line)
        if m:
            for part in m.group(1).split(", "):
                name, _, d = part.rpartition(" ")
                steps.setdefault(name, []).append(seconds(d))


def summary(v):
    return "median %.2f s, longest %.2f s" % (statistics.median(v), max(v)) if v else "none"


print("%d Mounts answered: %s" % (len(mounts), summary(mounts)))
for name, v in steps.items():
    print("  %s: %s" % (name, summary(v)))
