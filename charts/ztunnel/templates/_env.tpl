{{/*
The container's environment: the chart's variables ("ztunnel.chartEnv"), then `.Values.env` over
them. A user entry whose name the chart already sets replaces the chart's entry at its position
(a value or a valueFrom alike); the others are appended, sorted by name. The name stays unique:
two entries of one name (what rendering both lists one after the other gave) are refused by
Helm's three-way merge on upgrade ("patch order") or silently lose one value, as a real 1.20
cluster with Helm 3.17 showed.
*/}}
{{- define "ztunnel.env" -}}
{{- $chart := include "ztunnel.chartEnv" . | fromYamlArray -}}
{{- $user := .Values.env | default dict -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- range $chart -}}
{{- if not (kindIs "map" .) -}}
{{- fail (printf "ztunnel.chartEnv does not render a list of mappings: %v" .) -}}
{{- end -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "ztunnel.chartEnv sets %s twice" .name) -}}
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

{{/* The variables the chart sets for ztunnel, before `.Values.env` (see "ztunnel.env"). */}}
{{- define "ztunnel.chartEnv" -}}
# docs/ztunnel.md lists every variable.
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
# Bind (and leave towards pods from) the node address the agent redirects to.
- name: ZTUNNEL_ADDRESS
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
- name: CONTROL_PLANE_ADDRESS
  value: {{ include "ztunnel.controlPlaneAddress" . | quote }}
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
{{- with .Values.rootNamespace }}
- name: ROOT_NAMESPACE
  value: {{ . | quote }}
{{- end }}
- name: DRAIN_TIMEOUT_SECONDS
  value: {{ .Values.drainTimeoutSeconds | int | quote }}
{{- if .Values.socks5Port }}
- name: SOCKS5_PORT
  value: {{ .Values.socks5Port | int | quote }}
{{- end }}
# The start-up check of the getsockname hook runs bpftool on ztunnel's own cgroup,
# which needs CAP_SYS_ADMIN (or CAP_BPF + CAP_NET_ADMIN) and the host's cgroup view.
# The node agent (cni chart) attaches the hooks and reports them in its /state, so
# ztunnel runs without the check and without any capability.
- name: REDIRECTION_CHECK
  value: "off"
# maxSurge 1 on the host network: the new ztunnel takes the ports over from the old
# one on its node (docs/ztunnel.md, "Rolling updates").
- name: HANDOVER
  value: {{ .Values.handover.enabled | quote }}
- name: HANDOVER_TIMEOUT_SECONDS
  value: {{ .Values.handover.timeoutSeconds | int | quote }}
- name: READY_FILE
  value: /var/run/ztunnel/ready
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end }}
