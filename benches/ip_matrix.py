#!/usr/bin/env python3
"""The report of benches/ip_matrix.sh: OUT/table.md and the latency-against-loss plots
OUT/loss-rtt50.svg and OUT/loss-rtt150.svg, from OUT/CELL/cell.json and OUT/CELL/SYSTEM.json.

Usage: benches/ip_matrix.py OUT   (standard library only)
"""
import json
import math
import os
import sys

SYSTEMS = ["huddle", "huddle-1s", "redis-tls", "nats-tls"]
TCP = ["redis-tls", "nats-tls"]
LABEL = {
    "huddle": "Huddle",
    "huddle-1s": "Huddle, one stream",
    "redis-tls": "Redis 7 TLS",
    "nats-tls": "NATS 2.9 TLS",
}
COLOR = {"huddle": "#1f77b4", "huddle-1s": "#9467bd", "redis-tls": "#d62728", "nats-tls": "#2ca02c"}


def load(out):
    cells = []
    for name in os.listdir(out):
        path = os.path.join(out, name, "cell.json")
        if not os.path.isfile(path):
            continue
        cell = json.load(open(path))
        cell["runs"] = {}
        for s in SYSTEMS:
            try:
                cell["runs"][s] = json.load(open(os.path.join(out, name, f"{s}.json")))
            except (OSError, ValueError):
                pass
        cells.append(cell)
    return sorted(cells, key=lambda c: c.get("started", ""))


def ms(us):
    return us / 1000.0


def fmt(v, digits=None):
    if v is None:
        return "-"
    if digits is None:
        digits = 0 if abs(v) >= 100 else 1
    return f"{v:,.{digits}f}"


def lat(r):
    lt = r["latency_us"]
    return f"{fmt(ms(lt['p50']))} / {fmt(ms(lt['p99']))} / {fmt(ms(lt['p999']))} / {fmt(ms(lt['max']))}"


def p99(r):
    return ms(r["latency_us"]["p99"])


def keeps_up(r):
    return r["deliveries"] >= r["expected_deliveries"] and r["lost"] == 0


def best_tcp(cell):
    """The TCP peer with the lowest p99 that delivered everything it was expected to; else the
    lowest p99 among those that ran."""
    ran = [(p99(cell["runs"][s]), s) for s in TCP if s in cell["runs"]]
    whole = [x for x in ran if keeps_up(cell["runs"][x[1]])]
    pick = min(whole or ran, default=None)
    return pick


def delivered(r):
    d, e = r["deliveries"], r["expected_deliveries"]
    mark = "" if d >= e and r["lost"] == 0 else " **short**"
    if r["connect_failures"]:
        mark += f" ({r['connect_failures']} members never connected)"
    return f"{d:,} / {e:,}{mark}"


def loss_rows(cells, kind):
    rows = [
        "| loss | RTT | system | delivered / expected | lost | p50 / p99 / p99.9 / max ms "
        "| p99 ÷ RTT | p99 ÷ best TCP p99 | reconnects | harness send lag p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in sorted((c for c in cells if c["kind"] == kind),
                       key=lambda c: (c["rtt_ms"], c["loss_pct"])):
        best = best_tcp(cell)
        for s in SYSTEMS:
            r = cell["runs"].get(s)
            if r is None:
                continue
            ratio = "-" if best is None else f"{p99(r) / best[0]:.2f}"
            rows.append(
                f"| {cell['loss_pct']}% | {cell['rtt_ms']} ms | {LABEL[s]} | {delivered(r)} "
                f"| {r['lost']:,} | {lat(r)} | {p99(r) / cell['rtt_ms']:.1f} | {ratio} "
                f"| {r['reconnects']} | {fmt(ms(r['send_lag_us']['p99']))} |")
    return rows


def outage_rows(cells):
    rows = [
        "| system | caught up after the link's return, ms | first delivery after it, ms "
        "| delivered / expected | lost | reconnects | p99 / max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell in (c for c in cells if c["kind"] == "blackhole"):
        for s in SYSTEMS:
            r = cell["runs"].get(s)
            if r is None:
                continue
            o = r["outages"][0] if r["outages"] else {}
            rows.append(
                f"| {LABEL[s]} | {fmt(o.get('caught_up_after_end_ms'), 0)} "
                f"| {fmt(o.get('first_delivery_after_end_ms'), 0)} | {delivered(r)} | {r['lost']:,} "
                f"| {r['reconnects']} | {fmt(p99(r))} / {fmt(ms(r['latency_us']['max']))} |")
    return rows


def rebind_rows(cells):
    rows = [
        "| system | first delivery after the change p50 / max ms | members without one "
        "| lost | send errors + unacked | reconnects | delivered / expected |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell in (c for c in cells if c["kind"] == "rebind"):
        for s in SYSTEMS:
            r = cell["runs"].get(s)
            if r is None:
                continue
            a = r["address_changes"][0] if r["address_changes"] else {}
            rows.append(
                f"| {LABEL[s]} | {fmt(a.get('first_delivery_p50_ms'), 0)} / "
                f"{fmt(a.get('first_delivery_max_ms'), 0)} | {a.get('members_without', '-')} "
                f"| {r['lost']:,} | {r['send_errors']} + {r['unacked']} | {r['reconnects']} "
                f"| {delivered(r)} |")
    return rows


def start_rows(cells):
    rows = [
        "| system | connect + login p50 / max ms | p50 ÷ RTT | first delivery after start "
        "(connect + login + the message's RTT), p50 ms |",
        "|---|---|---|---|",
    ]
    for cell in (c for c in cells if c["kind"] == "start"):
        for s in SYSTEMS:
            r = cell["runs"].get(s)
            if r is None:
                continue
            c = r["connect_us"]
            rows.append(
                f"| {LABEL[s]} | {fmt(ms(c['p50']), 0)} / {fmt(ms(c['max']), 0)} "
                f"| {ms(c['p50']) / cell['rtt_ms']:.1f} "
                f"| {fmt(ms(c['p50']) + cell['rtt_ms'], 0)} |")
    return rows


def targets(cells):
    rows = ["| target | cell | Huddle | status |", "|---|---|---|---|"]

    def add(target, cell, figure, met):
        status = "-" if met is None else ("**met**" if met else "**not met**")
        rows.append(f"| {target} | {cell} | {figure} | {status} |")

    for cell in sorted((c for c in cells if c["kind"] in ("loss", "w3")),
                       key=lambda c: (c["kind"], c["rtt_ms"], c["loss_pct"])):
        h, best = cell["runs"].get("huddle"), best_tcp(cell)
        name = f"{cell['cell']} ({cell['loss_pct']}%, {cell['rtt_ms']} ms)"
        if h is None or cell["loss_pct"] == 0:
            continue
        up = keeps_up(h)
        add("keeps up, nothing lost", name, delivered(h) + f", lost {h['lost']}", up)
        if best is not None:
            q = p99(h) / best[0]
            if cell["loss_pct"] >= 10:
                add("still ahead of the best TCP peer (p99)", name,
                    f"p99 {fmt(p99(h))} ms vs {LABEL[best[1]]} {fmt(best[0])} ms", q < 1)
            else:
                add("p99 ≤ 1/3 of the best TCP peer's", name,
                    f"{fmt(p99(h))} vs {LABEL[best[1]]} {fmt(best[0])} ms ({q:.2f}×)", q <= 1 / 3)
        if cell["loss_pct"] == 5:
            x = p99(h) / cell["rtt_ms"]
            add("p99 ≤ 2.5× RTT at 5%", name, f"{fmt(p99(h))} ms = {x:.1f}× RTT", x <= 2.5)
    for cell in (c for c in cells if c["kind"] == "blackhole"):
        h = cell["runs"].get("huddle")
        if h and h["outages"]:
            v = h["outages"][0].get("caught_up_after_end_ms")
            add("caught up within 1 s of a 3 s blackhole's end", cell["cell"], f"{fmt(v, 0)} ms",
                v is not None and v <= 1000)
    for cell in (c for c in cells if c["kind"] == "rebind"):
        h = cell["runs"].get("huddle")
        if h and h["address_changes"]:
            a = h["address_changes"][0]
            mx, bound = a.get("first_delivery_max_ms"), cell["rtt_ms"] + 100
            add(f"address change: nothing lost, delivers within RTT + 100 ms ({bound} ms)",
                cell["cell"],
                f"lost {h['lost']}, first delivery p50 {fmt(a.get('first_delivery_p50_ms'), 0)} / "
                f"max {fmt(mx, 0)} ms, {a.get('members_without')} members without",
                h["lost"] == 0 and mx is not None and mx <= bound and a.get("members_without") == 0)
    for cell in (c for c in cells if c["kind"] == "start"):
        h = cell["runs"].get("huddle")
        if h:
            add("first message after start at 100 ms RTT (reported)", cell["cell"],
                f"connect + login p50 {fmt(ms(h['connect_us']['p50']), 0)} ms", None)
    return rows


def svg_plot(cells, rtt, path):
    """p99 (solid) and p50 (dashed) against loss, one line per system, log-scale latency."""
    pts = {}
    for cell in cells:
        if cell["kind"] != "loss" or cell["rtt_ms"] != rtt:
            continue
        for s, r in cell["runs"].items():
            pts.setdefault(s, []).append(
                (cell["loss_pct"], ms(r["latency_us"]["p50"]), p99(r)))
    if not pts:
        return False
    losses = sorted({p[0] for v in pts.values() for p in v})
    w, h, left, right, top, bottom = 760, 480, 70, 190, 40, 50
    pw, ph = w - left - right, h - top - bottom
    lo = min(p[1] for v in pts.values() for p in v)
    hi = max(p[2] for v in pts.values() for p in v)
    lo, hi = 10 ** math.floor(math.log10(lo * 0.9)), 10 ** math.ceil(math.log10(hi * 1.1))

    def x(loss):
        i = losses.index(loss)
        return left + (pw * i / max(1, len(losses) - 1))

    def y(v):
        return top + ph * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="14">Delivery latency against uniform loss, '
           f'{rtt} ms RTT (huddle ipsim): p99 solid, p50 dashed</text>']
    decade = lo
    while decade <= hi:
        for m in (1, 2, 5):
            v = decade * m
            if lo <= v <= hi:
                out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                           f'stroke="#ddd"/>')
                out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">'
                           f'{v:g} ms</text>')
        decade *= 10
    for loss in losses:
        out.append(f'<line x1="{x(loss):.1f}" x2="{x(loss):.1f}" y1="{top}" y2="{top + ph}" '
                   f'stroke="#eee"/>')
        out.append(f'<text x="{x(loss):.1f}" y="{top + ph + 18}" text-anchor="middle">'
                   f'{loss}%</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 10}" text-anchor="middle">loss, each way</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(rtt):.1f}" y2="{y(rtt):.1f}" '
               f'stroke="#888" stroke-dasharray="2,3"/>')
    out.append(f'<text x="{left + pw - 4}" y="{y(rtt) - 4:.1f}" text-anchor="end" fill="#888">'
               f'RTT</text>')
    for i, s in enumerate(x for x in SYSTEMS if x in pts):
        v = sorted(pts[s])
        for idx, dash in ((2, ""), (1, ' stroke-dasharray="6,4"')):
            line = " ".join(f"{x(p[0]):.1f},{y(p[idx]):.1f}" for p in v)
            out.append(f'<polyline points="{line}" fill="none" stroke="{COLOR[s]}" '
                       f'stroke-width="2"{dash}/>')
            for p in v:
                out.append(f'<circle cx="{x(p[0]):.1f}" cy="{y(p[idx]):.1f}" r="3" '
                           f'fill="{COLOR[s]}"/>')
        ly = top + 20 + 22 * i
        out.append(f'<line x1="{left + pw + 15}" x2="{left + pw + 40}" y1="{ly}" y2="{ly}" '
                   f'stroke="{COLOR[s]}" stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 46}" y="{ly + 4}">{LABEL[s]}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")
    return True


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "target/ip_matrix"
    cells = load(out)
    if not cells:
        sys.exit(f"no cells in {out}")
    md = []
    first = cells[0]
    md.append(f"Commit `{first.get('commit', '?')}`, from {first.get('started', '?')} to "
              f"{cells[-1].get('started', '?')} (last cell's start); load average at each cell's "
              f"start {', '.join(c.get('loadavg', '?').split()[0] for c in cells)}. Seed "
              f"{first['seed']}, one run per system and cell, warm-up {first['warmup_s']} s, "
              f"{first['duration_s']} s measured, {first.get('drain_s', 2)} s drain (a delivery "
              "not in by then counts as lost); latency from each message's intended send time "
              "to its arrival.")
    md.append("")
    for kind, title in (("loss", "20 rooms × 10 members, 4 rooms per connection, 20 msg/s per "
                         "room, 200 B (15,600 deliveries/s), uniform loss both ways"),
                        ("w3", "W3 shape in 10 rooms: 100 rooms of 100, 1,000 connections each "
                         "in 10 rooms, 1 msg/s per room (9,900 deliveries/s)")):
        if any(c["kind"] == kind for c in cells):
            md += [f"**{title}**", ""] + loss_rows(cells, kind) + [""]
    for kind, title, rows in (
            ("blackhole", "A 3 s blackhole (both directions), 20 × 10 in 4 rooms, 50 ms RTT",
             outage_rows),
            ("rebind", "An address change of the client side, 20 × 10 in 4 rooms, 50 ms RTT",
             rebind_rows),
            ("start", "A fresh start at 100 ms RTT, 20 × 10 in 4 rooms", start_rows)):
        if any(c["kind"] == kind for c in cells):
            md += [f"**{title}**", ""] + rows(cells) + [""]
    md += ["**Issue 24 §3 targets**", ""] + targets(cells) + [""]
    for rtt in (50, 150):
        if svg_plot(cells, rtt, os.path.join(out, f"loss-rtt{rtt}.svg")):
            md.append(f"Plot: `loss-rtt{rtt}.svg`")
    text = "\n".join(md) + "\n"
    open(os.path.join(out, "table.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
