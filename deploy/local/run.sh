#!/usr/bin/env bash
# `make run`: starts every service that exists (and the mail sink) against the local stack, prints where
# everything is, and stops it all on Ctrl-C. The stack itself (PostgreSQL, Kafka) is left running;
# `make stack-down` stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
LOGS=.local/logs
mkdir -p "$LOGS"

declare -A PORTS=([keys]=8081 [notifier]=8082 [reaper]=8083 [gateway]=8080)
pids=()

stop_all() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped (the stack keeps running; 'make stack-down' stops PostgreSQL and Kafka)"
}
trap stop_all INT TERM EXIT

start() {  # name, command...
  local name=$1; shift
  "$@" > >(sed -u "s/^/[$name] /" | tee -a "$LOGS/$name.log") 2>&1 &
  pids+=($!)
}

wait_healthy() {  # name port
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$1 did not start; see $LOGS/$1.log" >&2
  return 1
}

if [ -f deploy/local/mailsink.py ]; then
  start mailsink "$PY" deploy/local/mailsink.py
  export SMTP_HOST=${SMTP_HOST:-127.0.0.1} SMTP_PORT=${SMTP_PORT:-1025}
fi
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# AUTH_MODE=oidc: the console signs in at a real OpenID provider, Keycloak, started beside the stack (installed
# from Maven Central on first use); its realm's users are the demo directory's administrators.
if [ "${AUTH_MODE:-}" = oidc ]; then
  export OIDC_ISSUER=${OIDC_ISSUER:-$(bash deploy/local/keycloak.sh start)}
  export OIDC_CLIENT_ID=${OIDC_CLIENT_ID:-keyward-console}
  export OIDC_CLIENT_SECRET=${OIDC_CLIENT_SECRET:-dev-keyward-console-oidc-secret-000000}
  sign_in="sign in at the provider as admin, acme-admin, acme-ops, acme-viewer or globex-admin, password keyward-demo"
  provider="  Provider:    ${OIDC_ISSUER}   (Keycloak; its admin console: keycloak-admin / keyward-demo; 'outsider' is a user the directory does not know)"
else
  sign_in="sign in as admin, acme-admin, acme-ops, globex-admin"
  provider=""
fi

# KEYWARD_PGBOUNCER=1: the services' pools go through the local PgBouncer (deploy/local/runenv.py), as in
# Kubernetes; the relay, which needs a session of its own (its lock and LISTEN), then runs apart, direct.
if [ "${KEYWARD_PGBOUNCER:-}" = 1 ]; then
  export RUN_RELAY=false
  PORTS[keys-relay]=8091
fi

started=()
for name in keys notifier reaper gateway; do
  [ -f "services/$name/__main__.py" ] || continue
  if ! port_free "${PORTS[$name]}"; then
    echo "port ${PORTS[$name]} ($name) is already in use: is another 'make run' still running?" >&2
    exit 1
  fi
  # Each process gets its own secrets and database login only (deploy/local/runenv.py).
  mapfile -d '' own_env < <(PORT=${PORTS[$name]} "$PY" deploy/local/runenv.py "$name")
  start "$name" env -i "${own_env[@]}" "$PY" -m "services.$name" serve
  started+=("$name")
done
if [ "${KEYWARD_PGBOUNCER:-}" = 1 ]; then
  mapfile -d '' own_env < <(RELAY_PORT=${PORTS[keys-relay]} "$PY" deploy/local/runenv.py keys-relay)
  start keys-relay env -i "${own_env[@]}" "$PY" -m services.keys relay
  started+=(keys-relay)
fi
for name in "${started[@]}"; do wait_healthy "$name" "${PORTS[$name]}"; done

cat <<MSG

Keyward is running.
  Console:     ${CONSOLE_URL:-http://127.0.0.1:8080}   (AUTH_MODE=${AUTH_MODE:-dev}: ${sign_in})
  Keys API:    http://127.0.0.1:8081/docs
  PostgreSQL:  ${DATABASE_URL}   (the owner; each service connects as its own role)
  Kafka:       ${KAFKA_BOOTSTRAP_SERVERS}   (topic apikeys.lifecycle)
MSG
[ -n "$provider" ] && echo "$provider"
[ -f deploy/local/mailsink.py ] && echo "  Mail sink:   http://127.0.0.1:8025   (SMTP on 127.0.0.1:1025: every e-mail the notifier sends)"
echo "  Services:    ${started[*]}   (logs in $LOGS/)"
echo "Press Ctrl-C to stop."
wait -n "${pids[@]}" || true
echo "a process exited; see $LOGS/" >&2
