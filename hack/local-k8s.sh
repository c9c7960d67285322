#!/usr/bin/env bash
# The Helm chart on a real one-node Kubernetes, built offline, and the e2e
# run of hack/e2e-k8s-lib.sh against it (install, e2e scenarios through the
# Services, scale and upgrade under load, helm test). `make e2e-k8s` runs it;
# it needs root, and installs Debian's containerd, runc, CNI plugins and
# iptables if they are missing.
#
# What it builds (each once, cached outside the checkout by version): the
# Kubernetes components, etcd, MinIO, CoreDNS, helm and kubectl from the Go
# module proxy; the Mailfleet images, and etcd, MinIO and pause images from
# those static binaries, as OCI tarballs (no Docker engine, no registry).
#
# Isolation — nothing leaves the machine, and nothing stays behind:
#   - Everything runs in a network namespace of its own (mailfleet-k8s-<pid>):
#     etcd, the control plane, containerd, kubelet, kube-proxy, CoreDNS, helm,
#     kubectl and the e2e client. The namespace has no link to the host's
#     network at all — no link to the host, no default route — only
#     loopback, a veth pair whose both ends are inside it (one holds the node
#     address, the other stays down) and the CNI bridge of the pods. Pod and
#     Service addresses exist only inside it; a packet to any other address
#     has no route and is dropped there. The run checks that the namespace
#     has no default route at start, once the cluster is up, and at the end.
#   - CoreDNS serves cluster.local only, with no upstream: any other name is
#     refused.
#   - The node runs in a mount namespace of its own: /run, /var/lib and
#     /var/log are private tmpfs mounts there, so containerd's and kubelet's
#     state, the pods' volumes and logs vanish with it. The kernel tunables
#     kubelet insists on (vm.overcommit_memory, kernel.panic, …) are shown to
#     it, inside that mount namespace only, with the values it wants, so it
#     changes no host sysctl. Namespace sysctls (ip_forward,
#     bridge-nf-call-iptables) and kube-proxy's iptables rules live in the
#     network namespace and vanish with it.
#   - On exit (trap) it kills every process in the network namespace and in
#     the cgroups its containers made, removes those cgroups, deletes the
#     namespace and its work directory, and then compares the host with what
#     it recorded at the start: processes, network namespaces, links, iptables
#     rules, mounts, cgroups and sysctls. Any difference fails the run. The
#     /run/netns mount that the first `ip netns add` on a machine creates is
#     removed again if the run created it (hack/netns-mount.sh).
#
# Usage: hack/local-k8s.sh   (KEEP_WORKDIR=1 keeps logs and data for debugging)
set -o errexit -o nounset -o pipefail

# Pinned versions (the install scripts read these).
export K8S_VERSION=v1.34.1
export ETCD_VERSION=v3.6.16
export MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
export COREDNS_VERSION=v1.14.7

# Addresses inside the namespace.
NODE_NAME=node0
NODE_IP=10.255.0.2
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
API_SERVICE_IP=10.96.0.1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"
source hack/lib.sh
source hack/e2e-k8s-lib.sh
source hack/netns-mount.sh

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }

# ---------------------------------------------------------------- the node
# start NAME COMMAND…: a background process of the node, logged to logs/NAME.log.
NODE_PIDS=()
start() {
  local name=$1
  shift
  "$@" >"${W}/logs/${name}.log" 2>&1 &
  NODE_PIDS+=($!)
}

# wait_for WHAT SECONDS COMMAND…: until COMMAND succeeds.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "timed out waiting for ${what}" >&2
  return 1
}

# node_stop: on the node's exit, diagnostics on failure, then the pods
# (kubelet unmounts their volumes) and every process in reverse order.
node_stop() {
  local rc=$? i
  set +o errexit
  if [[ ${rc} -ne 0 ]]; then
    [[ ${#NODE_PIDS[@]} -lt 2 ]] || k8s_dump
    node_logs
  fi
  if [[ ${#NODE_PIDS[@]} -gt 0 ]]; then
    "${KUBECTL}" delete namespace "${NAMESPACE}" --wait --timeout 90s >/dev/null 2>&1
  fi
  for ((i = ${#NODE_PIDS[@]} - 1; i >= 0; i--)); do
    kill "${NODE_PIDS[i]}" 2>/dev/null
    timeout 20 tail --pid "${NODE_PIDS[i]}" -f /dev/null
  done
  assert_no_default_route "at the end"
  exit "${rc}"
}

# node_main WORKDIR: runs inside the network namespace, in a mount namespace
# of its own (nsenter, unshare).
node_main() {
  W=$1
  source "${W}/env"
  # The namespace has no network: builds in it must not try one.
  export GOPROXY=off GOFLAGS=-mod=readonly
  trap node_stop EXIT

  # A private mount namespace of its own (unshare made it): a sysfs that
  # shows this network namespace, with the host's cgroup mounts kept; and
  # private /run, /var/lib and /var/log.
  mkdir -p "${W}/cgroup-hold"
  mount --rbind /sys/fs/cgroup "${W}/cgroup-hold"
  mount -t sysfs mailfleet-sysfs /sys
  mount --move "${W}/cgroup-hold" /sys/fs/cgroup
  mount -t tmpfs -o mode=0755 mailfleet-run /run
  mount -t tmpfs -o mode=0755 mailfleet-var-lib /var/lib
  mount -t tmpfs -o mode=0755 mailfleet-var-log /var/log
  local tunable key file
  for tunable in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
    kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
    key=${tunable%%=*}
    file="${W}/tunables/${key//\//_}"
    echo "${tunable#*=}" >"${file}"
    mount --bind "${file}" "/proc/sys/${key}"
  done

  # The network: loopback, and the node address on one end of a veth pair
  # whose other end stays down inside the namespace: a link that goes
  # nowhere. Services are routed to it (kube-proxy rewrites them to pod
  # addresses first); anything else sent there is dropped.
  ip link set lo up
  ip link add mf-node type veth peer name mf-sink
  ip addr add "${NODE_IP}/32" dev mf-node
  ip link set mf-node up
  ip route add "${SERVICE_CIDR}" dev mf-node
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  assert_no_default_route "at start"

  log "pki and configuration"
  pki
  configs

  log "etcd and control plane"
  start etcd "${ETCD}" --data-dir "${W}/etcd" --listen-client-urls http://127.0.0.1:2379 \
    --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
    --listen-metrics-urls http://127.0.0.1:2381
  wait_for etcd 60 curl -fs http://127.0.0.1:2381/health
  start kube-apiserver "${KUBE_APISERVER}" \
    --etcd-servers http://127.0.0.1:2379 --bind-address 0.0.0.0 --secure-port 6443 \
    --advertise-address "${NODE_IP}" --service-cluster-ip-range "${SERVICE_CIDR}" \
    --tls-cert-file "${P}/apiserver.crt" --tls-private-key-file "${P}/apiserver.key" \
    --client-ca-file "${P}/ca.crt" --authorization-mode Node,RBAC \
    --service-account-key-file "${P}/sa.pub" --service-account-signing-key-file "${P}/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --kubelet-client-certificate "${P}/apiserver-kubelet.crt" --kubelet-client-key "${P}/apiserver-kubelet.key" \
    --kubelet-preferred-address-types InternalIP --enable-admission-plugins NodeRestriction \
    --allow-privileged=false --profiling=false
  wait_for kube-apiserver 120 "${KUBECTL}" get --raw /readyz
  start kube-controller-manager "${KUBE_CONTROLLER_MANAGER}" \
    --kubeconfig "${W}/controller-manager.kubeconfig" \
    --authentication-kubeconfig "${W}/controller-manager.kubeconfig" \
    --authorization-kubeconfig "${W}/controller-manager.kubeconfig" \
    --service-account-private-key-file "${P}/sa.key" --root-ca-file "${P}/ca.crt" \
    --use-service-account-credentials --leader-elect=false --bind-address 127.0.0.1 --profiling=false
  start kube-scheduler "${KUBE_SCHEDULER}" --kubeconfig "${W}/scheduler.kubeconfig" \
    --authentication-kubeconfig "${W}/scheduler.kubeconfig" --authorization-kubeconfig "${W}/scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --profiling=false

  log "containerd, images, kubelet, kube-proxy, CoreDNS"
  start containerd containerd --config "${W}/containerd.toml"
  wait_for containerd 60 ctr --address /run/containerd/containerd.sock version
  local tar
  for tar in "${W}"/images/*.tar; do
    ctr --address /run/containerd/containerd.sock -n k8s.io images import "${tar}" >/dev/null
  done
  ctr --address /run/containerd/containerd.sock -n k8s.io images ls -q | grep -v '^sha256:'
  start kubelet "${KUBELET}" --config "${W}/kubelet.yaml" --kubeconfig "${W}/kubelet.kubeconfig" \
    --hostname-override "${NODE_NAME}" --node-ip "${NODE_IP}"
  "${KUBECTL}" apply -f "${W}/coredns-rbac.yaml" >/dev/null
  start kube-proxy "${KUBE_PROXY}" --config "${W}/kube-proxy.yaml"
  start coredns "${COREDNS}" -conf "${W}/Corefile"
  wait_for "node ${NODE_NAME} Ready" 180 "${KUBECTL}" wait "node/${NODE_NAME}" --for condition=Ready --timeout 1s
  "${KUBECTL}" get nodes -o wide
  wait_for "CoreDNS" 60 curl -fs http://127.0.0.1:8181/ready
  assert_no_default_route "with the cluster up"
  ip route

  # Persistent volumes: host directories in the work directory, owned by
  # the chart's non-root user, offered through a storage class.
  persistent_volumes

  k8s_e2e_run "${TAG}" \
    --set etcd.image="mailfleet.local/etcd:${ETCD_VERSION}" --set etcd.storageClassName=mailfleet-local \
    --set objectStore.image="mailfleet.local/minio:${MINIO_TAG}" --set objectStore.storageClassName=mailfleet-local
  log "local Kubernetes e2e: OK"
}

# k8s_endpoints: the e2e client reaches the mail Services at their
# ClusterIPs, and storage through a port-forward to 127.0.0.1 (storage
# speaks mTLS and its certificate names its Services, localhost and
# 127.0.0.1, never a ClusterIP), made anew each time: an upgrade replaces
# the pod it points at.
STORAGE_FORWARD_PID=""
k8s_endpoints() {
  [[ -z ${STORAGE_FORWARD_PID} ]] || kill "${STORAGE_FORWARD_PID}" 2>/dev/null || true
  start storage-port-forward "${KUBECTL}" -n "${NAMESPACE}" port-forward "svc/${RELEASE}-mailfleet-storage" 17070:7070
  STORAGE_FORWARD_PID=${NODE_PIDS[-1]}
  wait_for "storage port-forward" 30 bash -c 'exec 3<>/dev/tcp/127.0.0.1/17070'
  E2E_IMAPS="$(cluster_ip access):993" E2E_POP3S="$(cluster_ip access):995" E2E_SMTP="$(cluster_ip inbound):25"
  E2E_SUBMISSION="$(cluster_ip submission):587" E2E_STORAGE=127.0.0.1:17070
  echo "Services: IMAPS ${E2E_IMAPS}, POP3S ${E2E_POP3S}, SMTP ${E2E_SMTP}, submission ${E2E_SUBMISSION}, storage ${E2E_STORAGE} (port-forward)"
}

cluster_ip() { kc get service "${RELEASE}-mailfleet-$1" -o jsonpath='{.spec.clusterIP}'; }

assert_no_default_route() {
  if [[ -n $(ip route show default) || -n $(ip -6 route show default 2>/dev/null) ]]; then
    echo "the node namespace has a default route ($1):" >&2
    ip route >&2
    return 1
  fi
  echo "no default route in the node namespace ($1)"
}

node_logs() {
  local f
  for f in "${W}"/logs/*.log; do
    [[ -e ${f} ]] || continue
    echo "--- $(basename "${f}") (last 25 lines)"
    tail -25 "${f}"
  done
}

# pki: a CA and a certificate for each component (ECDSA: quick to make).
pki() {
  P="${W}/pki"
  mkdir -p "${P}"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=mailfleet-local-k8s-ca" -keyout "${P}/ca.key" -out "${P}/ca.crt" 2>/dev/null
  openssl ecparam -name prime256v1 -genkey -noout -out "${P}/sa.key"
  openssl ec -in "${P}/sa.key" -pubout -out "${P}/sa.pub" 2>/dev/null
  cert apiserver "kube-apiserver" "" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:${API_SERVICE_IP},IP:${NODE_IP},IP:127.0.0.1"
  cert admin kubernetes-admin system:masters
  cert apiserver-kubelet kube-apiserver-kubelet-client system:masters
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kubelet "system:node:${NODE_NAME}" system:nodes
  cert kube-proxy system:kube-proxy ""
  cert coredns mailfleet:coredns ""
}

cert() { # name CN O [subjectAltName]
  local name=$1 cn=$2 org=$3 san=${4:-}
  local subj="/CN=${cn}"
  [[ -z ${org} ]] || subj="${subj}/O=${org}"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "${subj}" \
    -keyout "${P}/${name}.key" -out "${P}/${name}.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [[ -z ${san} ]] || echo "subjectAltName=${san}"
  } >"${P}/${name}.ext"
  openssl x509 -req -in "${P}/${name}.csr" -CA "${P}/ca.crt" -CAkey "${P}/ca.key" -CAcreateserial \
    -days 2 -extfile "${P}/${name}.ext" -out "${P}/${name}.crt" 2>/dev/null
}

kubeconfig() { # name cert
  cat >"${W}/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {certificate-authority: ${P}/ca.crt, server: "https://127.0.0.1:6443"}}]
users: [{name: $2, user: {client-certificate: ${P}/$2.crt, client-key: ${P}/$2.key}}]
contexts: [{name: local, context: {cluster: local, user: $2}}]
current-context: local
EOF
}

configs() {
  local name
  for name in admin controller-manager scheduler kubelet kube-proxy coredns; do
    kubeconfig "${name}" "${name}"
  done
  export KUBECONFIG="${W}/admin.kubeconfig"

  mkdir -p "${W}/cni/net.d" "${W}/containerd"
  cat >"${W}/containerd.toml" <<EOF
version = 2
root = "${W}/containerd/root"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "${W}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "mailfleet.local/pause:${PAUSE_TAG}"
  # The root user here cannot lower oom_score_adj (no CAP_SYS_RESOURCE).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${W}/cni/net.d"
EOF
  # Pods on a bridge; their default route leads into this namespace, which
  # has none of its own.
  cat >"${W}/cni/net.d/10-mailfleet.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "mailfleet", "plugins": [
  {"type": "bridge", "bridge": "mf-cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "${POD_CIDR}"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "${W}/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
EOF
  : >"${W}/resolv.conf" # pods get the cluster DNS only
  cat >"${W}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP}
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${P}/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
clusterDomain: cluster.local
clusterDNS: [${NODE_IP}]
resolvConf: ${W}/resolv.conf
# What this VM needs: cgroup v1 through cgroupfs, no QoS cgroups or
# allocatable enforcement, swap tolerated, no local storage isolation.
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
localStorageCapacityIsolation: false
protectKernelDefaults: false
serializeImagePulls: false
# Images were imported, not pulled: never collect them; evict only when
# the disk is really full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
EOF
  cat >"${W}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: ${W}/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: ${POD_CIDR}
hostnameOverride: ${NODE_NAME}
bindAddress: ${NODE_IP}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave the conntrack sysctls alone (the host's, not this namespace's).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  cat >"${W}/Corefile" <<EOF
# cluster.local only: no forward plugin. Every other name does not exist
# (NXDOMAIN, as the Internet's names are for a machine without a route out):
# a REFUSED would be a DNS failure, and the MX rightly defers mail whose
# sender it cannot check (RFC 7208 8.6, 451 4.4.3).
.:53 {
    bind ${NODE_IP}
    template ANY ANY {
        rcode NXDOMAIN
    }
}
cluster.local:53 in-addr.arpa:53 {
    bind ${NODE_IP}
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa {
        kubeconfig ${W}/coredns.kubeconfig
        pods insecure
    }
    cache 5
}
EOF
  cat >"${W}/coredns-rbac.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "mailfleet:coredns"}
rules:
  - {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
  - {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "mailfleet:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "mailfleet:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "mailfleet:coredns"}]
EOF
}

persistent_volumes() {
  local i
  {
    echo "apiVersion: storage.k8s.io/v1"
    echo "kind: StorageClass"
    echo "metadata: {name: mailfleet-local}"
    echo "provisioner: kubernetes.io/no-provisioner"
    echo "volumeBindingMode: WaitForFirstConsumer"
    for i in 0 1 2 3; do
      mkdir -p "${W}/volumes/pv${i}"
      chown 65532:65532 "${W}/volumes/pv${i}"
      chmod 0700 "${W}/volumes/pv${i}"
      echo "---"
      echo "apiVersion: v1"
      echo "kind: PersistentVolume"
      echo "metadata: {name: mailfleet-local-${i}}"
      echo "spec:"
      echo "  storageClassName: mailfleet-local"
      echo "  capacity: {storage: 1Gi}"
      echo "  accessModes: [ReadWriteOnce]"
      echo "  persistentVolumeReclaimPolicy: Retain"
      echo "  local: {path: ${W}/volumes/pv${i}}"
      echo "  nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [${NODE_NAME}]}]}]}}"
    done
  } | "${KUBECTL}" apply -f -
}

# ---------------------------------------------------------------- the host
# host_state: what the run must leave as it found it.
host_state() {
  set +o pipefail # an empty section is fine
  echo "## network namespaces"
  ip netns list | awk '{print $1}' | sort
  echo "## links"
  ip -o link show | awk -F': ' '{print $2}' | sort
  echo "## iptables"
  { iptables-save 2>/dev/null; ip6tables-save 2>/dev/null; } | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' || true
  echo "## mounts"
  findmnt -rn -o TARGET | sort
  echo "## cgroups"
  find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | sort
  echo "## sysctls"
  sysctl vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys \
    kernel.keys.root_maxbytes net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables 2>/dev/null
  set -o pipefail
}

host_main() {
  [[ $(id -u) -eq 0 ]] || { echo "hack/local-k8s.sh needs root (network namespaces, mounts, containerd)" >&2; exit 1; }
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi

  W=$(mktemp -d /tmp/mailfleet-k8s.XXXXXX)
  NETNS="mailfleet-k8s-$$"
  mkdir -p "${W}"/{logs,pids,images,tunables,bin}
  host_state >"${W}/host-before"
  NETNS_MOUNT_STATE=$(netns_mount_record)
  trap host_cleanup EXIT

  log "components (built once, cached in $(mailfleet_cache))"
  local name path
  while read -r name path; do
    printf 'export %s=%q\n' "$(echo "${name}" | tr '[:lower:]-' '[:upper:]_')" "${path}"
  done < <(bash hack/install-k8s.sh) >"${W}/env"
  {
    printf 'export ETCD=%q\n' "$(bash hack/install-etcd.sh)"
    printf 'export COREDNS=%q\n' "$(bash hack/install-coredns.sh)"
    printf 'export KUBECTL=%q\n' "$(bash hack/install-kubectl.sh)"
    printf 'export HELM=%q\n' "$(bash hack/install-helm.sh)"
  } >>"${W}/env"
  local minio tag
  minio=$(bash hack/install-minio.sh)
  tag="e2e-$(git rev-parse --short HEAD 2>/dev/null || echo dev)"
  {
    printf 'export TAG=%q\n' "${tag}"
    printf 'export MINIO_TAG=%q\n' "${MINIO_VERSION##*-}"
    printf 'export PAUSE_TAG=%q\n' 1
    printf 'export E2E_TEST=%q\n' "${W}/bin/e2e.test"
  } >>"${W}/env"
  source "${W}/env"

  log "images"
  make images IMAGE_TAG="${TAG}" >/dev/null
  cp bin/images/*.tar "${W}/images/"
  CGO_ENABLED=0 go build -trimpath -o "${W}/bin/pause" ./deploy/images/cmd/pause
  go run ./deploy/images/cmd/build-images --mailfleet=false --repo mailfleet.local --out "${W}/images" \
    --extra "etcd:${ETCD_VERSION}=${ETCD}@/usr/local/bin/etcd" \
    --extra "minio:${MINIO_TAG}=${minio}@/usr/bin/minio" \
    --extra "pause:${PAUSE_TAG}=${W}/bin/pause@/pause"
  ls -la "${W}/images"

  log "the e2e client"
  go test -c -o "${E2E_TEST}" ./test/e2e
  # Warm the build cache for the binaries the e2e harness builds offline.
  go build -o /dev/null ./services/storage ./services/access ./services/inbound ./services/submission ./mailctl ./devcluster

  log "node namespace ${NETNS}"
  ip netns add "${NETNS}"
  nsenter --net="/run/netns/${NETNS}" unshare --mount --propagation private \
    bash "${BASH_SOURCE[0]}" --node "${W}"
}

host_cleanup() {
  local rc=$?
  set +o errexit
  log "tearing down"
  if ip netns list | grep -qw "${NETNS}"; then
    # Containers live in the cgroups runc made; kill them there (they are in
    # their pods' network namespaces, not in ours), then everything in ours.
    sweep_cgroups
    local pid
    for pid in $(ip netns pids "${NETNS}"); do kill "${pid}" 2>/dev/null; done
    sleep 2
    for pid in $(ip netns pids "${NETNS}"); do kill -9 "${pid}" 2>/dev/null; done
    sleep 1
    sweep_cgroups
    ip netns delete "${NETNS}"
  fi
  # The first `ip netns add` on a fresh machine mounts /run/netns; undo it.
  # shellcheck disable=SC2086 # two words on purpose
  netns_mount_restore ${NETNS_MOUNT_STATE:-1 1}
  host_state >"${W}/host-after"
  # A cgroup that went away meanwhile belonged to something else on the
  # machine that ended (the run only adds cgroups): compare without those.
  comm -23 <(sed -n '/^## cgroups/,/^## /p' "${W}/host-before" | grep '^/' | sort) \
    <(sed -n '/^## cgroups/,/^## /p' "${W}/host-after" | grep '^/' | sort) >"${W}/cgroups-gone"
  grep -vxF -f "${W}/cgroups-gone" "${W}/host-before" >"${W}/host-before-kept"
  if ! diff -u "${W}/host-before-kept" "${W}/host-after"; then
    echo "the host differs from before the run (above)" >&2
    rc=1
  else
    echo "host restored: no namespace, link, iptables rule, mount, cgroup or sysctl left changed"
  fi
  local left
  left=$(pgrep -f "${W}" || true)
  if [[ -n ${left} ]]; then
    echo "processes left running:" >&2
    ps -o pid,args -p "${left//$'\n'/,}" >&2
    rc=1
  else
    echo "no process of the run left"
  fi
  if [[ -n ${KEEP_WORKDIR:-} ]]; then
    echo "work directory kept: ${W}"
  else
    rm -rf "${W}"
  fi
  exit "${rc}"
}

# sweep_cgroups kills the processes of every cgroup made since the run
# started and removes those cgroups, deepest first. (On a machine where
# other work starts meanwhile, its new cgroups are swept too: run this
# alone, as CI does.)
sweep_cgroups() {
  local dir
  while read -r dir; do
    [[ -d ${dir} ]] || continue
    xargs -r kill -9 <"${dir}/cgroup.procs" 2>/dev/null
    rmdir "${dir}" 2>/dev/null
  done < <(comm -13 <(sed -n '/^## cgroups/,/^## /p' "${W}/host-before" | grep '^/') \
    <(find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | sort) | sort -r)
}

if [[ ${1:-} == --node ]]; then
  node_main "$2"
else
  host_main
fi
