#!/usr/bin/env bash
# Builds the pinned kubectl (from k8s.io/kubectl's command package) once,
# cached by version, and prints its path.
set -o errexit -o nounset -o pipefail

KUBECTL_VERSION="${KUBECTL_VERSION:-v0.34.1}" # k8s.io/kubectl v0.34.1 = kubectl 1.34.1

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
go_build_wrapper kubectl "${KUBECTL_VERSION}" k8s.io/kubectl k8s.io/kubectl/pkg/cmd '_ = cmd.NewDefaultKubectlCommand().Execute()'
