{{/*
An image reference from (dict "image" <map with repository, tag, digest> "ctx" .).
A digest (sha256:...) wins over the tag: `repo@sha256:...` is what a promotion pins.
global.imageRegistry, when set, prefixes repositories that name no registry of their own (no "."
or ":" in their first path segment, and not "localhost").
*/}}
{{- define "mlp.image" -}}
{{- $registry := .ctx.Values.global.imageRegistry -}}
{{- $repository := .image.repository -}}
{{- $first := first (splitList "/" $repository) -}}
{{- $hasRegistry := and (gt (len (splitList "/" $repository)) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- if and $registry (not $hasRegistry) -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets of every pod, from global.imagePullSecrets (a list of Secret names). */}}
{{- define "mlp.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}
