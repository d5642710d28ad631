#!/bin/sh
# Tier-4 payload, run by smss as the container's initial command (busybox sh).
#   payload.sh exit N     exit with status N
#   payload.sh signals    report USR1/HUP, exit 7 on TERM (proves smss forwarded it)
#   payload.sh orphans    make orphans that die; report the zombies left after they do
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
    for i in 1 2 3 4 5; do
      # the inner sh exits at once; its sleep becomes an orphan of PID 1 and exits later
      sh -c 'sleep 1 & exit 0'
    done
    # a double fork that leaves an exited orphan behind immediately
    sh -c '(exit 3) & sleep 0.1; exit 0' &
    wait
    sleep 3
    echo "payload: zombies=$(zombies)"
    echo "payload: processes=$(ls -d /proc/[0-9]* | wc -l)" ;;
  *) echo "payload: unknown mode $1" >&2; exit 2 ;;
esac
