{{/*
A generated secret value that stays stable: the value already in the cluster (Secret `name`,
key `key`, read with `lookup`) wins; otherwise one random value is drawn per render and
memoised, so every object of this chart that needs it (e.g. the S3 key in both the S3 and the
pipeline Secret) gets the same one. Call with
(dict "ctx" $ "secret" <name> "key" <key> "length" <n> "kind" <"alnum"|"fernet">).
*/}}
{{- define "mlp.generatedValue" -}}
{{- $ctx := .ctx -}}
{{- if not (hasKey $ctx.Values.secrets "_generated") -}}
{{- $_ := set $ctx.Values.secrets "_generated" dict -}}
{{- end -}}
{{- $cache := $ctx.Values.secrets._generated -}}
{{- $memoKey := printf "%s/%s" .secret .key -}}
{{- if not (hasKey $cache $memoKey) -}}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace .secret -}}
{{- $data := get $existing "data" | default dict -}}
{{- if hasKey $data .key -}}
{{- $_ := set $cache $memoKey (get $data .key | b64dec) -}}
{{- else if eq (.kind | default "alnum") "fernet" -}}
{{- $_ := set $cache $memoKey (randAlphaNum 32 | b64enc) -}}
{{- else -}}
{{- $_ := set $cache $memoKey (randAlphaNum (.length | default 24 | int)) -}}
{{- end -}}
{{- end -}}
{{- get $cache $memoKey -}}
{{- end -}}

{{/* Annotations of a generated Secret. */}}
{{- define "mlp.generatedSecretAnnotations" -}}
{{- if .Values.secrets.keepOnUninstall }}
helm.sh/resource-policy: keep
{{- end }}
ml-pipeline/generated: "true"
{{- end -}}

{{/* The release's S3 bucket URL with a prefix: (dict "ctx" $ "prefix" "artifacts"). */}}
{{- define "mlp.s3.url" -}}
{{- printf "s3://%s/%s" .ctx.Values.global.s3.bucket .prefix -}}
{{- end -}}
