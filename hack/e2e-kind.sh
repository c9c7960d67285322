#!/usr/bin/env bash
# End-to-end test of the Helm chart on kind (needs a Docker engine, which CI
# here does not have: hack/local-k8s.sh runs the same test on a cluster built
# offline). Creates a kind cluster whose node ports 30025/30587/30993/30995
# are published on 127.0.0.1, loads the images built by `make images`, and
# runs hack/e2e-k8s-lib.sh: install, e2e scenarios, scale and upgrade under
# load, helm test. Deletes the cluster on exit.
# Usage: hack/e2e-kind.sh   (KEEP_CLUSTER=1 keeps it for debugging)
set -o errexit -o nounset -o pipefail

KIND_VERSION=v0.30.0
CLUSTER=mailfleet-e2e

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"
source hack/lib.sh
source hack/e2e-k8s-lib.sh

command -v docker >/dev/null || { echo "kind needs a Docker engine" >&2; exit 1; }
kind=$(go_build_tool kind "${KIND_VERSION}" sigs.k8s.io/kind sigs.k8s.io/kind)
KUBECTL=$(bash hack/install-kubectl.sh)
HELM=$(bash hack/install-helm.sh)
tag="e2e-$(git rev-parse --short HEAD 2>/dev/null || echo dev)"
work=$(mktemp -d)
forward_pid=""

cleanup() {
  local rc=$?
  [[ ${rc} -eq 0 ]] || k8s_dump
  [[ -z ${forward_pid} ]] || kill "${forward_pid}" 2>/dev/null || true
  if [[ -z ${KEEP_CLUSTER:-} ]]; then
    "${kind}" delete cluster --name "${CLUSTER}" >/dev/null 2>&1 || true
  fi
  rm -rf "${work}"
}
trap cleanup EXIT

# The storage Service is internal: reach it through a port-forward, made
# anew each time (an upgrade replaces the pod it points at).
k8s_endpoints() {
  [[ -z ${forward_pid} ]] || kill "${forward_pid}" 2>/dev/null || true
  kc port-forward "svc/${RELEASE}-mailfleet-storage" 17070:7070 >/dev/null 2>&1 &
  forward_pid=$!
  sleep 2
  E2E_IMAPS=127.0.0.1:30993 E2E_POP3S=127.0.0.1:30995 E2E_SMTP=127.0.0.1:30025
  E2E_SUBMISSION=127.0.0.1:30587 E2E_STORAGE=127.0.0.1:17070
}

k8s_step "cluster"
cat >"${work}/kind.yaml" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    extraPortMappings:
$(for p in 30025 30587 30993 30995; do printf '      - {containerPort: %s, hostPort: %s, listenAddress: 127.0.0.1}\n' "${p}" "${p}"; done)
EOF
"${kind}" create cluster --name "${CLUSTER}" --config "${work}/kind.yaml" --wait 120s

k8s_step "images"
make images IMAGE_TAG="${tag}"
for tar in bin/images/*.tar; do
  "${kind}" load image-archive "${tar}" --name "${CLUSTER}"
done
E2E_TEST="${work}/e2e.test"
go test -c -o "${E2E_TEST}" ./test/e2e

k8s_e2e_run "${tag}"
echo "e2e on kind: OK"
