#!/usr/bin/env python3
"""Summarize `perf sched timehist` output of the lab's ping test: per thread of the daemons (and
the ping, the softirq threads), how often it was switched in per ping, its scheduling delay (from
the wake-up to running) and its run time per switch-in, in microseconds.

    sched_summary.py TIMEHIST --pings N --pids "PID_A PID_B"

A lone packet's latency is the sum, along its path, of the wake-ups it causes (sch delay), the
run time before the packet leaves, and the wire; this table shows the first two for each daemon.
"""
import argparse
import re
import sys
from collections import defaultdict

LINE = re.compile(
    r"^\s*(?P<t>\d+\.\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<comm>.+?)\[(?P<tid>\d+)(?:/(?P<pid>\d+))?\]"
    r"\s+(?P<wait>\d+\.\d+)\s+(?P<delay>\d+\.\d+)\s+(?P<run>\d+\.\d+)"
)


def pct(xs, q):
    if not xs:
        return 0.0
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, int(round(q * len(xs) + 0.5)) - 1))
    return xs[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("timehist")
    ap.add_argument("--pings", type=int, required=True)
    ap.add_argument("--pids", default="")
    args = ap.parse_args()
    pids = set(args.pids.split())
    rows = defaultdict(lambda: {"delay": [], "run": [], "wait": [], "cpus": set()})
    first = last = None
    with open(args.timehist, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            t = float(m["t"])
            first = t if first is None else first
            last = t
            comm, tid, pid = m["comm"].strip(), m["tid"], m["pid"] or m["tid"]
            if pid in pids:
                who = f"daemon {pid}: {comm} [{tid}]"
            elif comm == "ping" or comm.startswith("ksoftirqd") or comm.startswith("kworker"):
                who = comm if comm == "ping" else comm.split("/")[0] + "/*"
            else:
                continue
            r = rows[who]
            r["delay"].append(float(m["delay"]) * 1000)
            r["run"].append(float(m["run"]) * 1000)
            r["wait"].append(float(m["wait"]) * 1000)
            r["cpus"].add(m["cpu"])
    if first is None:
        print("no samples", file=sys.stderr)
        return 1
    print(f"# {args.pings} pings over {last - first:.2f} s of trace; times in microseconds")
    print("| thread | switch-ins per ping | sch delay avg / p50 / p99 | run avg / p50 / p99 | CPUs |")
    print("|---|---|---|---|---|")
    for who in sorted(rows, key=lambda w: (not w.startswith("daemon"), w)):
        r = rows[who]
        n = len(r["delay"])
        d, run = r["delay"], r["run"]
        print(
            f"| {who} | {n / args.pings:.2f} | {sum(d) / n:.1f} / {pct(d, 0.5):.1f} / {pct(d, 0.99):.1f}"
            f" | {sum(run) / n:.1f} / {pct(run, 0.5):.1f} / {pct(run, 0.99):.1f}"
            f" | {','.join(sorted(r['cpus']))} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
