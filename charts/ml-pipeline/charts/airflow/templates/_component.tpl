{{/*
A Deployment of one Airflow component, from (dict "ctx" . "component" <name> "values" <its values>
"args" <list> "probe" <probe map> "ports" <list> "sidecars" <string> "initContainers" <string>
"volumes" <string> "mounts" <string> "kubeApi" <bool> "serviceAccount" <identity, default the component>).
Every component waits for the database migration, runs as the image's non-root user on a
read-only root filesystem, and restarts when airflow.cfg, the DAG settings or a Secret changes.
*/}}
{{- define "airflow.componentDeployment" -}}
{{- $ := .ctx -}}
{{- $uid := int $.Values.uid -}}
{{- $labelArgs := dict "ctx" $ "name" "airflow" "component" .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "mlp.name" (dict "ctx" $ "component" (printf "airflow-%s" .component)) }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "mlp.labels" $labelArgs | nindent 4 }}
spec:
  replicas: {{ .values.replicas }}
  selector:
    matchLabels:
      {{- include "mlp.selectorLabels" $labelArgs | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "mlp.labels" $labelArgs | nindent 8 }}
      annotations:
        {{- include "airflow.checksums" $ | nindent 8 }}
    spec:
      serviceAccountName: {{ include "airflow.serviceAccountName" (dict "ctx" $ "component" (.serviceAccount | default .component)) }}
      automountServiceAccountToken: {{ .kubeApi | default false }}
      terminationGracePeriodSeconds: 60
      {{- include "mlp.imagePullSecrets" $ | nindent 6 }}
      securityContext:
        {{- include "mlp.podSecurityContext" (dict "uid" $uid "gid" (int $.Values.gid)) | nindent 8 }}
      initContainers:
        {{- include "airflow.waitForMigrations" $ | nindent 8 }}
        {{- with .initContainers }}
        {{- . | nindent 8 }}
        {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "mlp.image" (dict "image" $.Values.global.images.airflow "ctx" $) }}
          imagePullPolicy: {{ $.Values.global.images.airflow.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          securityContext:
            {{- include "mlp.containerSecurityContext" (dict "uid" $uid "gid" (int $.Values.gid) "readOnlyRootFilesystem" true) | nindent 12 }}
          env:
            {{- include "airflow.env" $ | nindent 12 }}
          envFrom:
            {{- include "airflow.envFrom" $ | nindent 12 }}
          {{- with .ports }}
          ports:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          readinessProbe:
            {{- toYaml .probe.readiness | nindent 12 }}
          livenessProbe:
            {{- toYaml .probe.liveness | nindent 12 }}
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          volumeMounts:
            {{- include "airflow.volumeMounts" $ | nindent 12 }}
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
        {{- with .sidecars }}
        {{- . | nindent 8 }}
        {{- end }}
      volumes:
        {{- include "airflow.volumes" $ | nindent 8 }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- include "airflow.scheduling" $ | nindent 6 }}
{{- end -}}

{{/* PodDisruptionBudget of a component with more than one replica: (dict "ctx" . "component" <name> "values" <its values>). */}}
{{- define "airflow.componentPdb" -}}
{{- if gt (int .values.replicas) 1 }}
{{- $labelArgs := dict "ctx" .ctx "name" "airflow" "component" .component }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "mlp.name" (dict "ctx" .ctx "component" (printf "airflow-%s" .component)) }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "mlp.labels" $labelArgs | nindent 4 }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "mlp.selectorLabels" $labelArgs | nindent 6 }}
{{- end }}
{{- end -}}

{{/* An exec probe running an `airflow jobs check` (DAG processor, triggerer): a Python start-up each time, so infrequent. */}}
{{- define "airflow.jobCheckProbe" -}}
readiness:
  exec:
    command: [airflow, jobs, check, --job-type, {{ . }}, --local]
  initialDelaySeconds: 30
  periodSeconds: 60
  timeoutSeconds: 45
  failureThreshold: 3
liveness:
  exec:
    command: [airflow, jobs, check, --job-type, {{ . }}, --local]
  initialDelaySeconds: 120
  periodSeconds: 120
  timeoutSeconds: 45
  failureThreshold: 5
{{- end -}}
