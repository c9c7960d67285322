{{/* Names and labels. */}}
{{- define "mailfleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "mailfleet.labels" -}}
app.kubernetes.io/name: mailfleet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include "mailfleet.selector" (list . "storage") */}}
{{- define "mailfleet.selector" -}}
app.kubernetes.io/name: mailfleet
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "mailfleet.image" -}}
{{- $root := index . 0 -}}
{{ printf "%s/%s:%s" $root.Values.image.repository (index . 1) (default $root.Chart.AppVersion $root.Values.image.tag) }}
{{- end -}}

{{/* The storage gRPC target of every client: the headless Service. */}}
{{- define "mailfleet.storageAddr" -}}
{{ include "mailfleet.fullname" . }}-storage-headless:7070
{{- end -}}

{{- define "mailfleet.etcdEndpoints" -}}
{{- if .Values.etcd.bundled -}}
{{- $name := include "mailfleet.fullname" . -}}
{{- $eps := list -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $eps = append $eps (printf "http://%s-etcd-%d.%s-etcd-peer:2379" $name $i $name) -}}
{{- end -}}
{{ join "," $eps }}
{{- else -}}
{{ join "," .Values.etcd.external.endpoints }}
{{- end -}}
{{- end -}}

{{- define "mailfleet.s3Secret" -}}
{{- default (printf "%s-s3" (include "mailfleet.fullname" .)) .Values.objectStore.existingSecret -}}
{{- end -}}

{{- define "mailfleet.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}{{ include "mailfleet.fullname" . }}-tls{{- else -}}{{ .Values.tls.existingSecret }}{{- end -}}
{{- end -}}

{{/* Pod-level settings shared by every Mailfleet pod. */}}
{{- define "mailfleet.podCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Spread a component's pods over nodes and zones. */}}
{{- define "mailfleet.spread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "mailfleet.selector" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "mailfleet.selector" . | nindent 8 }}
{{- end -}}

{{/* Probes on the ops port. */}}
{{- define "mailfleet.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: ops}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: ops}
  periodSeconds: 10
readinessProbe:
  httpGet: {path: /readyz, port: ops}
  periodSeconds: 5
{{- end -}}

{{/* Fail the render with a clear message for impossible combinations. */}}
{{- define "mailfleet.validate" -}}
{{- if and (not .Values.etcd.bundled) (empty .Values.etcd.external.endpoints) -}}
{{- fail "etcd.bundled is false: set etcd.external.endpoints to your etcd client URLs" -}}
{{- end -}}
{{- if and .Values.etcd.bundled (not (has (int .Values.etcd.replicas) (list 1 3 5))) -}}
{{- fail "etcd.replicas must be 1, 3 or 5 (a quorum needs an odd number)" -}}
{{- end -}}
{{- if and (not .Values.etcd.bundled) (or .Values.etcd.external.clientCert .Values.etcd.external.auth) (empty .Values.etcd.external.existingSecret) -}}
{{- fail "etcd.external.clientCert and etcd.external.auth read etcd.external.existingSecret: set it" -}}
{{- end -}}
{{- if and (not .Values.objectStore.bundled) (empty .Values.objectStore.external.endpoint) -}}
{{- fail "objectStore.bundled is false: set objectStore.external.endpoint (host:port)" -}}
{{- end -}}
{{- if and (not .Values.objectStore.bundled) (empty .Values.objectStore.existingSecret) -}}
{{- fail "objectStore.bundled is false: set objectStore.existingSecret (keys accessKey, secretKey)" -}}
{{- end -}}
{{- if and (empty .Values.tls.existingSecret) (not .Values.tls.certManager.enabled) -}}
{{- fail "the mail ports need a certificate: set tls.existingSecret or tls.certManager.enabled" -}}
{{- end -}}
{{- if and .Values.tls.existingSecret .Values.tls.certManager.enabled -}}
{{- fail "set either tls.existingSecret or tls.certManager.enabled, not both" -}}
{{- end -}}
{{- $itls := .Values.internalTLS -}}
{{- if not (has $itls.mode (list "auto" "certManager" "helm" "existingSecrets")) -}}
{{- fail (printf "internalTLS.mode %q: use auto, certManager, helm or existingSecrets" $itls.mode) -}}
{{- end -}}
{{- if not $itls.insecurePlaintext -}}
{{- /* helm lint renders neither an install nor an upgrade and cannot be
told which APIs the cluster serves: install, upgrade and template check. */ -}}
{{- if and (eq $itls.mode "certManager") (not (.Capabilities.APIVersions.Has "cert-manager.io/v1")) (or .Release.IsInstall .Release.IsUpgrade) -}}
{{- fail "internalTLS.mode is certManager but the cluster does not serve the cert-manager.io/v1 API: install cert-manager first, or set internalTLS.mode to auto or helm (Helm then generates the certificates); with helm template, pass --api-versions cert-manager.io/v1" -}}
{{- end -}}
{{- if eq $itls.mode "existingSecrets" -}}
{{- $missing := list -}}
{{- range $role := list "ca" "storage" "inbound" "submission" "queue" "access" "admin" -}}
{{- if empty (index $itls.existingSecrets $role) -}}{{- $missing = append $missing (printf "internalTLS.existingSecrets.%s" $role) -}}{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "internalTLS.mode is existingSecrets: set %s (one Secret per identity, and ca with the CA's ca.crt)" (join ", " $missing)) -}}
{{- end -}}
{{- end -}}
{{- if ge (int $itls.helm.renewDaysBefore) (int $itls.helm.certDays) -}}
{{- fail "internalTLS.helm.renewDaysBefore must be below internalTLS.helm.certDays" -}}
{{- end -}}
{{- end -}}
{{- if lt (int .Values.access.terminationGracePeriodSeconds) (add 10 .Values.shutdownDelaySeconds) -}}
{{- fail "access.terminationGracePeriodSeconds must be at least shutdownDelaySeconds + 10" -}}
{{- end -}}
{{- if and .Values.access.autoscaling.enabled (gt (int .Values.access.autoscaling.minReplicas) (int .Values.access.autoscaling.maxReplicas)) -}}
{{- fail "access.autoscaling.minReplicas is above maxReplicas" -}}
{{- end -}}
{{- end -}}

{{/* mTLS between the tiers and storage. Where the certificates come from:
"insecure" (internalTLS.insecurePlaintext), "certManager", "helm" or
"existingSecrets"; mode auto is certManager when the cluster serves the
cert-manager.io/v1 API, helm otherwise. */}}
{{- define "mailfleet.internalMode" -}}
{{- $t := .Values.internalTLS -}}
{{- if $t.insecurePlaintext -}}
insecure
{{- else if eq $t.mode "auto" -}}
{{- if .Capabilities.APIVersions.Has "cert-manager.io/v1" }}certManager{{ else }}helm{{ end -}}
{{- else -}}
{{ $t.mode }}
{{- end -}}
{{- end -}}

{{/* The identities: storage serves, the others call it. The caller's role is
the CN of its certificate, mailfleet-<role>. */}}
{{- define "mailfleet.internalRoles" -}}
storage inbound submission queue access admin
{{- end -}}

{{/* Secret of one identity, or of the CA ("ca"):
include "mailfleet.internalSecret" (list . "inbound") */}}
{{- define "mailfleet.internalSecret" -}}
{{- $root := index . 0 -}}
{{- $role := index . 1 -}}
{{- $name := include "mailfleet.fullname" $root -}}
{{- if eq (include "mailfleet.internalMode" $root) "existingSecrets" -}}
{{ index $root.Values.internalTLS.existingSecrets $role }}
{{- else if eq $role "ca" -}}
{{ $name }}-internal-ca
{{- else if eq $role "storage" -}}
{{ $name }}-storage-grpc
{{- else -}}
{{ $name }}-{{ $role }}-client
{{- end -}}
{{- end -}}

{{/* The names the storage certificate is valid for (a JSON list): both
storage Services under every form a client may dial (the frontends, the
bootstrap Job and helm test dial <fullname>-storage-headless:7070), the
headless Service's per-pod names, and localhost for mailctl through a
`kubectl port-forward` (with the IP 127.0.0.1, mailfleet.storageIPs). */}}
{{- define "mailfleet.storageDNSNames" -}}
{{- $name := include "mailfleet.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list -}}
{{- range $svc := list (printf "%s-storage" $name) (printf "%s-storage-headless" $name) -}}
{{- $names = concat $names (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) -}}
{{- end -}}
{{- $names = concat $names (list (printf "*.%s-storage-headless.%s.svc.cluster.local" $name $ns) "localhost") -}}
{{ toJson $names }}
{{- end -}}

{{- define "mailfleet.storageIPs" -}}
["127.0.0.1"]
{{- end -}}

{{/* Server flags of storage. */}}
{{- define "mailfleet.storageServerArgs" -}}
{{- if eq (include "mailfleet.internalMode" .) "insecure" }}
- --insecure-plaintext-grpc
{{- else }}
- --grpc-tls-cert=/etc/mailfleet/internal/tls.crt
- --grpc-tls-key=/etc/mailfleet/internal/tls.key
- --grpc-client-ca=/etc/mailfleet/internal/ca.crt
{{- end }}
{{- end -}}

{{/* Client flags of a frontend, its identity mounted at /etc/mailfleet/internal:
include "mailfleet.storageClientArgs" . */}}
{{- define "mailfleet.storageClientArgs" -}}
{{- if eq (include "mailfleet.internalMode" .) "insecure" }}
- --insecure-plaintext-storage
{{- else }}
- --storage-ca=/etc/mailfleet/internal/ca.crt
- --storage-cert=/etc/mailfleet/internal/tls.crt
- --storage-key=/etc/mailfleet/internal/tls.key
{{- end }}
{{- end -}}

{{/* The queue runner's identity in the submission pod (same CA). */}}
{{- define "mailfleet.queueClientArgs" -}}
{{- if ne (include "mailfleet.internalMode" .) "insecure" }}
- --queue-storage-cert=/etc/mailfleet/queue-internal/tls.crt
- --queue-storage-key=/etc/mailfleet/queue-internal/tls.key
{{- end }}
{{- end -}}

{{/* mailctl (bootstrap Job, helm test): the admin identity and the storage
address through its environment, as an operator's shell would set them. */}}
{{- define "mailfleet.mailctlArgs" -}}
{{- if eq (include "mailfleet.internalMode" .) "insecure" }}
- --insecure-plaintext-storage
{{- end }}
{{- end -}}

{{- define "mailfleet.mailctlEnv" -}}
- name: MAILFLEET_STORAGE
  value: {{ include "mailfleet.storageAddr" . | quote }}
{{- if ne (include "mailfleet.internalMode" .) "insecure" }}
- {name: MAILFLEET_STORAGE_CA, value: /etc/mailfleet/internal/ca.crt}
- {name: MAILFLEET_STORAGE_CERT, value: /etc/mailfleet/internal/tls.crt}
- {name: MAILFLEET_STORAGE_KEY, value: /etc/mailfleet/internal/tls.key}
{{- end }}
{{- end -}}

{{/* Mount of one identity: include "mailfleet.internalMount" (list . "internal-tls" "/etc/mailfleet/internal") */}}
{{- define "mailfleet.internalMount" -}}
{{- if ne (include "mailfleet.internalMode" (index . 0)) "insecure" }}
- {name: {{ index . 1 }}, mountPath: {{ index . 2 }}, readOnly: true}
{{- end }}
{{- end -}}

{{/* Volume of one identity, holding ca.crt, tls.crt and tls.key (a
projected volume, not subPath: kubelet updates the files when a Secret
changes and the binaries reload them). The key of the CA never reaches a
pod: ca.crt comes from the identity's own Secret, or with existingSecrets
from internalTLS.existingSecrets.ca.
include "mailfleet.internalVolume" (list . "inbound" "internal-tls") */}}
{{- define "mailfleet.internalVolume" -}}
{{- $root := index . 0 -}}
{{- $mode := include "mailfleet.internalMode" $root -}}
{{- if ne $mode "insecure" }}
{{- $leaf := include "mailfleet.internalSecret" (list $root (index . 1)) }}
- name: {{ index . 2 }}
  projected:
    sources:
      - secret:
          name: {{ $leaf }}
          items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]
      - secret:
          name: {{ if eq $mode "existingSecrets" }}{{ include "mailfleet.internalSecret" (list $root "ca") }}{{ else }}{{ $leaf }}{{ end }}
          items: [{key: ca.crt, path: ca.crt}]
{{- end }}
{{- end -}}

{{/* The MX's content filter: inbound.milter.address, else the bundled
rspamd's proxy worker, else none (no flags). */}}
{{- define "mailfleet.milterArgs" -}}
{{- $root := index . 0 -}}
{{- $tier := index . 1 -}}
{{- $addr := $root.Values.inbound.milter.address -}}
{{- if and (not $addr) $root.Values.rspamd.enabled -}}
{{- $addr = printf "%s-rspamd:11332" (include "mailfleet.fullname" $root) -}}
{{- end -}}
{{- if and $addr (or (eq $tier "inbound") $root.Values.submission.milter.enabled) }}
- {{ printf "--milter=%s" $addr | quote }}
- {{ printf "--milter-timeout=%s" $root.Values.inbound.milter.timeout | quote }}
- {{ printf "--milter-default-action=%s" $root.Values.inbound.milter.defaultAction | quote }}
{{- end }}
{{- end -}}
