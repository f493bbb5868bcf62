{{/*
airflow.cfg as a dict of sections: the chart's settings, then `airflow.config` on top.
No secret goes here (it becomes a ConfigMap): keys come from the environment.
*/}}
{{- define "airflow.cfg" -}}
{{- $taskNamespace := include "mlp.pipeline.namespace" . -}}
{{- $cfg := dict
  "core" (dict
    "executor" .Values.executor
    "dags_folder" (include "airflow.dagsFolder" .)
    "load_examples" "False"
    "parallelism" (.Values.parallelism | toString)
    "auth_manager" .Values.auth.manager
    "execution_api_server_url" (printf "%s/execution/" (include "mlp.airflow.apiServerUrl" .))
    "hostname_callable" "airflow.utils.net.get_host_ip_address"
  )
  "api" (dict
    "base_url" .Values.apiServer.baseUrl
    "port" (.Values.apiServer.service.port | toString)
    "workers" (.Values.apiServer.workers | toString)
    "expose_config" "False"
  )
  "logging" (dict
    "base_log_folder" (printf "%s/logs" .Values.home)
    "colored_console_log" "False"
    "remote_logging" (ternary "True" "False" .Values.logs.remote.enabled)
  )
  "scheduler" (dict
    "enable_health_check" "True"
    "scheduler_health_check_server_port" "8974"
  )
  "kubernetes_executor" (dict
    "namespace" $taskNamespace
    "pod_template_file" "/opt/airflow/config/pod_template_file.yaml"
    "delete_worker_pods" (ternary "True" "False" .Values.workers.deleteWorkerPods)
    "delete_worker_pods_on_failure" (ternary "False" "True" .Values.workers.keepFailedWorkerPods)
    "in_cluster" "True"
  )
-}}
{{- if not (include "airflow.fab" .) -}}
{{- $_ := set $cfg.core "simple_auth_manager_users" (printf "%s:admin" .Values.auth.adminUser) -}}
{{- $_ := set $cfg.core "simple_auth_manager_passwords_file" "/opt/airflow/auth/passwords.json" -}}
{{- end -}}
{{- if .Values.logs.remote.enabled -}}
{{- $_ := set $cfg.logging "remote_base_log_folder" (printf "s3://%s/%s" (include "airflow.logsBucket" .) (.Values.logs.remote.prefix | trimAll "/") | trimSuffix "/") -}}
{{- $_ := set $cfg.logging "remote_log_conn_id" "mlp_s3" -}}
{{- end -}}
{{- if include "airflow.celery" . -}}
{{- $_ := set $cfg "celery" (dict "worker_concurrency" (.Values.celeryWorker.concurrency | toString)) -}}
{{- end -}}
{{- range $section, $options := .Values.config -}}
{{- $_ := set $cfg $section (merge (dict) $options (get $cfg $section | default dict)) -}}
{{- end -}}
{{- range $section := keys $cfg | sortAlpha }}
[{{ $section }}]
{{- range $key, $value := get $cfg $section }}
{{ $key }} = {{ $value }}
{{- end }}
{{ end -}}
{{- end -}}
