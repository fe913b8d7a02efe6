#!/usr/bin/env bash
# Builds the Go client that runs the seed's Go examples (../shared/seed/grpc-api.md) against the
# real server. Offline: Go, protoc, the Go plugins and every Go dependency come from Debian
# packages (GOPATH mode over /usr/share/gocode; no module proxy). Idempotent: installs only the
# missing packages, regenerates the Go code from proto/conveer/v1/*.proto and rebuilds (cached).
#
# Output (git-ignored): test/go-client/.build/{gopath,cache,go-client}; the binary is
#   test/go-client/.build/go-client
set -euo pipefail

DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$DIR/../.." && pwd)"
OUT="$DIR/.build"

# golang-github-golang-protobuf-1-5-dev is named explicitly: grpc-go 1.33 accepts 1-3 or 1-5, and
# 1-3 (the default pick) predates APIv2, which protoc-gen-go 1.28 generates code for.
PACKAGES=(
  golang-go
  protobuf-compiler
  libprotobuf-dev
  protoc-gen-go
  protoc-gen-go-grpc
  golang-google-grpc-dev
  golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev
  golang-google-genproto-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "go-client setup: installing ${missing[*]}" >&2
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
  apt_install() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  if ! apt_install; then
    "${SUDO[@]}" apt-get update -qq >/dev/null
    apt_install
  fi
fi

# Generate conveer/proto (package pb, from option go_package = "conveer/proto;pb") into a private GOPATH.
GOPATH_GEN="$OUT/gopath"
rm -rf "$GOPATH_GEN"
mkdir -p "$GOPATH_GEN/src" "$OUT/cache"
INCLUDES=(-I "$ROOT/proto")
if [ -f /usr/include/google/protobuf/timestamp.proto ]; then INCLUDES+=(-I /usr/include); fi
protoc "${INCLUDES[@]}" \
  --go_out="$GOPATH_GEN/src" \
  --go-grpc_out="$GOPATH_GEN/src" \
  "$ROOT"/proto/conveer/v1/*.proto

# Build in GOPATH mode: our generated package first, then Debian's Go sources.
export GO111MODULE=off
export GOPATH="$GOPATH_GEN:/usr/share/gocode"
export GOPROXY=off GOFLAGS= GOTOOLCHAIN=local
export GOCACHE="$OUT/cache"
go build -o "$OUT/go-client.tmp" "$DIR/main.go"
mv -f "$OUT/go-client.tmp" "$OUT/go-client"
echo "go-client setup: built $OUT/go-client ($(go version | awk '{print $3}'))" >&2
