{{/*
Checksum of a Secret's rotation inputs, from (dict "ctx" . "name" <secret name> "namespace"
<optional>). Put on a pod template as `checksum/<what>`: when it changes, the pods restart and
read the Secret again. It covers, in this order:

* what the values say about the Secret: its name (switching `existingSecret` restarts the
  consumers), `global.secretRotation.epoch` (bump it to restart every consumer of every Secret)
  and `global.secretRotation.revisions.<secret name>` (bump it after rotating that Secret);
* the Secret's data as it exists in the cluster (`lookup`), which only `helm upgrade` sees.

Under Helm a rotated Secret therefore restarts its consumers at the next upgrade by itself. Argo
CD renders without cluster access (`lookup` is empty), so there the values are the only signal:
rotating a Secret goes with a commit bumping its revision (docs/kubernetes.md, "Rotating
secrets"). `helm template` gives the same value as Argo CD for the same values.
*/}}
{{- define "mlp.secretChecksum" -}}
{{- $ns := .namespace | default .ctx.Release.Namespace -}}
{{- $rotation := .ctx.Values.global.secretRotation | default dict -}}
{{- $revisions := $rotation.revisions | default dict -}}
{{- $found := lookup "v1" "Secret" $ns .name -}}
{{- $inputs := dict "name" .name "epoch" ($rotation.epoch | default "" | toString) "revision" (get $revisions .name | default "" | toString) "data" (get $found "data" | default dict) -}}
{{- $inputs | toJson | sha256sum -}}
{{- end -}}
