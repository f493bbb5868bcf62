{{/*
A NetworkPolicy peer: pods with `labels` in namespace `namespace`, from
(dict "namespace" <ns> "labels" <map>). The namespace is always named (the
kubernetes.io/metadata.name label every namespace carries), so the same peer works whether the
pipeline namespace is the release's or another one.
*/}}
{{- define "mlp.np.peer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace }}
  podSelector:
    matchLabels:
      {{- toYaml .labels | nindent 6 }}
{{- end -}}

{{/* Pod labels of one component of the release: (dict "ctx" $ "name" <app> "component" <optional>). */}}
{{- define "mlp.np.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* The pipeline's step pods: the pod operator labels every pod it starts. */}}
{{- define "mlp.np.stepPods" -}}
{{- include "mlp.np.peer" (dict "namespace" (include "mlp.pipeline.namespace" .) "labels" (dict "kubernetes_pod_operator" "True")) -}}
{{- end -}}

{{/* Every Airflow pod of the release: components in the release namespace, worker pods in the pipeline namespace. */}}
{{- define "mlp.np.airflowPods" -}}
{{- range $namespace := list .Release.Namespace (include "mlp.pipeline.namespace" .) | uniq }}
{{ include "mlp.np.peer" (dict "namespace" $namespace "labels" (include "mlp.np.labels" (dict "ctx" $ "name" "airflow") | fromYaml)) }}
{{- end }}
{{- end -}}

{{/* Egress rules to destinations outside the cluster (global.networkPolicy.externalEgress). */}}
{{- define "mlp.np.externalEgress" -}}
{{- range .Values.global.networkPolicy.externalEgress }}
- to:
    - ipBlock:
        cidr: {{ .cidr }}
  ports:
    {{- range .ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* An egress rule to pods of the release on TCP ports: (dict "peers" <yaml string> "ports" <list>). */}}
{{- define "mlp.np.egressTo" -}}
- to:
    {{- .peers | nindent 4 }}
  ports:
    {{- range .ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end -}}
