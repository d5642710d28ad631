#!/usr/bin/env python3
"""Reaping payload: runs as the only child of the PID 1 under test, in a fresh pid namespace.

Makes N orphans that exit at once: BATCH intermediate children each fork N/BATCH grandchildren
and exit, so the grandchildren (mostly zombies already) are re-parented to PID 1 in bursts
(coalesced SIGCHLDs). Then polls /proc until nothing but PID 1 and this process is left, or the
deadline passes. Prints one JSON line: create_s, total_s (create + last reap), tail_s (after the
last orphan was made), left, zombies, fork_errors.

usage: reap_payload.py N DEADLINE_S
"""
import json
import os
import sys
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
deadline_s = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
per = 100
me = str(os.getpid())


def fork_retry():
    for _ in range(2000):
        try:
            return os.fork()
        except BlockingIOError:  # EAGAIN: pid or task limit; the init should catch up
            time.sleep(0.001)
    raise OSError("fork kept failing with EAGAIN")


errors = 0
t0 = time.monotonic()
for _ in range(n // per):
    try:
        pid = fork_retry()
    except OSError:
        errors += 1
        continue
    if pid == 0:
        for _ in range(per):
            try:
                if fork_retry() == 0:
                    os._exit(0)
            except OSError:
                os._exit(1)
        os._exit(0)
    _, st = os.waitpid(pid, 0)
    if st != 0:
        errors += 1
t1 = time.monotonic()


def others():
    return [e for e in os.listdir("/proc") if e.isdigit() and e not in ("1", me)]


left = others()
while left and time.monotonic() - t1 < deadline_s:
    time.sleep(0.0005)
    left = others()
t2 = time.monotonic()
zombies = 0
for p in left:
    try:
        with open(f"/proc/{p}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                zombies += 1
    except OSError:
        pass
print(json.dumps({"create_s": t1 - t0, "total_s": t2 - t0, "tail_s": t2 - t1,
                  "left": len(left), "zombies": zombies, "fork_errors": errors}), flush=True)
