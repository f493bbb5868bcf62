{{/*
Names. Every object of the release is called `<release>-<component>`; a component is what a
reader looks for (`postgresql`, `airflow-scheduler`, `pipeline-env`). Truncated to 63 characters,
the limit of a DNS label.
*/}}
{{- define "mlp.name" -}}
{{- printf "%s-%s" .ctx.Release.Name .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Namespace of the release. */}}
{{- define "mlp.namespace" -}}
{{- .Release.Namespace -}}
{{- end -}}

{{/* Namespace of the pipeline's step pods (and the KubernetesExecutor's worker pods). */}}
{{- define "mlp.pipeline.namespace" -}}
{{- .Values.global.pipeline.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* Service account of the step pods. */}}
{{- define "mlp.pipeline.serviceAccountName" -}}
{{- .Values.global.pipeline.serviceAccountName | default (include "mlp.name" (dict "ctx" . "component" "pipeline")) -}}
{{- end -}}

{{/* ConfigMap with the non-secret PIPELINE_* environment of the step pods. */}}
{{- define "mlp.pipeline.envConfigMapName" -}}
{{- include "mlp.name" (dict "ctx" . "component" "pipeline-env") -}}
{{- end -}}

{{/* ConfigMap holding the pipeline's config.yaml (the dataset configuration). */}}
{{- define "mlp.pipeline.configConfigMapName" -}}
{{- .Values.global.pipeline.existingConfigMap | default (include "mlp.name" (dict "ctx" . "component" "pipeline-config")) -}}
{{- end -}}

{{/* Secret with the PIPELINE_* secrets of the step pods (S3 keys, feature-store password). */}}
{{- define "mlp.pipeline.secretName" -}}
{{- .Values.global.pipeline.existingSecret | default (include "mlp.name" (dict "ctx" . "component" "pipeline")) -}}
{{- end -}}

{{/*
The DNS name of a Service of the release, valid from every namespace:
`<service>.<namespace>.svc.<global.clusterDomain>` (`<service>.<namespace>.svc` when the domain
is empty; the pods' DNS search path completes it). A short name (`<release>-mlflow`) resolves
only inside its own namespace, and step and worker pods may run in another one
(`global.pipeline.namespace`). Call with (dict "ctx" $ "component" <component> ["namespace" <ns>]);
the namespace defaults to the release's. Tests: tests/charts/test_service_dns.py.
*/}}
{{- define "mlp.serviceHost" -}}
{{- $service := include "mlp.name" (dict "ctx" .ctx "component" .component) -}}
{{- $namespace := .namespace | default .ctx.Release.Namespace -}}
{{- $domain := .ctx.Values.global.clusterDomain | default "" | trimSuffix "." -}}
{{- if $domain -}}
{{- printf "%s.%s.svc.%s" $service $namespace $domain -}}
{{- else -}}
{{- printf "%s.%s.svc" $service $namespace -}}
{{- end -}}
{{- end -}}

{{/*
Every spelling of a Service's name a client in the cluster may send as its Host header, for a
server's allow-list: short, `.<ns>`, `.<ns>.svc`, `.<ns>.svc.<global.clusterDomain>`, each bare
and with `:<port>`. (dict "ctx" $ "component" <component> "port" <port>) -> a JSON list.
*/}}
{{- define "mlp.serviceHostNames" -}}
{{- $service := include "mlp.name" (dict "ctx" .ctx "component" .component) -}}
{{- $namespace := .ctx.Release.Namespace -}}
{{- $names := list $service (printf "%s.%s" $service $namespace) (printf "%s.%s.svc" $service $namespace) (include "mlp.serviceHost" (dict "ctx" .ctx "component" .component)) -}}
{{- $out := list -}}
{{- range $names | uniq -}}
{{- $out = append $out . -}}
{{- $out = append $out (printf "%s:%v" . $.port) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* PostgreSQL: host (the bundled server unless global.postgresql.host is set) and port. */}}
{{- define "mlp.postgresql.host" -}}
{{- .Values.global.postgresql.host | default (include "mlp.serviceHost" (dict "ctx" . "component" "postgresql")) -}}
{{- end -}}

{{/* Secret with the PostgreSQL role passwords (keys: postgres-password, airflow-password, mlflow-password, features-password). */}}
{{- define "mlp.postgresql.secretName" -}}
{{- .Values.global.postgresql.existingSecret | default (include "mlp.name" (dict "ctx" . "component" "postgresql-auth")) -}}
{{- end -}}

{{/* S3 endpoint: the bundled MinIO unless global.s3.endpoint is set. */}}
{{- define "mlp.s3.endpoint" -}}
{{- .Values.global.s3.endpoint | default (printf "http://%s:9000" (include "mlp.serviceHost" (dict "ctx" . "component" "minio"))) -}}
{{- end -}}

{{/* Secret with the S3 keys (keys: access-key-id, secret-access-key). */}}
{{- define "mlp.s3.secretName" -}}
{{- .Values.global.s3.existingSecret | default (include "mlp.name" (dict "ctx" . "component" "s3-credentials")) -}}
{{- end -}}

{{/*
Secret with one S3 client's own keys (keys: access-key-id, secret-access-key), never the root
credentials. Call with (dict "ctx" $ "client" NAME), NAME one of pipeline, mlflow, airflow-logs.
Bundled MinIO: generated once, and the bucket Job creates that user with a policy limited to the
client's bucket and prefixes. External S3: global.s3.clientSecrets.<NAME>, else global.s3.existingSecret.
*/}}
{{- define "mlp.s3.clientSecretName" -}}
{{- $s3 := .ctx.Values.global.s3 -}}
{{- $named := get ($s3.clientSecrets | default dict) .client -}}
{{- if $named -}}
{{- $named -}}
{{- else if $s3.existingSecret -}}
{{- $s3.existingSecret -}}
{{- else -}}
{{- include "mlp.name" (dict "ctx" .ctx "component" (printf "s3-%s" .client)) -}}
{{- end -}}
{{- end -}}

{{/*
MLflow tracking URI seen from inside the cluster, on the port its Service exposes
(`mlflow.service.port`, read from the umbrella's or the mlflow subchart's values).
*/}}
{{- define "mlp.mlflow.trackingUri" -}}
{{- $port := 5000 -}}
{{- if eq .Chart.Name "mlflow" -}}
{{- $port = .Values.service.port -}}
{{- else if hasKey .Values "mlflow" -}}
{{- $port = dig "service" "port" $port .Values.mlflow -}}
{{- end -}}
{{- .Values.global.mlflow.trackingUri | default (printf "http://%s:%v" (include "mlp.serviceHost" (dict "ctx" . "component" "mlflow")) $port) -}}
{{- end -}}

{{/* Secret with Airflow's keys (fernet-key, jwt-secret, api-secret-key, admin-password). */}}
{{- define "mlp.airflow.secretName" -}}
{{- .Values.global.airflow.existingSecret | default (include "mlp.name" (dict "ctx" . "component" "airflow-secrets")) -}}
{{- end -}}

{{/* Service name and in-cluster URL of the Airflow API server (task pods call its Execution API). */}}
{{- define "mlp.airflow.apiServerName" -}}
{{- include "mlp.name" (dict "ctx" . "component" "airflow-api-server") -}}
{{- end -}}

{{/* The port the API server's Service exposes (`airflow.apiServer.service.port`), from the umbrella's or the airflow subchart's values. */}}
{{- define "mlp.airflow.apiServerPort" -}}
{{- if eq .Chart.Name "airflow" -}}
{{- .Values.apiServer.service.port -}}
{{- else if hasKey .Values "airflow" -}}
{{- dig "apiServer" "service" "port" 8080 .Values.airflow -}}
{{- else -}}
8080
{{- end -}}
{{- end -}}

{{- define "mlp.airflow.apiServerUrl" -}}
{{- printf "http://%s:%s" (include "mlp.serviceHost" (dict "ctx" . "component" "airflow-api-server")) (include "mlp.airflow.apiServerPort" .) -}}
{{- end -}}

{{/* ConfigMap with the DAG's MLP_DAG_* settings. */}}
{{- define "mlp.airflow.dagSettingsConfigMapName" -}}
{{- include "mlp.name" (dict "ctx" . "component" "dag-settings") -}}
{{- end -}}

{{/* Redis: host and password Secret (key: password). */}}
{{- define "mlp.redis.host" -}}
{{- .Values.global.redis.host | default (include "mlp.serviceHost" (dict "ctx" . "component" "redis")) -}}
{{- end -}}

{{- define "mlp.redis.secretName" -}}
{{- .Values.global.redis.existingSecret | default (include "mlp.name" (dict "ctx" . "component" "redis-auth")) -}}
{{- end -}}
