#!/usr/bin/env bash
# Static checks that `make test` runs first: formatting, vet, generated code,
# and go.work listing every module.
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"

modules=(deploy devcluster proto pkg mailctl services/storage services/access services/inbound services/submission test)

unformatted=$(gofmt -l "${modules[@]}" | grep -v '\.pb\.go$' || true)
if [[ -n "${unformatted}" ]]; then
  echo "not gofmt-formatted:" >&2
  echo "${unformatted}" >&2
  exit 1
fi

for m in "${modules[@]}"; do
  go vet "./${m}/..."
done

for gomod in $(git ls-files --cached --others --exclude-standard '*go.mod'); do
  dir=$(dirname "${gomod}")
  grep -Eq "^\s*\./${dir}\s*$" go.work || { echo "${gomod} is not in go.work" >&2; exit 1; }
done

# DESIGN.md: only the storage tier talks to etcd and S3.
for svc in access inbound submission; do
  if go list -deps "./services/${svc}" | grep -Eq '^(go\.etcd\.io/|github\.com/minio/)'; then
    echo "services/${svc} links etcd or minio-go: only the storage tier may" >&2
    exit 1
  fi
done

# `make help` lists every target: each has a "## " description its regex sees.
listed=$(make --no-print-directory help | awk '{print $1}' | sort)
targets=$(grep -oE '^[a-z0-9-]+:' Makefile | tr -d ':' | sort)
if [[ "${listed}" != "${targets}" ]]; then
  echo "make help does not list every Makefile target:" >&2
  diff <(echo "${targets}") <(echo "${listed}") >&2 || true
  exit 1
fi

# Shell scripts: syntax and shellcheck.
for f in hack/*.sh .ci/run; do
  bash -n "${f}"
done
command -v shellcheck >/dev/null || { echo "shellcheck not found: apt-get install shellcheck" >&2; exit 1; }
shellcheck -x -e SC1091 hack/*.sh .ci/run

# The teardown bookkeeping of hack/local-k8s.sh, in private mount namespaces.
if [[ $(id -u) -eq 0 ]]; then
  bash hack/test-netns-mount.sh
else
  echo "verify: hack/test-netns-mount.sh not run (needs root; CI runs as root)"
fi

# No compiled executables or files over 1 MiB in git (and the check itself
# catches both).
bash hack/check-tracked-files.sh
bash hack/test-check-tracked-files.sh

bash hack/verify-proto.sh
echo "verify: ok"
