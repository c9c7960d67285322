# shellcheck shell=bash
# The Kubernetes end-to-end run, whatever made the cluster. Sourced by
# hack/local-k8s.sh (a one-node cluster built offline in a network namespace)
# and hack/e2e-kind.sh (kind); they differ only in how the cluster is created,
# how images get onto it and how the test reaches the Services.
#
# Source it from the repository's root. The caller sets KUBECTL, HELM and E2E_TEST (a binary built with
# `go test -c ./test/e2e`), defines k8s_endpoints (which sets E2E_IMAPS,
# E2E_POP3S, E2E_SMTP, E2E_SUBMISSION and E2E_STORAGE, host:port each), and
# then calls k8s_e2e_run TAG [helm install flags…]. Storage speaks only
# mutual TLS (the chart's default): E2E_STORAGE must be 127.0.0.1 or
# localhost (a port-forward), names its certificate covers, and the e2e
# client's mailctl calls it as the admin identity (k8s_e2e).
#
# The run: install the chart with bundled etcd (3 members) and MinIO and wait
# for every tier; the e2e mail-flow scenarios through the Services; access
# scaled 2 → 4 → 2 while mail flows; `helm upgrade` with a changed value (a
# rolling restart of every tier) while mail flows; `helm test`. Each load run
# fails on any acknowledged message that is not delivered exactly once.

NAMESPACE=${NAMESPACE:-mailfleet}
RELEASE=${RELEASE:-mf}
CHART="${PWD}/deploy/helm/mailfleet" # absolute: the e2e client runs in test/e2e
TIERS=(storage access inbound submission)
UPGRADED_SIZE=41943040 # mail.maxMessageSize after the upgrade (40 MiB)

k8s_step() { printf '\n=== %s %s\n' "$(date +%H:%M:%S)" "$*"; }

kc() { "${KUBECTL}" -n "${NAMESPACE}" "$@"; }

# k8s_e2e_run TAG [helm flags…]: the whole run.
k8s_e2e_run() {
  local tag=$1
  shift
  k8s_install "${tag}" "$@"
  k8s_endpoints
  k8s_step "e2e scenarios through the Services"
  k8s_e2e '^TestMailFlow$'
  k8s_scale_under_load
  k8s_upgrade_under_load
  k8s_step "helm test"
  "${HELM}" test "${RELEASE}" -n "${NAMESPACE}" --logs --timeout 5m
}

# k8s_install TAG [helm flags…]: namespace, TLS Secret, helm install --wait,
# and every tier rolled out and Ready.
k8s_install() {
  local tag=$1
  shift
  k8s_step "helm install"
  "${KUBECTL}" create namespace "${NAMESPACE}"
  # The controller-manager creates the default ServiceAccount; pods need it.
  local tries=120
  until kc get serviceaccount default >/dev/null 2>&1 || ((--tries == 0)); do
    sleep 1
  done
  local tmp
  tmp=$(mktemp -d)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=mail.example.com" -addext "subjectAltName=DNS:mail.example.com,DNS:localhost,IP:127.0.0.1" \
    -keyout "${tmp}/tls.key" -out "${tmp}/tls.crt" 2>/dev/null
  kc create secret tls mailfleet-tls --cert "${tmp}/tls.crt" --key "${tmp}/tls.key"
  rm -rf "${tmp}"
  "${HELM}" install "${RELEASE}" "${CHART}" -n "${NAMESPACE}" -f "${CHART}/ci/e2e-values.yaml" \
    --set image.tag="${tag}" --set image.pullPolicy=Never "$@" --wait --timeout 10m
  k8s_wait_ready
}

# k8s_wait_ready: every Deployment and StatefulSet rolled out, and at least
# one Ready pod of each tier and engine.
k8s_wait_ready() {
  local w
  for w in $(kc get deployments,statefulsets -o name); do
    kc rollout status "${w}" --timeout 5m
  done
  kc get pods -o wide -L app.kubernetes.io/component
  local component ready total
  for component in "${TIERS[@]}" etcd minio; do
    ready=$(kc get pods -l "app.kubernetes.io/component=${component}" \
      -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
    total=$(kc get pods -l "app.kubernetes.io/component=${component}" -o name | wc -l)
    echo "tier ${component}: ${ready}/${total} pods Ready"
    [[ ${ready} -gt 0 ]] || { echo "no Ready ${component} pod" >&2; return 1; }
  done
}

# k8s_identities DIR: the chart's client identities (Secrets
# <release>-mailfleet-<role>-client) into DIR as <role>.crt and <role>.key,
# with the CA as ca.crt (pkg/devpki's layout): mailctl uses admin's, the
# authorization checks the others'.
k8s_identities() {
  local dir=$1 role key
  for role in admin access inbound submission queue; do
    for key in tls.crt tls.key; do
      kc get secret "${RELEASE}-mailfleet-${role}-client" -o "jsonpath={.data.${key/./\\.}}" | base64 -d >"${dir}/${role}.${key#tls.}"
      [[ -s ${dir}/${role}.${key#tls.} ]] || { echo "${role} identity: ${key} is empty" >&2; return 1; }
    done
  done
  kc get secret "${RELEASE}-mailfleet-admin-client" -o 'jsonpath={.data.ca\.crt}' | base64 -d >"${dir}/ca.crt"
  [[ -s ${dir}/ca.crt ]] || { echo "admin identity: ca.crt is empty" >&2; return 1; }
}

# k8s_e2e RUN [ENV=VALUE…]: the e2e test binary against the Services; the
# mailctl it runs reaches storage as the admin identity (mTLS), read from
# its Secret each time (a renewal would change it) into a directory removed
# afterwards; MAILFLEET_E2E_PKI names that directory for the authorization
# checks.
k8s_e2e() {
  local run=$1 identity rc=0
  shift
  identity=$(mktemp -d)
  k8s_identities "${identity}" || { rm -rf "${identity}"; return 1; }
  (
    cd test/e2e || exit 1
    env MAILFLEET_E2E_IMAPS="${E2E_IMAPS}" MAILFLEET_E2E_IMAPS2="${E2E_IMAPS}" \
      MAILFLEET_E2E_POP3S="${E2E_POP3S}" MAILFLEET_E2E_SMTP="${E2E_SMTP}" \
      MAILFLEET_E2E_SUBMISSION="${E2E_SUBMISSION}" MAILFLEET_E2E_STORAGE="${E2E_STORAGE}" \
      MAILFLEET_STORAGE_CA="${identity}/ca.crt" MAILFLEET_STORAGE_CERT="${identity}/admin.crt" \
      MAILFLEET_STORAGE_KEY="${identity}/admin.key" MAILFLEET_E2E_PKI="${identity}" \
      "$@" "${E2E_TEST}" -test.run "${run}" -test.v -test.count=1 -test.timeout 30m
  ) || rc=$?
  rm -rf "${identity}"
  return "${rc}"
}

# tier_pods: the names of every Mailfleet tier's pods, sorted.
tier_pods() {
  local t
  for t in "${TIERS[@]}"; do
    kc get pods -l "app.kubernetes.io/component=${t}" -o name
  done | sort
}

# k8s_scale_under_load: access 2 → 4 → 2 while scenario 5's senders and
# IMAP reader run through the Services.
k8s_scale_under_load() {
  k8s_step "scale access 2 -> 4 -> 2 while mail flows"
  local deploy="deployment/${RELEASE}-mailfleet-access"
  local k="${KUBECTL} -n ${NAMESPACE}"
  k8s_e2e '^TestMailFlow$/^5-' MAILFLEET_E2E_CHURN="sleep 5 &&
    ${k} scale ${deploy} --replicas 4 && ${k} rollout status ${deploy} --timeout 5m &&
    ${k} get pods -l app.kubernetes.io/component=access && sleep 10 &&
    ${k} scale ${deploy} --replicas 2 && ${k} rollout status ${deploy} --timeout 5m &&
    ${k} get pods -l app.kubernetes.io/component=access && sleep 5"
  local n
  n=$(kc get "${deploy}" -o jsonpath='{.status.readyReplicas}')
  echo "access Ready replicas after the scale run: ${n}"
  [[ ${n} == 2 ]]
}

# k8s_upgrade_under_load: helm upgrade with a new mail.maxMessageSize, which
# changes every tier's pod template, while scenario 5 runs; then every tier
# pod is new and the MX and submission announce the new SIZE.
k8s_upgrade_under_load() {
  k8s_step "helm upgrade (rolling restart of every tier) while mail flows"
  local before after
  before=$(tier_pods)
  k8s_e2e '^TestMailFlow$/^5-' MAILFLEET_E2E_CHURN="sleep 5 &&
    ${HELM} upgrade ${RELEASE} ${CHART} -n ${NAMESPACE} --reuse-values \
      --set mail.maxMessageSize=${UPGRADED_SIZE} --wait --timeout 10m && sleep 5"
  k8s_wait_ready
  after=$(tier_pods)
  if [[ -n $(comm -12 <(echo "${before}") <(echo "${after}")) ]]; then
    echo "pods that the upgrade did not replace: $(comm -12 <(echo "${before}") <(echo "${after}"))" >&2
    return 1
  fi
  echo "every tier pod replaced by the upgrade ($(echo "${before}" | wc -l) before, $(echo "${after}" | wc -l) after)"
  storage_spread
  k8s_endpoints
  local size
  size=$(smtp_ehlo_size "${E2E_SMTP}")
  echo "MX announces SIZE ${size}"
  [[ ${size} == "${UPGRADED_SIZE}" ]]
  size=$(smtp_ehlo_size "${E2E_SUBMISSION}")
  echo "submission announces SIZE ${size}"
  [[ ${size} == "${UPGRADED_SIZE}" ]]
}

# storage_spread prints how many deliveries each storage pod served (read
# through the API server's proxy): the frontends balance over all of them.
storage_spread() {
  local p n
  for p in $(kc get pods -l app.kubernetes.io/component=storage -o name); do
    n=$("${KUBECTL}" get --raw "/api/v1/namespaces/${NAMESPACE}/pods/${p#pod/}:7071/proxy/metrics" |
      awk '/^mailfleet_storage_rpc_requests_total\{/ && /Deliver"/ && /code="OK"/ {s += $NF} END {print s + 0}')
    echo "${p}: ${n} deliveries served since the upgrade"
  done
}

# smtp_ehlo_size HOST:PORT: the SIZE an SMTP server announces after EHLO.
smtp_ehlo_size() {
  local host=${1%:*} port=${1##*:} line size=""
  exec 3<>"/dev/tcp/${host}/${port}"
  read -r -t 10 line <&3 # greeting
  printf 'EHLO e2e.example\r\n' >&3
  while read -r -t 10 line <&3; do
    line=${line%$'\r'}
    [[ ${line} =~ ^250[-\ ]SIZE\ ([0-9]+) ]] && size=${BASH_REMATCH[1]}
    [[ ${line} == "250 "* ]] && break
  done
  printf 'QUIT\r\n' >&3
  exec 3>&-
  echo "${size}"
}

# k8s_dump: what is needed to see why a run failed.
k8s_dump() {
  echo "--- pods, events and logs of ${NAMESPACE}"
  kc get all -o wide || true
  kc get events --sort-by=.lastTimestamp | tail -50 || true
  local p
  for p in $(kc get pods -o name 2>/dev/null); do
    if ! kc get "${p}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -q True; then
      kc describe "${p}" | tail -40 || true
    fi
    echo "--- ${p} (last 30 lines)"
    kc logs "${p}" --all-containers --tail 30 || true
  done
}
