{{/*
Refuses a change of the data volume that a StatefulSet cannot make: its volumeClaimTemplates
(size, storage class, access modes) are immutable after install, and the API server would refuse
the whole upgrade with a bare "spec: Forbidden". Called with (dict "ctx" $ "live" <the live
StatefulSet, from lookup; empty on install and under `helm template`/Argo CD>): renders nothing,
or fails naming the value and the manual resize route (docs/kubernetes.md, "Resizing the
PostgreSQL volume").
*/}}
{{- define "postgresql.checkVolumeUnchanged" -}}
{{- $p := .ctx.Values.persistence -}}
{{- range $claim := (dig "spec" "volumeClaimTemplates" list .live) -}}
{{- if eq (dig "metadata" "name" "" $claim) "data" -}}
{{- $size := dig "spec" "resources" "requests" "storage" "" $claim | toString -}}
{{- if and $size (ne $size ($p.size | toString)) -}}
{{- fail (printf "postgresql.persistence.size=%s but the running StatefulSet's volume was created with %s, and a StatefulSet's volumeClaimTemplates cannot change. Keep postgresql.persistence.size=%s, or resize by hand: expand the PVC (kubectl patch pvc data-<release>-postgresql-0 with the new size; the storage class needs allowVolumeExpansion), delete the StatefulSet with --cascade=orphan, then upgrade with the new size (docs/kubernetes.md, \"Resizing the PostgreSQL volume\")." $p.size $size $size) -}}
{{- end -}}
{{- $class := dig "spec" "storageClassName" "" $claim | toString -}}
{{- if and $p.storageClass $class (ne $class ($p.storageClass | toString)) -}}
{{- fail (printf "postgresql.persistence.storageClass=%s but the running StatefulSet's volume uses %s, which cannot change after install: keep postgresql.persistence.storageClass=%s (moving storage classes is a backup and restore)." $p.storageClass $class $class) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
