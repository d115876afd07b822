#!/usr/bin/env bash
# Builds toxiproxy (the chaos runs' proxy between a service and Kafka or PostgreSQL) into
# <repo>/.local/bin/toxiproxy-server from the Go module proxy, pinned; a no-op when that version is there.
# Its command is .../cmd/server, which `go install` would name `server`: built aside, then renamed.
set -euo pipefail
VERSION=v2.5.0
PACKAGE=github.com/Shopify/toxiproxy/v2/cmd/server
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.local/bin/toxiproxy-server"
if [[ -x "$BIN" ]] && go version -m "$BIN" 2>/dev/null | awk '$1 == "mod" {print $3}' | grep -qx "$VERSION"; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "install-toxiproxy: Go is required (go install from the module proxy)" >&2; exit 1; }
mkdir -p "$ROOT/.local/bin"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "install-toxiproxy: building $PACKAGE@$VERSION" >&2
GOBIN="$tmp" GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY=${GOPROXY:-https://proxy.golang.org} go install "$PACKAGE@$VERSION" >&2
mv "$tmp/server" "$BIN"
echo "$BIN"
