#!/usr/bin/env bash
# Fails when the committed generated code differs from what the .proto files and
# the pinned generators produce.
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT

mkdir -p "${tmp}/services/storage/internal"
cp -a "${root}/hack" "${root}/proto" "${tmp}/"
cp -a "${root}/services/storage/internal/records" "${tmp}/services/storage/internal/"
bash "${tmp}/hack/gen-proto.sh"
if ! diff -r -q "${root}/proto" "${tmp}/proto" >/dev/null || \
   ! diff -r -q "${root}/services/storage/internal/records" "${tmp}/services/storage/internal/records" >/dev/null; then
  diff -r "${root}/proto" "${tmp}/proto" || true
  diff -r "${root}/services/storage/internal/records" "${tmp}/services/storage/internal/records" || true
  echo "generated code is out of date: run hack/gen-proto.sh and commit" >&2
  exit 1
fi
echo "generated code is up to date"
