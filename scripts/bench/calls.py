#!/usr/bin/env python3
"""calls.py: what each VolumeDriver request cost, from the plugin's "request done" lines (CRYPTVOL_LOG_LEVEL=debug).

usage: calls.py LOG FIRST_LINE SECTION RUN [VOLUME_PREFIX]

The plugin logs one line per request (plugin/plugin.go, Driver.call) with its op, duration, programs started,
by program, and KMIP round trips (internal/cost). LOG is the plugin's own log, or dockerd's, which carries the
plugin's lines with their quotes escaped. Lines before FIRST_LINE (1-based) are skipped, so a caller can mark where a
docker run began. Prints raw rows for lib.sh's $raw ("section,metric,variant,run,value,unit"): per request, in
order, metric "NN op" with variants time (s), programs and kmip (counts); and one info line per request
("SECTION_by_NN=lvm 1, cryptsetup 2") on stderr for the report's detail. Requests for volumes not starting with
VOLUME_PREFIX are left out (dockerd may list or get others while a container starts).
"""
import re
import sys

import godur

log, first, section, run = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
prefix = sys.argv[5] if len(sys.argv) > 5 else ""


def field(line, name):
    # name=value or name="value" (name=\"value\" inside dockerd's quoting of the plugin's line).
    m = re.search(r'\b%s=\\?"([^"\\]*)\\?"' % name, line) or re.search(r"\b%s=([^\s\"\\]+)" % name, line)
    return m.group(1) if m else None


def seconds(d):
    try:
        return godur.seconds(d)
    except ValueError:
        sys.exit("calls.py: no duration in a request line")


n = 0
with open(log, errors="replace") as f:
    for i, line in enumerate(f, 1):
        if i < first or "request done" not in line:
            continue
        op, vol = field(line, "op"), field(line, "volume") or ""
        if op is None or (prefix and vol and not vol.startswith(prefix)):
            continue
        n += 1
        metric = "%02d %s" % (n, op)
        print("%s,%s,time,%s,%.4f,s" % (section, metric, run, seconds(field(line, "duration"))))
        print("%s,%s,programs,%s,%s,count" % (section, metric, run, field(line, "programs") or 0))
        print("%s,%s,kmip,%s,%s,count" % (section, metric, run, field(line, "kmip_round_trips") or 0))
        print("%s_by_%02d=%s" % (section, n, field(line, "by_program") or "-"), file=sys.stderr)
if n == 0:
    sys.exit("calls.py: no request lines in %s after line %d (is CRYPTVOL_LOG_LEVEL=debug?)" % (log, first))
