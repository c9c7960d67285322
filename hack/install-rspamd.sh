#!/usr/bin/env bash
# Installs Debian's rspamd for the end-to-end tests of the MX's content
# filter (test/rspamdtest starts it on loopback with a configuration of its
# own) unless it is there. Idempotent; needs root (as CI is).
#
# The package's own service must not start: its stock configuration listens
# on localhost and loads modules that ask DNS and the Internet. Where no
# /usr/sbin/policy-rc.d refuses service starts already, one is put in place
# for the install and removed after. Redis (only recommended) is left out.
set -o errexit -o nounset -o pipefail

if command -v rspamd >/dev/null; then
  exit 0
fi
policy=/usr/sbin/policy-rc.d
placed=false
if [[ ! -e "${policy}" ]]; then
  printf '#!/bin/sh\n# hack/install-rspamd.sh: no service starts during the install.\nexit 101\n' > "${policy}"
  chmod 755 "${policy}"
  placed=true
fi
cleanup() {
  if [[ "${placed}" == true ]]; then
    rm -f "${policy}"
  fi
}
trap cleanup EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rspamd >/dev/null
rspamd --version
