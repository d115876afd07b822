#!/usr/bin/env bash
# Keyward local PostgreSQL: a project-local cluster (not the Debian-managed one).
#
#   deploy/local/postgres.sh start|stop|status
#
# Data:   <repo>/.local/postgres/data  (fallback /var/tmp/keyward-postgres-<hash>/data
#         when the 'postgres' OS user cannot traverse the repo path)
# Listen: 127.0.0.1:${KEYWARD_PG_PORT:-55432}; unix socket in <base>/run
# DSN:    postgresql://keyward:keyward@127.0.0.1:55432/keyward
#
# KEYWARD_PG_HOME=<dir> puts a second cluster there (data, socket, log) with the same binaries, roles and
# database; with KEYWARD_PG_PORT, the chaos runs' own (chaos/stack.py: .local/chaos/postgres, port 29432), so that
# their PostgreSQL fault never stops the main stack's server.
#
# Idempotent: start on a running cluster and stop on a stopped one are no-ops.
# status exits 0 when running, 3 when stopped.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"

PG_PORT="${KEYWARD_PG_PORT:-55432}"
PG_USER_OS="postgres"
DB_NAME="keyward"
DB_USER="keyward"
DB_PASS="keyward"
START_TIMEOUT="${KEYWARD_PG_START_TIMEOUT:-60}"
DSN="postgresql://${DB_USER}:${DB_PASS}@127.0.0.1:${PG_PORT}/${DB_NAME}"

log() { printf '[postgres] %s\n' "$*" >&2; }
die() { printf '[postgres] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$PG_PORT" =~ ^[0-9]+$ ]] || die "KEYWARD_PG_PORT must be a number, got '$PG_PORT'"

# ---------------------------------------------------------------- binaries --
find_pg_bin() {
  # newest major version wins (version sort)
  local best="" d
  while IFS= read -r d; do
    if [[ -x "$d/postgres" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then best="$d"; fi
  done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -V || true)
  printf '%s' "$best"
}

ensure_binaries() {
  PG_BIN="$(find_pg_bin)"
  if [[ -z "$PG_BIN" ]]; then
    [[ "$(id -u)" -eq 0 ]] || die "PostgreSQL server binaries missing and not root: install 'postgresql postgresql-contrib' first"
    command -v apt-get >/dev/null || die "PostgreSQL server binaries missing and apt-get not available"
    log "PostgreSQL server binaries missing: installing from Debian (apt-get)"
    apt-get update -q >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql postgresql-contrib >&2 \
      || die "apt-get install postgresql postgresql-contrib failed"
    PG_BIN="$(find_pg_bin)"
    [[ -n "$PG_BIN" ]] || die "PostgreSQL installed but no /usr/lib/postgresql/*/bin/postgres found"
  fi
  local share
  share="$("$PG_BIN/pg_config" --sharedir 2>/dev/null || true)"
  if [[ -n "$share" && ! -f "$share/extension/ltree.control" ]]; then
    log "ltree extension missing: installing postgresql-contrib"
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-contrib >&2 \
      || die "could not install postgresql-contrib (needed for ltree/pgcrypto)"
  fi
}

need_binaries_for_query() {
  # stop/status must not install anything
  PG_BIN="$(find_pg_bin)"
}

ensure_os_user() {
  if ! id -u "$PG_USER_OS" >/dev/null 2>&1; then
    [[ "$(id -u)" -eq 0 ]] || die "OS user '$PG_USER_OS' missing and not root to create it"
    log "creating OS user '$PG_USER_OS'"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "$PG_USER_OS" \
      || die "could not create OS user '$PG_USER_OS'"
  fi
}

# Run a command as the postgres OS user, from a directory it can read.
as_pg() {
  if [[ "$(id -un)" == "$PG_USER_OS" ]]; then
    (cd / && "$@")
  else
    (cd / && runuser -u "$PG_USER_OS" -- "$@")
  fi
}

# ------------------------------------------------------------------ layout --
resolve_layout() {
  local repo_base="${KEYWARD_PG_HOME:-$REPO_ROOT/.local/postgres}"
  local hash
  hash="$(printf '%s' "$REPO_ROOT${KEYWARD_PG_HOME:+:$KEYWARD_PG_HOME}" | sha256sum | cut -c1-10)"
  local fallback="/var/tmp/keyward-postgres-$hash"

  BASE=""
  if mkdir -p "$repo_base" 2>/dev/null && as_pg test -x "$repo_base" 2>/dev/null; then
    BASE="$repo_base"
  else
    BASE="$fallback"
  fi
  DATA="$BASE/data"
  SOCK_DIR="$BASE/run"
  LOG_DIR="$BASE/log"
  LOG_FILE="$LOG_DIR/postgres.log"
  # unix socket paths are limited to ~107 bytes
  if (( ${#SOCK_DIR} + 20 > 100 )); then
    SOCK_DIR="/var/tmp/keyward-pgsock-$hash"
  fi
}

prepare_dirs() {
  mkdir -p "$BASE" "$SOCK_DIR" "$LOG_DIR"
  chown "$PG_USER_OS:" "$BASE" "$SOCK_DIR" "$LOG_DIR"
  chmod 0700 "$SOCK_DIR"
  if [[ -e "$DATA" ]]; then
    chown -R "$PG_USER_OS:" "$DATA"
  fi
  as_pg test -w "$BASE" || die "user '$PG_USER_OS' cannot write to $BASE"
}

# Alive and not a zombie (a killed postmaster can linger as a zombie until reaped,
# and kill -0 / pg_ctl status would still call it running).
proc_alive() {
  local st
  st="$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)" || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

postmaster_pid() { head -n 1 "$DATA/postmaster.pid" 2>/dev/null | tr -dc '0-9' || true; }

is_running() {
  [[ -n "${PG_BIN:-}" && -f "$DATA/PG_VERSION" ]] || return 1
  local pid
  pid="$(postmaster_pid)"
  [[ -n "$pid" ]] && proc_alive "$pid" || return 1
  as_pg "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

# postmaster.pid names a process that is dead but not yet reaped
postmaster_zombie() {
  local pid
  pid="$(postmaster_pid)"
  [[ -n "$pid" && -e "/proc/$pid" ]] && ! proc_alive "$pid"
}

# ---------------------------------------------------------------- commands --
write_conf() {
  # Regenerated on every start; postgresql.conf includes it once.
  cat >"$DATA/keyward.conf" <<EOF
# Managed by deploy/local/postgres.sh -- regenerated on every start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$SOCK_DIR'
max_connections = 300
shared_buffers = 256MB
# crash safety is under test: keep durability on
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
EOF
  chown "$PG_USER_OS:" "$DATA/keyward.conf"
  if ! grep -q "^include_if_exists = 'keyward.conf'" "$DATA/postgresql.conf"; then
    printf "\n# Keyward local settings\ninclude_if_exists = 'keyward.conf'\n" >>"$DATA/postgresql.conf"
  fi
}

init_cluster() {
  if [[ -f "$DATA/PG_VERSION" ]]; then
    local have want
    have="$(cat "$DATA/PG_VERSION")"
    want="$("$PG_BIN/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')"
    [[ "$have" == "$want" ]] || die "data dir $DATA is PostgreSQL $have but binaries are $want; remove it (rm -rf $DATA) to re-init"
    return 0
  fi
  if [[ -d "$DATA" ]] && [[ -n "$(ls -A "$DATA" 2>/dev/null)" ]]; then
    die "$DATA exists, is not empty and holds no cluster (no PG_VERSION); remove it to re-init"
  fi
  log "initdb $DATA"
  local pwfile
  pwfile="$(mktemp)"
  printf 'postgres\n' >"$pwfile"
  chown "$PG_USER_OS:" "$pwfile"
  if ! as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres --pwfile="$pwfile" \
        -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >"$LOG_DIR/initdb.log" 2>&1; then
    rm -f "$pwfile"
    cat "$LOG_DIR/initdb.log" >&2 || true
    die "initdb failed (log: $LOG_DIR/initdb.log)"
  fi
  rm -f "$pwfile"
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres; }

# Start if needed and wait (bounded) until the server answers on TCP.
start_and_wait() {
  local deadline=$((SECONDS + START_TIMEOUT)) started=0
  if is_running; then log "already running (data $DATA)"; fi
  while :; do
    if is_running && pg_ready; then return 0; fi
    if ! is_running; then
      if postmaster_zombie; then
        : # previous postmaster killed, not reaped yet: its lock file still blocks a start
      elif (( started == 0 )); then
        started=1
        write_conf
        log "starting PostgreSQL $(basename "$(dirname "$PG_BIN")") on 127.0.0.1:$PG_PORT (data $DATA, log $LOG_FILE)"
        local left=$((deadline - SECONDS)); (( left > 5 )) || left=5
        if ! as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG_FILE" -w -t "$left" start >/dev/null; then
          log "pg_ctl start failed; last lines of $LOG_FILE:"
          tail -n 30 "$LOG_FILE" >&2 || true
          die "PostgreSQL did not start (is port $PG_PORT already in use?)"
        fi
        continue
      else
        tail -n 30 "$LOG_FILE" >&2 || true
        die "PostgreSQL exited right after start (see $LOG_FILE)"
      fi
    fi
    if (( SECONDS >= deadline )); then
      tail -n 30 "$LOG_FILE" >&2 || true
      die "PostgreSQL not answering on 127.0.0.1:$PG_PORT after ${START_TIMEOUT}s"
    fi
    sleep 0.3
  done
}

psql_admin() {
  # superuser over the unix socket (trust auth), fail on the first error
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK_DIR" -p "$PG_PORT" -U postgres "$@"
}

bootstrap_db() {
  psql_admin -d postgres >/dev/null <<SQL
SET client_min_messages = warning;
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${DB_USER}') THEN
    CREATE ROLE ${DB_USER} WITH LOGIN SUPERUSER PASSWORD '${DB_PASS}';
  ELSE
    ALTER ROLE ${DB_USER} WITH LOGIN SUPERUSER PASSWORD '${DB_PASS}';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE ${DB_NAME} OWNER ${DB_USER}'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '${DB_NAME}')
\gexec
SQL
  psql_admin -d "$DB_NAME" >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ltree;
SQL
  bootstrap_service_roles
}

# Each service connects as a login role of its own, a member of its service's group role, which the
# migrations grant exactly what the service's schema needs (granted by the migration runner, shared/db.py _runtime_grants).
# The group roles are made here too, so that the login roles can join them before the first migration.
# Development passwords: deploy/local/dev.env holds the same DSNs.
SERVICE_ROLES=(keys notifier reaper gateway)
bootstrap_service_roles() {
  local sql="SET client_min_messages = warning;"
  for svc in "${SERVICE_ROLES[@]}"; do
    sql+="
DO \$\$ BEGIN
  CREATE ROLE keyward_${svc}_app NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END \$\$;
DO \$\$ BEGIN
  CREATE ROLE keyward_${svc} LOGIN PASSWORD 'dev-${svc}-db-password' IN ROLE keyward_${svc}_app;
EXCEPTION WHEN duplicate_object THEN
  ALTER ROLE keyward_${svc} LOGIN PASSWORD 'dev-${svc}-db-password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
  GRANT keyward_${svc}_app TO keyward_${svc};
END \$\$;"
  done
  # The reaper's schedule is a hint (services/reaper/app.py asks for this at connect); through PgBouncer, which
  # keeps no session's settings, its login carries it (deploy/local/pgbouncer.sh, docs/operations.md).
  sql+="
ALTER ROLE keyward_reaper SET synchronous_commit = off;"
  psql_admin -d postgres >/dev/null <<<"$sql"
}

cmd_start() {
  [[ "$(id -u)" -eq 0 || "$(id -un)" == "$PG_USER_OS" ]] || die "run as root (uses runuser to become '$PG_USER_OS')"
  ensure_binaries
  ensure_os_user
  resolve_layout
  prepare_dirs
  init_cluster
  chown -R "$PG_USER_OS:" "$DATA"

  start_and_wait
  bootstrap_db || die "could not create role/database/extension (see $LOG_FILE)"
  log "ready"
  echo "$DSN"
}

cmd_stop() {
  need_binaries_for_query
  if [[ -z "$PG_BIN" ]] || ! id -u "$PG_USER_OS" >/dev/null 2>&1; then
    log "not installed; nothing to stop"
    return 0
  fi
  resolve_layout
  if ! is_running; then
    log "not running"
    return 0
  fi
  log "stopping (data $DATA)"
  as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null \
    || die "pg_ctl stop failed (see $LOG_FILE)"
  log "stopped"
}

cmd_status() {
  need_binaries_for_query
  if [[ -n "$PG_BIN" ]] && id -u "$PG_USER_OS" >/dev/null 2>&1; then
    resolve_layout
    if is_running; then
      echo "postgres: running ($DSN, data $DATA)"
      return 0
    fi
  fi
  echo "postgres: stopped"
  return 3
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
