#!/usr/bin/env bash
# Bookkeeping for /run/netns, sourced by hack/local-k8s.sh.
#
# The first `ip netns add` on a machine creates /run/netns and bind-mounts it
# onto itself (so that namespace files can be shared mounts); `ip netns
# delete` leaves that mount in place. A run must leave the host as it found
# it, so it records whether the directory and the mount existed before and,
# at teardown, removes what it created — only when no namespace is left in it.
# hack/test-netns-mount.sh checks both cases in a private mount namespace.

NETNS_DIR=${NETNS_DIR:-/run/netns}

# netns_mount_record prints the state to restore later: "dir" and "mount"
# flags, 1 when present before the run.
netns_mount_record() {
  local had_dir=0 had_mount=0
  [[ -d ${NETNS_DIR} ]] && had_dir=1
  findmnt -rn "${NETNS_DIR}" >/dev/null 2>&1 && had_mount=1
  echo "${had_dir} ${had_mount}"
}

# netns_mount_restore undoes what the run created, given the recorded state.
# It leaves everything alone while a namespace file is still in the directory.
netns_mount_restore() {
  local had_dir=$1 had_mount=$2
  [[ -d ${NETNS_DIR} ]] || return 0
  if [[ -n $(ls -A "${NETNS_DIR}" 2>/dev/null) ]]; then
    echo "${NETNS_DIR} still holds namespaces; left as it is" >&2
    return 0
  fi
  if [[ ${had_mount} == 0 ]]; then
    # `ip netns add` may stack the self bind mount more than once when
    # several runs race; take off every layer this run added.
    while findmnt -rn "${NETNS_DIR}" >/dev/null 2>&1; do
      umount "${NETNS_DIR}" || return 1
    done
  fi
  if [[ ${had_dir} == 0 ]]; then
    rmdir "${NETNS_DIR}" 2>/dev/null || true
  fi
}
