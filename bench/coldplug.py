#!/usr/bin/env python3
"""Coldplug cost in the demo boot (issue 11): the demo image as built (`[boot-drivers] modules
= []`, coldplug loads the drivers, the volume is found by LABEL=) against the same image whose
/etc/smss/smss.toml names the modules explicitly with `coldplug = false` and the volume by path
(what the demo did before). Boots alternate; figures are medians.

Reported: smss's `coldplug: ... in N us` line, the boot-drivers and volumes phases, smss's
"boot complete" (its own uptime), and kernel start -> login prompt (see bench/boot.py).

Standalone: python3 bench/coldplug.py BIN_DIR [RUNS]   (scripts/bench --coldplug)
"""
import os
import re
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from boot import ROOT, boot_once, build_images, log, newc, smss_phases  # noqa: E402

EXPLICIT = """[boot-drivers]
modules = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]
coldplug = false
"""


def explicit_config():
    with open(os.path.join(ROOT, "initramfs", "smss.toml")) as f:
        text = f.read()
    lines = text.split("\n")
    start = lines.index("[boot-drivers]")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("["))
    text = "\n".join(lines[:start] + EXPLICIT.split("\n") + lines[end:])
    text = text.replace('device = "LABEL=smssvar"', 'device = "/dev/vda"')
    if "coldplug = false" not in text or '"/dev/vda"' not in text:
        raise RuntimeError("could not derive the explicit-list config from initramfs/smss.toml")
    return text.encode()


def main():
    bindir = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    work = tempfile.mkdtemp(prefix="smss-coldplug-bench-")
    try:
        imgs = build_images(bindir, work)
        benv, base_initrd = imgs["smss"]
        with open(base_initrd, "rb") as f:
            base = f.read()
        explicit = os.path.join(work, "img-explicit.cpio")
        with open(explicit, "wb") as f:
            f.write(base)
            f.write(b"\0" * ((4 - len(base) % 4) % 4))
            f.write(newc([("etc/smss/smss.toml", 0o100644, explicit_config())]))
        with open(benv) as f:
            disk = re.search(r"^DISK=(.*)$", f.read(), re.M).group(1)
        pristine = os.path.join(work, "disk-pristine.img")
        shutil.copyfile(disk, pristine)
        images = {"coldplug": base_initrd, "explicit list": explicit}
        rows = {k: [] for k in images}
        for i in range(runs):
            for k in (list(images) if i % 2 == 0 else list(images)[::-1]):
                log(f"coldplug run {i + 1}/{runs}: {k}")
                r = boot_once(k, benv, images[k], pristine, work)
                if "error" in r:
                    log(f"{k}: {r['error']}")
                    continue
                ph, total = smss_phases(r["console"])
                m = re.search(r"coldplug: (\d+) devices, (\d+) modules loaded .* in (\d+) us",
                              r["console"])
                rows[k].append({
                    "coldplug_us": int(m.group(3)) if m else None,
                    "devices": int(m.group(1)) if m else None,
                    "modules": int(m.group(2)) if m else None,
                    "boot-drivers": ph.get("boot-drivers"),
                    "volumes": ph.get("volumes"),
                    "complete_us": total,
                    "login_s": r.get("kernel_to_login_s"),
                })

        def med(k, field):
            xs = [x[field] for x in rows[k] if x.get(field) is not None]
            return statistics.median(xs) if xs else None

        def ms(v):
            return "—" if v is None else f"{v / 1000:.1f}"
        print(f"| TCG, median of {runs} | coldplug (modules = []) | explicit list |")
        print("|---|---:|---:|")
        print(f"| coldplug line, ms | {ms(med('coldplug', 'coldplug_us'))} "
              f"({med('coldplug', 'devices')} devices, {med('coldplug', 'modules')} modules) | — |")
        for field, label in [("boot-drivers", "phase boot-drivers, ms"),
                             ("volumes", "phase volumes (wait + mount), ms"),
                             ("complete_us", "smss start -> boot complete, ms")]:
            print(f"| {label} | {ms(med('coldplug', field))} | {ms(med('explicit list', field))} |")
        a, b = med("coldplug", "login_s"), med("explicit list", "login_s")
        fmt = (lambda v: "—" if v is None else f"{v:.2f}")
        print(f"| kernel start -> login prompt, s | {fmt(a)} | {fmt(b)} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
