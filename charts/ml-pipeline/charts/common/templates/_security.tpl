{{/*
Security contexts: the "restricted" Pod Security Standard for every pod of the chart.
Pod level, from (dict "uid" <int> "gid" <int, default uid> "fsGroup" <int, optional>).
*/}}
{{- define "mlp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ if hasKey . "gid" }}{{ .gid }}{{ else }}{{ .uid }}{{ end }}
{{- if hasKey . "fsGroup" }}
fsGroup: {{ .fsGroup }}
fsGroupChangePolicy: OnRootMismatch
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container level, from (dict "uid" <int> "gid" <int, default uid> "readOnlyRootFilesystem" <bool>). */}}
{{- define "mlp.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ if hasKey . "gid" }}{{ .gid }}{{ else }}{{ .uid }}{{ end }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ .readOnlyRootFilesystem }}
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}
