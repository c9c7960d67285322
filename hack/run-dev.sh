#!/usr/bin/env bash
# Starts a one-node Mailfleet storage tier on loopback for development: the
# pinned etcd (built by hack/install-etcd.sh) and the storage binary with the
# fs body store, data under ./.mailfleet. Creates example.test and
# demo@example.test on first run. Ctrl-C stops everything.
#
# The frontends (inbound, submission, access) join this script as their issues
# land; the full single-command cluster with embedded etcd is `make run` then.
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"
data="${MAILFLEET_DATA:-${root}/.mailfleet}"
storage_addr="${MAILFLEET_STORAGE_ADDR:-127.0.0.1:7070}"
ops_addr="${MAILFLEET_OPS_ADDR:-127.0.0.1:7071}"
etcd_client="${MAILFLEET_ETCD_CLIENT:-http://127.0.0.1:2379}"
etcd_peer="${MAILFLEET_ETCD_PEER:-http://127.0.0.1:2380}"
mkdir -p "${data}/etcd" "${data}/bodies"

etcd_bin=$(bash hack/install-etcd.sh)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "mailfleet: stopped"
}
trap cleanup EXIT
trap "exit 0" INT TERM

"${etcd_bin}" --name dev --data-dir "${data}/etcd" \
  --listen-client-urls "${etcd_client}" --advertise-client-urls "${etcd_client}" \
  --listen-peer-urls "${etcd_peer}" --initial-advertise-peer-urls "${etcd_peer}" \
  --initial-cluster "dev=${etcd_peer}" --auto-compaction-mode periodic --auto-compaction-retention 1h \
  --log-level warn >"${data}/etcd.log" 2>&1 &
pids+=($!)

./bin/storage --grpc-listen "${storage_addr}" --ops-listen "${ops_addr}" \
  --etcd-endpoints "${etcd_client}" --blob-driver fs --fs-dir "${data}/bodies" \
  2> >(tee -a "${data}/storage.log" >&2) &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fsS "http://${ops_addr}/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://${ops_addr}/readyz" >/dev/null || { echo "storage did not become ready; see ${data}/storage.log" >&2; exit 1; }

export MAILFLEET_STORAGE="${storage_addr}"
if ! ./bin/mailctl domain list | grep -qx example.test; then
  password="${MAILFLEET_DEMO_PASSWORD:-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')}"
  ./bin/mailctl domain create example.test
  printf '%s\n' "${password}" | ./bin/mailctl account create demo@example.test
  printf '%s\n' "${password}" > "${data}/demo-password"
  chmod 600 "${data}/demo-password"
fi

cat <<INFO

Mailfleet (storage tier) is running. Ctrl-C stops it.
  storage gRPC   ${storage_addr}
  ops            http://${ops_addr}/healthz  /readyz  /metrics
  data           ${data}
  demo account   demo@example.test  (password in ${data}/demo-password)
Try:
  MAILFLEET_STORAGE=${storage_addr} ./bin/mailctl account list
INFO
wait -n "${pids[@]}"
