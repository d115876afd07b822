#!/usr/bin/env bash
# A 3-broker KRaft Kafka on this machine, for the chaos runs (chaos/, issue 20): three processes from the jars
# of deploy/local/kafka.sh (which installs them), each broker and controller at once, replication.factor=3 and
# min.insync.replicas=2, the same SASL listeners, users and ACLs as the local broker (server.properties.template,
# kafka-access.txt, EnsureTopics.java). It never touches the main stack's broker (9092-9094, .local/kafka/data).
#
#   deploy/local/kafka-cluster.sh start|stop|status|bootstrap|admin-bootstrap
#   deploy/local/kafka-cluster.sh start-node N | kill-node N | pid N   # one broker (1..3): the chaos faults
#   deploy/local/kafka-cluster.sh wipe                                 # stop, and forget the data
#   deploy/local/kafka-cluster.sh proxies                              # the proxied listeners: SLOT NODE PORT ADVERTISED
#
# Data and logs: <repo>/.local/chaos/kafka/node-N/{data,logs}
# Ports (node N): clients 2909N (SASL/SCRAM-SHA-512), admin 2919N (SASL/PLAIN), controller 2929N
# Proxied listeners (node N, slot S of 1..8): the broker listens on 293SN and advertises 295SN, where the chaos run's
# toxiproxy listens and forwards to 293SN (chaos/stack.py). A Kafka client connects to the brokers the metadata
# names, so a proxy in front of the bootstrap address alone would be bypassed: each slot is a listener of its own
# (SASL/SCRAM-SHA-512, as CLIENT) advertised at its proxy, and one service replica's clients use one slot. Nothing
# listens on 295SN without the run's toxiproxy.
# Idempotent: start on a running cluster, and stop on a stopped one, are no-ops. status: 0 all up, 3 otherwise.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"
set -a
# shellcheck source=deploy/local/dev.env
. "$SCRIPT_DIR/dev.env"
set +a

HOST=127.0.0.1
NODES=(1 2 3)
HOME_DIR="$REPO_ROOT/.local/chaos/kafka"
LIBS="$REPO_ROOT/.local/kafka/libs"
CLASSES="$REPO_ROOT/.local/kafka/classes"
TEMPLATE="$SCRIPT_DIR/server.properties.template"
ACCESS_FILE="$SCRIPT_DIR/kafka-access.txt"
LOG4J_BROKER="$SCRIPT_DIR/log4j2.properties"
LOG4J_TOOLS="$SCRIPT_DIR/log4j2-tools.properties"
CLUSTER_ID_FILE="$HOME_DIR/cluster.id"
READY_TIMEOUT="${KEYWARD_KAFKA_START_TIMEOUT:-120}"

log() { printf '[kafka-cluster] %s\n' "$*" >&2; }
die() { printf '[kafka-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

client_port() { echo $((29090 + $1)); }
admin_port() { echo $((29190 + $1)); }
controller_port() { echo $((29290 + $1)); }
node_dir() { echo "$HOME_DIR/node-$1"; }
props() { echo "$(node_dir "$1")/server.properties"; }
pidfile() { echo "$(node_dir "$1")/kafka.pid"; }
bootstrap() { local n out=(); for n in "${NODES[@]}"; do out+=("$HOST:$(client_port "$n")"); done; (IFS=,; echo "${out[*]}"); }
admin_bootstrap() { local n out=(); for n in "${NODES[@]}"; do out+=("$HOST:$(admin_port "$n")"); done; (IFS=,; echo "${out[*]}"); }
PROXY_SLOTS=(1 2 3 4 5 6 7 8)
proxied_port() { echo $((29300 + 10 * $2 + $1)); }   # node, slot
advertised_port() { echo $((29500 + 10 * $2 + $1)); }
proxies() { local n s; for s in "${PROXY_SLOTS[@]}"; do for n in "${NODES[@]}"; do echo "$s $n $(proxied_port "$n" "$s") $(advertised_port "$n" "$s")"; done; done; }
voters() { local n out=(); for n in "${NODES[@]}"; do out+=("$n@$HOST:$(controller_port "$n")"); done; (IFS=,; echo "${out[*]}"); }

take_lock() {
  mkdir -p "$HOME_DIR"
  exec 9>"$HOME_DIR/.lock"
  flock -w 180 9 || die "timed out waiting for $HOME_DIR/.lock"
}

proc_alive() {
  local st
  st="$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)" || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}
read_pid() { [[ -f "$(pidfile "$1")" ]] && tr -dc '0-9' <"$(pidfile "$1")" || true; }
node_running() {
  local pid
  pid="$(read_pid "$1")"
  [[ -n "$pid" ]] && proc_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $(props "$1")"
}
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

java_tool() {
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$LIBS/*" "$@"
}

ensure_jars() {
  [[ -f "$LIBS/.keyward-complete" ]] || bash "$SCRIPT_DIR/kafka.sh" install
}

# The local broker's template, as node N of three: its own id, ports and data; three voters; three replicas.
render_props() {
  local n="$1" dir data s listeners="" advertised="" protocols="" sasl=""
  for s in "${PROXY_SLOTS[@]}"; do
    listeners+=",PROXY$s://$HOST:$(proxied_port "$n" "$s")"
    advertised+=",PROXY$s://$HOST:$(advertised_port "$n" "$s")"
    protocols+=",PROXY$s:SASL_PLAINTEXT"
    sasl+="listener.name.proxy$s.sasl.enabled.mechanisms=SCRAM-SHA-512\n"
    sasl+="listener.name.proxy$s.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
  done
  dir="$(node_dir "$n")"
  data="$dir/data"
  mkdir -p "$data" "$dir/logs"
  (umask 077 && sed -e "s|{{PORT}}|$(client_port "$n")|g" \
      -e "s|{{ADMIN_PORT}}|$(admin_port "$n")|g" \
      -e "s|{{CONTROLLER_PORT}}|$(controller_port "$n")|g" \
      -e "s|{{ADMIN_PASSWORD}}|$KAFKA_ADMIN_PASSWORD|g" \
      -e "s|{{DATA_DIR}}|$data|g" \
      -e "s|^node.id=.*|node.id=$n|" \
      -e "s|^listeners=.*|&$listeners|" \
      -e "s|^advertised.listeners=.*|&$advertised|" \
      -e "s|^listener.security.protocol.map=.*|&$protocols|" \
      -e "s|^controller.quorum.voters=.*|controller.quorum.voters=$(voters)|" \
      -e "s|^default.replication.factor=.*|default.replication.factor=3|" \
      -e "s|^min.insync.replicas=.*|min.insync.replicas=2|" \
      -e "s|^offsets.topic.replication.factor=.*|offsets.topic.replication.factor=3|" \
      -e "s|^transaction.state.log.replication.factor=.*|transaction.state.log.replication.factor=3|" \
      -e "s|^transaction.state.log.min.isr=.*|transaction.state.log.min.isr=2|" \
      -e "s|^share.coordinator.state.topic.replication.factor=.*|share.coordinator.state.topic.replication.factor=3|" \
      -e "s|^share.coordinator.state.topic.min.isr=.*|share.coordinator.state.topic.min.isr=2|" \
      "$TEMPLATE" >"$(props "$n").tmp")
  if grep -qE '\{\{[A-Z_]+\}\}' "$(props "$n").tmp"; then die "unsubstituted placeholder in $TEMPLATE"; fi
  printf '\n# The proxied listeners (chaos runs)\n%b' "$sasl" >>"$(props "$n").tmp"
  mv "$(props "$n").tmp" "$(props "$n")"
}

ensure_formatted() {
  local n="$1"
  [[ -f "$(node_dir "$n")/data/meta.properties" ]] && return 0
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    java_tool kafka.tools.StorageTool random-uuid | tr -d '[:space:]' >"$CLUSTER_ID_FILE"
  fi
  java_tool kafka.tools.StorageTool format --ignore-formatted -t "$(cat "$CLUSTER_ID_FILE")" -c "$(props "$n")" \
    >"$(node_dir "$n")/logs/format.log" 2>&1 || { cat "$(node_dir "$n")/logs/format.log" >&2; die "format of node $n failed"; }
}

start_node() {
  local n="$1"
  if node_running "$n"; then return 0; fi
  rm -f "$(pidfile "$n")"
  local p
  local s ports=("$(client_port "$n")" "$(admin_port "$n")" "$(controller_port "$n")")
  for s in "${PROXY_SLOTS[@]}"; do ports+=("$(proxied_port "$n" "$s")"); done
  for p in "${ports[@]}"; do
    if port_open "$p"; then die "port $p is in use by another process (not broker $n)"; fi
  done
  render_props "$n"
  ensure_formatted "$n"
  local logs
  logs="$(node_dir "$n")/logs"
  log "starting broker $n on $HOST:$(client_port "$n")"
  # A smaller heap than the local broker's (three of them share the machine with the services), all of it taken
  # at start (-Xms = -Xmx, pre-touched): the run compares each process's memory at the end with its size after
  # warm-up, and a JVM growing its heap is not a leak.
  nohup setsid java -server -Xms384m -Xmx384m -XX:+AlwaysPreTouch -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dkafka.logs.dir="$logs" -Dlog4j2.configurationFile="$LOG4J_BROKER" \
    -cp "$LIBS/*" kafka.Kafka "$(props "$n")" >>"$logs/kafka.out" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidfile "$n")"
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do node_running "$n" && break; sleep 0.1; done
}

kill_node() {
  local n="$1" pid
  pid="$(read_pid "$n")"
  if node_running "$n"; then
    kill -KILL "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do proc_alive "$pid" || break; sleep 0.05; done
  fi
  rm -f "$(pidfile "$n")"
}

stop_node() {
  local n="$1" pid
  pid="$(read_pid "$n")"
  node_running "$n" || { rm -f "$(pidfile "$n")"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while proc_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  proc_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$(pidfile "$n")"
}

# Users and ACLs (for the lifecycle topic's name; a run's own topics are granted by `grant`), once all are up.
ensure_access() {
  # EnsureTopics wants a topic to wait for: a marker of one partition (the runs make topics of their own).
  local cmd marker="$HOME_DIR/topics.txt"
  echo "chaos.cluster-ready 1" >"$marker"
  if command -v javac >/dev/null; then
    if [[ ! -f "$CLASSES/EnsureTopics.class" || "$SCRIPT_DIR/EnsureTopics.java" -nt "$CLASSES/EnsureTopics.class" ]]; then
      mkdir -p "$CLASSES"
      javac -nowarn -d "$CLASSES" -cp "$LIBS/*" "$SCRIPT_DIR/EnsureTopics.java" >&2
    fi
    cmd=(java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$LOG4J_TOOLS"
      -cp "$CLASSES:$LIBS/*" EnsureTopics)
  else
    cmd=(java -Xmx256m -XX:+UseSerialGC -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$LIBS/*"
      "$SCRIPT_DIR/EnsureTopics.java")
  fi
  "${cmd[@]}" "$(admin_bootstrap)" "$marker" "$READY_TIMEOUT" "$ACCESS_FILE" "${KAFKA_TOPIC:-apikeys.lifecycle}" >&2
}

cmd_start() {
  take_lock
  ensure_jars
  local n
  for n in "${NODES[@]}"; do start_node "$n"; done
  ensure_access || die "the cluster did not get ready in ${READY_TIMEOUT}s (logs under $HOME_DIR/node-*/logs)"
  log "ready: $(bootstrap)"
  bootstrap
}

cmd_stop() {
  take_lock
  local n
  for n in "${NODES[@]}"; do stop_node "$n"; done
  log "stopped"
}

cmd_status() {
  local n up=0
  for n in "${NODES[@]}"; do
    if node_running "$n"; then
      echo "broker $n: running (pid $(read_pid "$n"), $HOST:$(client_port "$n"))"
      up=$((up + 1))
    else
      echo "broker $n: stopped"
    fi
  done
  [[ $up -eq ${#NODES[@]} ]] || return 3
}

node_arg() { [[ "${1:-}" =~ ^[123]$ ]] || die "a node number, 1, 2 or 3"; }

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  bootstrap) bootstrap ;;
  admin-bootstrap) admin_bootstrap ;;
  start-node) node_arg "${2:-}"; ensure_jars; start_node "$2" ;;
  kill-node) node_arg "${2:-}"; kill_node "$2" ;;
  pid) node_arg "${2:-}"; node_running "$2" && read_pid "$2" ;;
  wipe) cmd_stop; rm -rf "$HOME_DIR" ;;
  proxies) proxies ;;
  *) echo "usage: $0 {start|stop|status|bootstrap|admin-bootstrap|start-node N|kill-node N|pid N|wipe|proxies}" >&2; exit 2 ;;
esac
