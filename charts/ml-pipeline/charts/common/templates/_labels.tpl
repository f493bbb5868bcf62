{{/*
Labels. Call with (dict "ctx" . "name" "<app name>" "component" "<component>").
`selectorLabels` is the immutable subset used by Deployment/StatefulSet selectors and Services.
*/}}
{{- define "mlp.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mlp.labels" -}}
{{ include "mlp.selectorLabels" . }}
app.kubernetes.io/part-of: ml-pipeline
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | default .ctx.Chart.Version | quote }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .ctx.Values.global.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
