#!/usr/bin/env bash
# Installs Debian's postfix package for its load generator /usr/sbin/smtp-source
# (and, for hack/bench-postfix-dovecot.sh, dovecot-lmtpd), without leaving a
# Postfix daemon running: the package is configured as "No configuration",
# service starts are refused during the install, and any master process is
# stopped afterwards. Prints the path of smtp-source.
set -o errexit -o nounset -o pipefail

packages=(postfix)
if [[ "${1:-}" == "--with-dovecot" ]]; then
  packages+=(dovecot-lmtpd)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  # Refuse daemon starts by maintainer scripts during the install (101 =
  # "action forbidden by policy"), restoring any policy that was there.
  policy=/usr/sbin/policy-rc.d
  saved=""
  if [[ -e $policy ]]; then
    saved=$(mktemp)
    $sudo cp -p "$policy" "$saved"
  fi
  restore() {
    if [[ -n $saved ]]; then $sudo cp -p "$saved" "$policy"; rm -f "$saved"; else $sudo rm -f "$policy"; fi
  }
  trap restore EXIT
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  $sudo apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# Whatever the package did, no Postfix or Dovecot daemon stays up on this
# machine's mail ports.
if [[ -x /usr/sbin/postfix ]] && /usr/sbin/postfix status >/dev/null 2>&1; then
  /usr/sbin/postfix stop >&2 || true
fi
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  systemctl disable --now postfix.service >/dev/null 2>&1 || true
  systemctl disable --now dovecot.service >/dev/null 2>&1 || true
fi
if command -v ss >/dev/null 2>&1 && ss -ltn 'sport = :25' | grep -q LISTEN; then
  echo "something still listens on port 25; refusing to go on" >&2
  exit 1
fi
test -x /usr/sbin/smtp-source
echo /usr/sbin/smtp-source
