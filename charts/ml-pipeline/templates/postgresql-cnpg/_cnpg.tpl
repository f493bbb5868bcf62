{{/* Name of the CloudNativePG Cluster; its read-write Service is `<name>-rw`. */}}
{{- define "mlp.cnpg.name" -}}
{{- include "mlp.name" (dict "ctx" . "component" "postgres") -}}
{{- end -}}

{{/* The basic-auth Secret of a client role, from (dict "ctx" . "client" <airflow|mlflow|features>). */}}
{{- define "mlp.cnpg.roleSecret" -}}
{{- get .ctx.Values.cnpg.roleSecrets .client | default (include "mlp.name" (dict "ctx" .ctx "component" (printf "postgres-%s" .client))) -}}
{{- end -}}
