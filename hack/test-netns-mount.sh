#!/usr/bin/env bash
# Tests hack/netns-mount.sh without touching the host: each case runs in a
# private mount namespace (unshare -m) on a private, empty /run (tmpfs),
# then an `ip netns add` + `ip netns delete` cycle runs between the record
# and the restore, as in hack/local-k8s.sh. `make verify` runs it as root.
set -o errexit -o nounset -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -ne 0 ]] || ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
  echo "test-netns-mount: needs root, unshare and ip" >&2
  exit 1
fi

# case_body runs inside the private mount namespace. $1 = "absent" starts
# with no /run/netns mount (nor directory); "mounted" starts with the mount
# that an earlier `ip netns add` would have left.
case_body() {
  set -o errexit -o nounset -o pipefail
  source hack/netns-mount.sh
  # A private, empty /run: the host's /run/netns (and any namespace a run
  # holds there right now) stays out of sight and untouched. Mounts under
  # the host's /run are detached first (in this namespace only): a tmpfs on
  # top would hide them from paths but not from findmnt, which would then
  # report a host /run/netns mount as this case's own.
  local m
  findmnt -rn -o TARGET | awk '$1 == "/run" || index($1, "/run/") == 1' | sort -r |
    while read -r m; do umount -l "${m}" 2>/dev/null || true; done
  mount -t tmpfs -o size=1m,mode=0755 mailfleet-netns-test /run
  if [[ $1 == mounted ]]; then
    ip netns add "mf-probe-$$"
    ip netns delete "mf-probe-$$"
  fi
  local before after
  before=$(findmnt -rn "${NETNS_DIR}" || true)
  local state
  state=$(netns_mount_record)
  ip netns add "mf-test-$$"
  findmnt -rn "${NETNS_DIR}" >/dev/null || { echo "FAIL: ip netns add made no mount"; exit 1; }
  # shellcheck disable=SC2086 # two words on purpose
  netns_mount_restore ${state} 2>/dev/null
  if [[ -z $(findmnt -rn "${NETNS_DIR}" || true) ]]; then
    echo "FAIL ($1): the restore removed a mount while a namespace was in it"; exit 1
  fi
  ip netns delete "mf-test-$$"
  # shellcheck disable=SC2086
  netns_mount_restore ${state}
  after=$(findmnt -rn "${NETNS_DIR}" || true)
  if [[ "${before}" != "${after}" ]]; then
    printf 'FAIL (%s): findmnt before=%q after=%q\n' "$1" "${before}" "${after}"; exit 1
  fi
  if [[ $1 == absent && -e ${NETNS_DIR} ]]; then
    echo "FAIL (absent): ${NETNS_DIR} left behind"; exit 1
  fi
  echo "ok ($1): findmnt ${NETNS_DIR} after = before (${before:-nothing})"
}

for c in absent mounted; do
  unshare --mount --propagation private bash -c "$(declare -f case_body); case_body ${c}"
done
echo "test-netns-mount: ok"
