"""Summarises benches/compare/run.sh's JSON files: medians (min-max) per case and system, and
the ratios of Huddle's deliveries per server-CPU-second to each other system's."""
import json
import os
import statistics

out, runs = os.environ["OUT"], int(os.environ["RUNS"])
systems, names = os.environ["SYSTEMS"].split(), os.environ["NAMES"].split()


def load(name, sys):
    rs = {}
    for run in range(1, runs + 1):
        try:
            with open(f"{out}/{name}_{sys}_run{run}.json") as f:
                rs[run] = json.load(f)
        except (OSError, ValueError):
            pass
    return rs


def per_cpu_s(r):
    cpu = r.get("server_cpu_s")
    return r["measured_deliveries"] / cpu if cpu else None


def spread(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}-{fmt(max(vals))})"


k = lambda v: f"{v / 1000:.0f}k"
ms = lambda v: f"{v / 1000:.2f}"
x = lambda v: f"{v:.2f}"

print("| case | system | runs | deliveries/s | deliveries per server-CPU-s | p50 ms | p99 ms "
      "| lost/dup/ooo (all runs) | harness send lag p99 ms |")
print("|---|---|---|---|---|---|---|---|---|")
for name in names:
    for sys in systems:
        rs = list(load(name, sys).values())
        bad = [sum(r[f] for r in rs) for f in ("lost", "duplicates", "out_of_order")]
        print(f"| {name} | {sys} | {len(rs)} | {spread([r['deliveries_per_s'] for r in rs], k)} "
              f"| {spread([per_cpu_s(r) for r in rs], k)} "
              f"| {spread([r['latency_us']['p50'] for r in rs], ms)} "
              f"| {spread([r['latency_us']['p99'] for r in rs], ms)} "
              f"| {'/'.join(map(str, bad))} "
              f"| {spread([r['send_lag_us']['p99'] for r in rs], ms)} |")

print()
# Every Huddle configuration (huddle, huddle-ack0, huddle-ack9) against every other system.
ours = [s for s in systems if s.startswith("huddle")]
others = [s for s in systems if not s.startswith("huddle")]
pairs = [(h, o) for h in ours for o in others]
print("Huddle's deliveries per server-CPU-second divided by each system's, run by run "
      "(same round, back to back): median (min-max)")
print()
print("| case | " + " | ".join(f"{h} / {o}" for h, o in pairs) + " |")
print("|---|" + "---|" * len(pairs))
for name in names:
    cells = []
    for hs, s in pairs:
        h = load(name, hs)
        o = load(name, s)
        ratios = [per_cpu_s(h[i]) / per_cpu_s(o[i]) for i in h
                  if i in o and per_cpu_s(h[i]) and per_cpu_s(o[i])]
        cells.append(spread(ratios, x))
    print(f"| {name} | " + " | ".join(cells) + " |")
