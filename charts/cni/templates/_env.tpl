{{/*
The container's environment: the chart's variables ("cni.chartEnv"), then `.Values.env` over
them. A user entry whose name the chart already sets replaces the chart's entry at its position
(a value or a valueFrom alike); the others are appended, sorted by name. The name stays unique:
two entries of one name (what rendering both lists one after the other gave) are refused by
Helm's three-way merge on upgrade ("patch order") or silently lose one value, as a real 1.20
cluster with Helm 3.17 showed.
*/}}
{{- define "cni.env" -}}
{{- $chart := include "cni.chartEnv" . | fromYamlArray -}}
{{- $user := .Values.env | default dict -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- range $chart -}}
{{- if not (kindIs "map" .) -}}
{{- fail (printf "cni.chartEnv does not render a list of mappings: %v" .) -}}
{{- end -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "cni.chartEnv sets %s twice" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- if hasKey $user .name -}}
{{- $out = append $out (dict "name" .name "value" (toString (index $user .name))) -}}
{{- else -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{- range $name, $value := $user -}}
{{- if not (hasKey $seen $name) -}}
{{- $out = append $out (dict "name" $name "value" (toString $value)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{/* The variables the chart sets for the node agent, before `.Values.env` (see "cni.env"). */}}
{{- define "cni.chartEnv" -}}
# docs/cni.md, "Running in a cluster", lists every variable.
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
# ztunnel runs on the host network: its address is the node's.
- name: ZTUNNEL_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
# The agent finds the processes listening on ZTUNNEL_IP:OUTBOUND_PORT or
# :ZTUNNEL_INBOUND_PORT through /proc (hostPID), and attaches the getsockname hooks to
# their pods' cgroups: both ztunnels during a rolling update, and it follows restarts.
- name: ZTUNNEL_CGROUP
  value: auto
- name: ZTUNNEL_INBOUND_PORT
  value: {{ .Values.ztunnel.inboundPort | int | quote }}
- name: ZTUNNEL_CHECK_INTERVAL_SECONDS
  value: {{ .Values.ztunnel.checkIntervalSeconds | quote }}
- name: OUTBOUND_PORT
  value: {{ .Values.redirect.outboundPort | int | quote }}
- name: CONTROL_PLANE_ADDRESS
  value: {{ .Values.controlPlane.address | default (printf "istiod.%s.svc:15012" .Release.Namespace) | quote }}
{{- with .Values.controlPlane.identity }}
- name: CONTROL_PLANE_IDENTITY
  value: {{ . | quote }}
{{- end }}
- name: NODE_TOKEN_FILE
  value: /var/run/secrets/tokens/istio-token
- name: CONTROL_PLANE_ROOT_CERT_FILE
  value: /var/run/secrets/istio/root-cert.pem
- name: TRUST_DOMAIN
  value: {{ .Values.trustDomain | quote }}
- name: ROOT_NAMESPACE
  value: {{ .Values.rootNamespace | quote }}
- name: CGROUP_ROOT
  value: {{ .Values.cgroup.hostRoot | quote }}
- name: CGROUP_DRIVER
  value: {{ .Values.cgroup.driver | quote }}
# Where kubelet puts the pod cgroups (its --cgroup-root) in the host's tree; "auto" derives it from
# the agent's own cgroup (it is a pod too).
- name: KUBELET_CGROUP_ROOT
  value: {{ .Values.cgroup.kubeletRoot | quote }}
{{- if .Values.cni.install }}
- name: CNI_BIN_DIR
  value: /host/opt/cni/bin
- name: CNI_CONF_DIR
  value: /host/etc/cni/net.d
{{- end }}
- name: UNINSTALL_ON_EXIT
  value: {{ .Values.cni.uninstallOnExit | quote }}
- name: EXEMPT_NAMESPACES
  value: {{ include "cni.exemptNamespaces" . | quote }}
{{- with .Values.redirect.excludeCidrs }}
- name: EXCLUDE_CIDRS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.redirect.excludePorts }}
- name: EXCLUDE_PORTS
  value: {{ $ports := list }}{{ range . }}{{ $ports = concat $ports (list (int .)) }}{{ end }}{{ join "," $ports | quote }}
{{- end }}
- name: AGENT_SOCKET
  value: /var/run/ambient/cni.sock
- name: STATE_FILE
  value: /var/run/ambient/agent-state.json
- name: STATE_ADDRESS
  value: 127.0.0.1
- name: STATE_PORT
  value: {{ .Values.statePort | int | quote }}
- name: RESYNC_INTERVAL_SECONDS
  value: {{ .Values.resyncIntervalSeconds | int | quote }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end }}
