{{/*
The S3 policy of each client of the bundled MinIO, as JSON: {"pipeline": {...}, "mlflow": {...},
"airflow-logs": {...}}. Least privilege: bucket-level listing of its own bucket, object access
to its own prefixes only. Tests evaluate these documents (tests/charts/test_minio.py).

* pipeline: read/write/delete under `bucketJob.pipelinePrefixes` of the main bucket (artifact
  root, DVC remote); read-only under `mlflow/_doctor/` (the doctor finds its probe, uploaded
  through MLflow's proxy, where MLflow stores artifacts). Never the rest of `mlflow/`: model
  artifacts reach the pipeline through MLflow only.
* mlflow: read/write/delete under `mlflow/` of the main bucket (the server proxies every
  artifact, `--serve-artifacts`: clients never touch S3 for MLflow's artifacts).
* airflow-logs: read/write/delete in the logs bucket only.
*/}}
{{- define "minio.clientPolicies" -}}
{{- $bucket := .Values.global.s3.bucket -}}
{{- $logs := .Values.global.s3.airflowLogsBucket -}}
{{- $objectRW := list "s3:GetObject" "s3:PutObject" "s3:DeleteObject" "s3:AbortMultipartUpload" "s3:ListMultipartUploadParts" -}}
{{- $bucketRead := list "s3:GetBucketLocation" "s3:ListBucket" "s3:ListBucketMultipartUploads" -}}
{{- $pipelineObjects := list -}}
{{- range .Values.bucketJob.pipelinePrefixes -}}
{{- $pipelineObjects = append $pipelineObjects (printf "arn:aws:s3:::%s/%s/*" $bucket (trimAll "/" .)) -}}
{{- end -}}
{{- $pipeline := dict "Version" "2012-10-17" "Statement" (list
  (dict "Effect" "Allow" "Action" $bucketRead "Resource" (list (printf "arn:aws:s3:::%s" $bucket)))
  (dict "Effect" "Allow" "Action" $objectRW "Resource" $pipelineObjects)
  (dict "Effect" "Allow" "Action" (list "s3:GetObject") "Resource" (list (printf "arn:aws:s3:::%s/mlflow/_doctor/*" $bucket)))
) -}}
{{- $mlflow := dict "Version" "2012-10-17" "Statement" (list
  (dict "Effect" "Allow" "Action" $bucketRead "Resource" (list (printf "arn:aws:s3:::%s" $bucket)))
  (dict "Effect" "Allow" "Action" $objectRW "Resource" (list (printf "arn:aws:s3:::%s/mlflow/*" $bucket)))
) -}}
{{- $airflowLogs := dict "Version" "2012-10-17" "Statement" (list
  (dict "Effect" "Allow" "Action" $bucketRead "Resource" (list (printf "arn:aws:s3:::%s" $logs)))
  (dict "Effect" "Allow" "Action" $objectRW "Resource" (list (printf "arn:aws:s3:::%s/*" $logs)))
) -}}
{{- dict "pipeline" $pipeline "mlflow" $mlflow "airflow-logs" $airflowLogs | toJson -}}
{{- end -}}
