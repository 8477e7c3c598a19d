{{/*
The container's environment: the chart's variables ("control-plane.chartEnv"), then `.Values.env` over
them. A user entry whose name the chart already sets replaces the chart's entry at its position
(a value or a valueFrom alike); the others are appended, sorted by name. The name stays unique:
two entries of one name (what rendering both lists one after the other gave) are refused by
Helm's three-way merge on upgrade ("patch order") or silently lose one value, as a real 1.20
cluster with Helm 3.17 showed.
*/}}
{{- define "control-plane.env" -}}
{{- $chart := include "control-plane.chartEnv" . | fromYamlArray -}}
{{- $user := .Values.env | default dict -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- range $chart -}}
{{- if not (kindIs "map" .) -}}
{{- fail (printf "control-plane.chartEnv does not render a list of mappings: %v" .) -}}
{{- end -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "control-plane.chartEnv sets %s twice" .name) -}}
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

{{/* The variables the chart sets for the control plane, before `.Values.env` (see "control-plane.env"). */}}
{{- define "control-plane.chartEnv" -}}
# docs/control-plane.md and docs/kubernetes.md list every variable. With the
# Kubernetes source, MANIFESTS_PATH and NODES_FILE are not used.
- name: CONFIG_SOURCE
  value: kubernetes
- name: CA_CERT_FILE
  value: /etc/cacerts/ca-cert.pem
- name: CA_KEY_FILE
  value: /etc/cacerts/ca-key.pem
{{- if .Values.ca.intermediate }}
- name: CA_CERT_CHAIN_FILE
  value: /etc/cacerts/cert-chain.pem
{{- end }}
- name: TRUST_BUNDLE_FILE
  value: /etc/cacerts/root-cert.pem
- name: TRUST_DOMAIN
  value: {{ .Values.trustDomain | quote }}
- name: ROOT_NAMESPACE
  value: {{ .Values.rootNamespace | quote }}
# Leader election for status writes: the Lease the Role in rbac.yaml names.
- name: LEADER_ELECTION_NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: LEADER_ELECTION_LEASE
  value: {{ .Values.leaderElection.leaseName | quote }}
# Who may get certificates for node proxies and subscribe to discovery: TokenReview
# of a token of this service account, audience TOKEN_AUDIENCE (the ztunnel chart's).
- name: ZTUNNEL_NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: ZTUNNEL_SERVICE_ACCOUNT
  value: {{ .Values.ztunnelServiceAccount | quote }}
- name: TOKEN_AUDIENCE
  value: {{ .Values.tokenAudience | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
# Waypoint Gateways get Deployments running this same image (control-plane/kubernetes/waypoints.ts).
- name: WAYPOINT_IMAGE
  value: {{ include "control-plane.image" . | quote }}
- name: WAYPOINT_IMAGE_PULL_POLICY
  value: {{ .Values.image.pullPolicy | quote }}
- name: WAYPOINT_RESOURCES
  value: {{ .Values.waypoint.resources | default dict | toJson | quote }}
- name: CONTROL_PLANE_SERVICE_ADDRESS
  value: {{ printf "%s.%s.svc:15012" (include "control-plane.name" .) .Release.Namespace | quote }}
- name: WORKLOAD_CERT_TTL_SECONDS
  value: {{ .Values.workloadCertTtlSeconds | int | quote }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end }}
