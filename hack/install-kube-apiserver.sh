#!/usr/bin/env bash
# Builds the pinned kube-apiserver from the k8s.io/kubernetes module (once;
# cached by version) and prints its path. k8s.io/kubernetes refers to its
# staging modules as v0.0.0, so each is replaced by its matching v0.x release.
set -o errexit -o nounset -o pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.1}"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
dir="$(mailfleet_cache)/kube-apiserver-${K8S_VERSION}"
bin="${dir}/kube-apiserver"
if [[ -x "${bin}" ]]; then
  echo "${bin}"
  exit 0
fi
mkdir -p "${dir}"
tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
cd "${tmp}"
go mod init mailfleet.local/kube-apiserver >/dev/null 2>&1
cat > main.go <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
GO
for m in "${STAGING[@]}"; do
  go mod edit -replace "k8s.io/${m}=k8s.io/${m}@${STAGING_VERSION}"
done
go get "k8s.io/kubernetes@${K8S_VERSION}" >&2
go mod tidy >&2
CGO_ENABLED=0 go build -trimpath -o "${bin}.tmp" . >&2
mv "${bin}.tmp" "${bin}"
echo "${bin}"
