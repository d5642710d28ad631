#!/bin/sh
# Tier-4 payload, run by smss as the container's initial command (busybox sh).
#   payload.sh exit N     exit with status N
#   payload.sh signals    report USR1/HUP, exit 7 on TERM (proves smss forwarded it)
#   payload.sh orphans    make orphans that die; report who adopted them (the init that
#                         started us: PID 1, or smss as a subreaper) and the zombies left
zombies() {
  n=0
  for st in /proc/[0-9]*/stat; do
    s=$(sed 's/.*) //' "$st" 2>/dev/null | cut -d' ' -f1)
    [ "$s" = Z ] && n=$((n + 1))
  done
  echo $n
}
case "$1" in
  exit) exit "${2:-0}" ;;
  signals)
    trap 'echo "payload: got USR1"' USR1
    trap 'echo "payload: got HUP"' HUP
    trap 'echo "payload: got TERM"; exit 7' TERM
    echo "payload: ready pid=$$"
    # sleep in the background so traps run at once (a foreground sleep delays them)
    while :; do sleep 1 & wait $!; done ;;
  orphans)
    echo "payload: pid=$$ making orphans"
    # each inner sh exits at once; its child becomes an orphan of PID 1: five that exit a
    # second later, and one (a double fork) that has exited already
    pids=$(for i in 1 2 3 4 5; do sh -c 'sleep 1 >/dev/null & echo $!; exit 0'; done
           sh -c '(exit 3) >/dev/null & echo $!; exit 0')
    # one more that lives a little longer: whose child it became (its intermediate sh was
    # reaped by the time $(...) returns, so it has been reparented already)
    late=$(sh -c 'sleep 2 >/dev/null & echo $!; exit 0')
    adopter=$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$late/status")
    echo "payload: adopter=$adopter parent=$PPID"
    pids="$pids $late"
    # an orphan leaves /proc only once it exited and PID 1 reaped it: wait for that, up to
    # 10 s (an unreaped one stays a zombie, so this fails rather than passes by waiting)
    i=0
    while :; do
      left=0
      for p in $pids; do [ -e "/proc/$p" ] && left=$((left + 1)); done
      [ "$left" = 0 ] || [ "$i" -ge 100 ] && break
      sleep 0.1
      i=$((i + 1))
    done
    echo "payload: orphans=$(echo $pids | wc -w) left=$left"
    echo "payload: zombies=$(zombies)"
    echo "payload: processes=$(ls -d /proc/[0-9]* | wc -l)" ;;
  *) echo "payload: unknown mode $1" >&2; exit 2 ;;
esac
