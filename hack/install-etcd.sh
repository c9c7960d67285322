#!/usr/bin/env bash
# Builds the pinned etcd server from its Go module (go.etcd.io/etcd/server/v3, the
# same code the release binaries are built from) once, cached by version, and
# prints the binary's path. Used by the test harness.
set -o errexit -o nounset -o pipefail

ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
go_build_tool etcd "${ETCD_VERSION}" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3
