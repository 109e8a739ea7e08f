#!/usr/bin/env python3
"""report.py: turns the bench's raw measurements into the table (stdout) and the results CSV.

usage: report.py RAW.csv INFO OUT.csv

RAW.csv rows are "section,metric,variant,run,value,unit" (see lib.sh); INFO holds key=value context lines. Each
(section, metric, variant) is reduced to its median over the runs, and set against the baseline variant of its
section, measured in the same run: the ratio is what the report leads with, since the lab guest runs under
software emulation and its absolute figures are not those of real hardware.
"""
import csv
import statistics
import sys
from collections import OrderedDict

raw_path, info_path, out_path = sys.argv[1:4]

samples = OrderedDict()  # (section, metric, variant) -> [values]
by_run = {}  # (section, metric, variant) -> {run: value}
units = {}
with open(raw_path) as f:
    for row in csv.reader(f):
        if not row:
            continue
        section, metric, variant, run, value, unit = row
        samples.setdefault((section, metric, variant), []).append(float(value))
        by_run.setdefault((section, metric, variant), {})[run] = float(value)
        units[(section, metric, variant)] = unit

info = {}
with open(info_path) as f:
    for line in f:
        k, _, v = line.rstrip("\n").partition("=")
        info[k] = v


def med(section, metric, variant):
    v = samples.get((section, metric, variant))
    return statistics.median(v) if v else None


# Baseline variant of each section: the ratio column is variant / baseline. For fio that is MiB/s or IOPS (higher
# is better, so a ratio below 1 is the cost of encryption); for everything else it is seconds (a ratio above 1 is
# the extra time).
BASELINE = {"fio": "plain", "latency": "plain-lv", "docker": "local", "pbkdf": "pbkdf2", "scale": None}


def scale_base(metric):
    # Scale figures grow against the smallest non-zero count measured (List and start-up also have N=0).
    ns = sorted(int(v[2:]) for (s, m, v) in samples if s == "scale" and m == metric)
    ns = [n for n in ns if n > 0] or ns
    return "N=%d" % ns[0] if ns else None


def paired(section, metric, variant, base):
    """The ratio variant / base of each run that measured both (the two are measured back to back in a run, in
    alternating order, so that noise on the machine hits both)."""
    a, b = by_run.get((section, metric, variant), {}), by_run.get((section, metric, base), {})
    return [a[r] / b[r] for r in a if r in b and b[r]]


rows = []  # for the CSV
for (section, metric, variant), vals in samples.items():
    base = BASELINE.get(section)
    if section == "scale":
        base = scale_base(metric)
    if section == "latency" and (variant == "cryptvol-csi" or metric.endswith("(in the plugin)")):
        # CSI's node publish and unpublish are set against the VolumeDriver's first mount and last unmount.
        base = "cryptvol"
    m = statistics.median(vals)
    b = med(section, metric, base) if base else None
    ratio = "" if (b in (None, 0) or variant == base) else "%.4g" % (m / b)
    p = paired(section, metric, variant, base) if ratio else []
    rows.append([section, metric, variant, units[(section, metric, variant)], len(vals), "%.6g" % m,
                 "%.6g" % min(vals), "%.6g" % max(vals), base or "", ratio,
                 "%.4g" % min(p) if p else "", "%.4g" % max(p) if p else ""])
with open(out_path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["section", "metric", "variant", "unit", "runs", "median", "min", "max", "baseline", "ratio",
                "ratio_min", "ratio_max"])
    w.writerows(rows)


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "s":
        return "%.2f s" % v if v < 100 else "%.0f s" % v
    if unit == "IOPS":
        return "%.0f IOPS" % v
    if unit == "MiB/s":
        return "%.1f MiB/s" % v if v < 100 else "%.0f MiB/s" % v
    return "%g %s" % (v, unit)


def ratio(a, b):
    # Three significant digits: 0.0291, 0.536, 4.96, 12.2.
    return "-" if a is None or not b else "%.3g" % (a / b)


def spread(section, metric, variant, base):
    """The ratio of the medians with the spread of the paired runs' ratios: "1.25 (1.10-1.40)"."""
    a, b = med(section, metric, variant), med(section, metric, base)
    r = ratio(a, b)
    p = paired(section, metric, variant, base)
    if r == "-" or len(p) < 2:
        return r
    return "%s (%.3g-%.3g)" % (r, min(p), max(p))


def table(header, body):
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in body:
        print(line(r))
    print()


def has(section):
    return any(s == section for (s, _, _) in samples)


def header():
    print("=" * 100)
    print("cryptvol benchmark (make bench), %s; parts run: %s" % (info.get("date", ""), info.get("parts", "?")))
    print("=" * 100)
    print("READ THE RATIOS. The lab guest runs under QEMU TCG software emulation (%s vCPUs, kernel %s): every" %
          (info.get("vcpus", "?"), info.get("kernel", "?")))
    print("instruction, AES included, is emulated, so absolute times and rates are NOT those of real hardware (AES")
    print("is ~100x slower than with native AES-NI, process start-up ~10-50x). Each figure is set against a baseline")
    print("measured in the same guest, in the same run, on the same disk; values are medians of %s runs." %
          info.get("runs", "?"))
    print("A ratio's spread (in parentheses) is the lowest and highest ratio of one run's pair: the two are measured")
    print("back to back, in alternating order, so that noise on the machine hits both.")
    print("Guest AES-XTS (cryptsetup benchmark -c aes-xts-plain64 -s 512, memory only): encryption %s, decryption %s;"
          % (fmt(med("cpu", "aes-xts-512 encryption (cryptsetup benchmark)", "guest"), "MiB/s"),
             fmt(med("cpu", "aes-xts-512 decryption (cryptsetup benchmark)", "guest"), "MiB/s")))
    print("kernel driver %s (AES instructions visible to the guest: %s). cryptsetup %s, lvm %s, %s." %
          (info.get("xts_driver", "?"), info.get("aes_insn", "?"), info.get("cryptsetup", "?"), info.get("lvm", "?"),
           info.get("fio", "?")))
    print()


def io():
    print("1. I/O through dm-crypt: fio, ext4, O_DIRECT, libaio, %s file, %s s per run; plain and LUKS2 LVs of"
          % (info.get("fio_size", "?"), info.get("fio_runtime", "?")))
    print("   512 MiB side by side on one disk. LUKS2 = cryptvol's format (aes-xts-plain64, 512-bit key, 4096-byte")
    print("   sectors), opened with --perf-no_read_workqueue --perf-no_write_workqueue (CRYPTVOL_NO_WORKQUEUE=true,")
    print("   the default) and without them (=false). ratio = LUKS2 / plain (1 = no cost).")
    body = []
    for name in ["seq read 1M qd4", "seq write 1M qd4", "rand read 4k qd16", "rand write 4k qd16"]:
        unit = "MiB/s" if name.startswith("seq") else "IOPS"
        metric = "%s %s" % (name, unit)
        p, n, q = (med("fio", metric, v) for v in ("plain", "luks-no-workqueue", "luks-workqueue"))
        body.append([name, fmt(p, unit), fmt(n, unit), spread("fio", metric, "luks-no-workqueue", "plain"), fmt(q, unit),
                     spread("fio", metric, "luks-workqueue", "plain"),
                     spread("fio", metric, "luks-no-workqueue", "luks-workqueue")])
    table(["workload", "plain LV", "LUKS2 no-workqueue", "ratio (spread)", "LUKS2 workqueue", "ratio (spread)",
           "nowq/wq (spread)"], body)


def latency():
    print("2. What a user waits for. cryptvol: bin/cryptvol driven over its socket as dockerd drives it (1 GiB thick")
    print("   volume, ext4, KMIP = PyKMIP in the guest). Baseline: the same steps on a plain LV by hand (lvcreate+")
    print("   mkfs+lvchange -an / lvchange -ay+mount / umount+lvchange -an / lvremove); for docker run, a volume of")
    print("   docker's local driver. ratio = cryptvol / baseline.")
    print("   programs: started by cryptvol's request (its request log, internal/cost) / by the baseline's steps;")
    print("   KMIP: round trips. Counts do not depend on emulation.")
    body = []
    # The baseline's programs, by its steps above; cryptvol's come from its request lines (calls.py).
    ops = [("create", "create (KMIP key, LV, luksFormat, mkfs)", "01 create", 3),
           ("first mount", "first mount (KMIP Get, open, mount)", "02 mount", 2),
           ("last unmount", "last unmount (umount, close, deactivate)", "03 unmount", 2),
           ("reencrypt 1 GiB", "reencrypt 1 GiB offline (new volume key; baseline: dd the LV onto itself)",
            "06 reencrypt", 3),
           ("remove", "remove (erase, lvremove, KMIP destroy)", "07 remove", 1),
           ("create 1 GiB integrity", "create 1 GiB with integrity=hmac-sha256 (baseline: lvcreate+mkfs)",
            "08 create", 3)]
    for op, what, cost_metric, base_programs in ops:
        c, p = med("latency", op, "cryptvol"), med("latency", op, "plain-lv")
        progs, kmip = med("cost", cost_metric, "programs"), med("cost", cost_metric, "kmip")
        if c is not None:
            body.append([what, fmt(c, "s"), fmt(p, "s"), spread("latency", op, "cryptvol", "plain-lv"),
                         "-" if progs is None else "%d / %d" % (progs, base_programs),
                         "-" if kmip is None else "%d" % kmip, info.get("cost_by_" + cost_metric[:2], "")])
    for dm, sec in [("docker run --rm -v VOL:/data busybox true", "calls"),
                    ("docker run of an image that has /data", "callsdir"),
                    ("docker runs at once on distinct volumes", None)]:
        c, p = med("docker", dm, "cryptvol"), med("docker", dm, "local")
        if c is None:
            continue
        calls = [m for (s, m, v) in samples if s == sec and v == "programs"]
        progs = sum(med(sec, m, "programs") for m in calls) if calls else None
        kmip = sum(med(sec, m, "kmip") for m in calls) if calls else None
        label = dm if sec else "%s `docker run`s at once, each on a volume of its own (first start to last exit)" % (
            info.get("concurrent", "?"))
        body.append([label, fmt(c, "s"), fmt(p, "s") + " (local)", spread("docker", dm, "cryptvol", "local"),
                     "-" if progs is None else "%d / 0" % progs, "-" if kmip is None else "%d" % kmip,
                     "(section 5)" if sec else ""])
    table(["operation", "cryptvol", "baseline", "ratio (spread)", "programs", "KMIP", "cryptvol's programs"], body)
    # The same volume through CSI between the unmount and the reencryption (run-guest, lat_cryptvol: requests 04 and
    # 05 of each run), against the VolumeDriver's first mount and last unmount.
    body = []
    for op, cost_vd, cost_csi in [("first mount", "02 mount", "04 csi.NodePublishVolume"),
                                  ("last unmount", "03 unmount", "05 csi.NodeUnpublishVolume")]:
        for m in [op, op + " (in the plugin)"]:
            v, c = med("latency", m, "cryptvol"), med("latency", m, "cryptvol-csi")
            if c is None:
                continue
            pv, pc = med("cost", cost_vd, "programs"), med("cost", cost_csi, "programs")
            kv, kc = med("cost", cost_vd, "kmip"), med("cost", cost_csi, "kmip")
            body.append([m, fmt(v, "s"), fmt(c, "s"), spread("latency", m, "cryptvol-csi", "cryptvol"),
                         "-" if None in (pv, pc) else "%d / %d" % (pc, pv), "-" if None in (kv, kc) else "%d / %d" % (kc, kv)])
    if body:
        print("   CSI (the same plugin's NodePublishVolume and NodeUnpublishVolume of the same volume, as Swarm's node")
        print("   publishes it for a task) against the VolumeDriver: ratio = CSI / VolumeDriver; wall times include the")
        print("   client's start (csi-call, a Go program, against curl), in-plugin times are the request lines' own.")
        table(["operation", "VolumeDriver", "CSI", "ratio (spread)", "programs CSI / VD", "KMIP CSI / VD"], body)


def calls():
    print("5. One `docker run --rm -v VOL:/data busybox true` of an existing cryptvol volume, request by request, as")
    print("   dockerd made them (the plugin's request lines in dockerd's log, CRYPTVOL_LOG_LEVEL=debug): the time the")
    print("   plugin took to answer, the programs it started and its KMIP round trips. The rest of the run's time is")
    print("   dockerd's and the container's own. (a) busybox as Docker Hub ships it, no /data; (b) the lab's busybox,")
    print("   which has an empty /data, so dockerd also mounts the volume while creating the container, to copy the")
    print("   image's /data into it.")
    for sec, title in [("calls", "(a)"), ("callsdir", "(b)")]:
        metrics = sorted({m for (s, m, v) in samples if s == sec})
        if not metrics:
            continue
        body = []
        total = 0.0
        for m in metrics:
            t, progs, kmip = med(sec, m, "time"), med(sec, m, "programs"), med(sec, m, "kmip")
            total += t or 0
            body.append([m, fmt(t, "s") if t >= 0.01 else "%.1f ms" % (t * 1000), "%d" % progs, "%d" % kmip,
                         info.get(sec + "_by_" + m[:2], "")])
        body.append(["all requests", fmt(total, "s"), "%d" % sum(med(sec, m, "programs") for m in metrics),
                     "%d" % sum(med(sec, m, "kmip") for m in metrics), ""])
        print(title)
        table(["request", "plugin time", "programs", "KMIP", "by program"], body)


def trace():
    print("6. Where a `docker run --rm -v VOL:/data IMAGE true` spends its time: every timed run of section 2, cut into")
    print("   spans between the markers every run passes whatever its volume driver (dockerd's API calls and the")
    print("   containerd events it logs at debug level, the CLI's start and end), medians over the runs. added = the")
    print("   median of each run's cryptvol span minus its local span (measured back to back); in the plugin = the")
    print("   part of the cryptvol span inside the plugin's requests (their request lines: end and duration).")
    print("   Mount events: mounts and unmounts in the host's namespace during the run (bin/mount-watch).")
    for sec, title in [("trace", "(a) busybox as Docker Hub ships it, no /data"),
                       ("tracedir", "(b) the lab's busybox, which has /data (dockerd mounts the volume twice)")]:
        metrics = sorted({m for (s, m, v) in samples if s == sec and not m.endswith("[plugin]")})
        if not metrics:
            continue
        body = []
        for m in metrics:
            c, l = med(sec, m, "cryptvol"), med(sec, m, "local")
            a, b = by_run.get((sec, m, "cryptvol"), {}), by_run.get((sec, m, "local"), {})
            d = [a[r] - b[r] for r in a if r in b]
            added = statistics.median(d) if d else None
            inside = med(sec, m + " [plugin]", "cryptvol")
            unit = units.get((sec, m, "cryptvol"), "s")
            if unit == "count":
                body.append([m, "-" if l is None else "%g" % l, "-" if c is None else "%g" % c,
                             "-" if added is None else "%+g" % added, ""])
                continue
            body.append([m, fmt(l, "s"), fmt(c, "s"), "-" if added is None else "%+.3f s" % added,
                         "" if inside is None else "%.3f s" % inside])
        print(title)
        table(["span", "local", "cryptvol", "added", "in the plugin"], body)


def pbkdf():
    print("3. Key derivation: cryptsetup open of the same LV, 32-byte random passphrase on stdin (--key-file -).")
    print("   ours: --pbkdf pbkdf2 --pbkdf-force-iterations 1000 (the passphrase is a random 256-bit KMIP key, so a")
    print("   slow KDF adds nothing). default: cryptsetup's argon2id, calibrated here to %s." %
          info.get("argon2id_params", "?"))
    print("   cryptsetup sizes argon2id to ~2 s of unlock on whatever CPU runs luksFormat (--iter-time 2000), so that")
    print("   extra time per mount is paid on real hardware too, while 1000 pbkdf2 iterations cost microseconds there.")
    body = []
    for op in ["cryptsetup open", "luksFormat"]:
        a, b = med("pbkdf", op, "argon2id"), med("pbkdf", op, "pbkdf2")
        body.append([op + (" (1 run)" if op == "luksFormat" else ""), fmt(b, "s"), fmt(a, "s"), ratio(a, b)])
    table(["operation", "pbkdf2 (ours)", "argon2id (default)", "argon2id/pbkdf2"], body)


def scale():
    par = info.get("parallel", "?")
    print("4. Scale: thin volumes of 64 MiB in one thin pool, created through the plugin %s at a time, then stand-ins"
          % par)
    print("   (LVs made by lvm directly, tagged as complete volumes; run-guest says why they stand for real ones) up")
    print("   to the last count. List and Get over the socket: wall time with curl's start (the floor: Capabilities,")
    print("   which does no work) and the plugin's own time from its request line. A plugin restart: SIGTERM, start,")
    print("   first answered List (polled every 0.1 s with curl); of that, process start to serving as the plugin logs")
    print("   it, and its start-up reconciliation. (xG) = growth against the smallest non-zero count.")
    body = []
    mets = [("List", "List (wall)"), ("Capabilities (client floor)", "floor"),
            ("List: plugin's own time", "List (plugin)"), ("Get: plugin's own time", "Get (plugin)"),
            ("restart: start to socket answering", "restart to answering"),
            ("restart: process start to ready (logged)", "of which the plugin's"),
            ("restart: start-up reconciliation (logged)", "of which reconciliation")]
    standins = int(info.get("scale_standins", "0") or 0)
    counts = sorted({int(v[2:]) for (s, m, v) in samples if s == "scale"})
    for n in counts:
        v = "N=%d" % n
        r = [str(n) + (" (%d stand-ins)" % standins if standins and n == counts[-1] else "")]
        for metric, _ in mets:
            x, bv = med("scale", metric, v), scale_base(metric)
            b = med("scale", metric, bv)
            plain = n == 0 or x is None or not b or v == bv or metric.startswith("Capabilities")
            if x is None:
                r.append("-")
            elif x < 0.01:
                r.append("%.1f ms" % (x * 1000) + ("" if plain else " (x%s)" % ratio(x, b)))
            else:
                r.append(fmt(x, "s") + ("" if plain else " (x%s)" % ratio(x, b)))
        r.append(fmt(med("scale", "create: wall time per volume (%s in flight)" % par, v), "s"))
        body.append(r)
    table(["volumes"] + [h for _, h in mets] + ["create, wall/volume"], body)
    print("Scale run: BENCH_SCALE=%s, measured at %s volumes. Creates that failed in a batch and were retried alone:"
          % (info.get("scale", "?"), info.get("checkpoints", "?")))
    print("%s. Thin pool (%s MiB) data use at the end of the real volumes: %s%%; a freshly created 64 MiB volume"
          " occupies %s MiB of it on average." %
          (info.get("scale_create_retries", "?"), info.get("scale_pool_mib", "?"),
           info.get("scale_pool_data_percent", "?"), info.get("scale_volume_pool_mib", "?")))
    if standins:
        print("Stand-ins: %d, made in one lvm process in %s s. The PV's metadata area (size, free KiB) with all of"
              " them: %s." % (standins, info.get("scale_standins_seconds", "?"), info.get("scale_mda", "?")))
    print("CRYPTVOL_KMIP_TIMEOUT=60s for this part (see run-guest).")
    print()


header()
if has("fio"):
    io()
if has("latency") or has("docker"):
    latency()
if has("pbkdf"):
    pbkdf()
if has("scale"):
    scale()
if has("calls") or has("callsdir"):
    calls()
if has("trace") or has("tracedir"):
    trace()
if "bench_guest_seconds" in info:
    print("Bench time inside the guest: %.0f s." % float(info["bench_guest_seconds"]))
else:
    print("(PARTIAL: the run stopped before the end.)")
