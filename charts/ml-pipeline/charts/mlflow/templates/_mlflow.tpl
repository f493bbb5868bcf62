{{/* Environment shared by the server and the migration Job: the backend URI assembled from the role password. */}}
{{- define "mlflow.dbEnv" -}}
{{- $db := .Values.global.postgresql.databases.mlflow -}}
- name: MLFLOW_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mlp.postgresql.secretName" . }}
      key: mlflow-password
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ printf "postgresql+psycopg2://%s:$(MLFLOW_DB_PASSWORD)@%s:%v/%s" $db.username (include "mlp.postgresql.host" .) .Values.global.postgresql.port $db.database | quote }}
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
- name: DO_NOT_TRACK
  value: "true"
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: HOME
  value: /tmp
{{- end -}}

{{/* Host headers the server accepts: its Service under every in-cluster spelling, localhost (port-forward) and the extras. */}}
{{- define "mlflow.allowedHosts" -}}
{{- $svc := include "mlp.name" (dict "ctx" . "component" "mlflow") -}}
{{- $port := .Values.service.port | toString -}}
{{- $hosts := list -}}
{{- range $name := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) "localhost" "127.0.0.1" -}}
{{- $hosts = append $hosts $name -}}
{{- $hosts = append $hosts (printf "%s:%s" $name $port) -}}
{{- end -}}
{{- concat $hosts .Values.allowedHosts | uniq | join "," -}}
{{- end -}}
