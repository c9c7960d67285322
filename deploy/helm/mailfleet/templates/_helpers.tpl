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
{{- if and .Values.internalTLS.enabled (empty .Values.internalTLS.existingSecret) (not .Values.internalTLS.certManager.enabled) -}}
{{- fail "internalTLS.enabled needs internalTLS.existingSecret or internalTLS.certManager.enabled" -}}
{{- end -}}
{{- if lt (int .Values.access.terminationGracePeriodSeconds) (add 10 .Values.shutdownDelaySeconds) -}}
{{- fail "access.terminationGracePeriodSeconds must be at least shutdownDelaySeconds + 10" -}}
{{- end -}}
{{- if and .Values.access.autoscaling.enabled (gt (int .Values.access.autoscaling.minReplicas) (int .Values.access.autoscaling.maxReplicas)) -}}
{{- fail "access.autoscaling.minReplicas is above maxReplicas" -}}
{{- end -}}
{{- end -}}

{{/* mTLS between tiers: the Secret, and the flags/mounts of servers and clients. */}}
{{- define "mailfleet.internalSecret" -}}
{{- if .Values.internalTLS.certManager.enabled -}}{{ include "mailfleet.fullname" . }}-internal-tls{{- else -}}{{ .Values.internalTLS.existingSecret }}{{- end -}}
{{- end -}}

{{- define "mailfleet.storageClientArgs" -}}
{{- if .Values.internalTLS.enabled }}
- --storage-ca=/etc/mailfleet/internal/ca.crt
- --storage-cert=/etc/mailfleet/internal/tls.crt
- --storage-key=/etc/mailfleet/internal/tls.key
{{- end }}
{{- end -}}

{{- define "mailfleet.internalMount" -}}
{{- if .Values.internalTLS.enabled }}
- {name: internal-tls, mountPath: /etc/mailfleet/internal, readOnly: true}
{{- end }}
{{- end -}}

{{- define "mailfleet.internalVolume" -}}
{{- if .Values.internalTLS.enabled }}
- name: internal-tls
  secret: {secretName: {{ include "mailfleet.internalSecret" . }}}
{{- end }}
{{- end -}}
