#!/usr/bin/env python3
"""summarize.py RESULTS [system ...]

Reads RESULTS/raw/<system>/rep*/ (iperf3 JSON, ping.txt, *.probe.json, meta.json) and RESULTS/machine.json,
and writes RESULTS/results.md (markdown: header, main table, diagnostics) and RESULTS/results.json
(machine, per-rep values and median/min/max per figure). Prints the markdown.
"""
import json
import math
import re
import statistics
import sys
from pathlib import Path

GIB = 1e9  # "GB" in the tables is 10^9 bytes


def load(p):
    try:
        return json.loads(Path(p).read_text())
    except (OSError, ValueError):
        return None


def ok(d):
    return d is not None and "error" not in d and "end" in d


def ping_stats(path):
    try:
        txt = Path(path).read_text()
    except OSError:
        return None, None, None
    rtts = sorted(float(x) * 1000 for x in re.findall(r"time=([\d.]+) ms", txt))
    sent = re.search(r"(\d+) packets transmitted", txt)
    if not rtts:
        return None, None, None
    p99 = rtts[max(0, math.ceil(0.99 * len(rtts)) - 1)]  # nearest rank
    loss = 100.0 * (1 - len(rtts) / int(sent.group(1))) if sent else None
    return statistics.mean(rtts), p99, loss


def rep_figures(rd):
    f = {}
    for lbl in ("tcp1-ab", "tcp1-ba", "tcp4-ab"):
        d, pr = load(rd / f"{lbl}.json"), load(rd / f"{lbl}.probe.json") or {}
        key = lbl.replace("-", "_")
        if ok(d):
            rx = d["end"]["sum_received"]
            f[f"{key}_gbps"] = rx["bits_per_second"] / 1e9
            cpu = (pr.get("daemon_cpu_s_a") or 0) + (pr.get("daemon_cpu_s_b") or 0)
            gb = rx["bytes"] / GIB
            # CPU seconds of both daemons per GB delivered; meaningless without daemons (baseline)
            f[f"{key}_cpu_s_per_gb"] = cpu / gb if gb > 0 and cpu > 0 else None
            f[f"{key}_retrans_per_s"] = d["end"]["sum_sent"].get("retransmits", 0) / d["end"]["sum_sent"]["seconds"]
        else:
            f[f"{key}_gbps"] = f[f"{key}_cpu_s_per_gb"] = f[f"{key}_retrans_per_s"] = None
        f[f"{key}_machine_busy_pct"] = pr.get("machine_busy_pct")
        f[f"{key}_daemon_cpu_pct_a"] = 100 * pr["daemon_cpu_s_a"] / pr["wall_s"] if pr.get("wall_s") else None
        f[f"{key}_daemon_cpu_pct_b"] = 100 * pr["daemon_cpu_s_b"] / pr["wall_s"] if pr.get("wall_s") else None
        if pr.get("drops_a") and pr.get("drops_b"):
            f[f"{key}_udp_rcvbuf_drops"] = pr["drops_a"][0] + pr["drops_b"][0]
            f[f"{key}_link_drops"] = pr["drops_a"][1] + pr["drops_b"][1]
    for lbl, size in (("udp1400", 1400), ("udp64", 64)):
        d, pr = load(rd / f"{lbl}.json"), load(rd / f"{lbl}.probe.json") or {}
        if ok(d):
            rx = d["end"]["sum_received"]
            secs = rx["seconds"] or 1
            got = rx["packets"] - rx["lost_packets"]
            f[f"{lbl}_mbps"] = got * size * 8 / secs / 1e6
            f[f"{lbl}_kpps"] = got / secs / 1e3
            f[f"{lbl}_loss_pct"] = rx["lost_percent"]
        else:
            f[f"{lbl}_mbps"] = f[f"{lbl}_kpps"] = f[f"{lbl}_loss_pct"] = None
        if pr.get("drops_a") and pr.get("drops_b"):
            f[f"{lbl}_udp_rcvbuf_drops"] = pr["drops_a"][0] + pr["drops_b"][0]
            f[f"{lbl}_link_drops"] = pr["drops_a"][1] + pr["drops_b"][1]
    f["ping_avg_us"], f["ping_p99_us"], f["ping_loss_pct"] = ping_stats(rd / "ping.txt")
    f["tcprtt_avg_us"], f["tcprtt_p99_us"], _ = ping_stats(rd / "tcprtt.txt")
    meta = load(rd / "meta.json") or {}
    f["setup_ms"] = meta.get("setup_ms")
    idle = [meta.get("rss_idle_a_kb"), meta.get("rss_idle_b_kb")]
    hwm = [meta.get("hwm_a_kb"), meta.get("hwm_b_kb")]
    # per daemon: the larger of the two sides; 0 means "no daemon" (baseline)
    f["rss_idle_mib"] = max(idle) / 1024 if None not in idle and max(idle) > 0 else None
    f["rss_peak_mib"] = max(hwm) / 1024 if None not in hwm and max(hwm) > 0 else None
    f["version"] = meta.get("version")
    return f


def agg(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def cell(s, nd=2, spread=True):
    if not s:
        return "–"
    m = f"{s['median']:.{nd}f}"
    lo, hi = f"{s['min']:.{nd}f}", f"{s['max']:.{nd}f}"
    return m if not spread or lo == hi else f"{m} ({lo}–{hi})"


def md_table(hdr, rows):
    out = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main():
    res = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    raw = res / "raw"
    names = sys.argv[2:] or sorted(p.name for p in raw.iterdir() if p.is_dir())
    machine = load(res / "machine.json") or {}
    per_rep, summary = {}, {}
    for n in names:
        # a rep without meta.json did not finish (daemon died, timeout): it does not count
        reps = sorted((p for p in (raw / n).glob("rep*") if (p / "meta.json").exists()),
                      key=lambda p: int(p.name[3:]) if p.name[3:].isdigit() else 0)
        figs = [rep_figures(r) for r in reps]
        if not figs:
            continue
        per_rep[n] = figs
        keys = [k for k in figs[0] if k != "version"]
        summary[n] = {k: agg([f.get(k) for f in figs]) for k in keys}
        summary[n]["version"] = figs[0].get("version")
        summary[n]["reps"] = len(figs)

    lines = []
    lines.append(f"# privnet namespace lab: {machine.get('date', '?')}")
    lines.append("")
    lines.append(f"- Machine: {machine.get('cpu', '?')}, nproc {machine.get('nproc', '?')}, "
                 f"kernel {machine.get('kernel', '?')}, {machine.get('os', '?')}")
    lines.append(f"- Command: `{machine.get('command', 'benches/lab/run.sh')}`; "
                 f"{machine.get('reps', '?')} interleaved repetitions; privnet {machine.get('privnet_rev', '?')}")
    lines.append("- **Only ratios within one run count.** Both namespaces, both daemons, iperf3 and all softirq "
                 "work share the same cores; absolute figures are far below two real hosts.")
    lines.append("- Cells: median (min–max) over the repetitions. A→B = client in A sends; B→A = `iperf3 -R`. UDP is "
                 "unpaced (`-b 0`), measured at the receiver. CPU s/GB = utime+stime of both daemons during the "
                 "TCP 1-stream A→B test divided by the 10^9 bytes delivered. RSS = the larger of the two daemons: "
                 "idle = VmRSS after the first ping, before traffic; peak = VmHWM after all tests. Setup = start of "
                 "both daemons to the first ping reply (5 ms probe interval; for a port forwarder, the first TCP "
                 "round trip through its forward). TCP RTT = a 64 B request/response over one TCP connection "
                 "(tcp_rtt.py), the latency an application sees; a port forwarder has it but no ICMP ping, and its "
                 "UDP tests do not apply (–).")
    lines.append("")
    hdr = ["system", "TCP 1× A→B Gbit/s", "TCP 1× B→A Gbit/s", "TCP 4× A→B Gbit/s",
           "UDP 1400 B Mbit/s", "UDP 1400 B loss %", "UDP 64 B kpps", "UDP 64 B loss %",
           "ping avg µs", "ping p99 µs", "TCP RTT avg µs", "TCP RTT p99 µs", "CPU s/GB (TCP 1× A→B)", "RSS idle MiB", "RSS peak MiB", "setup ms"]
    rows = []
    for n, s in summary.items():
        rows.append([
            f"{n} (n={s['reps']})",
            cell(s["tcp1_ab_gbps"]), cell(s["tcp1_ba_gbps"]), cell(s["tcp4_ab_gbps"]),
            cell(s["udp1400_mbps"], 0), cell(s["udp1400_loss_pct"], 1), cell(s["udp64_kpps"], 1),
            cell(s["udp64_loss_pct"], 1), cell(s["ping_avg_us"], 0), cell(s["ping_p99_us"], 0),
            cell(s["tcprtt_avg_us"], 0), cell(s["tcprtt_p99_us"], 0),
            cell(s["tcp1_ab_cpu_s_per_gb"], 2), cell(s["rss_idle_mib"], 1), cell(s["rss_peak_mib"], 1),
            cell(s["setup_ms"], 0),
        ])
    lines.append(md_table(hdr, rows))
    lines.append("")
    lines.append("Diagnostics (medians): daemon CPU % of one core during TCP 1× A→B (A sends / B receives), "
                 "TCP retransmits/s, machine busy % (all cores), UDP receive-buffer drops and link+TUN drops "
                 "summed over both namespaces per test.")
    lines.append("")
    dh = ["system", "CPU % A/B (TCP 1×)", "CPU s/GB TCP 1× B→A", "CPU s/GB TCP 4×", "retrans/s (TCP 1×)",
          "machine busy % (TCP 1×)", "rcvbuf drops TCP 1× / UDP 1400 / UDP 64", "link+TUN drops (same)"]
    drows = []
    for n, s in summary.items():
        drows.append([
            n, f"{cell(s['tcp1_ab_daemon_cpu_pct_a'], 0, False)}/{cell(s['tcp1_ab_daemon_cpu_pct_b'], 0, False)}",
            cell(s["tcp1_ba_cpu_s_per_gb"], 2, False), cell(s["tcp4_ab_cpu_s_per_gb"], 2, False),
            cell(s["tcp1_ab_retrans_per_s"], 0, False), cell(s["tcp1_ab_machine_busy_pct"], 0, False),
            " / ".join(cell(s.get(f"{t}_udp_rcvbuf_drops"), 0, False) for t in ("tcp1_ab", "udp1400", "udp64")),
            " / ".join(cell(s.get(f"{t}_link_drops"), 0, False) for t in ("tcp1_ab", "udp1400", "udp64")),
        ])
    lines.append(md_table(dh, drows))
    lines.append("")
    lines.append("Versions: " + "; ".join(f"{n}: {s['version']}" for n, s in summary.items()))
    retries = res / "retries.txt"
    if retries.exists() and retries.read_text().strip():
        lines.append("")
        lines.append("Retried runs: " + "; ".join(retries.read_text().split("\n")).strip("; "))
    fails = res / "failures.txt"
    if fails.exists() and fails.read_text().strip():
        lines.append("")
        lines.append("Failed runs: " + "; ".join(fails.read_text().split("\n")).strip("; "))
    md = "\n".join(lines) + "\n"
    (res / "results.md").write_text(md)
    (res / "results.json").write_text(json.dumps(
        {"machine": machine, "note": "only ratios within one run count", "summary": summary, "per_rep": per_rep},
        indent=1))
    print(md, end="")


if __name__ == "__main__":
    main()
