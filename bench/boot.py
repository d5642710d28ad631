#!/usr/bin/env python3
"""Section 6 of bench/bench.py: boot the demo image under QEMU, against busybox init.

Images (both from initramfs/build.sh, same kernel, modules, busybox and disk):
  smss     the default image: /init -> smss, initramfs/smss.toml
  busybox  the same cpio with a small uncompressed cpio appended (the kernel unpacks
           concatenated archives, later entries win) that makes /init busybox init, with
           bench/bbimage/inittab and bench/bbimage/rcS doing the same work as smss.toml
  floor    the same cpio with /init = bench/bootfloor.c (built static with cc): the kernel work
           of smss's own-work phases with no parsing and only the phase lines; it prints its
           own work less module loading and powers off. A companion, not a peer (left out
           without a C compiler).
Each boot gets a fresh copy of the pristine disk (so both create the swap file).

Timing: the serial console is read on the host. When "login:" shows, the harness logs in and
runs one command that prints /proc/uptime, the login shell's start time (= getty's: busybox getty
execs login, which execs sh) and dmesg. Kernel start on the host's clock = (host time that line
arrived) - uptime, so "kernel start -> login prompt" uses the kernel's own clock as the origin.
"init exec -> getty start" is all kernel clock: dmesg's "Run /init as init process" to the
shell's start time (10 ms ticks). smss's own phase timings come from its console lines.

Standalone: python3 bench/boot.py BIN_DIR [RUNS]
"""
import gzip
import os
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

LOGIN_DEADLINE = 120      # s from QEMU start to the login prompt
AFTER_COMPLETE = 20       # s to wait for getty after "boot complete" before giving up
COMMANDS = {"boot-execute", "setup-execute", "execute", "required-subsystems", "initial-command"}
SWAP = {"paging-files"}
# volumes.fs-modules: the volumes' file system modules (ext4 and its dependencies), loaded
# inside the volumes phase (busybox's rcS loads them in its boot-drivers step)
MODULES = {"boot-drivers", "kmode", "volumes.fs-modules"}
CAL_LOOP = "i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done"


def host_cal():
    """Host seconds for CAL_LOOP with the same busybox (best of 5)."""
    best = None
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([shutil.which("busybox") or "/bin/busybox", "sh", "-c", CAL_LOOP],
                       timeout=30, check=True)
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return best


def log(msg):
    print(f"bench: boot: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# images


def newc(entries):
    """An uncompressed newc cpio: entries are (name, mode, data-bytes)."""
    out = bytearray()
    ino = 800000

    def pad():
        out.extend(b"\0" * ((4 - len(out) % 4) % 4))
    for name, mode, data in entries + [("TRAILER!!!", 0, b"")]:
        ino += 1
        nb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0]
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.extend(nb)
        pad()
        out.extend(data)
        pad()
    return bytes(out)


def build_static_c(name, work):
    """bench/NAME.c built static (cc -O2 -static) into work/NAME; None without a C compiler
    or when it does not build. (bench.py's stop floor too.)"""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    out = os.path.join(work, name)
    try:
        r = subprocess.run([cc, "-O2", "-static", "-o", out, os.path.join(HERE, name + ".c")],
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return out if r.returncode == 0 else None


def append_overlay(base, entries, path):
    """base (a gzip'd cpio) with an uncompressed cpio of entries appended, written to path."""
    with open(path, "wb") as f:
        f.write(base)
        f.write(b"\0" * ((4 - len(base) % 4) % 4))   # the next archive starts 4-aligned
        f.write(newc(entries))


def build_images(bindir, work, floor=True):
    """Returns {"smss": (build_env, initrd), "busybox init": (build_env, initrd)} and, when
    floor and bench/bootfloor.c builds, "floor": (build_env, initrd)."""
    out = os.path.join(work, "img-smss")
    env = dict(os.environ, OUT=out, SMSS_BIN_DIR=bindir)
    r = subprocess.run([os.path.join(ROOT, "initramfs", "build.sh")], env=env, cwd=ROOT,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("initramfs/build.sh failed: " + r.stderr.strip()[-200:])
    benv = os.path.join(out, "build.env")
    smss_initrd = os.path.join(out, "initramfs.cpio.gz")
    with open(smss_initrd, "rb") as f:
        base = f.read()
    with open(os.path.join(HERE, "bbimage", "inittab"), "rb") as f:
        inittab = f.read()
    with open(os.path.join(HERE, "bbimage", "rcS"), "rb") as f:
        rcs = f.read()
    bb_initrd = os.path.join(work, "img-busybox.cpio")
    append_overlay(base, [("init", 0o120777, b"bin/busybox"),
                          ("etc/bench", 0o040755, b""),
                          ("etc/bench/rcS", 0o100755, rcs),
                          ("etc/inittab", 0o100644, inittab)], bb_initrd)
    gzip.decompress(base)  # sanity: the base really is one gzip member
    imgs = {"smss": (benv, smss_initrd), "busybox init": (benv, bb_initrd)}
    exe = build_static_c("bootfloor", work) if floor else None
    if exe:
        with open(exe, "rb") as f:
            prog = f.read()
        fl_initrd = os.path.join(work, "img-floor.cpio")
        append_overlay(base, [("sbin/bootfloor", 0o100755, prog),
                              ("init", 0o120777, b"sbin/bootfloor")], fl_initrd)
        imgs["floor"] = (benv, fl_initrd)
    return imgs


# ---------------------------------------------------------------------------------------------
# one boot


class Console:
    def __init__(self, p):
        self.p = p
        self.buf = b""
        self.chunks = []          # (end offset in buf, host time it arrived)
        os.set_blocking(p.stdout.fileno(), False)

    def pump(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.p.stdout.fileno(), 65536)
        except BlockingIOError:
            return False
        if not data:
            raise RuntimeError("QEMU exited: " + self.tail())
        self.buf += data
        self.chunks.append((len(self.buf), time.monotonic()))
        return True

    def arrival(self, needle):
        """Host time at which the first occurrence of needle had fully arrived, or None."""
        i = self.buf.find(needle)
        if i < 0:
            return None
        end = i + len(needle)
        return next((t for off, t in self.chunks if off >= end), None)

    def wait(self, pattern, timeout, start=0, give_up=None):
        """Wait for regex pattern in buf[start:]; returns (match, host time it arrived).
        Output arrives in arbitrary pieces: a pattern with numbers must end in a newline."""
        end = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.buf, start)
            if m:
                return m, time.monotonic()
            if give_up and give_up():
                return None, None
            left = end - time.monotonic()
            if left <= 0:
                return None, None
            self.pump(min(left, 0.5))

    def send(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.flush()

    def tail(self, n=160):
        t = self.buf[-n:].decode(errors="replace")
        return re.sub(r"\s+", " ", re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", t)).strip()


def boot_once(name, benv, initrd, pristine_disk, work):
    disk = os.path.join(work, "disk-run.img")
    subprocess.run(["cp", "--sparse=always", pristine_disk, disk], check=True, timeout=60)
    env = dict(os.environ, BUILD_ENV=benv, INITRD=initrd)
    cmd = [os.path.join(ROOT, "initramfs", "run-qemu.sh"), "-n", "-d", disk,
           "-a", "printk.devkmsg=on"]
    t_start = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    c = Console(p)
    res = {"image": name}
    try:
        complete = {}

        def stalled():  # smss said "boot complete" long ago and no getty showed up
            if b"boot complete" in c.buf and "t" not in complete:
                complete["t"] = time.monotonic()
            return "t" in complete and time.monotonic() - complete["t"] > AFTER_COMPLETE

        # getty prints "HOSTNAME login: " (the issue file says "log in", never "login: ")
        m, t_login = c.wait(rb"\S+ login: ", LOGIN_DEADLINE, give_up=stalled)
        res["console"] = c.buf.decode(errors="replace")
        if not m:
            why = "no getty" + (f" {AFTER_COMPLETE} s after 'boot complete'" if stalled()
                                else f" within {LOGIN_DEADLINE} s")
            raise RuntimeError(f"{why} (console ends: {c.tail(100)!r})")
        res["host_login_s"] = t_login - t_start
        mark = len(c.buf)
        c.send("root\r")
        # busybox ash asks for the cursor position (ESC [ 6 n) after its prompt; no answer needed
        if not c.wait(rb"# (?:\x1b\[6n)?$", 30, start=mark)[0]:
            raise RuntimeError("no shell prompt after logging in: " + c.tail())
        mark = len(c.buf)
        c.send("echo BENCH $(cut -d' ' -f1 /proc/uptime) $(cut -d' ' -f22 /proc/$$/stat)"
               " $(grep -c swapfile /proc/swaps)\r")
        m, t_resp = c.wait(rb"BENCH ([0-9.]+) ([0-9]+) ([0-9]+)\r?\n", 30, start=mark)
        if not m:
            raise RuntimeError("no answer to the uptime command: " + c.tail())
        uptime, getty_ticks = float(m.group(1)), int(m.group(2))
        res["swap_active"] = int(m.group(3)) > 0
        kernel_start = t_resp - uptime            # on the host's monotonic clock
        res["kernel_to_login_s"] = t_login - kernel_start
        res["getty_start_s"] = getty_ticks / 100.0
        mark = len(c.buf)
        c.send("dmesg | grep -E 'as init process|bbinit|smss\\[1\\]'; echo BENCH-$((6*7))-END\r")
        if not c.wait(rb"BENCH-42-END\r?\n", 30, start=mark)[0]:
            raise RuntimeError("no dmesg: " + c.tail())
        dm = c.buf[mark:].decode(errors="replace")
        # calibration: the same busybox shell loop timed in the guest and on the host
        mark = len(c.buf)
        c.send(f"a=$(cut -d' ' -f1 /proc/uptime); busybox sh -c '{CAL_LOOP}';"
               " b=$(cut -d' ' -f1 /proc/uptime); echo CAL $a $b\r")
        m = c.wait(rb"CAL ([0-9.]+) ([0-9.]+)\r?\n", 60, start=mark)[0]
        if m:
            res["cal_guest_s"] = float(m.group(2)) - float(m.group(1))
        res["dmesg"] = dm
        mi = re.search(r"\[\s*([0-9.]+)\] Run \S+ as init process", dm)
        if mi:
            res["init_exec_s"] = float(mi.group(1))
            if res["getty_start_s"] >= res["init_exec_s"]:
                res["exec_to_getty_s"] = res["getty_start_s"] - res["init_exec_s"]
            else:
                res["anomaly"] = f"getty start {res['getty_start_s']} before init exec"
        marks = [(float(t), n) for t, n in re.findall(r"\[\s*([0-9.]+)\] bbinit: mark (\S+)", dm)]
        if marks:
            prev = res.get("init_exec_s", marks[0][0])
            steps = {}
            for t, n in marks:
                steps[n] = (t - prev) * 1e6
                prev = t
            res["bb_steps_us"] = steps
            res["bb_total_us"] = (marks[-1][0] - res.get("init_exec_s", marks[0][0])) * 1e6
        return res
    except Exception as e:  # noqa: BLE001 - partial results are still worth reporting
        res["error"] = str(e)
        return res
    finally:
        res.setdefault("console", c.buf.decode(errors="replace"))
        t = c.arrival(b"boot complete")
        if t:
            res["host_complete_s"] = t - t_start
        end_boot(p, disk)


def end_boot(p, disk):
    """Kill a boot's QEMU (its whole process group) and delete its disk copy."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.unlink(disk)
    except OSError:
        pass


def floor_once(benv, initrd, pristine_disk, work):
    """One boot of the floor image: its own work less module loading (us), read from its line."""
    disk = os.path.join(work, "disk-run.img")
    subprocess.run(["cp", "--sparse=always", pristine_disk, disk], check=True, timeout=60)
    env = dict(os.environ, BUILD_ENV=benv, INITRD=initrd)
    cmd = [os.path.join(ROOT, "initramfs", "run-qemu.sh"), "-n", "-d", disk]
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    c = Console(p)
    res = {"image": "floor"}
    try:
        m, _ = c.wait(rb"bootfloor: own work (\d+) us, lines (\d+) us, modules (\d+) us "
                      rb"\(file systems (\d+) us\), (\d+) failed\r?\n", LOGIN_DEADLINE)
        if not m:
            raise RuntimeError(f"no bootfloor line (console ends: {c.tail(100)!r})")
        res["own_us"], res["lines_us"], res["modules_us"], res["fs_us"], nfail = (
            int(g) for g in m.groups())
        if nfail:  # it skipped some of the work: no floor
            raise RuntimeError(f"bootfloor: {nfail} calls failed")
        res["phases_us"] = {n.decode(): int(us) for n, us in
                            re.findall(rb"smss\[1\]: phase (\S+) done in (\d+) us", c.buf)}
    except Exception as e:  # noqa: BLE001 - reported, the row goes on without its floor
        res["error"] = str(e)
    finally:
        end_boot(p, disk)
    return res


def smss_phases(console):
    """smss's phase durations (us) from its console lines."""
    ph = {}
    for n, us in re.findall(r"smss\[1\]: phase (\S+) done in (\d+) us", console):
        ph[n] = ph.get(n, 0) + int(us)
    m = re.search(r"smss\[1\]: file systems: loaded .* in (\d+) us", console)
    if m:
        ph["volumes.fs-modules"] = int(m.group(1))
    m = re.search(r"smss\[1\]: configuration read in (\d+) us", console)
    if m:
        ph["configuration-read"] = int(m.group(1))
    m = re.search(r"smss\[1\]: boot complete in (\d+) us", console)
    total = int(m.group(1)) if m else None
    return ph, total


def own_less_modules(console):
    """The row for one boot (us): exec -> boot complete, less the commands, the swap file and
    module loading; None without a 'boot complete' line."""
    ph, total = smss_phases(console)
    if total is None:
        return None
    return total - sum(v for n, v in ph.items() if n in COMMANDS | SWAP | MODULES)


# ---------------------------------------------------------------------------------------------


def section(bindir, work, runs):
    log("building the images")
    imgs = build_images(bindir, work)
    with open(imgs["smss"][0]) as f:
        disk = re.search(r"^DISK=(.*)$", f.read(), re.M).group(1)
    pristine = os.path.join(work, "disk-pristine.img")
    shutil.copyfile(disk, pristine)
    results = {k: [] for k in imgs}
    errors = {}
    failed = {k: [] for k in imgs}
    order = list(imgs)
    if os.environ.get("BOOT_IMAGES"):  # e.g. BOOT_IMAGES=smss,floor: only these, in this order
        order = [k for k in os.environ["BOOT_IMAGES"].split(",") if k in imgs]
        imgs = {k: imgs[k] for k in order}
    for i in range(runs):
        for k in (order if i % 2 == 0 else order[::-1]):
            if failed[k] and not results[k]:
                continue  # it failed once already: do not spend another two minutes on it
            log(f"run {i + 1}/{runs}: {k}")
            t = time.monotonic()
            if k == "floor":
                r = floor_once(imgs[k][0], imgs[k][1], pristine, work)
            else:
                r = boot_once(k, imgs[k][0], imgs[k][1], pristine, work)
            r["round"] = i
            if "error" in r:
                errors[k] = r["error"]
                failed[k].append(r)
            else:
                results[k].append(r)
            log(f"  {time.monotonic() - t:.1f} s")
    for r in results.get("smss", []):
        r["phases_us"], _ = smss_phases(r.get("console", ""))
        r["own_less_modules_us"] = own_less_modules(r.get("console", ""))
    out = {"runs": runs, "errors": errors, "images": {}, "raw": {
        k: [{n: v for n, v in r.items() if n not in ("console", "dmesg")} for r in results[k] +
            failed[k]] for k in imgs}}
    try:
        out["cal_host_s"] = host_cal()
    except (OSError, subprocess.SubprocessError):
        pass
    for k in imgs:
        rs = results[k]
        d = {"n": len(rs)}
        if k == "floor":
            for key in ("own_us", "lines_us", "modules_us"):
                vals = [r[key] for r in rs]
                d[key] = statistics.median(vals) if vals else None
            # smss's row less the floor, paired by round (the machine drifts between rounds)
            sm = {r["round"]: own_less_modules(r.get("console", "")) for r in results["smss"]}
            diffs = [sm[r["round"]] - r["own_us"] for r in rs if sm.get(r["round"]) is not None]
            d["smss_minus_us"] = statistics.median(diffs) if diffs else None
            d["smss_minus_range_us"] = (min(diffs), max(diffs)) if diffs else None
            # smss's row boot by boot (the row above is median total less median phases)
            rows_us = [v for v in sm.values() if v is not None]
            d["smss_row_us"] = statistics.median(rows_us) if rows_us else None
            d["own_range_us"] = (min(r["own_us"] for r in rs), max(r["own_us"] for r in rs)) \
                if rs else None
            out["images"][k] = d
            continue
        d["swap_active"] = all(r.get("swap_active") for r in rs) if rs else None
        for key in ("kernel_to_login_s", "host_login_s", "exec_to_getty_s", "host_complete_s",
                    "cal_guest_s"):
            vals = [r[key] for r in (rs or failed[k]) if key in r]
            d[key] = statistics.median(vals) if vals else None
        if k == "smss":
            # phase timings: from the successful runs, else from the failed run's console
            consoles = [r.get("console", "") for r in (rs or failed[k])]
            per = [smss_phases(cn) for cn in consoles if cn]
            if per:
                d["phases_us"] = {n: statistics.median([p[0].get(n, 0) for p in per])
                                  for n in per[0][0]}
                tots = [p[1] for p in per if p[1] is not None]
                d["boot_complete_us"] = statistics.median(tots) if tots else None
        else:
            steps = [r["bb_steps_us"] for r in rs if "bb_steps_us" in r]
            if steps:
                d["phases_us"] = {n: statistics.median([s.get(n, 0) for s in steps])
                                  for n in steps[0]}
                d["boot_complete_us"] = statistics.median([r["bb_total_us"] for r in rs
                                                           if "bb_total_us" in r])
        out["images"][k] = d
    return out


def table_rows(b, notes):
    """Rows for bench.py's table: (metric, {column: cell}, ratio, target, verdict)."""
    rows = []
    S = b["images"].get("smss", {})
    B = b["images"].get("busybox init", {})
    err = b.get("errors", {})

    def cell(d, key, scale, nd, name):
        v = d.get(key)
        if v is None:
            return "failed: " + err.get(name, "no data")[:150].replace("|", "/")
        return f"{v * scale:,.{nd}f}"

    runs = b["runs"]
    probe = ((S.get("phases_us") or {}).get("execute") or 0) / 1e6

    def less_probe(key, scale, nd, label):
        """smss's figure, and the same less its execute phase (the probe, which runs before
        the sessions start and which the busybox image does not run); verdict on the latter."""
        a, c = S.get(key), B.get(key)
        cells = {"smss": cell(S, key, scale, nd, "smss"),
                 "busybox init": cell(B, key, scale, nd, "busybox init")}
        if a is None:
            return (label, cells, "n/a", "≤ busybox", "")
        adj = a - probe
        cells["smss"] = f"{a * scale:,.{nd}f} ({adj * scale:,.{nd}f} w/o probe)"
        if c is None:
            return (label, cells, "n/a", "≤ busybox", "")
        return (label, cells, f"{adj / c:.2f}× busybox", "≤ busybox",
                "PASS" if adj <= c else "FAIL")

    rows.append(less_probe("kernel_to_login_s", 1, 2,
                           f"boot (QEMU TCG, median of {runs}): kernel start → login prompt, s"))
    rows.append(less_probe("exec_to_getty_s", 1000, 0,
                           "boot: init exec → getty start (kernel clock, 10 ms ticks), ms"))
    ph = S.get("phases_us")
    sc, bc = S.get("host_complete_s"), B.get("host_complete_s")
    if sc is not None and ph:
        sc -= ph.get("execute", 0) / 1e6
    rows.append(("boot: QEMU start → init's 'boot complete' line (host wall; smss less its "
                 "execute phase = the probe), s",
                 {"smss": f"{sc:,.2f}" if sc is not None else "failed: " + err.get("smss", "?")[:80],
                  "busybox init": f"{bc:,.2f}" if bc is not None else
                  "failed: " + err.get("busybox init", "?")[:80]},
                 f"{sc / bc:.2f}× busybox" if sc and bc else "", "≤ busybox",
                 ("PASS" if sc <= bc else "FAIL") if sc and bc else ""))
    if ph:
        # "boot complete in N us" counts from smss's exec (early mounts and the configuration
        # read included), the clock GetStatus uses.
        total = S.get("boot_complete_us") or 0
        excl = sum(v for n, v in ph.items() if n in COMMANDS | SWAP)
        mods = sum(v for n, v in ph.items() if n in MODULES)
        own = total - excl
        bbph = dict(B.get("phases_us") or {})
        # the busybox script splits its swap step: paging-files.fallocate, .mkswap, paging-files
        split = {n: bbph.pop(n) for n in list(bbph) if n.startswith("paging-files.")}
        if split:
            notes.append("Boot, busybox swap step (guest µs): " + ", ".join(
                f"{n.split('.')[1]} {v:,.0f}" for n, v in split.items())
                + f", swapon {bbph.get('paging-files', 0):,.0f}.")
            bbph["paging-files"] = bbph.get("paging-files", 0) + sum(split.values())
        bbtot = B.get("boot_complete_us")
        bbexcl = sum(v for n, v in bbph.items() if n in COMMANDS | SWAP)
        bbmods = sum(v for n, v in bbph.items() if n in MODULES)
        bb_own = (bbtot - bbexcl) if bbtot else None
        rows.append(("boot: init's own work (exec → boot complete, less swap file and the "
                     "commands it runs), guest ms",
                     {"smss": f"{own / 1000:,.1f}" if S.get("boot_complete_us") else
                      f"{own / 1000:,.1f} (no 'boot complete')",
                      "busybox init": f"{bb_own / 1000:,.1f}" if bb_own else "n/a"},
                     f"{own / bb_own:.2f}× busybox" if bb_own else "", "< 50 ms",
                     "PASS" if own < 50000 else "FAIL"))
        rows.append(("… of which kernel module loading (boot-drivers, kmode, the volumes' file systems), guest ms",
                     {"smss": f"{mods / 1000:,.1f}",
                      "busybox init": f"{bbmods / 1000:,.1f}" if bbph else "n/a"},
                     f"{mods / bbmods:.2f}× busybox" if bbmods else "", "", ""))
        rows.append(("… and without module loading, guest ms",
                     {"smss": f"{(own - mods) / 1000:,.1f}",
                      "busybox init": f"{(bb_own - bbmods) / 1000:,.1f}" if bb_own else "n/a"},
                     "", "< 50 ms", "PASS" if own - mods < 50000 else "FAIL"))
        F = b["images"].get("floor") or {}
        if F.get("own_us") is not None:
            dif = F.get("smss_minus_us")
            rows.append(("… its floor: the same kernel work with no parsing, phase lines only "
                         "(bench/bootfloor.c as /init; not a peer), guest ms",
                         {"smss": f"{F['own_us'] / 1000:,.1f} (smss − floor "
                          + (f"{dif / 1000:+,.1f}, paired, range "
                             f"{F['smss_minus_range_us'][0] / 1000:+,.1f} … "
                             f"{F['smss_minus_range_us'][1] / 1000:+,.1f})"
                             if dif is not None else "n/a)")},
                         "", "", ""))
            lo, hi = F["own_range_us"]
            notes.append(f"Boot floor (bench/bootfloor.c, median of {F['n']}): own work "
                         f"{F['own_us'] / 1000:,.1f} guest ms (range {lo / 1000:,.1f} … "
                         f"{hi / 1000:,.1f}), of which its 9 phase lines "
                         f"{F['lines_us'] / 1000:,.1f}; module loading left out "
                         f"{F['modules_us'] / 1000:,.1f}"
                         + (f"; smss's row boot by boot in the same rounds, median "
                            f"{F['smss_row_us'] / 1000:,.1f}." if F.get("smss_row_us") else "."))
        cal_g, cal_h = S.get("cal_guest_s") or B.get("cal_guest_s"), b.get("cal_host_s")
        if cal_g and cal_h:
            f = cal_g / cal_h
            rows.append((f"… scaled to host speed (guest is ≈{f:.0f}× slower on a busybox shell "
                         "loop; rough), ms",
                         {"smss": f"{own / f / 1000:,.1f} ({(own - mods) / f / 1000:,.1f} "
                          "w/o modules)",
                          "busybox init": f"{bb_own / f / 1000:,.1f} ({(bb_own - bbmods) / f / 1000:,.1f} "
                          "w/o modules)" if bb_own else "n/a"},
                         "", "< 50 ms", ("PASS" if own / f < 50000 else "FAIL") + " (est.)"))
        sw, bsw = ph.get("paging-files"), bbph.get("paging-files")
        rows.append(("boot: 32 MiB swap file created and enabled, guest ms",
                     {"smss": f"{sw / 1000:,.1f}" if sw is not None else "n/a",
                      "busybox init": f"{bsw / 1000:,.1f}" if bsw is not None else "n/a"},
                     f"{sw / bsw:.2f}× busybox" if sw and bsw else "", "", ""))
        top = sorted(ph.items(), key=lambda kv: -kv[1])[:6]
        notes.append("Boot, smss phases (median guest µs): " +
                     ", ".join(f"{n} {v:,.0f}" for n, v in top) +
                     (f"; busybox rcS steps: " + ", ".join(
                         f"{n} {v:,.0f}" for n, v in sorted(bbph.items(),
                                                            key=lambda kv: -kv[1])[:6])
                      if bbph else "") + ".")
    else:
        rows.append(("boot: smss's own work (exec → boot complete less swap, commands)",
                     {"smss": "failed: " + err.get("smss", "no phase lines")[:150]}, "",
                     "< 50 ms", ""))
    notes.append("Boot: QEMU TCG (this VM has no working KVM), 1 vCPU, so every guest figure "
                 "is several times what hardware would show; both images use the same kernel, "
                 "modules, busybox and a fresh copy of the same disk. smss's own work adds "
                 "early-mounts and the config read (done before its 'boot complete' clock "
                 "starts) and leaves out paging-files and the phases that run commands "
                 "(boot-execute = fsck, setup-execute, execute = the probe, required-subsystems, "
                 "initial-command). The busybox image skips the probe (it checks smss itself).")
    sa = {k: b["images"].get(k, {}).get("swap_active") for k in ("smss", "busybox init")}
    if any(v is False for v in sa.values()):
        notes.append(f"Boot: swap file active after boot: {sa} (False = that image's swap "
                     "step failed, so its swap figure is not comparable).")
    for k, e in err.items():
        notes.append(f"Boot {k}: {e[:300]}")
    return rows


if __name__ == "__main__":
    import json
    work = os.path.join(ROOT, "target", "bench")
    os.makedirs(work, exist_ok=True)
    res = section(sys.argv[1], work, int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    with open(os.path.join(work, "boot.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    print(json.dumps(res, indent=1, default=str)[:6000])
    notes = []
    for r in table_rows(res, notes):
        print(r)
    print("\n".join(notes))
