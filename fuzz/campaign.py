#!/usr/bin/env python3
"""The long fuzz campaign (fuzz/README.md): each target until its fuzzer has used CPU_S CPU-seconds
(user + system of the fuzzer process, from getrusage; not wall time, so the campaign can run at low
priority next to other work), in chunks of CHUNK wall seconds, from corpus/TARGET plus the checked-in
seeds and dictionary. Progress is kept in logs/campaign.json, so an interrupted campaign resumes;
a target whose fuzzer fails (crash, leak, timeout, OOM) is marked and left for a look at
artifacts/TARGET/.

Usage (after `RUSTC_BOOTSTRAP=1 cargo fuzz build`, from fuzz/):
    nice -n 19 ./campaign.py [TARGET...]        # default: every target of `cargo fuzz list`
Environment: CPU_S (default 3600), CHUNK (default 600), PAUSE_FILE (while it exists, no new chunk starts).
"""
import json
import os
import resource
import subprocess
import sys
import time

CPU_S = float(os.environ.get("CPU_S", "3600"))
CHUNK = int(os.environ.get("CHUNK", "600"))
PAUSE = os.environ.get("PAUSE_FILE", "")
ROOT = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(ROOT, "target", "x86_64-unknown-linux-gnu", "release")
STATE = os.path.join(ROOT, "logs", "campaign.json")


def targets():
    if len(sys.argv) > 1:
        return sys.argv[1:]
    out = subprocess.run(["cargo", "fuzz", "list"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "RUSTC_BOOTSTRAP": "1"}, check=True)
    return out.stdout.split()


def main():
    os.makedirs(os.path.join(ROOT, "logs"), exist_ok=True)
    state = json.load(open(STATE)) if os.path.exists(STATE) else {}
    for t in targets():
        st = state.setdefault(t, {"cpu": 0.0, "chunks": 0})
        if st.get("failed"):
            continue
        for d in (f"corpus/{t}", f"artifacts/{t}"):
            os.makedirs(os.path.join(ROOT, d), exist_ok=True)
        while st["cpu"] < CPU_S:
            if PAUSE and os.path.exists(PAUSE):
                time.sleep(10)
                continue
            seeds = [f"seeds/{t}"] if os.path.isdir(os.path.join(ROOT, "seeds", t)) else []
            dicts = [f"-dict=dict/{t}.dict"] if os.path.exists(os.path.join(ROOT, "dict", f"{t}.dict")) else []
            wall = int(min(CHUNK, max(60, CPU_S - st["cpu"])))
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            with open(os.path.join(ROOT, "logs", f"{t}.{st['chunks']}.log"), "w") as log:
                rc = subprocess.call(
                    [os.path.join(BIN, t), f"corpus/{t}", *seeds, f"-max_total_time={wall}",
                     "-timeout=60", "-rss_limit_mb=4096", "-print_final_stats=1",
                     f"-artifact_prefix=artifacts/{t}/", *dicts],
                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            st["cpu"] += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            st["chunks"] += 1
            st["loadavg"] = os.getloadavg()
            if rc != 0:
                st["failed"] = rc
            json.dump(state, open(STATE, "w"), indent=1)
            if rc != 0:
                print(f"{t}: the fuzzer exited with {rc}: see logs/{t}.{st['chunks'] - 1}.log and artifacts/{t}/")
                break
        print(f"{t}: {st['cpu']:.0f} CPU-s")


if __name__ == "__main__":
    main()
