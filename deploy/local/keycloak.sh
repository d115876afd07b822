#!/usr/bin/env bash
# Keyward local OpenID Connect provider: Keycloak's Quarkus distribution from Maven Central (no Docker), with the
# development realm `keyward` (deploy/local/keycloak-realm.json: the demo directory's administrators, one user the
# directory does not know, the console's clients).
#
#   deploy/local/keycloak.sh start|stop|status|install|issuer
#
# Install: <repo>/.local/keycloak/keycloak-<version>   (zip: org.keycloak:keycloak-quarkus-dist, built once)
# Data:    <install>/data                               (dev-file database; fresh when the realm file changes)
# Logs:    <repo>/.local/keycloak/keycloak.log
# Port:    ${KEYWARD_KEYCLOAK_PORT:-8180} on 127.0.0.1; the issuer is http://127.0.0.1:<port>/realms/keyward
# Java:    the newest JDK 21+ under /usr/lib/jvm (or KEYWARD_KEYCLOAK_JAVA_HOME); Keycloak 26 runs on 21 and 25.
#
# Idempotent: start on a running server and stop on a stopped one are no-ops. status exits 0 when running, 3 when
# stopped. Demo passwords: every user's is `keyward-demo` (development only).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"

PORT="${KEYWARD_KEYCLOAK_PORT:-8180}"
HOST="127.0.0.1"
REALM="keyward"
ISSUER="http://$HOST:$PORT/realms/$REALM"
READY_TIMEOUT="${KEYWARD_KEYCLOAK_START_TIMEOUT:-240}"
STOP_TIMEOUT=30
# Tried in order (the first one Maven Central serves wins).
KEYCLOAK_VERSIONS=(26.7.3 26.7.0 26.5.6)
# Build-time options: fixed by `kc.sh build` at install, so that each start skips Quarkus' augmentation.
BUILD_OPTIONS=(--db=dev-file --health-enabled=false --metrics-enabled=false)

REALM_FILE="$SCRIPT_DIR/keycloak-realm.json"
mkdir -p "$REPO_ROOT/.local/keycloak"
KHOME="$(cd "$REPO_ROOT/.local/keycloak" && pwd -P)"
MARKER="$KHOME/.keyward-complete"
LOG="$KHOME/keycloak.log"
PIDFILE="$KHOME/keycloak.pid"
LOCKFILE="$KHOME/.lock"

log() { printf '[keycloak] %s\n' "$*" >&2; }
die() { printf '[keycloak] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "KEYWARD_KEYCLOAK_PORT must be a number, got '$PORT'"

java_major() {  # java_home -> major version (empty when not a JDK)
  local v
  v="$("$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  printf '%s' "${v%%.*}"
}

find_java() {
  if [[ -n "${KEYWARD_KEYCLOAK_JAVA_HOME:-}" ]]; then
    [[ -x "$KEYWARD_KEYCLOAK_JAVA_HOME/bin/java" ]] || die "KEYWARD_KEYCLOAK_JAVA_HOME has no bin/java"
    printf '%s' "$KEYWARD_KEYCLOAK_JAVA_HOME"
    return
  fi
  local best="" best_major=0 home major
  for home in /usr/lib/jvm/*; do
    [[ -x "$home/bin/java" && ! -L "$home" ]] || continue
    major="$(java_major "$home")"
    [[ "$major" =~ ^[0-9]+$ ]] || continue
    if (( major >= 21 && major > best_major )); then best="$home"; best_major=$major; fi
  done
  [[ -n "$best" ]] || die "Keycloak 26 needs a JDK 21 or newer under /usr/lib/jvm (or set KEYWARD_KEYCLOAK_JAVA_HOME)"
  printf '%s' "$best"
}

take_lock() {
  mkdir -p "$KHOME"
  exec 9>"$LOCKFILE"
  flock -w 300 9 || die "timed out waiting for lock $LOCKFILE (another keycloak.sh running?)"
}

# ------------------------------------------------------------------ install --
build_hash() { printf '%s\n' "${BUILD_OPTIONS[*]}" | sha256sum | cut -d' ' -f1; }
installed_version() { sed -n 's/^keycloak=//p' "$MARKER" 2>/dev/null || true; }
install_dir() { printf '%s/keycloak-%s' "$KHOME" "$(installed_version)"; }

install_complete() {
  [[ -f "$MARKER" ]] && [[ "$(sed -n 's/^build=//p' "$MARKER")" == "$(build_hash)" ]] \
    && [[ -x "$(install_dir)/bin/kc.sh" ]]
}

do_install() {
  if install_complete; then
    log "Keycloak $(installed_version) installed ($(install_dir))"
    return 0
  fi
  command -v mvn >/dev/null || { [[ "$(id -u)" -eq 0 ]] && apt-get update -q >&2 \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven unzip >&2; } || die "mvn not found (apt-get install maven)"
  command -v unzip >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q unzip >&2 || die "unzip not found"
  local java_home v ok="" tmp="$KHOME/download" mvn_log="$KHOME/mvn.log" started=$SECONDS
  java_home="$(find_java)"
  mkdir -p "$tmp"
  for v in "${KEYCLOAK_VERSIONS[@]}"; do
    log "resolving org.keycloak:keycloak-quarkus-dist:$v:zip from Maven Central (mvn)..."
    if mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
         -Dartifact="org.keycloak:keycloak-quarkus-dist:$v:zip" -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
      ok="$v"
      break
    fi
    log "Keycloak $v could not be resolved (see $mvn_log); trying the next version"
  done
  [[ -n "$ok" ]] || { tail -n 30 "$mvn_log" >&2 || true; die "could not resolve any of Keycloak ${KEYCLOAK_VERSIONS[*]}"; }
  rm -rf "$KHOME/keycloak-$ok"
  unzip -q "$tmp/keycloak-quarkus-dist-$ok.zip" -d "$KHOME"
  rm -rf "$tmp"
  log "building Keycloak $ok for this machine (kc.sh build, once; Java $(java_major "$java_home"))..."
  JAVA_HOME="$java_home" "$KHOME/keycloak-$ok/bin/kc.sh" build "${BUILD_OPTIONS[@]}" >"$KHOME/build.log" 2>&1 \
    || { tail -n 30 "$KHOME/build.log" >&2; die "kc.sh build failed (see $KHOME/build.log)"; }
  printf 'keycloak=%s\nbuild=%s\n' "$ok" "$(build_hash)" >"$MARKER"
  log "installed Keycloak $ok in $((SECONDS - started))s"
}

# ---------------------------------------------------------------- process --
read_pid() { [[ -f "$PIDFILE" ]] && tr -dc '0-9' <"$PIDFILE" || true; }

proc_alive() {
  local st
  st="$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)" || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# Ours = that pid is alive and is Keycloak's main class run from our install folder.
pid_is_ours() {
  local pid="$1"
  [[ -n "$pid" ]] && proc_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-Dkc.home.dir=$KHOME/keycloak-"
}

is_running() { pid_is_ours "$(read_pid)"; }
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
realm_ready() { curl -fsS -o /dev/null --max-time 2 "$ISSUER/.well-known/openid-configuration" 2>/dev/null; }
realm_hash() { sha256sum "$REALM_FILE" | cut -d' ' -f1; }

# The realm is imported at start when the data holds none; a changed realm file starts from fresh data.
prepare_data() {
  local DATA
  DATA="$(install_dir)/data"
  if [[ -f "$DATA/realm.sha256" && "$(cat "$DATA/realm.sha256")" != "$(realm_hash)" ]]; then
    log "the realm file changed: starting from fresh data"
    rm -rf "$DATA"
  fi
  mkdir -p "$DATA/import"
  cp "$REALM_FILE" "$DATA/import/$REALM-realm.json"
  realm_hash >"$DATA/realm.sha256"
}

cmd_start() {
  take_lock
  install_complete || do_install
  if is_running; then
    if realm_ready; then
      log "already running (pid $(read_pid), $ISSUER)"
      echo "$ISSUER"
      return 0
    fi
    log "process $(read_pid) alive but the realm is not answering yet; waiting"
  else
    rm -f "$PIDFILE"
    port_open "$PORT" && die "port $PORT is already in use by another process (set KEYWARD_KEYCLOAK_PORT)"
    prepare_data
    local home java_home
    home="$(install_dir)"
    java_home="$(find_java)"
    log "starting Keycloak $(installed_version) on $HOST:$PORT (Java $(java_major "$java_home"), log $LOG)"
    # A development server: plain http on loopback, the dev-file database under .local/, a small heap, and a
    # JIT that starts fast (this runs beside the tests on two cores). kc.sh execs java, so $! is the JVM.
    JAVA_HOME="$java_home" \
    JAVA_OPTS_KC_HEAP="-Xms128m -Xmx512m" \
    JAVA_OPTS_APPEND="-XX:TieredStopAtLevel=1" \
    KC_BOOTSTRAP_ADMIN_USERNAME=keycloak-admin KC_BOOTSTRAP_ADMIN_PASSWORD=keyward-demo \
      nohup setsid "$home/bin/kc.sh" start --optimized --import-realm \
        --http-enabled=true --http-host="$HOST" --http-port="$PORT" --hostname="http://$HOST:$PORT" \
        --log=file --log-file="$LOG" --log-level=WARN,org.keycloak.services:INFO \
        >>"$KHOME/keycloak.out" 2>&1 </dev/null 9>&- &
    # kc.sh runs the JVM as its child (and passes its own pid as kc.script.pid): keep the JVM's pid.
    local launcher=$! i jvm=""
    for i in $(seq 1 50); do
      jvm="$(pgrep -f -- "-Dkc.script.pid=$launcher " || true)"
      [[ -n "$jvm" ]] && break
      sleep 0.1
    done
    [[ -n "$jvm" ]] || { tail -n 20 "$KHOME/keycloak.out" >&2 || true; die "Keycloak's JVM did not start"; }
    echo "$jvm" >"$PIDFILE"
  fi
  local pid deadline=$((SECONDS + READY_TIMEOUT)) started=$SECONDS
  pid="$(read_pid)"
  until realm_ready; do
    if ! proc_alive "$pid"; then
      tail -n 40 "$KHOME/keycloak.out" >&2 || true
      rm -f "$PIDFILE"
      die "Keycloak exited during start (see $KHOME/keycloak.out and $LOG)"
    fi
    (( SECONDS < deadline )) || die "Keycloak (pid $pid) not ready on $ISSUER within ${READY_TIMEOUT}s"
    sleep 0.5
  done
  log "ready in $((SECONDS - started))s (pid $pid, $ISSUER)"
  echo "$ISSUER"
}

cmd_stop() {
  take_lock
  local pid
  pid="$(read_pid)"
  if ! pid_is_ours "$pid"; then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  log "stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while proc_alive "$pid" && (( SECONDS < deadline )); do sleep 0.2; done
  if proc_alive "$pid"; then
    log "still alive after ${STOP_TIMEOUT}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  log "stopped"
}

cmd_status() {
  if is_running; then
    if realm_ready; then echo "keycloak: running (pid $(read_pid), $ISSUER)"; else echo "keycloak: starting (pid $(read_pid))"; fi
    return 0
  fi
  echo "keycloak: stopped"
  return 3
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  install) take_lock; do_install ;;
  issuer) echo "$ISSUER" ;;
  *) echo "usage: $0 {start|stop|status|install|issuer}" >&2; exit 2 ;;
esac
