#!/usr/bin/env bash
# Builds the pinned helm from its Go module (once; cached by version) and
# prints the binary's path.
set -o errexit -o nounset -o pipefail

HELM_VERSION="${HELM_VERSION:-v3.19.0}"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
go_build_tool helm "${HELM_VERSION}" helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm
