#!/usr/bin/env bash
# End-to-end test of the Helm chart on kind (needs a Docker engine):
#   create a kind cluster, build the images and `kind load` them, install the
#   chart with bundled etcd and MinIO, wait for the rollouts, run the e2e mail
#   flow suite through port-forwards, scale access 2 → 4 → 2 during the run,
#   run `helm test`, and delete the cluster on exit.
# Usage: hack/e2e-kind.sh   (KEEP_CLUSTER=1 keeps it for debugging)
set -o errexit -o nounset -o pipefail

KIND_VERSION=v0.30.0
CLUSTER=mailfleet-e2e
NAMESPACE=mailfleet
RELEASE=mf

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"
source hack/lib.sh

command -v docker >/dev/null || { echo "kind needs a Docker engine" >&2; exit 1; }
kind=$(go_build_tool kind "${KIND_VERSION}" sigs.k8s.io/kind sigs.k8s.io/kind)
kubectl=$(bash hack/install-kubectl.sh)
helm=$(bash hack/install-helm.sh)
tag="e2e-$(git rev-parse --short HEAD 2>/dev/null || echo dev)"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
  if [[ -z "${KEEP_CLUSTER:-}" ]]; then
    "${kind}" delete cluster --name "${CLUSTER}" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

echo "--- cluster"
"${kind}" create cluster --name "${CLUSTER}" --wait 120s

echo "--- images"
for tier in storage access inbound submission mailctl; do
  docker build -f deploy/images/Dockerfile --target "${tier}" -t "mailfleet/${tier}:${tag}" .
  "${kind}" load docker-image "mailfleet/${tier}:${tag}" --name "${CLUSTER}"
done

echo "--- install"
"${kubectl}" create namespace "${NAMESPACE}"
tmp=$(mktemp -d)
trap 'cleanup; rm -rf "${tmp}"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mail.example.com" \
  -addext "subjectAltName=DNS:mail.example.com,DNS:localhost,IP:127.0.0.1" \
  -keyout "${tmp}/tls.key" -out "${tmp}/tls.crt" 2>/dev/null
"${kubectl}" -n "${NAMESPACE}" create secret tls mailfleet-tls --cert "${tmp}/tls.crt" --key "${tmp}/tls.key"
"${helm}" install "${RELEASE}" deploy/helm/mailfleet -n "${NAMESPACE}" --wait --timeout 10m \
  --set image.tag="${tag}" --set image.pullPolicy=Never \
  --set service.type=NodePort --set service.externalTrafficPolicy=Cluster \
  --set access.autoscaling.enabled=false --set access.replicas=2 \
  --set bootstrap.domains[0]=example.test
for d in storage access inbound submission; do
  "${kubectl}" -n "${NAMESPACE}" rollout status "deploy/${RELEASE}-mailfleet-${d}" --timeout 5m
done

echo "--- e2e"
forward() { # local-port service-port service
  "${kubectl}" -n "${NAMESPACE}" port-forward "svc/$3" "$1:$2" >/dev/null 2>&1 &
  pids+=($!)
}
forward 19930 993 "${RELEASE}-mailfleet-access"
forward 19950 995 "${RELEASE}-mailfleet-access"
forward 12525 25 "${RELEASE}-mailfleet-inbound"
forward 15870 587 "${RELEASE}-mailfleet-submission"
forward 17070 7070 "${RELEASE}-mailfleet-storage"
sleep 3
( sleep 20; "${kubectl}" -n "${NAMESPACE}" scale "deploy/${RELEASE}-mailfleet-access" --replicas 4
  sleep 20; "${kubectl}" -n "${NAMESPACE}" scale "deploy/${RELEASE}-mailfleet-access" --replicas 2 ) &
pids+=($!)
MAILFLEET_E2E_IMAPS=127.0.0.1:19930 MAILFLEET_E2E_IMAPS2=127.0.0.1:19930 MAILFLEET_E2E_POP3S=127.0.0.1:19950 \
MAILFLEET_E2E_SMTP=127.0.0.1:12525 MAILFLEET_E2E_SUBMISSION=127.0.0.1:15870 MAILFLEET_E2E_STORAGE=127.0.0.1:17070 \
  go test -count=1 -run TestMailFlow -v ./test/e2e

echo "--- helm test"
"${helm}" test "${RELEASE}" -n "${NAMESPACE}" --logs
echo "e2e on kind: OK"
