#!/usr/bin/env bash
# Keyward local PgBouncer, in front of the local PostgreSQL (deploy/local/postgres.sh), as in Kubernetes
# (deploy/k8s/base/pgbouncer.yaml): transaction pooling, every database of the cluster, the services' logins.
#
#   deploy/local/pgbouncer.sh start|stop|status
#
# Two instances, each with pools of its own, every database of the cluster behind each:
#   main    127.0.0.1:${KEYWARD_PGBOUNCER_PORT:-56432}          every pool of every service (DATABASE_URL)
#   verify  127.0.0.1:${KEYWARD_PGBOUNCER_VERIFY_PORT:-56433}   the keys service's verify pool only
#           (VERIFY_DATABASE_URL): administrators' transactions holding every server connection of the main
#           instance leave verify's untouched. Kubernetes does the same with a database entry of its own
#           (deploy/k8s/pgbouncer/databases.ini, keyward_verify); locally each test run makes its own database,
#           which only a wildcard entry reaches, and an instance has one.
# Config, log and pid in <repo>/.local/pgbouncer (fallback /var/tmp/keyward-pgbouncer-<hash> when the 'postgres'
# OS user cannot traverse the repo path).
# Use:    a DATABASE_URL on this port ending in ?pgbouncer=transaction (shared/db.py create_pool); make run and
#         make test use it with KEYWARD_PGBOUNCER=1 (deploy/local/runenv.py).
#
# Debian bookworm's PgBouncer is 1.18, which does not track prepared statements in transaction pooling:
# asyncpg keeps none (statement_cache_size=0, from ?pgbouncer=transaction), and the named statement of a
# cursor (the export) is dropped when its server connection is released (DEALLOCATE ALL below), so that
# another process's statement of the same name never meets it. Kubernetes runs 1.21+ with
# max_prepared_statements instead.
#
# Idempotent: installs Debian's package when missing; start on a running one and stop on a stopped one are
# no-ops. status exits 0 when running, 3 when stopped.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"

PG_PORT="${KEYWARD_PG_PORT:-55432}"
RUN_AS="postgres"
BIN="/usr/sbin/pgbouncer"
# The local cluster's logins (deploy/local/postgres.sh makes them; deploy/local/dev.env holds the same).
LOGINS=(
  "keyward:keyward"
  "keyward_keys:dev-keys-db-password"
  "keyward_notifier:dev-notifier-db-password"
  "keyward_reaper:dev-reaper-db-password"
  "keyward_gateway:dev-gateway-db-password"
)

log() { printf '[pgbouncer] %s\n' "$*" >&2; }
die() { printf '[pgbouncer] ERROR: %s\n' "$*" >&2; exit 1; }

INSTANCES=(main verify)

# Sets NAME, PORT, POOL_SIZE, MAX_DB for an instance.
instance() {
  NAME="$1"
  case "$NAME" in
    main) PORT="${KEYWARD_PGBOUNCER_PORT:-56432}" POOL_SIZE=20 MAX_DB=60 ;;
    # Verify's queries are short: a few server connections serve every keys process's VERIFY_DB_POOL_SIZE.
    verify) PORT="${KEYWARD_PGBOUNCER_VERIFY_PORT:-56433}" POOL_SIZE=10 MAX_DB=20 ;;
    *) die "unknown instance $NAME" ;;
  esac
  [[ "$PORT" =~ ^[0-9]+$ ]] || die "the $NAME instance's port must be a number, got '$PORT'"
}

as_user() {
  if [[ "$(id -un)" == "$RUN_AS" ]]; then (cd / && "$@"); else (cd / && runuser -u "$RUN_AS" -- "$@"); fi
}

ensure_binary() {
  [[ -x "$BIN" ]] && return 0
  [[ "$(id -u)" -eq 0 ]] || die "pgbouncer missing and not root: install Debian's 'pgbouncer' first"
  log "pgbouncer missing: installing Debian's package (apt-get)"
  apt-get update -q >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >&2 || die "apt-get install pgbouncer failed"
  [[ -x "$BIN" ]] || die "pgbouncer installed but $BIN is missing"
}

resolve_layout() {
  local hash repo_base="$REPO_ROOT/.local/pgbouncer"
  hash="$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-10)"
  if id -u "$RUN_AS" >/dev/null 2>&1 && mkdir -p "$repo_base" 2>/dev/null && as_user test -x "$repo_base" 2>/dev/null; then
    BASE="$repo_base"
  else
    BASE="/var/tmp/keyward-pgbouncer-$hash"
  fi
  local stem="pgbouncer"
  [[ "$NAME" == main ]] || stem="pgbouncer-$NAME"
  CONF="$BASE/$stem.ini"
  PID_FILE="$BASE/$stem.pid"
  LOG_FILE="$BASE/$stem.log"
}

write_config() {
  mkdir -p "$BASE"
  chown "$RUN_AS:" "$BASE"
  chmod 0700 "$BASE"
  local users="$BASE/userlist.txt" login
  : >"$users"
  for login in "${LOGINS[@]}"; do printf '"%s" "%s"\n' "${login%%:*}" "${login#*:}" >>"$users"; done
  cat >"$CONF" <<EOF
; Managed by deploy/local/pgbouncer.sh -- regenerated on every start. Instance: $NAME.
[databases]
; Every database of the local cluster (each test run makes its own).
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $users
pool_mode = transaction
max_client_conn = 2000
default_pool_size = $POOL_SIZE
max_db_connections = $MAX_DB
; 1.18 keeps no track of prepared statements: none outlives the transaction that made it.
server_reset_query = DEALLOCATE ALL
server_reset_query_always = 1
; The reaper asks for synchronous_commit=off at start: through PgBouncer its login carries it instead
; (ALTER ROLE keyward_reaper SET synchronous_commit = off).
ignore_startup_parameters = extra_float_digits,synchronous_commit
logfile = $LOG_FILE
pidfile = $PID_FILE
admin_users = keyward
EOF
  chown "$RUN_AS:" "$CONF" "$users"
  chmod 0600 "$CONF" "$users"
}

pid_of() { if [[ -f "$PID_FILE" ]]; then tr -dc '0-9' <"$PID_FILE"; fi; }

is_running() {
  local pid
  pid="$(pid_of)"
  [[ -n "$pid" && -e "/proc/$pid" ]] && grep -q pgbouncer "/proc/$pid/cmdline" 2>/dev/null
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start_one() {
  instance "$1"
  resolve_layout
  if is_running && answers; then
    log "$NAME: already running on 127.0.0.1:$PORT"
    return 0
  fi
  write_config
  log "starting PgBouncer ($NAME) on 127.0.0.1:$PORT in front of 127.0.0.1:$PG_PORT (log $LOG_FILE)"
  as_user "$BIN" -d "$CONF" || { tail -n 20 "$LOG_FILE" >&2 || true; die "pgbouncer did not start"; }
  local deadline=$((SECONDS + 15))
  until answers; do
    (( SECONDS < deadline )) || { tail -n 20 "$LOG_FILE" >&2 || true; die "pgbouncer not answering on $PORT"; }
    sleep 0.2
  done
  log "$NAME: ready"
}

cmd_start() {
  [[ "$(id -u)" -eq 0 || "$(id -un)" == "$RUN_AS" ]] || die "run as root (uses runuser to become '$RUN_AS')"
  ensure_binary
  id -u "$RUN_AS" >/dev/null 2>&1 || die "OS user '$RUN_AS' missing: start PostgreSQL first (deploy/local/postgres.sh)"
  local name
  for name in "${INSTANCES[@]}"; do start_one "$name"; done
}

stop_one() {
  instance "$1"
  resolve_layout
  if ! is_running; then
    log "$NAME: not running"
    return 0
  fi
  local pid deadline=$((SECONDS + 15))
  pid="$(pid_of)"
  kill -INT "$pid"
  while [[ -e "/proc/$pid" ]]; do
    (( SECONDS < deadline )) || die "pgbouncer $NAME (pid $pid) did not stop"
    sleep 0.2
  done
  log "$NAME: stopped"
}

cmd_stop() {
  local name
  for name in "${INSTANCES[@]}"; do stop_one "$name"; done
}

cmd_status() {
  local name rc=0
  for name in "${INSTANCES[@]}"; do
    instance "$name"
    resolve_layout
    if is_running; then
      echo "pgbouncer ($NAME): running (127.0.0.1:$PORT)"
    else
      echo "pgbouncer ($NAME): stopped"
      rc=3
    fi
  done
  return "$rc"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
