#!/usr/bin/env bash
# Starts Redis 7 (pub/sub) and NATS 2.9 on 127.0.0.1 (or BIND) for `huddle load --backend redis|nats`
# (issue 3's side-by-side comparison). Installs them from Debian's packages when missing.
#
#   benches/compare/start.sh          # prints the ports and pids; `source $STATE/env` for them
#   benches/compare/stop.sh           # stops exactly the processes this script started
#
# Redis serves plaintext and TLS on two ports from one process; NATS needs one process per
# mode. TLS uses the development CA and server certificate of `huddle certs` (CERTS_DIR). The
# servers are pinned with `taskset -c $SERVER_CPU` (default 0) and a watchdog kills them after
# LIFETIME_S seconds (default 1800) if stop.sh is never run. Configs, logs and pid files go to
# STATE (default /tmp/huddle-compare). BIND (default 127.0.0.1) is the address they listen on
# (benches/ip_compare.sh runs this script inside the IP impairment's server namespace with
# BIND=10.77.0.1).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
STATE=${STATE:-/tmp/huddle-compare}
BIND=${BIND:-127.0.0.1}
# An IPv6 address (BIND=fd77:77::1) in host:port form goes in brackets.
HOST=$BIND
case $BIND in *:*) HOST="[$BIND]" ;; esac
# Redis's protected mode refuses every client but loopback ones while there is no password.
PROTECTED=yes
[ "$BIND" = 127.0.0.1 ] || PROTECTED=no
CERTS_DIR=${CERTS_DIR:-$top/certs}
HUDDLE=${HUDDLE:-$top/target/release/huddle}
SERVER_CPU=${SERVER_CPU:-0}
LIFETIME_S=${LIFETIME_S:-1800}
REDIS_PORT=${REDIS_PORT:-16379}
REDIS_TLS_PORT=${REDIS_TLS_PORT:-16380}
NATS_PORT=${NATS_PORT:-14222}
NATS_TLS_PORT=${NATS_TLS_PORT:-14223}

if [ -e "$STATE/env" ]; then
  echo "already started (see $STATE/env); run benches/compare/stop.sh first" >&2
  exit 1
fi

if ! command -v redis-server >/dev/null || ! command -v nats-server >/dev/null; then
  echo "installing redis-server and nats-server from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server nats-server >/dev/null
fi
NATS=$(command -v nats-server)
REDIS=$(command -v redis-server)

if [ ! -e "$CERTS_DIR/ca.pem" ] || [ ! -e "$CERTS_DIR/server.pem" ]; then
  "$HUDDLE" certs --dir "$CERTS_DIR" >/dev/null
fi

mkdir -p "$STATE"
# Each server gets up to 20,000 connections when the hard limit allows it (W3 opens 10,000).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cat >"$STATE/redis.conf" <<CONF
bind $BIND
protected-mode $PROTECTED
port $REDIS_PORT
tls-port $REDIS_TLS_PORT
tls-cert-file $CERTS_DIR/server.pem
tls-key-file $CERTS_DIR/server.key
tls-ca-cert-file $CERTS_DIR/ca.pem
tls-auth-clients no
maxclients 19000
save ""
appendonly no
daemonize no
dir $STATE
logfile $STATE/redis.log
CONF

cat >"$STATE/nats.conf" <<CONF
listen: "$HOST:$NATS_PORT"
max_connections: 20000
log_file: "$STATE/nats.log"
CONF

cat >"$STATE/nats-tls.conf" <<CONF
listen: "$HOST:$NATS_TLS_PORT"
max_connections: 20000
log_file: "$STATE/nats-tls.log"
tls {
  cert_file: "$CERTS_DIR/server.pem"
  key_file: "$CERTS_DIR/server.key"
}
CONF

# taskset execs the server, so $! is the server's own pid.
taskset -c "$SERVER_CPU" "$REDIS" "$STATE/redis.conf" </dev/null >/dev/null 2>&1 &
echo $! >"$STATE/redis.pid"
taskset -c "$SERVER_CPU" "$NATS" -c "$STATE/nats.conf" </dev/null >/dev/null 2>&1 &
echo $! >"$STATE/nats.pid"
taskset -c "$SERVER_CPU" "$NATS" -c "$STATE/nats-tls.conf" </dev/null >/dev/null 2>&1 &
echo $! >"$STATE/nats-tls.pid"

# The watchdog: bounded lifetime even if nobody runs stop.sh. It kills only these pids.
pids="$(cat "$STATE/redis.pid") $(cat "$STATE/nats.pid") $(cat "$STATE/nats-tls.pid")"
nohup bash -c "sleep $LIFETIME_S; kill $pids 2>/dev/null" </dev/null >/dev/null 2>&1 &
echo $! >"$STATE/watchdog.pid"

# Wait (bounded) for every port to accept connections.
for port in $REDIS_PORT $REDIS_TLS_PORT $NATS_PORT $NATS_TLS_PORT; do
  for _ in $(seq 50); do
    if (exec 3<>"/dev/tcp/$BIND/$port") 2>/dev/null; then continue 2; fi
    sleep 0.1
  done
  echo "nothing listens on $HOST:$port; logs in $STATE" >&2
  "$top/benches/compare/stop.sh" || true
  exit 1
done

cat >"$STATE/env" <<ENV
REDIS_PID=$(cat "$STATE/redis.pid")
NATS_PID=$(cat "$STATE/nats.pid")
NATS_TLS_PID=$(cat "$STATE/nats-tls.pid")
REDIS_ADDR=$HOST:$REDIS_PORT
REDIS_TLS_ADDR=$HOST:$REDIS_TLS_PORT
NATS_ADDR=$HOST:$NATS_PORT
NATS_TLS_ADDR=$HOST:$NATS_TLS_PORT
CERTS_DIR=$CERTS_DIR
ENV
echo "$("$REDIS" --version | cut -d' ' -f1-3), nats-server $("$NATS" --version | sed 's/.*v//'); pinned to CPU $SERVER_CPU; stop within ${LIFETIME_S}s"
cat "$STATE/env"
