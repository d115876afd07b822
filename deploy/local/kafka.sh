#!/usr/bin/env bash
# Keyward local Kafka: single-node KRaft broker run from Maven Central jars (no Docker).
#
#   deploy/local/kafka.sh start|stop|status|install
#   deploy/local/kafka.sh tool <main-class> [args...]   # run a Kafka CLI class, e.g.
#       kafka.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#
# Jars:    <repo>/.local/kafka/libs      (mvn -f deploy/local/pom.xml dependency:copy-dependencies)
# Data:    <repo>/.local/kafka/data      (formatted once; survives stop/start)
# Logs:    <repo>/.local/kafka/logs/
#   deploy/local/kafka.sh grant <topic>...            # a test's own topics get the lifecycle's ACLs
#   deploy/local/kafka.sh client-config <principal>   # prints the path of a client properties file that
#       signs in as <principal> (admin, keys, notifier, reaper, gateway or platform), for the CLI tools:
#       kafka.sh tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server 127.0.0.1:9092 \
#         --consumer.config "$(kafka.sh client-config platform)" --topic apikeys.lifecycle
#
# Ports:   ${KEYWARD_KAFKA_PORT:-9092} (clients: SASL/SCRAM-SHA-512), ${KEYWARD_KAFKA_ADMIN_PORT:-9094} (the
#          broker and these tools: SASL/PLAIN as admin), ${KEYWARD_KAFKA_CONTROLLER_PORT:-9093} (controller)
# Topics:  deploy/local/topics.txt
# Access:  deploy/local/kafka-access.txt (users and ACLs; passwords from deploy/local/dev.env unless set)
#
# Idempotent: start on a running broker and stop on a stopped one are no-ops.
# status exits 0 when running, 3 when stopped.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"

# The development passwords (the caller's values win: dev.env only fills in what is unset).
set -a
# shellcheck source=deploy/local/dev.env
. "$SCRIPT_DIR/dev.env"
set +a

PORT="${KEYWARD_KAFKA_PORT:-9092}"
ADMIN_PORT="${KEYWARD_KAFKA_ADMIN_PORT:-9094}"
CONTROLLER_PORT="${KEYWARD_KAFKA_CONTROLLER_PORT:-9093}"
HOST="127.0.0.1"
BOOTSTRAP="$HOST:$PORT"
ADMIN_BOOTSTRAP="$HOST:$ADMIN_PORT"
READY_TIMEOUT="${KEYWARD_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30
# Tried in order when resolving jars (first one Maven Central serves wins).
KAFKA_VERSIONS=(4.1.1 4.1.0 4.0.1 4.2.0)

POM="$SCRIPT_DIR/pom.xml"
TEMPLATE="$SCRIPT_DIR/server.properties.template"
TOPICS_FILE="$SCRIPT_DIR/topics.txt"
LOG4J_BROKER="$SCRIPT_DIR/log4j2.properties"
LOG4J_TOOLS="$SCRIPT_DIR/log4j2-tools.properties"
ACCESS_FILE="$SCRIPT_DIR/kafka-access.txt"
ENSURE_SRC="$SCRIPT_DIR/EnsureTopics.java"

KHOME="$REPO_ROOT/.local/kafka"
LIBS="$KHOME/libs"
MARKER="$LIBS/.keyward-complete"
DATA="$KHOME/data"
LOGS="$KHOME/logs"
PROPS="$KHOME/server.properties"
PIDFILE="$KHOME/kafka.pid"
CLUSTER_ID_FILE="$KHOME/cluster.id"
CLASSES="$KHOME/classes"
LOCKFILE="$KHOME/.lock"

log() { printf '[kafka] %s\n' "$*" >&2; }
die() { printf '[kafka] ERROR: %s\n' "$*" >&2; exit 1; }

for p in PORT ADMIN_PORT CONTROLLER_PORT READY_TIMEOUT; do
  [[ "${!p}" =~ ^[0-9]+$ ]] || die "$p must be a number, got '${!p}'"
done
[[ "$(printf '%s\n' "$PORT" "$ADMIN_PORT" "$CONTROLLER_PORT" | sort -u | wc -l)" -eq 3 ]] \
  || die "the client, admin and controller ports must differ ($PORT, $ADMIN_PORT, $CONTROLLER_PORT)"
[[ -n "${KAFKA_ADMIN_PASSWORD:-}" && "$KAFKA_ADMIN_PASSWORD" =~ ^[A-Za-z0-9._-]+$ ]] \
  || die "KAFKA_ADMIN_PASSWORD must be set, letters, digits, '.', '_' and '-' only"

apt_install() {
  [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null || return 1
  log "installing $* from Debian (apt-get)"
  apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

need_java() {
  command -v java >/dev/null || apt_install openjdk-17-jdk-headless \
    || die "java not found (Kafka 4 needs Java 17+: apt-get install openjdk-17-jdk-headless)"
  local v
  v="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [[ "${v%%.*}" =~ ^[0-9]+$ && "${v%%.*}" -ge 17 ]] || die "Kafka 4 needs Java 17+, found '${v:-unknown}'"
}

# Serialize start/stop/install between concurrent callers.
take_lock() {
  mkdir -p "$KHOME"
  exec 9>"$LOCKFILE"
  flock -w 180 9 || die "timed out waiting for lock $LOCKFILE (another kafka.sh running?)"
}

# ------------------------------------------------------------------ install --
pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

libs_complete() {
  [[ -f "$MARKER" ]] && [[ "$(sed -n 's/^pom=//p' "$MARKER")" == "$(pom_hash)" ]]
}

installed_version() { sed -n 's/^kafka=//p' "$MARKER" 2>/dev/null || true; }

do_install() {
  if libs_complete; then
    log "jars up to date (Kafka $(installed_version), $LIBS)"
    return 0
  fi
  command -v mvn >/dev/null || apt_install maven || die "mvn not found (apt-get install maven)"
  need_java
  local tmp="$KHOME/libs.tmp" v ok="" mvn_log="$KHOME/mvn.log"
  mkdir -p "$KHOME"
  for v in "${KAFKA_VERSIONS[@]}"; do
    rm -rf "$tmp"
    log "resolving Kafka $v jars from Maven Central (mvn)..."
    if mvn -B -q -f "$POM" -Dkafka.version="$v" dependency:copy-dependencies \
         -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
      ok="$v"
      break
    fi
    log "Kafka $v could not be resolved (see $mvn_log); trying next version"
  done
  if [[ -z "$ok" ]]; then
    tail -n 30 "$mvn_log" >&2 || true
    die "could not resolve any of Kafka ${KAFKA_VERSIONS[*]} from Maven Central"
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null && compgen -G "$tmp/kafka-tools-*.jar" >/dev/null \
    || die "mvn finished but kafka_2.13/kafka-tools jars are missing in $tmp"
  printf 'pom=%s\nkafka=%s\n' "$(pom_hash)" "$ok" >"$tmp/.keyward-complete"
  rm -rf "$LIBS" "$CLASSES"
  mv "$tmp" "$LIBS"
  log "installed Kafka $ok jars into $LIBS"
}

ensure_installed() { libs_complete || do_install; }

# ---------------------------------------------------------------- process --
read_pid() { [[ -f "$PIDFILE" ]] && tr -dc '0-9' <"$PIDFILE" || true; }

# Alive and not a zombie (a dead child can linger unreaped for a while).
proc_alive() {
  local st
  st="$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)" || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# Our broker = that pid is alive and is kafka.Kafka on our properties file.
pid_is_ours() {
  local pid="$1"
  [[ -n "$pid" ]] && proc_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $PROPS"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

is_running() { pid_is_ours "$(read_pid)"; }

java_tool() {
  # Short-lived CLI JVM: small heap, fast start-up, quiet logging.
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$LIBS/*" "$@"
}

render_props() {
  local esc_data
  esc_data="$(printf '%s' "$DATA" | sed -e 's/[\\&|]/\\&/g')"
  # It holds the admin password: the owner's only.
  (umask 077 && sed -e "s|{{PORT}}|$PORT|g" \
      -e "s|{{ADMIN_PORT}}|$ADMIN_PORT|g" \
      -e "s|{{CONTROLLER_PORT}}|$CONTROLLER_PORT|g" \
      -e "s|{{ADMIN_PASSWORD}}|$KAFKA_ADMIN_PASSWORD|g" \
      -e "s|{{DATA_DIR}}|$esc_data|g" \
      "$TEMPLATE" >"$PROPS.tmp")
  if grep -qE '\{\{[A-Z_]+\}\}' "$PROPS.tmp"; then die "unsubstituted placeholder in $TEMPLATE"; fi
  mv "$PROPS.tmp" "$PROPS"
}

ensure_formatted() {
  mkdir -p "$DATA"
  if [[ -f "$DATA/meta.properties" ]]; then
    # keep cluster.id in step with what the data says
    local cid
    cid="$(sed -n 's/^cluster.id=//p' "$DATA/meta.properties")"
    [[ -n "$cid" ]] && printf '%s\n' "$cid" >"$CLUSTER_ID_FILE"
    return 0
  fi
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    java_tool kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE.tmp" \
      || die "StorageTool random-uuid failed"
    tr -d '[:space:]' <"$CLUSTER_ID_FILE.tmp" >"$CLUSTER_ID_FILE"
    rm -f "$CLUSTER_ID_FILE.tmp"
  fi
  local cid
  cid="$(cat "$CLUSTER_ID_FILE")"
  log "formatting storage $DATA (cluster id $cid)"
  java_tool kafka.tools.StorageTool format --ignore-formatted -t "$cid" -c "$PROPS" >"$LOGS/format.log" 2>&1 \
    || { cat "$LOGS/format.log" >&2; die "kafka-storage format failed"; }
}

ensure_topics_runner() {
  # Compile EnsureTopics once (fast path); fall back to the source launcher without javac.
  if command -v javac >/dev/null; then
    if [[ ! -f "$CLASSES/EnsureTopics.class" || "$ENSURE_SRC" -nt "$CLASSES/EnsureTopics.class" ]]; then
      mkdir -p "$CLASSES"
      javac -nowarn -d "$CLASSES" -cp "$LIBS/*" "$ENSURE_SRC" >&2 || die "could not compile $ENSURE_SRC"
    fi
    ENSURE_CMD=(java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
      -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$CLASSES:$LIBS/*" EnsureTopics)
  else
    ENSURE_CMD=(java -Xmx256m -XX:+UseSerialGC
      -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$LIBS/*" "$ENSURE_SRC")
  fi
}

wait_ready_and_topics() {
  ensure_topics_runner
  local timeout="$1"
  # One JVM: waits for the broker (bounded), then creates/checks topics, users and ACLs.
  if ! "${ENSURE_CMD[@]}" "$ADMIN_BOOTSTRAP" "$TOPICS_FILE" "$timeout" "$ACCESS_FILE" "${KAFKA_TOPIC:-apikeys.lifecycle}" >&2; then
    return 1
  fi
}

cmd_start() {
  take_lock
  need_java
  ensure_installed
  mkdir -p "$DATA" "$LOGS"

  if is_running; then
    if port_open "$PORT"; then
      log "already running (pid $(read_pid), $BOOTSTRAP)"
      echo "$BOOTSTRAP"
      return 0
    fi
    log "process $(read_pid) alive but $BOOTSTRAP not answering yet; waiting"
  else
    rm -f "$PIDFILE"
    if port_open "$PORT"; then die "port $PORT is already in use by another process (not our broker)"; fi
    if port_open "$ADMIN_PORT"; then die "admin port $ADMIN_PORT is already in use by another process"; fi
    if port_open "$CONTROLLER_PORT"; then die "controller port $CONTROLLER_PORT is already in use by another process"; fi

    render_props
    ensure_formatted

    log "starting broker on $BOOTSTRAP (controller $HOST:$CONTROLLER_PORT, logs $LOGS)"
    # setsid+nohup: detached from this shell's session and terminal; stdio to a file;
    # the lock fd (9) is closed so the broker does not hold the lock.
    nohup setsid java -server -Xms256m -Xmx768m \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$LOG4J_BROKER" \
      ${KEYWARD_KAFKA_JVM_OPTS:-} \
      -cp "$LIBS/*" kafka.Kafka "$PROPS" \
      >>"$LOGS/kafka.out" 2>&1 </dev/null 9>&- &
    echo $! >"$PIDFILE"
    # setsid execs in place (we are not a group leader), so $! is the JVM pid;
    # give exec a moment before checking the command line.
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do pid_is_ours "$(read_pid)" && break; sleep 0.1; done
  fi

  local pid
  pid="$(read_pid)"
  if ! wait_ready_and_topics "$READY_TIMEOUT"; then
    if ! pid_is_ours "$pid"; then
      log "broker process exited; last lines of $LOGS/kafka.out and server.log:"
      tail -n 20 "$LOGS/kafka.out" >&2 || true
      tail -n 40 "$LOGS/server.log" >&2 || true
      rm -f "$PIDFILE"
      die "Kafka broker failed to start"
    fi
    tail -n 40 "$LOGS/server.log" >&2 || true
    die "Kafka broker (pid $pid) not ready on $BOOTSTRAP within ${READY_TIMEOUT}s"
  fi
  pid_is_ours "$pid" || die "Kafka broker exited right after start (see $LOGS/server.log)"
  log "ready (pid $pid, Kafka $(installed_version))"
  echo "$BOOTSTRAP"
}

cmd_stop() {
  mkdir -p "$KHOME"
  take_lock
  local pid
  pid="$(read_pid)"
  if ! pid_is_ours "$pid"; then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  log "stopping broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while proc_alive "$pid" && (( SECONDS < deadline )); do sleep 0.2; done
  if proc_alive "$pid"; then
    log "still alive after ${STOP_TIMEOUT}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do proc_alive "$pid" || break; sleep 0.1; done
  fi
  if proc_alive "$pid"; then die "could not stop pid $pid"; fi
  # the broker's ports are released once it is gone (even if not yet reaped)
  rm -f "$PIDFILE"
  log "stopped"
}

cmd_status() {
  if is_running; then
    if port_open "$PORT"; then
      echo "kafka: running (pid $(read_pid), $BOOTSTRAP, Kafka $(installed_version))"
    else
      echo "kafka: running (pid $(read_pid), starting: $BOOTSTRAP not answering yet)"
    fi
    return 0
  fi
  echo "kafka: stopped"
  return 3
}

cmd_grant() {
  [[ $# -ge 1 ]] || die "usage: $0 grant <topic>..."
  need_java
  ensure_installed
  ensure_topics_runner
  "${ENSURE_CMD[@]}" --grant "$ADMIN_BOOTSTRAP" "$ACCESS_FILE" "$@" >&2
}

cmd_client_config() {
  [[ $# -eq 1 ]] || die "usage: $0 client-config <principal>"
  local variable
  variable="$(awk -v p="$1" '$1 == "user" && $2 == p { print $3 }' "$ACCESS_FILE")"
  [[ -n "$variable" ]] || die "'$1' is not a user of $ACCESS_FILE"
  mkdir -p "$KHOME"
  local file="$KHOME/client-$1.properties"
  (umask 077 && printf '%s\n' "security.protocol=SASL_PLAINTEXT" "sasl.mechanism=SCRAM-SHA-512" \
    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$1\" password=\"${!variable}\";" \
    >"$file")
  echo "$file"
}

cmd_tool() {
  [[ $# -ge 1 ]] || die "usage: $0 tool <main-class> [args...]"
  need_java
  ensure_installed
  java_tool "$@"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  install) take_lock; do_install ;;
  grant) shift; cmd_grant "$@" ;;
  client-config) shift; cmd_client_config "$@" ;;
  tool) shift; cmd_tool "$@" ;;
  *) echo "usage: $0 {start|stop|status|install|grant <topic>...|client-config <principal>|tool <main-class> [args...]}" >&2; exit 2 ;;
esac
