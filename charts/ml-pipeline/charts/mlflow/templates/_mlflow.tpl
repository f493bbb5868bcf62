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

{{/* Host headers the server accepts: its Service under every in-cluster spelling (global.clusterDomain included), localhost (port-forward) and the extras. */}}
{{- define "mlflow.allowedHosts" -}}
{{- $port := .Values.service.port -}}
{{- $hosts := include "mlp.serviceHostNames" (dict "ctx" . "component" "mlflow" "port" $port) | fromJsonArray -}}
{{- range $name := list "localhost" "127.0.0.1" -}}
{{- $hosts = append $hosts $name -}}
{{- $hosts = append $hosts (printf "%s:%v" $name $port) -}}
{{- end -}}
{{- concat $hosts .Values.allowedHosts | uniq | join "," -}}
{{- end -}}

{{/*
The Secret of MLflow's basic-auth users (keys admin-password, pipeline-password, flask-secret-key),
from the mlflow subchart's or the umbrella's context.
*/}}
{{- define "mlflow.auth.secretName" -}}
{{- $auth := dict -}}
{{- if eq .Chart.Name "mlflow" -}}
{{- $auth = .Values.auth -}}
{{- else -}}
{{- $auth = dig "auth" dict (.Values.mlflow | default dict) -}}
{{- end -}}
{{- $auth.existingSecret | default (include "mlp.name" (dict "ctx" . "component" "mlflow-auth")) -}}
{{- end -}}

{{/* ConfigMap with the basic-auth app's ini file. */}}
{{- define "mlflow.auth.configMapName" -}}
{{- include "mlp.name" (dict "ctx" . "component" "mlflow-auth") -}}
{{- end -}}

{{/*
An init container waiting (bounded) for PostgreSQL to accept connections, with a message naming
the host when it gives up, instead of a crash loop or a migration Job exhausting its backoff.
*/}}
{{- define "mlflow.waitForDatabase" -}}
{{- $uid := int .Values.uid -}}
- name: wait-for-postgresql
  image: {{ include "mlp.image" (dict "image" .Values.global.images.mlflow "ctx" .) }}
  imagePullPolicy: {{ .Values.global.images.mlflow.pullPolicy }}
  args:
    - python
    - -c
    - |
      import os, sys, time
      import psycopg2
      dsn, timeout = os.environ["WAIT_DSN"], int(os.environ["WAIT_S"])
      where = dsn.rsplit("@", 1)[-1]
      deadline, error = time.monotonic() + timeout, None
      while time.monotonic() < deadline:
          try:
              psycopg2.connect(dsn, connect_timeout=5).close()
              print(f"PostgreSQL at {where} accepts connections")
              sys.exit(0)
          except psycopg2.OperationalError as exc:
              error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
              print(f"waiting for PostgreSQL at {where}: {error}", flush=True)
              time.sleep(3)
      print(f"PostgreSQL at {where} did not accept connections within {timeout} s ({error}): "
            "check the PostgreSQL pod (kubectl get pods), or global.postgresql.host and "
            "global.postgresql.existingSecret for an external server", file=sys.stderr)
      sys.exit(1)
  env:
    # The password comes from PGPASSWORD (libpq), never in the DSN printed in messages.
    - name: WAIT_DSN
      value: {{ printf "postgresql://%s@%s:%v/%s" .Values.global.postgresql.databases.mlflow.username (include "mlp.postgresql.host" .) .Values.global.postgresql.port .Values.global.postgresql.databases.mlflow.database | quote }}
    - name: PGPASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ include "mlp.postgresql.secretName" . }}
          key: mlflow-password
    - name: WAIT_S
      value: {{ .Values.waitForDatabase.timeoutSeconds | quote }}
    - name: PYTHONDONTWRITEBYTECODE
      value: "1"
  securityContext:
    {{- include "mlp.containerSecurityContext" (dict "uid" $uid "readOnlyRootFilesystem" true) | nindent 4 }}
  resources:
    requests:
      cpu: 10m
      memory: 64Mi
    limits:
      cpu: 200m
      memory: 128Mi
{{- end -}}

{{/* The basic-auth app's ini file (no secret in it). */}}
{{- define "mlflow.auth.ini" -}}
{{- $db := .Values.global.postgresql.databases.mlflow -}}
[mlflow]
default_permission = {{ .Values.auth.defaultPermission }}
database_uri = {{ printf "postgresql+psycopg2://%s@%s:%v/%s" $db.username (include "mlp.postgresql.host" .) .Values.global.postgresql.port $db.database }}
admin_username = {{ .Values.auth.adminUsername }}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
{{- end -}}

{{/* The migration Job's spec (its hash names the Job when it is not a Helm hook). */}}
{{- define "mlflow.migrateJob.spec" -}}
{{- $uid := int .Values.uid -}}
backoffLimit: 6
activeDeadlineSeconds: {{ .Values.migrateJob.activeDeadlineSeconds }}
template:
  metadata:
    labels:
      {{- include "mlp.labels" (dict "ctx" . "name" "mlflow" "component" "migrate") | nindent 6 }}
  spec:
    restartPolicy: OnFailure
    automountServiceAccountToken: false
    {{- include "mlp.imagePullSecrets" . | nindent 4 }}
    securityContext:
      {{- include "mlp.podSecurityContext" (dict "uid" $uid) | nindent 6 }}
    initContainers:
      {{- include "mlflow.waitForDatabase" . | nindent 6 }}
    containers:
      - name: migrate
        image: {{ include "mlp.image" (dict "image" .Values.global.images.mlflow "ctx" .) }}
        imagePullPolicy: {{ .Values.global.images.mlflow.pullPolicy }}
        args: [mlflow, db, upgrade, $(MLFLOW_BACKEND_STORE_URI)]
        securityContext:
          {{- include "mlp.containerSecurityContext" (dict "uid" $uid "readOnlyRootFilesystem" true) | nindent 10 }}
        env:
          {{- include "mlflow.dbEnv" . | nindent 10 }}
        resources:
          {{- toYaml .Values.migrateJob.resources | nindent 10 }}
        volumeMounts:
          - name: tmp
            mountPath: /tmp
    volumes:
      - name: tmp
        emptyDir: {}
    {{- with .Values.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end -}}
