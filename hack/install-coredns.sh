#!/usr/bin/env bash
# Builds the pinned CoreDNS from the Go module proxy (once; cached by version)
# and prints the binary's path. Used by hack/local-k8s.sh for cluster DNS.
set -o errexit -o nounset -o pipefail

COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
go_build_tool coredns "${COREDNS_VERSION}" github.com/coredns/coredns github.com/coredns/coredns
