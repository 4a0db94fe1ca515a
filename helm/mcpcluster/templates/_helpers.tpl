{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "mcpcluster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: <release>-<chart>, or the release name when it already
contains the chart name. */}}
{{- define "mcpcluster.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the operator's Deployment, pods and Service. */}}
{{- define "mcpcluster.operatorName" -}}
{{- printf "%s-operator" (include "mcpcluster.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "mcpcluster.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: mcpcluster
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the operator pods (immutable once installed: keep them few). */}}
{{- define "mcpcluster.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "mcpcluster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator pods' selector labels as `k=v,k=v` (--operator-pod-selector): each
McpCluster's NetworkPolicy lets pods with these labels, in the release namespace, reach the
nodes' admin port. */}}
{{- define "mcpcluster.operatorPodSelector" -}}
{{- $pairs := list }}
{{- range $k, $v := (include "mcpcluster.operatorSelectorLabels" . | fromYaml) }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* ServiceAccount of the operator. */}}
{{- define "mcpcluster.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mcpcluster.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Operator image reference: repository@digest, or repository:tag (default appVersion). */}}
{{- define "mcpcluster.operatorImage" -}}
{{- $img := .Values.operator.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}
