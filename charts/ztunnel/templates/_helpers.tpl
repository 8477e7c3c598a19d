{{/*
ztunnel's objects are named "ztunnel": the control plane finds each node's ztunnel by its service
account (ztunnel in the release namespace), its certificate is for
spiffe://<td>/ns/<ns>/sa/ztunnel, and ambientctl selects its pods with app=ztunnel.
*/}}
{{- define "ztunnel.name" -}}ztunnel{{- end }}

{{- define "ztunnel.selectorLabels" -}}
app: ztunnel
{{- end }}

{{- define "ztunnel.labels" -}}
{{ include "ztunnel.selectorLabels" . }}
app.kubernetes.io/name: ztunnel
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: ztunnel
app.kubernetes.io/part-of: ambient-mesh
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ztunnel.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.hub -}}
{{ printf "%s/%s:%s" (trimSuffix "/" .Values.image.hub) .Values.image.name $tag }}
{{- else -}}
{{ printf "%s:%s" .Values.image.name $tag }}
{{- end -}}
{{- end }}

{{- define "ztunnel.controlPlaneAddress" -}}
{{- .Values.controlPlane.address | default (printf "istiod.%s.svc:15012" .Release.Namespace) -}}
{{- end }}

{{/*
The mesh's identities name istio-system: the control plane's serving certificate is
spiffe://<td>/ns/istio-system/sa/istiod and ztunnels ask for .../ns/istio-system/sa/ztunnel
(core/discovery/wire.ts). Installed elsewhere, nothing would authenticate.
*/}}
{{- define "ztunnel.checkNamespace" -}}
{{- if ne .Release.Namespace "istio-system" -}}
{{- fail (printf "the ztunnel chart must be installed into istio-system (got %q): the mesh's SPIFFE identities name that namespace; use -n istio-system" .Release.Namespace) -}}
{{- end -}}
{{- end }}

{{/*
A DaemonSet's rollingUpdate.maxSurge is served (beta, on by default) from Kubernetes 1.22; 1.21 has
it only behind the DaemonSetUpdateSurge feature gate and older API servers refuse it as an unknown
field. Non-empty ("true") where the cluster takes it.
*/}}
{{- define "ztunnel.daemonSetSurge" -}}
{{- if semverCompare ">=1.22.0-0" .Capabilities.KubeVersion.Version -}}true{{- end -}}
{{- end }}

{{/*
Without a surge, maxUnavailable 0 would let no pod ever be replaced (the API server refuses it):
the chart's 0 becomes 1, one node at a time; any other value is kept.
*/}}
{{- define "ztunnel.maxUnavailableWithoutSurge" -}}
{{- $v := toString .Values.updateStrategy.maxUnavailable -}}
{{- if or (eq $v "0") (eq $v "0%") -}}1{{- else -}}{{ .Values.updateStrategy.maxUnavailable }}{{- end -}}
{{- end }}
