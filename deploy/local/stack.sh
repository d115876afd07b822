#!/usr/bin/env bash
# Keyward local stack (no Docker): PostgreSQL + Kafka, both project-local under <repo>/.local/.
#
#   deploy/local/stack.sh up|down|status
#
# up     = postgres.sh start + pgbouncer.sh start + kafka.sh start   (idempotent; installs what is missing)
# down   = keycloak.sh stop + kafka.sh stop + pgbouncer.sh stop + postgres.sh stop     (idempotent)
# status = both statuses; exit 0 when both run, 3 otherwise
#
# Env: KEYWARD_PG_PORT (55432), KEYWARD_PGBOUNCER_PORT (56432), KEYWARD_KAFKA_PORT (9092), KEYWARD_KAFKA_CONTROLLER_PORT (9093)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

PG_PORT="${KEYWARD_PG_PORT:-55432}"
KAFKA_PORT="${KEYWARD_KAFKA_PORT:-9092}"
DSN="postgresql://keyward:keyward@127.0.0.1:${PG_PORT}/keyward"

case "${1:-}" in
  up)
    start=$SECONDS
    bash "$SCRIPT_DIR/postgres.sh" start >/dev/null
    bash "$SCRIPT_DIR/pgbouncer.sh" start
    bash "$SCRIPT_DIR/kafka.sh" start >/dev/null
    echo "Keyward local stack is up ($((SECONDS - start))s):"
    echo "  PostgreSQL: $DSN"
    echo "  PgBouncer:  127.0.0.1:${KEYWARD_PGBOUNCER_PORT:-56432} (transaction pooling; KEYWARD_PGBOUNCER=1 routes the services through it)"
    echo "  Kafka:      127.0.0.1:$KAFKA_PORT"
    ;;
  down)
    rc=0
    # The OpenID provider, when `AUTH_MODE=oidc make run` or the tests started it.
    bash "$SCRIPT_DIR/keycloak.sh" stop || rc=1
    bash "$SCRIPT_DIR/kafka.sh" stop || rc=1
    bash "$SCRIPT_DIR/pgbouncer.sh" stop || rc=1
    bash "$SCRIPT_DIR/postgres.sh" stop || rc=1
    exit "$rc"
    ;;
  status)
    rc=0
    bash "$SCRIPT_DIR/postgres.sh" status || rc=3
    bash "$SCRIPT_DIR/pgbouncer.sh" status || rc=3
    bash "$SCRIPT_DIR/kafka.sh" status || rc=3
    exit "$rc"
    ;;
  *)
    echo "usage: $0 {up|down|status}" >&2
    exit 2
    ;;
esac
