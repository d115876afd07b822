#!/usr/bin/env bash
# Usage: install-go-tool.sh BINARY MODULE_PACKAGE VERSION [BUILD_TAGS]
# Builds one pinned Go tool into <repo>/.local/bin (git-ignored) from the Go module proxy (go install), unless
# the binary there was already built from that module version with those tags (`go version -m` tells).
# Prints the binary's path. install-kubeconform.sh and install-promtool.sh hold the pins. The module and build
# caches are Go's own (GOMODCACHE, GOCACHE): a second clone on the same machine builds from them in seconds.
set -euo pipefail
NAME=$1 PACKAGE=$2 VERSION=$3 TAGS=${4:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/.local/bin/$NAME"
if ! command -v go >/dev/null; then
  echo "install-go-tool: Go is required (go install from the module proxy)" >&2
  exit 1
fi
built_from() {
  go version -m "$BIN" 2>/dev/null | awk '$1 == "mod" {v = $3} $1 == "build" && $2 ~ /^-tags=/ {t = substr($2, 7)} END {print v " " t}'
}
if [[ -x "$BIN" ]] && [[ "$(built_from)" == "$VERSION $TAGS" ]]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$ROOT/.local/bin"
echo "install-go-tool: building $PACKAGE@$VERSION${TAGS:+ (tags $TAGS)}: once per machine, minutes the first time" >&2
start=$SECONDS
GOBIN="$ROOT/.local/bin" GOTOOLCHAIN=local GOFLAGS="-mod=mod${TAGS:+ -tags=$TAGS}" \
  GOPROXY=${GOPROXY:-https://proxy.golang.org} go install "$PACKAGE@$VERSION" >&2
echo "install-go-tool: $NAME $VERSION built in $((SECONDS - start)) s" >&2
echo "$BIN"
