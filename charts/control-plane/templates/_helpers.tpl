{{/*
Names and labels of the control plane. The Deployment, Service and ServiceAccount are all named
"istiod": ztunnels expect the control plane's identity spiffe://<td>/ns/<ns>/sa/istiod, reach it
at istiod.<ns>.svc:15012, and ambientctl selects its pods with app=istiod.
*/}}
{{- define "control-plane.name" -}}istiod{{- end }}

{{- define "control-plane.selectorLabels" -}}
app: istiod
{{- end }}

{{- define "control-plane.labels" -}}
{{ include "control-plane.selectorLabels" . }}
app.kubernetes.io/name: istiod
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
app.kubernetes.io/part-of: ambient-mesh
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The one image every component runs from (Dockerfile); hub "" means a local image. */}}
{{- define "control-plane.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.hub -}}
{{ printf "%s/%s:%s" (trimSuffix "/" .Values.image.hub) .Values.image.name $tag }}
{{- else -}}
{{ printf "%s:%s" .Values.image.name $tag }}
{{- end -}}
{{- end }}

{{/*
The mesh's identities name istio-system: the control plane's serving certificate is
spiffe://<td>/ns/istio-system/sa/istiod and ztunnels ask for .../ns/istio-system/sa/ztunnel
(core/discovery/wire.ts). Installed elsewhere, nothing would authenticate.
*/}}
{{- define "control-plane.checkNamespace" -}}
{{- if ne .Release.Namespace "istio-system" -}}
{{- fail (printf "the control-plane chart must be installed into istio-system (got %q): the mesh's SPIFFE identities name that namespace; use -n istio-system" .Release.Namespace) -}}
{{- end -}}
{{- end }}

{{/*
policy/v1 PodDisruptionBudgets are served from Kubernetes 1.21; 1.20 has only policy/v1beta1 (same
fields), which 1.25 removed. `helm install` fills .Capabilities.APIVersions from the cluster's
discovery, which lists "policy/v1/PodDisruptionBudget" where it is served; `helm template` knows
only its own client's group versions whatever --kube-version says, so the version decides there
(or --api-versions policy/v1/PodDisruptionBudget).
*/}}
{{- define "control-plane.pdbApiVersion" -}}
{{- if or (.Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget") (semverCompare ">=1.21.0-0" .Capabilities.KubeVersion.Version) -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end }}
