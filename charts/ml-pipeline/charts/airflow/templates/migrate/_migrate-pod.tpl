{{/*
The migration Job's pod template. It first waits, bounded, for the database (`airflow db check`
every 5 s for migrateDatabaseJob.waitForDatabaseSeconds), so a slow first PostgreSQL start does
not burn the Job's retries, and says which database it waited for; then `airflow db migrate`
(with the FAB auth manager, FAB's tables too), then, with FAB, the admin user from the Airflow
Secret if it does not exist yet.
*/}}
{{- define "airflow.migratePodTemplate" -}}
{{- $uid := int .Values.uid -}}
{{- $db := .Values.global.postgresql.databases.airflow -}}
{{- $wait := int .Values.migrateDatabaseJob.waitForDatabaseSeconds -}}
{{- $target := printf "%s:%v/%s" (include "mlp.postgresql.host" .) .Values.global.postgresql.port $db.database -}}
metadata:
  labels:
    {{- include "mlp.labels" (dict "ctx" . "name" "airflow" "component" "migrate") | nindent 4 }}
  {{- with .Values.migrateDatabaseJob.rerun }}
  annotations:
    ml-pipeline/rerun: {{ . | toString | quote }}
  {{- end }}
spec:
  restartPolicy: OnFailure
  serviceAccountName: {{ include "airflow.serviceAccountName" (dict "ctx" . "component" "migrate") }}
  automountServiceAccountToken: false
  {{- include "mlp.imagePullSecrets" . | nindent 2 }}
  securityContext:
    {{- include "mlp.podSecurityContext" (dict "uid" $uid "gid" (int .Values.gid)) | nindent 4 }}
  containers:
    - name: migrate
      image: {{ include "mlp.image" (dict "image" .Values.global.images.airflow "ctx" .) }}
      imagePullPolicy: {{ .Values.global.images.airflow.pullPolicy }}
      args:
        - bash
        - -c
        - |
          set -u
          deadline=$(( $(date +%s) + {{ $wait }} ))
          until airflow db check >/tmp/db-check.log 2>&1; do
            if [ "$(date +%s)" -ge "$deadline" ]; then
              echo "airflow-migrate: the database {{ $target }} did not answer within {{ $wait }} s (airflow.migrateDatabaseJob.waitForDatabaseSeconds); check global.postgresql.* and that PostgreSQL is running. Last error:" >&2
              tail -n 5 /tmp/db-check.log >&2
              exit 1
            fi
            echo "airflow-migrate: waiting for the database {{ $target }}"
            sleep 5
          done
          airflow db migrate
          {{- if include "airflow.fab" . }}
          if ! airflow users list --output plain 2>/dev/null | awk '{print $2}' | grep -qxF "$ADMIN_USER"; then
            airflow users create --role Admin --username "$ADMIN_USER" --password "$ADMIN_PASSWORD" \
              --firstname Admin --lastname Airflow --email "$ADMIN_USER@localhost.localdomain"
          fi
          {{- end }}
      securityContext:
        {{- include "mlp.containerSecurityContext" (dict "uid" $uid "gid" (int .Values.gid) "readOnlyRootFilesystem" true) | nindent 8 }}
      env:
        {{- include "airflow.env" . | nindent 8 }}
        {{- if include "airflow.fab" . }}
        - name: ADMIN_USER
          value: {{ .Values.auth.adminUser | quote }}
        - name: ADMIN_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ include "mlp.airflow.secretName" . }}
              key: admin-password
        {{- end }}
      envFrom:
        {{- include "airflow.envFrom" . | nindent 8 }}
      resources:
        {{- toYaml .Values.migrateDatabaseJob.resources | nindent 8 }}
      volumeMounts:
        {{- include "airflow.volumeMounts" . | nindent 8 }}
  volumes:
    {{- include "airflow.volumes" . | nindent 4 }}
  {{- include "airflow.scheduling" . | nindent 2 }}
{{- end -}}
