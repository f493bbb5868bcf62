{{/* The TrainingRuntime a run's TrainJob names (scripts/trainjob --runtime). */}}
{{- define "mlp.trainJob.runtimeName" -}}
{{- printf "%s-train" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels of a TrainJob's pods: the step pods' (the step NetworkPolicy selects them by
app.kubernetes.io/name and component, as it selects the DAG's step pods), the step, and the
launcher, which the ranks' own NetworkPolicy selects.
*/}}
{{- define "mlp.trainJob.podLabels" -}}
app.kubernetes.io/name: ml-pipeline
app.kubernetes.io/component: pipeline-step
app.kubernetes.io/instance: {{ .Release.Name }}
ml-pipeline/step: train
ml-pipeline/launcher: trainjob
{{- end -}}
