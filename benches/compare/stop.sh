#!/usr/bin/env bash
# Stops what benches/compare/start.sh started: only the pids it recorded, and only when the
# process behind a pid is still the one it started (a recycled pid is left alone).
set -u
STATE=${STATE:-/tmp/huddle-compare}
stop() {
  local file=$1 name=$2 pid
  [ -e "$STATE/$file" ] || return 0
  pid=$(cat "$STATE/$file")
  if tr "\\0" " " 2>/dev/null <"/proc/$pid/cmdline" | grep -q "$name"; then
    [ "$name" = sleep ] && pkill -P "$pid" -x sleep 2>/dev/null
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$STATE/$file"
}
stop redis.pid redis-server
stop nats.pid nats-server
stop nats-tls.pid nats-server
stop watchdog.pid sleep   # the watchdog shell and its own sleep child
rm -f "$STATE/env"
echo "stopped; logs and configs stay in $STATE"
