{{- define "cni.name" -}}ambient-cni-node{{- end }}

{{- define "cni.selectorLabels" -}}
app: ambient-cni-node
{{- end }}

{{- define "cni.labels" -}}
{{ include "cni.selectorLabels" . }}
app.kubernetes.io/name: ambient-cni-node
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: cni
app.kubernetes.io/part-of: ambient-mesh
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cni.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.hub -}}
{{ printf "%s/%s:%s" (trimSuffix "/" .Values.image.hub) .Values.image.name $tag }}
{{- else -}}
{{ printf "%s:%s" .Values.image.name $tag }}
{{- end -}}
{{- end }}

{{/* The release namespace (the agent's own, and ztunnel's) is always exempt. */}}
{{- define "cni.exemptNamespaces" -}}
{{- $list := list .Release.Namespace -}}
{{- range .Values.redirect.exemptNamespaces -}}
{{- if ne . $.Release.Namespace -}}{{- $list = concat $list (list .) -}}{{- end -}}
{{- end -}}
{{- join "," $list -}}
{{- end }}

{{/*
The mesh's identities name istio-system: the control plane's serving certificate is
spiffe://<td>/ns/istio-system/sa/istiod and ztunnels ask for .../ns/istio-system/sa/ztunnel
(core/discovery/wire.ts). Installed elsewhere, nothing would authenticate.
*/}}
{{- define "cni.checkNamespace" -}}
{{- if ne .Release.Namespace "istio-system" -}}
{{- fail (printf "the cni chart must be installed into istio-system (got %q): the mesh's SPIFFE identities name that namespace; use -n istio-system" .Release.Namespace) -}}
{{- end -}}
{{- end }}
