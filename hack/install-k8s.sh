#!/usr/bin/env bash
# Builds pinned Kubernetes components from the k8s.io/kubernetes module (once;
# cached by version) and prints "name path" per component. k8s.io/kubernetes
# refers to its staging modules as v0.0.0, so each is replaced by its matching
# v0.x release.
# Usage: hack/install-k8s.sh [component…]   (default: every component)
set -o errexit -o nounset -o pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.1}"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver)
# component → "import path|constructor" of its cobra command.
declare -A COMMANDS=(
  [kube-apiserver]="k8s.io/kubernetes/cmd/kube-apiserver/app|app.NewAPIServerCommand()"
  [kube-controller-manager]="k8s.io/kubernetes/cmd/kube-controller-manager/app|app.NewControllerManagerCommand()"
  [kube-scheduler]="k8s.io/kubernetes/cmd/kube-scheduler/app|app.NewSchedulerCommand()"
  [kubelet]="k8s.io/kubernetes/cmd/kubelet/app|app.NewKubeletCommand(context.Background())"
  [kube-proxy]="k8s.io/kubernetes/cmd/kube-proxy/app|app.NewProxyCommand()"
)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

for name in "${components[@]}"; do
  spec="${COMMANDS[${name}]:-}"
  [[ -n "${spec}" ]] || { echo "unknown component ${name}" >&2; exit 2; }
  # "-v": the build stamps its version (an older cache entry did not).
  dir="$(mailfleet_cache)/${name}-${K8S_VERSION}-v"
  bin="${dir}/${name}"
  if [[ ! -x "${bin}" ]]; then
    mkdir -p "${dir}"
    tmp=$(mktemp -d)
    (
      cd "${tmp}"
      go mod init "mailfleet.local/${name}" >/dev/null 2>&1
      printf 'package main\n\nimport (\n\t"context"\n\t"os"\n\n\t"k8s.io/component-base/cli"\n\t"%s"\n)\n\nvar _ = context.Background\n\nfunc main() { os.Exit(cli.Run(%s)) }\n' \
        "${spec%%|*}" "${spec#*|}" > main.go
      for m in "${STAGING[@]}"; do
        go mod edit -replace "k8s.io/${m}=k8s.io/${m}@${STAGING_VERSION}"
      done
      go get "k8s.io/kubernetes@${K8S_VERSION}" >&2
      go mod tidy >&2
      minor=${K8S_VERSION#v1.}
      minor=${minor%%.*}
      ldflags=""
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
        ldflags+=" -X ${pkg}.gitTreeState=clean"
      done
      CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags}" -o "${bin}.tmp" . >&2
    ) || { rm -rf "${tmp}" "${bin}.tmp"; exit 1; }
    rm -rf "${tmp}"
    mv "${bin}.tmp" "${bin}"
  fi
  echo "${name} ${bin}"
done
