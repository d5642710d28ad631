#!/usr/bin/env python3
"""Paired A/B of the stop with 20 children (bench.py's shutdown row), many rounds.

    python3 bench/stop_ab.py [--rounds N] [--fork] NAME=ARGV0 ... (root)

Each NAME=ARGV0 is an init run as `ARGV0 [--] /bin/sh -c KIDS` in a new pid namespace
(`--` is added except for dumb-init); the peers' names (tini, tini-static, dumb-init,
catatonit) alone stand for their /usr/bin binaries. All variants run once per round in a
shuffled order; prints each one's median and quartiles, and the median of the per-round
differences against the first variant with a bootstrap 95% interval.
"""
import argparse
import os
import random
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

PEERS = {"tini": "/usr/bin/tini", "tini-static": "/usr/bin/tini-static",
         "dumb-init": "/usr/bin/dumb-init", "catatonit": "/usr/bin/catatonit"}


def argv_of(spec):
    name, _, path = spec.partition("=")
    path = path or PEERS.get(name, name)
    return name, [path] if os.path.basename(path) == "dumb-init" else [path, "--"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--fork", action="store_true", help="the command's TERM handler forks")
    ap.add_argument("inits", nargs="+", help="NAME=PATH or a peer's name")
    a = ap.parse_args()
    kids = bench.KIDS_FORK if a.fork else bench.KIDS
    variants = dict(argv_of(s) for s in a.inits)
    names = list(variants)
    res = {k: [] for k in names}
    rounds = []
    rnd = random.Random(11)
    for i in range(a.rounds):
        order = names[:]
        rnd.shuffle(order)
        r = {}
        for k in order:
            try:
                ms, rc = bench.shutdown_once(variants[k] + ["/bin/sh", "-c", kids])
                r[k] = ms
                res[k].append(ms)
            except Exception as e:  # noqa: BLE001
                print(f"{k}: {e}", file=sys.stderr)
        if len(r) == len(names):
            rounds.append(r)
        if (i + 1) % 10 == 0:
            print(f"round {i + 1}", file=sys.stderr, flush=True)
    base = names[0]
    for k in names:
        xs = sorted(res[k])
        q = statistics.quantiles(xs, n=4) if len(xs) >= 4 else [None] * 3
        line = f"{k:14} median {statistics.median(xs):6.2f} ms  (q1 {q[0]:.2f}, q3 {q[2]:.2f}, n {len(xs)})"
        if k != base:
            d = [r[base] - r[k] for r in rounds]
            ci = bench.boot_ci(d)
            line += f"  {base} − {k}: {statistics.median(d):+.2f} ms"
            if ci:
                line += f" (95% CI {ci[0]:+.2f} … {ci[1]:+.2f})"
        print(line)


if __name__ == "__main__":
    main()
