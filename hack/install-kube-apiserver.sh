#!/usr/bin/env bash
# Builds the pinned kube-apiserver (see hack/install-k8s.sh) and prints its path.
set -o errexit -o nounset -o pipefail

bash "$(dirname "${BASH_SOURCE[0]}")/install-k8s.sh" kube-apiserver | cut -d' ' -f2
