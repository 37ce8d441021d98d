#!/usr/bin/env bash
# Regenerates proto/sluice/v1/*.pb.go with the generator versions pinned in
# tools/go.mod (buf, protoc-gen-go, protoc-gen-go-grpc), so every machine
# produces the same bytes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
cd "$root/tools"
GOBIN="$bin" GOFLAGS=-mod=mod go install google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc github.com/bufbuild/buf/cmd/buf
cd "$root/proto"
PATH="$bin:$PATH" "$bin/buf" generate
