{{/*
Service account of one Airflow identity: (dict "ctx" . "component" NAME), NAME one of api-server,
scheduler, dag-processor, triggerer, worker (the KubernetesExecutor's worker pods and the Celery
workers: they start the step pods), migrate. `<release>-airflow-<NAME>` unless
serviceAccount.names.<NAME> replaces it. What each may do: docs/kubernetes.md, "Service accounts".
*/}}
{{- define "airflow.serviceAccountName" -}}
{{- get (.ctx.Values.serviceAccount.names | default dict) .component | default (include "mlp.name" (dict "ctx" .ctx "component" (printf "airflow-%s" .component))) -}}
{{- end -}}

{{/* The service accounts the chart creates, with the namespaces each lives in (a JSON dict NAME -> list). */}}
{{- define "airflow.serviceAccounts" -}}
{{- $release := .Release.Namespace -}}
{{- $steps := include "mlp.pipeline.namespace" . -}}
{{- $workerNamespaces := list $steps -}}
{{- if include "airflow.celery" . -}}
{{- $workerNamespaces = list $release $steps | uniq -}}
{{- end -}}
{{- dict "api-server" (list $release) "scheduler" (list $release) "dag-processor" (list $release) "triggerer" (list $release) "migrate" (list $release) "worker" $workerNamespaces | toJson -}}
{{- end -}}

{{/* Name of the ConfigMap with airflow.cfg and the worker pod template. */}}
{{- define "airflow.configMapName" -}}
{{- include "mlp.name" (dict "ctx" . "component" "airflow-config") -}}
{{- end -}}

{{/* True when a Celery executor is part of the executor setting. */}}
{{- define "airflow.celery" -}}
{{- if contains "CeleryExecutor" .Values.executor }}true{{ end -}}
{{- end -}}

{{/* True when the auth manager is FAB's (users in the metadata database; the migration Job creates the admin). */}}
{{- define "airflow.fab" -}}
{{- if contains "FabAuthManager" .Values.auth.manager }}true{{ end -}}
{{- end -}}

{{/* The folder DAGs are read from: baked into the image, or git-sync's checkout. */}}
{{- define "airflow.dagsFolder" -}}
{{- if .Values.gitSync.enabled -}}
{{- printf "/opt/airflow/git-dags/repo/%s" (.Values.gitSync.subPath | trimPrefix "/") | trimSuffix "/" -}}
{{- else -}}
{{- .Values.dagsFolder -}}
{{- end -}}
{{- end -}}

{{/*
Environment of the Airflow components (scheduler, api-server, dag-processor, triggerer, Celery
workers, migration Job): the database URL assembled from the role password (Kubernetes expands
$(VAR) references), and the keys from the Airflow Secret. Worker pods get the smaller
`airflow.workerEnv`: in Airflow 3 a task talks to the Execution API, never to the database.
*/}}
{{- define "airflow.env" -}}
{{- $db := .Values.global.postgresql.databases.airflow -}}
{{- $secret := include "mlp.airflow.secretName" . -}}
{{- include "airflow.baseEnv" . }}
- name: AIRFLOW_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mlp.postgresql.secretName" . }}
      key: airflow-password
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  value: {{ printf "postgresql+psycopg2://%s:$(AIRFLOW_DB_PASSWORD)@%s:%v/%s" $db.username (include "mlp.postgresql.host" .) .Values.global.postgresql.port $db.database | quote }}
- name: AIRFLOW__CORE__FERNET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: fernet-key
- name: AIRFLOW__API_AUTH__JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: jwt-secret
{{- if include "airflow.celery" . }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mlp.redis.secretName" . }}
      key: password
- name: AIRFLOW__CELERY__BROKER_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:%v/0" (include "mlp.redis.host" .) .Values.global.redis.port | quote }}
- name: AIRFLOW__CELERY__RESULT_BACKEND
  value: {{ printf "db+postgresql://%s:$(AIRFLOW_DB_PASSWORD)@%s:%v/%s" $db.username (include "mlp.postgresql.host" .) .Values.global.postgresql.port $db.database | quote }}
{{- end }}
{{- end -}}

{{/* Environment every Airflow container shares, worker pods included (no database, no Fernet or JWT key). */}}
{{- define "airflow.baseEnv" -}}
- name: AIRFLOW_HOME
  value: {{ .Values.home | quote }}
- name: AIRFLOW_CONFIG
  value: /opt/airflow/config/airflow.cfg
- name: AIRFLOW__API__SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "mlp.airflow.secretName" . }}
      key: api-secret-key
- name: PYTHONUNBUFFERED
  value: "1"
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- with .Values.dag.alerts.webhookSecret }}
- name: MLP_ALERT_WEBHOOK_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.dag.alerts.webhookSecretKey }}
      optional: true
{{- end }}
{{- include "airflow.remoteLogEnv" . }}
- name: AIRFLOW_CONN_KUBERNETES_DEFAULT
  value: {{ include "airflow.kubernetesConnection" . | quote }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Worker pods: the base environment (remote logging included: a worker uploads its task's log, step output included, when the task ends). */}}
{{- define "airflow.workerEnv" -}}
{{- include "airflow.baseEnv" . }}
{{- end -}}

{{/* Bucket of the remote task logs: global.s3.airflowLogsBucket (default `airflow-logs`, created by the bucket Job of the bundled MinIO). */}}
{{- define "airflow.logsBucket" -}}
{{- .Values.global.s3.airflowLogsBucket | default "airflow-logs" -}}
{{- end -}}

{{/*
Remote task logging: the `mlp_s3` connection (conn type aws), as JSON in the environment, with the
keys of the object-store user limited to the logs bucket (`<release>-s3-airflow-logs`, or
global.s3.clientSecrets.airflow-logs / global.s3.existingSecret with external S3); Kubernetes
expands the $(VAR) references. Every Airflow container gets it: workers write the logs, the
api-server reads them, the other components write their own task-related logs.
*/}}
{{- define "airflow.remoteLogEnv" -}}
{{- if .Values.logs.remote.enabled }}
{{- $secret := include "mlp.s3.clientSecretName" (dict "ctx" . "client" "airflow-logs") }}
- name: LOGS_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: access-key-id
- name: LOGS_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: secret-access-key
{{- $conn := dict "conn_type" "aws" "login" "$(LOGS_S3_ACCESS_KEY_ID)" "password" "$(LOGS_S3_SECRET_ACCESS_KEY)" "extra" (dict "endpoint_url" (include "mlp.s3.endpoint" .) "region_name" .Values.global.s3.region) }}
- name: AIRFLOW_CONN_MLP_S3
  value: {{ $conn | toJson | quote }}
{{- end }}
{{- end -}}

{{/*
The `kubernetes_default` connection the KubernetesPodOperator reads (in-cluster), carrying the
image of the step pods' XCom sidecar (`xcom_sidecar_container_image`, the provider's own setting):
dag.xcomSidecarImage, or by default the pipeline image itself (already on the node, pinned like it,
never the provider's unpinned `alpine` from Docker Hub).
*/}}
{{- define "airflow.kubernetesConnection" -}}
{{- $image := include "mlp.image" (dict "image" .Values.global.images.pipeline "ctx" .) -}}
{{- if .Values.dag.xcomSidecarImage.repository -}}
{{- $image = include "mlp.image" (dict "image" .Values.dag.xcomSidecarImage "ctx" .) -}}
{{- end -}}
{{- dict "conn_type" "kubernetes" "extra" (dict "in_cluster" true "xcom_sidecar_container_image" $image) | toJson -}}
{{- end -}}

{{/* envFrom of every Airflow container: the DAG's MLP_DAG_* settings. */}}
{{- define "airflow.envFrom" -}}
- configMapRef:
    name: {{ include "mlp.airflow.dagSettingsConfigMapName" . }}
{{- end -}}

{{/* Volumes of every Airflow pod: airflow.cfg (read-only), and writable logs and /tmp. */}}
{{- define "airflow.volumes" -}}
- name: config
  configMap:
    name: {{ include "airflow.configMapName" . }}
- name: logs
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if .Values.gitSync.enabled }}
- name: dags
  emptyDir: {}
{{- end }}
{{- end -}}

{{- define "airflow.volumeMounts" -}}
- name: config
  mountPath: /opt/airflow/config
  readOnly: true
- name: logs
  mountPath: {{ printf "%s/logs" .Values.home }}
- name: tmp
  mountPath: /tmp
{{- if .Values.gitSync.enabled }}
- name: dags
  mountPath: /opt/airflow/git-dags
  readOnly: true
{{- end }}
{{- end -}}

{{/* Annotations restarting a component when its configuration or a Secret it reads changes. */}}
{{- define "airflow.checksums" -}}
checksum/airflow-config: {{ include (print .Template.BasePath "/config/airflow-configmap.yaml") . | sha256sum }}
checksum/dag-settings: {{ include (print .Template.BasePath "/config/dag-settings-configmap.yaml") . | sha256sum }}
checksum/airflow-secrets: {{ include "mlp.secretChecksum" (dict "ctx" . "name" (include "mlp.airflow.secretName" .)) }}
checksum/db-auth: {{ include "mlp.secretChecksum" (dict "ctx" . "name" (include "mlp.postgresql.secretName" .)) }}
{{- if .Values.logs.remote.enabled }}
checksum/s3-airflow-logs: {{ include "mlp.secretChecksum" (dict "ctx" . "name" (include "mlp.s3.clientSecretName" (dict "ctx" . "client" "airflow-logs"))) }}
{{- end }}
{{- if include "airflow.celery" . }}
checksum/redis-auth: {{ include "mlp.secretChecksum" (dict "ctx" . "name" (include "mlp.redis.secretName" .)) }}
{{- end }}
{{- end -}}

{{/* Init container: wait until `airflow db migrate` (the migration Job) has brought the schema up to date. */}}
{{- define "airflow.waitForMigrations" -}}
- name: wait-for-migrations
  image: {{ include "mlp.image" (dict "image" .Values.global.images.airflow "ctx" .) }}
  imagePullPolicy: {{ .Values.global.images.airflow.pullPolicy }}
  args: [airflow, db, check-migrations, --migration-wait-timeout=600]
  securityContext:
    {{- include "mlp.containerSecurityContext" (dict "uid" (int .Values.uid) "gid" (int .Values.gid) "readOnlyRootFilesystem" true) | nindent 4 }}
  env:
    {{- include "airflow.env" . | nindent 4 }}
  envFrom:
    {{- include "airflow.envFrom" . | nindent 4 }}
  resources:
    {{- toYaml .Values.migrateDatabaseJob.resources | nindent 4 }}
  volumeMounts:
    {{- include "airflow.volumeMounts" . | nindent 4 }}
{{- end -}}

{{/* The git-sync container: a sidecar (the DAG processor) or, with "init" true, a one-shot init container (worker pods). */}}
{{- define "airflow.gitSync" -}}
- name: {{ ternary "git-sync-init" "git-sync" (.init | default false) }}
  image: {{ include "mlp.image" (dict "image" .ctx.Values.gitSync.image "ctx" .ctx) }}
  imagePullPolicy: {{ .ctx.Values.gitSync.image.pullPolicy }}
  securityContext:
    {{- include "mlp.containerSecurityContext" (dict "uid" (int .ctx.Values.uid) "gid" (int .ctx.Values.gid) "readOnlyRootFilesystem" true) | nindent 4 }}
  env:
    - name: GITSYNC_REPO
      value: {{ .ctx.Values.gitSync.repo | quote }}
    - name: GITSYNC_REF
      value: {{ .ctx.Values.gitSync.ref | quote }}
    - name: GITSYNC_ROOT
      value: /git
    - name: GITSYNC_LINK
      value: repo
    - name: GITSYNC_PERIOD
      value: {{ .ctx.Values.gitSync.period | quote }}
    - name: GITSYNC_ONE_TIME
      value: {{ ternary "true" "false" (.init | default false) | quote }}
    - name: GITSYNC_HTTP_BIND
      value: ":8080"
  {{- with .ctx.Values.gitSync.credentialsSecret }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  {{- if not .init }}
  ports:
    - name: git-sync
      containerPort: 8080
      protocol: TCP
  readinessProbe:
    httpGet:
      path: /
      port: git-sync
    periodSeconds: 30
    timeoutSeconds: 5
  livenessProbe:
    httpGet:
      path: /
      port: git-sync
    initialDelaySeconds: 60
    periodSeconds: 60
    timeoutSeconds: 5
    failureThreshold: 5
  {{- end }}
  resources:
    {{- toYaml .ctx.Values.gitSync.resources | nindent 4 }}
  volumeMounts:
    - name: dags
      mountPath: /git
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/* Scheduling of the component pods. */}}
{{- define "airflow.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
