#!/usr/bin/env python3
"""An independent varlink client (PyPI `varlink`) against smss's control socket.

Usage: varlink_client.py SOCKET MARKER_FILE
Creates a session whose command writes MARKER_FILE, lists it, terminates it, checks the
errors. Prints "OK" and exits 0 when everything held; any exception exits non-zero.
Run by init/tests/ns_control.rs under `cargo test`.
"""
import os
import time
import sys

import varlink


def expect_error(fn, name):
    try:
        fn()
    except varlink.VarlinkError as e:
        if e.error() != name:
            raise AssertionError(f"expected {name}, got {e.error()} {e.parameters()}")
        return e
    raise AssertionError(f"expected {name}, got a reply")


def main():
    socket, marker = sys.argv[1], sys.argv[2]
    with varlink.Client(address=f"unix:{socket}") as client:
        # org.varlink.service: GetInfo, and a description python-varlink can parse.
        with client.open("org.varlink.service") as service:
            info = service.GetInfo()
            assert info["product"] == "smss", info
            assert "io.smss.Manager" in info["interfaces"], info
            desc = service.GetInterfaceDescription("io.smss.Manager")["description"]
            iface = varlink.Interface(desc)
            assert iface.name == "io.smss.Manager"
            for m in ["GetStatus", "CreateSession", "ListSessions", "TerminateSession",
                      "LoadDeferredSubsystem", "QueueFileRename", "Shutdown"]:
                assert m in iface.members, m
            expect_error(lambda: service.GetInterfaceDescription("com.example.Nope"),
                         "org.varlink.service.InterfaceNotFound")

        # open() itself calls GetInterfaceDescription and builds the proxies from it.
        with client.open("io.smss.Manager") as m:
            st = m.GetStatus()
            assert st["mode"] == "container", st
            assert st["uptime_us"] > 0
            assert any(p["name"] == "sessions-directory" for p in st["phases"]), st["phases"]

            cmd = ["sh", "-c", f"echo \"$SESSION $XDG_RUNTIME_DIR\" > {marker}; exec sleep 1000"]
            created = m.CreateSession(command=cmd, environment=["FROM_PYTHON=1"])
            sid = created["id"]
            assert sid >= 1 and len(created["pids"]) == 1, created

            # The reply comes once the login manager runs; its first line of shell may still be
            # ahead. Wait (bounded) for its marker before ending the session.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (
                    os.path.exists(marker) and os.path.getsize(marker) > 0):
                time.sleep(0.005)

            listed = m.ListSessions()["sessions"]
            mine = [s for s in listed if s["id"] == sid]
            assert len(mine) == 1 and mine[0]["state"] == "active", listed
            assert mine[0]["leader_pid"] == created["pids"][0], mine

            m.TerminateSession(sid)
            assert all(s["id"] != sid for s in m.ListSessions()["sessions"])
            expect_error(lambda: m.TerminateSession(sid), "io.smss.Manager.NoSuchSession")
            expect_error(lambda: m.CreateSession(seat="no-such-seat", command=["true"]),
                         "io.smss.Manager.InvalidParameter")
            expect_error(lambda: m.LoadDeferredSubsystem("nope"),
                         "io.smss.Manager.NoSuchSubsystem")

    with open(marker) as f:
        text = f.read().split()
    assert text == [str(sid), f"/run/smss/sessions/{sid}"], text
    print("OK")


if __name__ == "__main__":
    main()
