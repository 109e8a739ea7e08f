"""godur: Go duration strings ("850ms", "1.2s", "1m3.5s", "4.949µs"), as logrus prints a time.Duration, in seconds.
Imported by calls.py, steps.py and trace.py (their directory is on Python's path when they run)."""
import re

UNITS = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "\u00b5s": 1e-6, "ns": 1e-9}


def seconds(d):
    """The seconds in Go duration d; ValueError when it holds none."""
    parts = re.findall(r"([0-9.]+)(h|ms|us|\u00b5s|ns|m|s)", d or "")
    if not parts:
        raise ValueError("no duration in %r" % d)
    return sum(float(n) * UNITS[u] for n, u in parts)
