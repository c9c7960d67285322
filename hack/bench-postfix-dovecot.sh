#!/usr/bin/env bash
# The reference for BenchmarkInboundSMTPSource on the same machine: a Postfix
# instance of its own (config, queue and logs in a temp dir, smtpd on a
# loopback-only port) delivering to Dovecot over LMTP (a loopback port, one
# Maildir user), loaded by the same smtp-source run: 20 sessions, 10 KiB
# messages, MAILFLEET_BENCH_SMTP_MESSAGES messages (default 2000). Prints
# accepted msg/s (smtp-source's wall time) and stored msg/s (until every
# message is a file in the Maildir). Both daemons are stopped at the end.
# Needs root (Postfix's master and Dovecot drop privileges themselves).
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
smtp_source=$("${root}/hack/install-postfix-tools.sh" --with-dovecot | tail -n 1)
messages=${MAILFLEET_BENCH_SMTP_MESSAGES:-2000}
smtp_port=${BENCH_SMTP_PORT:-25025}
lmtp_port=${BENCH_LMTP_PORT:-25024}

work=$(mktemp -d /tmp/bench-postfix-dovecot.XXXXXX)
chmod 755 "${work}"
cleanup() {
  /usr/sbin/postfix -c "${work}/postfix" stop >/dev/null 2>&1 || true
  if [[ -f ${work}/dovecot/run/master.pid ]]; then kill "$(cat "${work}/dovecot/run/master.pid")" 2>/dev/null || true; fi
  sleep 1
  rm -rf "${work}"
}
trap cleanup EXIT

# Dovecot: LMTP only, on 127.0.0.1, one static user whose Maildir is here.
mkdir -p "${work}/dovecot" "${work}/mail"
chown dovecot:dovecot "${work}/mail"
cat >"${work}/dovecot/dovecot.conf" <<CONF
base_dir = ${work}/dovecot/run
state_dir = ${work}/dovecot/state
log_path = ${work}/dovecot/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
mail_location = maildir:~/Maildir
# The package's dovecot user (a system uid) owns the test Maildir.
first_valid_uid = 100
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=${work}/mail/%n
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${lmtp_port}
  }
}
CONF
/usr/sbin/dovecot -c "${work}/dovecot/dovecot.conf"

# Postfix: smtpd on 127.0.0.1 only, example.test delivered over LMTP.
mkdir -p "${work}/postfix" "${work}/spool" "${work}/data"
chown postfix "${work}/data"
sed -e "s/^smtp \{6\}inet/127.0.0.1:${smtp_port} inet/" /etc/postfix/master.cf.proto >"${work}/postfix/master.cf"
cat >"${work}/postfix/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = ${work}/spool
data_directory = ${work}/data
maillog_file = ${work}/postfix.log
maillog_file_prefixes = ${work}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench-postfix.example.test
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
virtual_mailbox_domains = example.test
virtual_transport = lmtp:inet:127.0.0.1:${lmtp_port}
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtpd_client_connection_count_limit = 50
default_process_limit = 100
CONF
# Postfix reports to a terminal or its log only.
/usr/sbin/postfix -c "${work}/postfix" start || { cat "${work}/postfix.log" >&2; exit 1; }
for _ in $(seq 50); do
  ss -ltn "sport = :${smtp_port}" | grep -q LISTEN && break
  sleep 0.1
done

maildir="${work}/mail/sink/Maildir"
start=$(date +%s.%N)
"${smtp_source}" -s 20 -l 10240 -m "${messages}" -f s@example.org -t sink@example.test -M bench.example.org "127.0.0.1:${smtp_port}"
accepted=$(date +%s.%N)
while (( $(find "${maildir}/new" "${maildir}/cur" -type f 2>/dev/null | wc -l) < messages )); do
  if (( $(echo "$(date +%s.%N) - ${start} > ${BENCH_TIMEOUT:-300}" | bc) )); then
    echo "not every message stored in time" >&2
    tail -n 20 "${work}/postfix.log" "${work}/dovecot/dovecot.log" >&2
    exit 1
  fi
  sleep 0.05
done
stored=$(date +%s.%N)
printf 'smtp-source -s 20 -l 10240 -m %d against Postfix + Dovecot LMTP: accepted %.0f msg/s, stored %.0f msg/s\n' "${messages}" \
  "$(echo "${messages} / (${accepted} - ${start})" | bc -l)" "$(echo "${messages} / (${stored} - ${start})" | bc -l)"
