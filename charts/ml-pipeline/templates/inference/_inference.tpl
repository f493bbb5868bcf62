{{/*
The inference server (templates/inference/, docs/kubernetes.md "Inference"): `pipeline serve` on
the pipeline image in the pipeline namespace, with the step pods' environment.
*/}}

{{/* Name of the Deployment, Service, PDB, HPA and NetworkPolicy. */}}
{{- define "mlp.inference.name" -}}
{{- include "mlp.name" (dict "ctx" . "component" "inference") -}}
{{- end -}}

{{/* Service account of the server pods. */}}
{{- define "mlp.inference.serviceAccountName" -}}
{{- .Values.inference.serviceAccount.name | default (include "mlp.inference.name" .) -}}
{{- end -}}

{{/*
The registered model served: inference.model.name, else pipeline.modelName, else the dataset
name (`data.name`) of pipeline.config, which is what the pipeline registers under
(PIPELINE_MODEL_NAME, else the dataset name). Empty when none is known (an existing ConfigMap
holds the config): check-values refuses that.
*/}}
{{- define "mlp.inference.modelName" -}}
{{- $name := .Values.inference.model.name | default .Values.pipeline.modelName -}}
{{- if and (not $name) (not .Values.global.pipeline.existingConfigMap) -}}
{{- $config := .Values.pipeline.config | fromYaml -}}
{{- $name = dig "data" "name" "" $config -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* `<name>@<alias>`, the argument of `pipeline serve`. */}}
{{- define "mlp.inference.modelRef" -}}
{{- printf "%s@%s" (include "mlp.inference.modelName" .) .Values.inference.model.alias -}}
{{- end -}}

{{/* Replicas that run at the least: the autoscaler's minimum, or `replicas`. */}}
{{- define "mlp.inference.minReplicas" -}}
{{- if .Values.inference.autoscaling.enabled -}}
{{- .Values.inference.autoscaling.minReplicas -}}
{{- else -}}
{{- .Values.inference.replicas -}}
{{- end -}}
{{- end -}}

{{/*
envFrom of the server: exactly the step pods' (MLP_DAG_ENV_CONFIGMAPS, MLP_DAG_ENV_SECRETS): the
`<release>-pipeline-env` ConfigMap (tracking URI and service addresses, fully qualified), the
pipeline Secret (S3 keys, feature-store password, MLflow user) and airflow.dag's extra ones.
*/}}
{{- define "mlp.inference.envFrom" -}}
{{- $dag := dig "dag" dict (.Values.airflow | default dict) -}}
- configMapRef:
    name: {{ include "mlp.pipeline.envConfigMapName" . }}
{{- range ($dag.extraEnvConfigMaps | default list) }}
- configMapRef:
    name: {{ . }}
{{- end }}
- secretRef:
    name: {{ include "mlp.pipeline.secretName" . }}
{{- range ($dag.extraEnvSecrets | default list) }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end -}}

{{/*
One input row for the NOTES.txt curl example, as JSON: each feature column of pipeline.config
(not the target, not ignored) with its first allowed category or its minimum. A placeholder
when the config lives in an existing ConfigMap.
*/}}
{{- define "mlp.inference.exampleRecord" -}}
{{- $row := dict -}}
{{- if not .Values.global.pipeline.existingConfigMap -}}
{{- $data := dig "data" dict (.Values.pipeline.config | fromYaml) -}}
{{- $target := $data.target | default "" -}}
{{- range $name, $column := ($data.columns | default dict) -}}
{{- $role := $column.role | default "feature" -}}
{{- if and (ne $name $target) (not (has $role (list "target" "ignore"))) -}}
{{- if $column.allowed -}}
{{- $_ := set $row $name (first $column.allowed) -}}
{{- else if eq ($column.type | default "") "category" -}}
{{- $_ := set $row $name "a" -}}
{{- else -}}
{{- $_ := set $row $name ($column.min | default 0) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $row -}}
{{- toJson $row -}}
{{- else -}}
{"<column>": "<value>"}
{{- end -}}
{{- end -}}
