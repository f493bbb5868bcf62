{{/*
The KubernetesExecutor's worker pod template (one pod per task). The executor fills in the
command of the `base` container; the pipeline step's task then launches the step's own pod
(MLP_DAG_* settings) in the same namespace.
*/}}
{{- define "airflow.podTemplate" -}}
{{- $uid := int .Values.uid -}}
apiVersion: v1
kind: Pod
metadata:
  name: placeholder-name
  namespace: {{ include "mlp.pipeline.namespace" . }}
  labels:
    {{- include "mlp.labels" (dict "ctx" . "name" "airflow" "component" "worker") | nindent 4 }}
  {{- with .Values.workers.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "airflow.serviceAccountName" (dict "ctx" . "component" "worker") }}
  automountServiceAccountToken: true
  restartPolicy: Never
  terminationGracePeriodSeconds: {{ .Values.workers.terminationGracePeriodSeconds }}
  {{- include "mlp.imagePullSecrets" . | nindent 2 }}
  securityContext:
    {{- include "mlp.podSecurityContext" (dict "uid" $uid "gid" (int $.Values.gid)) | nindent 4 }}
  {{- if .Values.gitSync.enabled }}
  initContainers:
    {{- include "airflow.gitSync" (dict "ctx" . "init" true) | nindent 4 }}
  {{- end }}
  containers:
    - name: base
      image: {{ include "mlp.image" (dict "image" .Values.global.images.airflow "ctx" .) }}
      imagePullPolicy: {{ .Values.global.images.airflow.pullPolicy }}
      securityContext:
        {{- include "mlp.containerSecurityContext" (dict "uid" $uid "gid" (int $.Values.gid) "readOnlyRootFilesystem" true) | nindent 8 }}
      env:
        {{- include "airflow.workerEnv" . | nindent 8 }}
      envFrom:
        {{- include "airflow.envFrom" . | nindent 8 }}
      ports:
        - name: worker-logs
          containerPort: 8793
          protocol: TCP
      resources:
        {{- toYaml .Values.workers.resources | nindent 8 }}
      volumeMounts:
        {{- include "airflow.volumeMounts" . | nindent 8 }}
  volumes:
    {{- include "airflow.volumes" . | nindent 4 }}
  {{- with .Values.workers.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.workers.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
