#!/usr/bin/env bash
# Fails if regenerating the protobuf code changes anything: the checked-in
# *.pb.go must be what proto/generate.sh produces from proto/*.proto.
set -euo pipefail
cd "$(dirname "$0")/.."
bash proto/generate.sh
if ! git diff --exit-code -- proto/ || [ -n "$(git status --porcelain -- proto/)" ]; then
  echo "verify-genproto: the generated code in proto/ is stale; run proto/generate.sh and commit the result" >&2
  git status --porcelain -- proto/ >&2
  exit 1
fi
echo "verify-genproto: generated code is up to date"
