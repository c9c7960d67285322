#!/usr/bin/env bash
# Builds the pinned MinIO server from the Go module proxy (once; cached by version)
# and prints the binary's path. Used by the test harness and `make run` with MinIO.
set -o errexit -o nounset -o pipefail

MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
go_build_tool minio "${MINIO_VERSION}" github.com/minio/minio github.com/minio/minio
