#!/usr/bin/env python3
"""smss against its peers: prints one markdown table (and short notes) on stdout.

Run through scripts/bench, which installs the peers and builds the static binaries:
    python3 bench/bench.py --bin-dir DIR [--quick] [--only SECTIONS] [--json PATH]
Progress goes to stderr. Every process started here has a hard timeout; a section that fails
puts "failed: why" in its cells and the rest go on. Variants are always interleaved
round-robin (in a shuffled order per round), because the machine is small and shared: only
ratios measured in the same run mean anything.
"""
import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(ROOT, "target", "bench")
PEERS = ["tini", "tini-static", "dumb-init", "catatonit", "busybox init"]
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def clean_env():
    env = dict(os.environ)
    for k in ("SMSS_LOG", "container", "NOTIFY_SOCKET", "TINI_SUBREAPER", "TINI_VERBOSITY"):
        env.pop(k, None)
    path = env.get("PATH", "").split(":")
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if d not in path:
            path.append(d)
    env["PATH"] = ":".join(p for p in path if p)
    return env


ENV = clean_env()


# ---------------------------------------------------------------------------------------------
# small helpers


def median(xs):
    return statistics.median(xs) if xs else None


def boot_ci(xs, stat=statistics.median, n=1000, seed=7):
    """95% bootstrap interval of stat(xs)."""
    if len(xs) < 5:
        return None
    rnd = random.Random(seed)
    vals = sorted(stat(rnd.choices(xs, k=len(xs))) for _ in range(n))
    return vals[int(0.025 * n)], vals[int(0.975 * n) - 1]


def children(pid):
    """Children of every thread of pid (CONFIG_PROC_CHILDREN)."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def proc_stat(pid):
    """(comm, state) or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    l, r = s.index("("), s.rindex(")")
    return s[l + 1:r], s[r + 2]


def comm(pid):
    st = proc_stat(pid)
    return st[0] if st else None


def wait_for(pred, timeout, step=0.001):
    """Poll pred() until it returns a truthy value or timeout seconds pass."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            return None
        time.sleep(step)


def kill_tree(p, ns_init=None):
    """SIGKILL the namespace (its PID 1 takes the rest with it) and the unshare process."""
    for pid in (ns_init, p.pid if p else None):
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    if p:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def ns_spawn(argv, unshare=None, stdout=subprocess.DEVNULL):
    """Start argv as PID 1 of a new pid namespace; return (Popen, host pid of PID 1)."""
    cmd = (unshare or (UNSHARE + ["--kill-child"])) + argv
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout,
                         stderr=subprocess.DEVNULL, env=ENV)
    kids = wait_for(lambda: children(p.pid), 5)
    if not kids:
        kill_tree(p)
        raise RuntimeError(f"no PID 1 appeared under unshare for {argv[0]}")
    return p, kids[0]


def run_fast(cmd, timeout):
    """Run cmd, return its exit status ("timeout" if killed). Waits on a pidfd: Popen.wait with
    a timeout polls with sleeps, which would quantise a 3 ms run to the timer tick."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=ENV)
    fd = os.pidfd_open(p.pid)
    try:
        r, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not r:
        p.kill()
        p.wait()
        return "timeout"
    return p.wait()


def fmt(x, nd=2, unit=""):
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:,.{nd}f}{unit}"


def ratio(a, b, nd=2):
    if a is None or b is None or isinstance(a, str) or isinstance(b, str) or b == 0:
        return "n/a"
    return f"{a / b:.{nd}f}×"


def vs(a, peer, b, nd=2):
    """'1.23× peer', or — when there is no peer to compare with."""
    return "—" if peer is None else f"{ratio(a, b, nd)} {peer}"


# ---------------------------------------------------------------------------------------------
# the set of inits


def init_argv(bindir):
    """name -> argv prefix that runs CMD... as the init's child ("busybox init" is special)."""
    return {
        "smss": [os.path.join(bindir, "smss"), "--"],
        "tini": ["/usr/bin/tini", "--"],
        "tini-static": ["/usr/bin/tini-static", "--"],
        "dumb-init": ["/usr/bin/dumb-init"],
        "catatonit": ["/usr/bin/catatonit", "--"],
    }


def available(inits):
    out = {}
    for k, v in inits.items():
        if os.access(v[0], os.X_OK):
            out[k] = v
        else:
            log(f"{k}: {v[0]} missing, left out")
    return out


class BusyboxRoot:
    """A tiny chroot with static busybox, for busybox init inside a pid namespace: busybox
    init reads /etc/inittab and only that, and the host's /etc must not be touched."""

    def __init__(self, name, inittab):
        self.dir = os.path.join(WORK, "bbroot-" + name)
        shutil.rmtree(self.dir, ignore_errors=True)
        for d in ("bin", "etc", "proc", "dev", "tmp"):
            os.makedirs(os.path.join(self.dir, d))
        shutil.copy2(shutil.which("busybox") or "/bin/busybox", os.path.join(self.dir, "bin"))
        for a in ("sh", "sleep", "seq", "true", "init"):
            os.symlink("busybox", os.path.join(self.dir, "bin", a))
        null = os.path.join(self.dir, "dev", "null")
        os.mknod(null, 0o20666, os.makedev(1, 3))
        os.chmod(null, 0o666)
        with open(os.path.join(self.dir, "etc", "inittab"), "w") as f:
            f.write(inittab)

    def unshare(self):
        return ["unshare", "--pid", "--fork", f"--mount-proc={self.dir}/proc", "--kill-child",
                "chroot", self.dir]

    argv = ["/bin/busybox", "init"]


# ---------------------------------------------------------------------------------------------
# 1. start-up overhead


def sec_startup(inits, n):
    variants = {"bare": UNSHARE + ["/bin/true"]}
    for k, v in inits.items():
        variants[k] = UNSHARE + v + ["/bin/true"]
    times = {k: [] for k in variants}
    bad = {k: [] for k in variants}

    def once(k):
        t0 = time.perf_counter()
        rc = run_fast(variants[k], 10)
        dt = (time.perf_counter() - t0) * 1000
        if rc == 0:
            times[k].append(dt)
        else:
            bad[k].append(rc)
        return dt

    for k in variants:  # warm-up: page cache, dentries
        once(k), once(k)
        times[k].clear()
    order = list(variants)
    rnd = random.Random(1)
    rounds = []
    for _ in range(n):
        rnd.shuffle(order)
        rounds.append({k: once(k) for k in order})
    # Overhead = median over rounds of (variant - bare in the same round): the machine is
    # shared, and pairing within a round cancels load that drifts during the run.
    res = {}
    bare = median(times["bare"])
    for k in inits:
        if bad[k] and not times[k]:
            res[k] = f"failed: exit {bad[k][0]}"
            continue
        res[k] = median([r[k] - r["bare"] for r in rounds])
    out = {"overhead_ms": res, "bare_ms": bare, "runs": n,
           "errors": {k: len(v) for k, v in bad.items() if v}}
    if "smss" in inits and "catatonit" in inits:
        diffs = [r["smss"] - r["catatonit"] for r in rounds]
        out["smss_minus_catatonit_ms"] = median(diffs)
        out["smss_minus_catatonit_ci"] = boot_ci(diffs)
    # The same paired difference against every peer; the table reports the best one.
    out["smss_minus_peer"] = {}
    if "smss" in inits:
        for k in inits:
            if k != "smss" and isinstance(res.get(k), float):
                diffs = [r["smss"] - r[k] for r in rounds]
                out["smss_minus_peer"][k] = {"ms": median(diffs), "ci": boot_ci(diffs)}
    return out


# ---------------------------------------------------------------------------------------------
# 2. idle memory with one child


def read_mem(pid):
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                vals[k] = int(v.split()[0])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                vals["Pss"] = int(line.split()[1])
    return vals


def mem_once(argv, unshare=None):
    p, p1 = ns_spawn(argv, unshare)
    try:
        def ready():
            # the child has exec'd sleep and PID 1 is asleep again (its post-fork work is done)
            kids = children(p1)
            st = proc_stat(p1)
            return kids and comm(kids[0]) == "sleep" and st and st[1] == "S"
        if not wait_for(ready, 5):
            raise RuntimeError("child did not appear within 5 s")
        # idle, as init-anchors.md measured its baselines: 0.5 s after the child exists (an init
        # may settle after its start-up, e.g. smss trims its working set 50 ms after the boot)
        wait_for(lambda: False, 0.5)
        # settle: PID 1 must stay asleep over two consecutive reads
        a = read_mem(p1)
        wait_for(lambda: False, 0.02)
        b = read_mem(p1)
        return b if b == a else read_mem(p1)
    finally:
        kill_tree(p, p1)


def sec_memory(inits, bb, n):
    variants = {k: (v + ["/bin/sleep", "1000"], None) for k, v in inits.items()}
    if bb:
        variants["busybox init"] = (BusyboxRoot.argv, bb.unshare())
    res = {k: [] for k in variants}
    err = {}
    order = list(variants)
    rnd = random.Random(2)
    for _ in range(n):
        rnd.shuffle(order)
        for k in order:
            try:
                res[k].append(mem_once(*variants[k]))
            except Exception as e:  # noqa: BLE001 - any failure goes into the cell
                err[k] = str(e)
    out = {}
    for k, runs in res.items():
        if not runs:
            out[k] = {"error": err.get(k, "no runs")}
            continue
        out[k] = {m: median([r[m] for r in runs if m in r]) for m in runs[0]}
    return out


# ---------------------------------------------------------------------------------------------
# 3. sizes


def sec_sizes(bindir):
    out = {}
    files = {"smss": os.path.join(bindir, "smss"), "smctl": os.path.join(bindir, "smctl"),
             "smss-session": os.path.join(bindir, "smss-session"),
             "tini": "/usr/bin/tini", "tini-static": "/usr/bin/tini-static",
             "dumb-init": "/usr/bin/dumb-init", "catatonit": "/usr/bin/catatonit",
             "busybox init": shutil.which("busybox") or "/bin/busybox"}
    for k, path in files.items():
        try:
            size = os.stat(path).st_size
            desc = subprocess.run(["file", "-bL", path], capture_output=True, text=True,
                                  timeout=10).stdout
            out[k] = {"bytes": size, "static": "statically linked" in desc or "static-pie" in desc,
                      "stripped": "not stripped" not in desc}
        except (OSError, subprocess.SubprocessError) as e:
            out[k] = {"error": str(e)}
    return out


# ---------------------------------------------------------------------------------------------
# 4. shutdown with 20 children


KIDS = "for i in $(seq 20); do sleep 1000 & done; wait"
# The same, and the command's SIGTERM handler forks one more process as it exits: a process
# forked during the stop, after any sweep of /proc began (issue 10's `smctl poweroff; sleep`).
KIDS_FORK = "trap 'sleep 1000 & exit 0' TERM; for i in $(seq 20); do sleep 1000 & done; wait"


def shutdown_once(argv, unshare=None):
    p, p1 = ns_spawn(argv, unshare)
    try:
        def ready():
            ds = descendants(p1)
            return sum(1 for d in ds if comm(d) == "sleep") >= 20 and ds
        if not wait_for(ready, 10):
            raise RuntimeError("the 20 children did not appear within 10 s")
        # let the 20th sleep finish exec and PID 1 go back to sleep
        wait_for(lambda: (proc_stat(p1) or ("", "S"))[1] == "S", 1)
        fd = os.pidfd_open(p1)
        try:
            t0 = time.perf_counter()
            os.kill(p1, signal.SIGTERM)
            r, _, _ = select.select([fd], [], [], 30)
            t1 = time.perf_counter()
        finally:
            os.close(fd)
        if not r:
            raise RuntimeError("still running 30 s after SIGTERM")
        rc = p.wait(timeout=10)
        return (t1 - t0) * 1000, rc
    finally:
        kill_tree(p, p1)


def build_floor():
    """bench/stopfloor.c, the floor of a graceful stop (kill(-1, SIGTERM), reap, exit), built
    static with the system's C compiler into target/bench/; None when there is none."""
    from boot import build_static_c  # noqa: E402  (bench/boot.py)
    return build_static_c("stopfloor", WORK)


def sec_shutdown(inits, bb, n, kids=KIDS, floor=None):
    """Every init, and the floor (not a peer) when built, once per round in a shuffled order.
    Keeps each round's times, so smss − each peer is also a paired per-round median."""
    variants = {}
    for k in ("smss", "tini", "tini-static", "dumb-init", "catatonit"):
        if k in inits:
            variants[k] = (inits[k] + ["/bin/sh", "-c", kids], None)
    if floor:
        variants["floor"] = ([floor, "/bin/sh", "-c", kids], None)
    if bb:
        variants["busybox init"] = (BusyboxRoot.argv, bb.unshare())
    res = {k: [] for k in variants}
    rcs = {k: set() for k in variants}
    err = {}
    rounds = []
    order = list(variants)
    rnd = random.Random(4)
    for _ in range(n):
        rnd.shuffle(order)
        r = {}
        for k in order:
            try:
                ms, rc = shutdown_once(*variants[k])
                res[k].append(ms)
                rcs[k].add(rc)
                r[k] = ms
            except Exception as e:  # noqa: BLE001
                err[k] = str(e)
        rounds.append(r)
    out = {}
    for k in variants:
        xs = res[k]
        out[k] = {"ms": median(xs), "max": max(xs) if xs else None,
                  "q1": statistics.quantiles(xs, n=4)[0] if len(xs) >= 4 else None,
                  "q3": statistics.quantiles(xs, n=4)[2] if len(xs) >= 4 else None,
                  "rc": sorted(rcs[k]), "error": None if xs else err.get(k), "runs": len(xs)}
    # smss − peer in the same round, for every peer (and the floor)
    for k in variants:
        if k == "smss" or "smss" not in variants:
            continue
        diffs = [r["smss"] - r[k] for r in rounds if "smss" in r and k in r]
        out[k]["smss_minus"] = {"ms": median(diffs), "ci": boot_ci(diffs)}
    return out


# ---------------------------------------------------------------------------------------------
# 5. reaping 10k orphans


def reap_once(argv, n):
    payload = [sys.executable, "-S", "-E", os.path.join(HERE, "reap_payload.py"), str(n), "30"]
    cmd = UNSHARE + ["--kill-child"] + argv + payload
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=ENV, timeout=90)
    except subprocess.TimeoutExpired:
        raise RuntimeError("timed out after 90 s")
    wall = time.perf_counter() - t0
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            d["wall_s"] = wall
            return d
    raise RuntimeError(f"payload printed nothing (exit {r.returncode}) {r.stderr[-200:]}")


def sec_reap(inits, n, runs):
    variants = {k: inits[k] for k in ("smss", "tini", "tini-static", "dumb-init", "catatonit")
                if k in inits}
    res = {k: [] for k in variants}
    err = {}
    order = list(variants)
    rnd = random.Random(5)
    for _ in range(runs):
        rnd.shuffle(order)
        for k in order:
            try:
                res[k].append(reap_once(variants[k], n))
            except Exception as e:  # noqa: BLE001
                err[k] = str(e)
    out = {}
    for k, rs in res.items():
        if not rs:
            out[k] = {"error": err.get(k, "no runs")}
            continue
        out[k] = {m: median([r[m] for r in rs]) for m in rs[0]}
        out[k]["left_max"] = max(r["left"] for r in rs)
    return out


# ---------------------------------------------------------------------------------------------
# 7. sessions (init/benches/sessions.rs, written by another engineer)


def sec_sessions(quick, bindir):
    bench = os.path.join(ROOT, "init", "benches", "sessions.rs")
    if not os.path.exists(bench):
        return {"error": "n/a (not built): init/benches/sessions.rs does not exist"}
    cargo = shutil.which("cargo", path=ENV["PATH"]) or os.path.expanduser("~/.cargo/bin/cargo")
    # the shipped (static) smss and smss-session, as every other section measures
    env = dict(ENV, SESSIONS_BENCH_N="50" if quick else "200", SMSS_BIN_DIR=os.path.abspath(bindir))
    steps = [[cargo, "bench", "-p", "smss", "--bench", "sessions"]]
    for cmd in steps:
        try:
            r = subprocess.run(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, env=env, timeout=420)
        except subprocess.TimeoutExpired:
            return {"error": f"failed: {' '.join(cmd[1:3])} timed out"}
        except OSError as e:
            return {"error": f"failed: {e}"}
        if r.returncode != 0:
            text = r.stdout + "\n" + r.stderr
            tail = [ln.strip() for ln in text.splitlines()
                    if "error" in ln.lower() or "panicked" in ln][:2]
            return {"error": f"failed: {' '.join(cmd[1:3])} exit {r.returncode}: "
                             f"{' / '.join(tail)[:200]}"}
    out = {"lines": [ln.strip() for ln in r.stdout.splitlines()
                     if ln.startswith(("sessions:", "CreateSession", "bare fork", "bare kill"))]}
    t = r.stdout
    m = re.search(r"= (\d+) round trips/s", t)
    if m:
        out["per_s"] = int(m.group(1))
    m = re.search(r"CreateSession latency: median (\d+) us, p90 (\d+) us; "
                  r"TerminateSession median (\d+) us", t)
    if m:
        out["create_us"], out["create_p90_us"], out["terminate_us"] = map(int, m.groups())
    m = re.search(r"the command alone median (\d+) us .*instance \+ command median (\d+) us", t)
    if m:
        out["fork_exec_us"], out["fork_exec_both_us"] = map(int, m.groups())
    m = re.search(r"bare kill\+reap of the command: median (\d+) us", t)
    if m:
        out["kill_reap_us"] = int(m.group(1))
    return out


# ---------------------------------------------------------------------------------------------
# the table


def best_peer(vals):
    """(name, value) of the peer with the lowest number in {name: number}, or (None, None).
    Only the peers count (not smss, not the floor or other references)."""
    peers = [(v, k) for k, v in vals.items() if k in PEERS and isinstance(v, (int, float))]
    if not peers:
        return None, None
    v, k = min(peers)
    return k, v


def dash(x, nd=2, unit=""):
    """A number as fmt() does, and "—" for a figure an older results.json does not have."""
    return "—" if x is None else fmt(x, nd, unit)


def paired(d, unit=" ms", nd=3):
    """'+0.123 ms (95% CI -0.010 … +0.200)' of {"ms": median, "ci": [lo, hi]}; — if absent."""
    if not isinstance(d, dict) or d.get("ms") is None:
        return "—"
    ci = d.get("ci")
    ci_s = f" (95% CI {ci[0]:+.{nd}f} … {ci[1]:+.{nd}f})" if ci else ""
    return f"{d['ms']:+.{nd}f}{unit}{ci_s}"


def verdict_paired(value, best, d):
    """PASS/FAIL of value ≤ best, "(within noise)" when the paired interval holds 0."""
    if not isinstance(value, (int, float)) or not isinstance(best, (int, float)):
        return ""
    ci = d.get("ci") if isinstance(d, dict) else None
    within = bool(ci) and ci[0] <= 0 <= ci[1]
    return ("PASS" if value <= best else "FAIL") + (" (within noise)" if within else "")


def cell_err(e):
    if e is None:  # the section did not run (or an older results.json has no such section)
        return "—"
    return "failed: " + str(e).replace("|", "/")[:120] if not str(e).startswith(("failed", "n/a")) \
        else str(e).replace("|", "/")[:160]


def table(R, quick):
    cols = ["smss"] + PEERS
    rows = []
    notes = []

    def row(metric, vals, rat="", target="", verdict=""):
        rows.append([metric] + [vals.get(c, "—") for c in cols] + [rat, target, verdict])

    # 1
    s = R.get("startup")
    if isinstance(s, dict) and "overhead_ms" in s:
        o = s["overhead_ms"]
        vals = {k: fmt(v, 2) for k, v in o.items()}
        bp, bv = best_peer(o)
        pair = s.get("smss_minus_peer", {}).get(bp) if bp else None
        pp = bp  # the peer the paired figure is against
        if pair is None and s.get("smss_minus_catatonit_ms") is not None:
            # results.json of a run before the per-peer pairs: catatonit only
            pp, pair = "catatonit", {"ms": s["smss_minus_catatonit_ms"],
                                     "ci": s.get("smss_minus_catatonit_ci")}
        row(f"start-up overhead, ms over bare `/bin/true` (median of {s.get('runs', '—')} "
            "paired rounds)", vals,
            vs(o.get("smss"), bp, bv) + f"; paired smss − {pp}: {paired(pair)}",
            "≤ best peer",
            verdict_paired(pair["ms"], 0.0, pair) if pair and pair.get("ms") is not None
            else "")
        others = "; ".join(f"{k} {paired(v)}" for k, v in s.get("smss_minus_peer", {}).items()
                           if k != pp)
        notes.append(f"Start-up: bare `unshare --pid --fork --mount-proc /bin/true` = "
                     f"{dash(s.get('bare_ms'))} ms; paired per-round median smss − {pp}"
                     + (" (the best peer of this run)" if pp == bp else " (the only pair this "
                        f"older run kept; the best peer was {bp})") + f" = {paired(pair)}"
                     + (f"; against the others: {others}" if others else "") + "."
                     + (f" Non-zero exits: {s['errors']}." if s.get("errors") else ""))
    else:
        row("start-up overhead, ms over bare `/bin/true`", {c: cell_err(s) for c in cols[:5]})

    # 2
    m = R.get("memory")
    if isinstance(m, dict):
        for metric, key in (("idle PID 1 with one child: VmRSS, kB", "VmRSS"),
                            ("idle PID 1: RssAnon (private), kB", "RssAnon"),
                            ("idle PID 1: Pss, kB", "Pss")):
            vals = {}
            for k, v in m.items():
                vals[k] = cell_err(v["error"]) if "error" in v else fmt(v.get(key), 0)
            sm = m.get("smss", {}).get(key)
            bp, bv = best_peer({k: v.get(key) for k, v in m.items() if "error" not in v})
            verdict = ""
            if sm is not None and bv is not None:
                verdict = "PASS" if sm <= bv else "FAIL"
            row(metric, vals, vs(sm, bp, bv), "≤ best peer", verdict)
        hwm = m.get("smss", {}).get("VmHWM")
        if hwm is not None:
            notes.append(f"Memory: smss VmHWM {hwm:.0f} kB (peak since exec). Static binaries: "
                         "VmRSS ≈ Pss; dynamic ones (tini, dumb-init) share libc, so compare Pss.")
    else:
        row("idle PID 1 memory", {c: cell_err(m) for c in cols})

    # 3
    z = R.get("sizes")
    if isinstance(z, dict):
        vals = {}
        for k in cols:
            v = z.get(k)
            if not v:
                continue
            vals[k] = cell_err(v["error"]) if "error" in v else \
                f"{v['bytes']:,}" + ("" if v["static"] else " (dyn)")
        sm = z.get("smss", {}).get("bytes")
        bp, bv = best_peer({k: v.get("bytes") for k, v in z.items()
                            if k in PEERS and k != "busybox init" and v.get("static")})
        rat = ratio(sm, bv) + f" {bp} (smallest static peer), " + \
            ratio(sm, z.get("busybox init", {}).get("bytes")) + " busybox"
        row("static binary size, bytes (busybox = whole toolbox)", vals, rat)
        extra = ", ".join(f"{k} {z[k]['bytes']:,}" for k in ("smctl", "smss-session")
                          if k in z and "bytes" in z[k])
        st = "stripped" if z.get("smss", {}).get("stripped") else "NOT stripped"
        notes.append(f"Sizes: smss is static and {st}" + (f"; also {extra} bytes" if extra else "")
                     + ". "
                     "(dyn) = dynamically linked against glibc (≈1.9 MB shared, not counted).")
    else:
        row("binary size", {c: cell_err(z) for c in cols})

    # 4
    sd = R.get("shutdown")
    if isinstance(sd, dict):
        vals = {}
        for k, v in sd.items():
            vals[k] = cell_err(v["error"]) if v.get("error") else dash(v.get("ms"), 2)
        sm = sd.get("smss", {}).get("ms")
        bb = sd.get("busybox init", {}).get("ms")
        bp, bv = best_peer({k: v.get("ms") for k, v in sd.items() if not v.get("error")})
        pair = sd.get(bp, {}).get("smss_minus") if bp else None
        runs = sd.get("smss", {}).get("runs", "—")
        row(f"shutdown: SIGTERM → exit, 20 children that exit on TERM, ms (median of {runs})",
            vals, vs(sm, bp, bv) + f"; paired smss − {bp}: {paired(pair)}; "
            + ratio(sm, bb, 4) + " busybox", "≤ best peer", verdict_paired(sm, bv, pair))
        rcs = "; ".join(f"{k} {v['rc']}" for k, v in sd.items() if v.get("rc"))
        spread = "; ".join(f"{k} {v['q1']:.2f}–{v['q3']:.2f}" for k, v in sd.items()
                           if v.get("q1") is not None)
        fl = sd.get("floor", {})
        floor = (f" The floor of a graceful stop (bench/stopfloor.c: kill(-1, SIGTERM), reap, "
                 f"exit; no /proc, no sparing) {dash(fl.get('ms'))} ms, smss − floor "
                 f"{paired(fl.get('smss_minus'))}." if fl else "")
        notes.append("Shutdown: SIGTERM to the namespace's PID 1, timed until its pidfd says it "
                     "and (zap_pid_ns) everything in the namespace are gone. smss reads /proc, "
                     "SIGTERMs each process and waits for them to exit; tini/catatonit "
                     "just exit and let the kernel SIGKILL the rest; dumb-init signals the "
                     "group; busybox init runs ::shutdown:, TERM, sleep 1 s, KILL, sleep 1 s, "
                     f"reboot(2).{floor} Quartiles: {spread or '—'}. "
                     f"Exit statuses (unshare's): {rcs}.")
    else:
        row("shutdown", {c: cell_err(sd) for c in cols})
    sf = R.get("shutdown_fork")
    if isinstance(sf, dict):
        vals = {k: cell_err(v["error"]) if v.get("error") else dash(v.get("ms"), 2)
                for k, v in sf.items()}
        sm = sf.get("smss", {}).get("ms")
        bp, bv = best_peer({k: v.get("ms") for k, v in sf.items() if not v.get("error")})
        row("shutdown: the same, the command's TERM handler forks once more, ms (median)", vals,
            vs(sm, bp, bv), "the late process gets SIGTERM (< 100 ms)",
            "" if sm is None else ("PASS" if sm < 100 else "FAIL"))
    elif sf is not None:
        row("shutdown with a fork", {c: cell_err(sf) for c in cols})

    # 5
    rp = R.get("reap")
    if isinstance(rp, dict):
        vals, vals2 = {}, {}
        for k, v in rp.items():
            if "error" in v:
                vals[k] = vals2[k] = cell_err(v["error"])
            else:
                vals[k] = f"{v['total_s'] * 1000:,.0f} (tail {v['tail_s'] * 1000:,.0f})"
                vals2[k] = f"{v['left_max']}"
        sm = rp.get("smss", {})
        bp, bv = best_peer({k: v.get("total_s") for k, v in rp.items() if "error" not in v})
        verdict = ""
        if "left_max" in sm:
            verdict = "PASS" if sm["left_max"] == 0 else "FAIL"
        n = R.get("reap_n", 10000)
        row(f"reaping {n:,} orphans: ms to none left (tail after the last fork)", vals,
            vs(sm.get("total_s"), bp, bv), "all reaped", verdict)
        row("reaping: processes left at the 30 s deadline (max)", vals2, "", "0",
            verdict)
        notes.append("Reaping: the payload (bench/reap_payload.py, python, the init's only "
                     "child) forks 100 children that each fork 100 grandchildren which exit at "
                     "once, so orphans arrive in bursts; it then polls /proc until only PID 1 and "
                     "itself are left. Most of the total is the payload's own forking; the "
                     "tail is the init's lag.")
    else:
        row("reaping", {c: cell_err(rp) for c in cols})

    # 6
    b = R.get("boot")
    if quick and b is None:
        row("boot (QEMU)", {"smss": "skipped (--quick)", "busybox init": "skipped (--quick)"})
    elif isinstance(b, dict):
        from boot import table_rows  # noqa: E402  (bench/boot.py)
        for r in table_rows(b, notes):
            row(*r)
    else:
        row("boot (QEMU)", {"smss": cell_err(b), "busybox init": cell_err(b)})

    # 7
    ss = R.get("sessions")
    if isinstance(ss, dict) and ("per_s" in ss or "create_us" in ss):
        row("sessions: CreateSession+TerminateSession round trips per s (init/benches/sessions.rs)",
            {"smss": fmt(ss.get("per_s"), 0)})
        fe, fb = ss.get("fork_exec_us"), ss.get("fork_exec_both_us")
        row("sessions: CreateSession median latency, µs (p90); TerminateSession median",
            {"smss": f"{fmt(ss.get('create_us'), 0)} ({fmt(ss.get('create_p90_us'), 0)}); "
                     f"{fmt(ss.get('terminate_us'), 0)}"},
            f"{ratio(ss.get('create_us'), fe, 1)} fork+exec of the command ({fmt(fe, 0)} µs), "
            f"{ratio(ss.get('create_us'), fb, 1)} fork+exec of instance + command "
            f"({fmt(fb, 0)} µs)", "CreateSession ≤ 2× the command's fork+exec",
            ("PASS" if ss["create_us"] <= 2 * fe else "FAIL")
            if ss.get("create_us") and fe else "")
        kr, tu = ss.get("kill_reap_us"), ss.get("terminate_us")
        if kr:
            row("sessions: TerminateSession median latency, µs", {"smss": fmt(tu, 0)},
                f"{ratio(tu, kr, 1)} kill+reap of the command ({fmt(kr, 0)} µs)",
                "≤ 2× the command's kill+reap",
                ("PASS" if tu <= 2 * kr else "FAIL") if tu else "")
        notes.append("Sessions bench output: " + " / ".join(ss.get("lines", [])))
    else:
        err = ss.get("error", "no numbers printed") if isinstance(ss, dict) else cell_err(ss)
        row("sessions: CreateSession+TerminateSession per s, median latency",
            {"smss": str(err).replace("|", "/")[:300]})

    hdr = ["metric"] + cols + ["ratio", "target", "pass"]
    out = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] + ["---:"] * len(cols)
                                                          + ["---:", "---", "---"]) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n\n" + "\n".join(f"- {n}" for n in notes)


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir")
    ap.add_argument("--from-json", help="print the table of an earlier run's results.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only",
                    default="startup,memory,sizes,shutdown,shutdown_fork,reap,boot,sessions")
    ap.add_argument("--json", default=os.path.join(WORK, "results.json"))
    a = ap.parse_args()
    sys.path.insert(0, HERE)
    if a.from_json:
        with open(a.from_json) as f:
            R = json.load(f)
        print(table(R, R.get("quick")))
        return
    if not a.bin_dir:
        ap.error("--bin-dir is required")
    only = set(a.only.split(","))
    os.makedirs(WORK, exist_ok=True)
    if os.geteuid() != 0:
        sys.exit("bench: needs root (pid namespaces, chroot, mknod)")
    inits = available(init_argv(a.bin_dir))
    q = a.quick
    R = {"quick": q}
    t_start = time.monotonic()

    def run(name, fn, *args):
        if name not in only:
            return
        log(f"{name} ...")
        t = time.monotonic()
        try:
            R[name] = fn(*args)
        except Exception as e:  # noqa: BLE001 - a failed section must not stop the others
            R[name] = f"failed: {type(e).__name__}: {e}"
        log(f"{name} done in {time.monotonic() - t:.1f} s")

    bb_idle = bb_kids = None
    try:
        bb_idle = BusyboxRoot("idle", "::once:/bin/sleep 1000\n")
        bb_kids = BusyboxRoot(
            "shutdown",
            "::sysinit:/bin/sh -c 'for i in $(seq 20); do sleep 1000 & done'\n"
            "::shutdown:/bin/true\n")
    except Exception as e:  # noqa: BLE001
        log(f"busybox init chroot unavailable: {e}")

    run("sizes", sec_sizes, a.bin_dir)
    run("startup", sec_startup, inits, 60 if q else 200)
    run("memory", sec_memory, inits, bb_idle, 3 if q else 5)
    floor = build_floor() if "shutdown" in only else None
    if "shutdown" in only and not floor:
        log("no C compiler: the stop's floor (bench/stopfloor.c) is left out")
    # The stop rows are bimodal on a busy machine (a few ms either way): many short rounds.
    run("shutdown", sec_shutdown, inits, bb_kids, 8 if q else 25, KIDS, floor)
    run("shutdown_fork", sec_shutdown, inits, None, 4 if q else 10, KIDS_FORK)
    R["reap_n"] = 10000
    run("reap", sec_reap, inits, R["reap_n"], 1 if q else 3)
    if not q:
        import boot  # bench/boot.py
        run("boot", boot.section, a.bin_dir, WORK, 5)
    run("sessions", sec_sessions, q, a.bin_dir)
    R["elapsed_s"] = time.monotonic() - t_start
    with open(a.json, "w") as f:
        json.dump(R, f, indent=1, default=str)
    print(table(R, q))
    print(f"\n_{'quick run, ' if q else ''}measured in {R['elapsed_s']:.0f} s on "
          f"{os.cpu_count()} CPUs; raw numbers in {os.path.relpath(a.json, ROOT)}._")


if __name__ == "__main__":
    main()
