#!/usr/bin/env bash
# Regenerates the Go code of every .proto in the repository with protoc (Debian's
# protobuf-compiler) and the pinned plugins from hack/tools.sh.
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
PATH="$(bash hack/tools.sh):${PATH}"

# The public API: proto/mailfleet/storage/v1.
protoc -I proto \
  --go_out=proto --go_opt=paths=source_relative \
  --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
  proto/mailfleet/storage/v1/*.proto

# The storage tier's private etcd records.
protoc -I proto -I services/storage/internal/records \
  --go_out=services/storage/internal/records --go_opt=paths=source_relative \
  services/storage/internal/records/records.proto
