#!/usr/bin/env python3
"""trace.py: one `docker run` on one timeline, cut into spans (make bench, part trace).

usage: trace.py DOCKERD_LOG FIRST_LINE MOUNTS_LOG T0 T1 SECTION VARIANT RUN [TIMELINE_OUT]

DOCKERD_LOG is dockerd's log at --log-level debug, read from FIRST_LINE (1-based); it carries dockerd's API calls,
the containerd events it receives and, for a managed plugin, the plugin's own lines (with the plugin's time stamps,
microseconds, cmd/cryptvol/main.go). MOUNTS_LOG is bin/mount-watch's output for the host's mount namespace. T0 and
T1 are the `docker run` command's start and end (bash's EPOCHREALTIME).

Prints raw rows for lib.sh's $raw ("section,metric,variant,run,value,unit"): in SECTION, one metric per span
between markers that every `docker run` passes whatever its volume driver (SPANS), the run's whole time, the time
inside the plugin's requests (from each "request done" line: its end and its duration) in all and per span, and
the mount events seen in the host's namespace. With TIMELINE_OUT, also writes every event of the run in order with
its offset from T0, for the report to show one run in full.
"""
import datetime
import re
import sys

from godur import seconds

log, first, mounts = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0, t1, section, variant, run = float(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8]
out = sys.argv[9] if len(sys.argv) > 9 else None

# The markers, in the order a `docker run --rm` passes them, each the first dockerd line after the previous marker
# that matches (moby daemon and libcontainerd debug lines, present in v20.10 and v26.1).
MARKERS = [
    ("ping", r'msg="Calling HEAD /_ping"'),
    ("create", r'msg="Calling POST /v[0-9.]+/containers/create'),
    ("attach", r'msg="Calling POST /v[0-9.]+/containers/[0-9a-f]+/attach'),
    ("start", r'msg="Calling POST /v[0-9.]+/containers/[0-9a-f]+/start"'),
    ("bundle", r'msg="bundle dir created"'),
    ("task create", r'topic=/tasks/create'),
    ("task start", r'topic=/tasks/start'),
    ("task exit", r'topic=/tasks/exit'),
    ("task delete", r'topic=/tasks/delete'),
    ("attach done", r'msg="attach done"'),
]
SPANS = [
    ("cli", "ping", "01 CLI start to its first API call"),
    ("ping", "create", "02 CLI: ping to create"),
    ("create", "attach", "03 create: volume lookup; container; layer"),
    ("attach", "start", "04 CLI: attach and wait to start"),
    ("start", "bundle", "05 start: volume mount; rootfs; spec"),
    ("bundle", "task create", "06 containerd shim and runc create"),
    ("task create", "task start", "07 runc start"),
    ("task start", "task exit", "08 the container runs"),
    ("task exit", "task delete", "09 task exit to delete"),
    ("task delete", "attach done", "10 task delete to the output's end"),
    ("attach done", "cli end", "11 remove (volume unmount; layer) and CLI exit"),
]


def stamp(s):
    # RFC 3339 with up to nanoseconds; Python parses microseconds.
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", s)
    if not m:
        return None
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + float("0." + (m.group(2) or "0"))


events = []  # (time, who, text)
marks = {"cli": t0, "cli end": t1}
requests = []  # (start, end, op)
want = 0
with open(log, errors="replace") as f:
    for i, line in enumerate(f, 1):
        if i < first:
            continue
        if " plugin=" in line:
            # A plugin's line, copied by dockerd: its own time stamp is inside, quoted.
            m = re.search(r'msg="time=\\"([^\\"]+)\\" level=\w+ msg=(\\"[^\\]*\\"|\S+)(.*)" plugin=', line)
            if not m:
                continue
            t = stamp(m.group(1))
            msg = m.group(2).strip('\\"')
            rest = m.group(3).replace('\\"', '"')
            # The run's own requests end inside it: the CLI returns after the removal, which follows the last
            # unmount.
            if t is None or t < t0 or t > t1:
                continue
            if msg == "request done":
                op = re.search(r"\bop=(\S+)", rest)
                d = re.search(r"\bduration=(\S+)", rest)
                if op and d:
                    requests.append((t - seconds(d.group(1)), t, op.group(1)))
                    events.append((t - seconds(d.group(1)), "plugin", "%s begins" % op.group(1)))
            steps = re.search(r'\bsteps="([^"]*)"', rest)
            events.append((t, "plugin", msg + " " + " ".join(
                x for x in rest.split() if x.split("=")[0] in ("op", "duration", "programs", "kmip_round_trips")) +
                (": " + steps.group(1) if steps else "")))
            continue
        m = re.match(r'time="([^"]+)"', line)
        if not m:
            continue
        t = stamp(m.group(1))
        if t is None or t < t0 or t > t1:
            continue
        text = re.sub(r"^time=\"[^\"]+\" ", "", line.rstrip())
        events.append((t, "dockerd", text[:140]))
        if want < len(MARKERS) and re.search(MARKERS[want][1], line):
            marks[MARKERS[want][0]] = t
            want += 1

mount_events = 0
with open(mounts) as f:
    for line in f:
        parts = line.split()
        if len(parts) < 3 or parts[1] not in "+-":
            continue
        t = float(parts[0])
        if t0 <= t <= t1:
            mount_events += 1
            events.append((t, "kernel", "%s %s %s" % ("mount" if parts[1] == "+" else "umount", parts[3], parts[2])))


def row(metric, value, unit="s"):
    print("%s,%s,%s,%s,%.4f,%s" % (section, metric, variant, run, value, unit))


row("00 the whole docker run", t1 - t0)
for a, b, name in SPANS:
    if a in marks and b in marks and marks[b] >= marks[a]:
        row(name, marks[b] - marks[a])
        inside = sum(max(0.0, min(e, marks[b]) - max(s, marks[a])) for s, e, _ in requests)
        if requests:
            row(name + " [plugin]", inside)
    else:
        print("trace.py: run %s (%s): no marker for %s .. %s" % (run, variant, a, b), file=sys.stderr)
row("12 in the plugin's requests", sum(e - s for s, e, _ in requests))
row("13 plugin requests", len(requests), "count")
row("14 mount events in the host namespace", mount_events, "count")

if out:
    for name, t in marks.items():
        events.append((t, "marker", "== " + name))
    with open(out, "w") as f:
        for t, who, text in sorted(events):
            f.write("%+8.3f  %-7s  %s\n" % (t - t0, who, text))
