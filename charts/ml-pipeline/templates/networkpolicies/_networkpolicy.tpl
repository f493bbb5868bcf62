{{/*
Building blocks of the NetworkPolicies (docs/kubernetes.md, "NetworkPolicies"). Every peer names
its namespace (the kubernetes.io/metadata.name label every namespace carries), so the same
policies work whether the pipeline namespace is the release's or another one. What they allow is
evaluated over the rendered objects by tests/charts/test_network_policies.py (evaluator:
tests/charts/netpol.py).
*/}}

{{/* The namespaces of the release's pods: the release's and the pipeline's (once when equal). */}}
{{- define "mlp.np.namespaces" -}}
{{- list .Release.Namespace (include "mlp.pipeline.namespace" .) | uniq | toJson -}}
{{- end -}}

{{/* A NetworkPolicy peer: (dict "namespace" <ns> "selector" <LabelSelector map>). */}}
{{- define "mlp.np.peer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace }}
  podSelector:
    {{- toYaml .selector | nindent 4 }}
{{- end -}}

{{/* LabelSelector of one component of the release: (dict "ctx" $ "name" <app> ["component" <component>]). */}}
{{- define "mlp.np.selector" -}}
matchLabels:
  app.kubernetes.io/name: {{ .name }}
  app.kubernetes.io/instance: {{ .ctx.Release.Name }}
  {{- with .component }}
  app.kubernetes.io/component: {{ . }}
  {{- end }}
{{- end -}}

{{/* Every pod the chart itself renders (Deployments, StatefulSets, Jobs, the worker pod template): they carry the release's instance label. */}}
{{- define "mlp.np.releaseSelector" -}}
matchLabels:
  app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Airflow's long-running components and Jobs (release namespace), without the executor's worker
pods, which carry the same name label but run tasks (pipeline namespace).
*/}}
{{- define "mlp.np.airflowComponentsSelector" -}}
matchLabels:
  app.kubernetes.io/name: airflow
  app.kubernetes.io/instance: {{ .Release.Name }}
matchExpressions:
  - {key: app.kubernetes.io/component, operator: NotIn, values: [worker]}
{{- end -}}

{{/* Airflow's pods that call the Kubernetes API: they start, watch and read the logs of worker and step pods. */}}
{{- define "mlp.np.kubeApiClientsSelector" -}}
matchLabels:
  app.kubernetes.io/name: airflow
  app.kubernetes.io/instance: {{ .Release.Name }}
matchExpressions:
  - {key: app.kubernetes.io/component, operator: In, values: [scheduler, triggerer, api-server, worker, celery-worker]}
{{- end -}}

{{/*
The pipeline's pods in the pipeline namespace, as a JSON list of (name, selector): the DAG's
step pods (labels set by dags/ml_pipeline_support/tasks.py), the `helm test` doctor pod, and,
when steps run inside the worker (airflow.dag.taskRunner=local), the executor's worker pods.
*/}}
{{- define "mlp.np.pipelinePods" -}}
{{- $pods := list
  (dict "name" "pipeline-steps" "selector" (dict "matchLabels" (dict "app.kubernetes.io/name" "ml-pipeline" "app.kubernetes.io/component" "pipeline-step")))
  (dict "name" "pipeline-doctor" "selector" (include "mlp.np.selector" (dict "ctx" . "name" "pipeline" "component" "doctor") | fromYaml)) -}}
{{- if and .Values.airflow.enabled (eq .Values.airflow.dag.taskRunner "local") -}}
{{- $pods = append $pods (dict "name" "pipeline-local-workers" "selector" (include "mlp.np.selector" (dict "ctx" . "name" "airflow" "component" "worker") | fromYaml)) -}}
{{- end -}}
{{- toJson $pods -}}
{{- end -}}

{{/* Peers: every pipeline pod (see mlp.np.pipelinePods). */}}
{{- define "mlp.np.pipelinePeers" -}}
{{- $namespace := include "mlp.pipeline.namespace" . -}}
{{- range (include "mlp.np.pipelinePods" . | fromJsonArray) }}
{{ include "mlp.np.peer" (dict "namespace" $namespace "selector" .selector) }}
{{- end }}
{{- end -}}

{{/* LabelSelector of the inference server's pods (templates/inference/). */}}
{{- define "mlp.np.inferenceSelector" -}}
{{- include "mlp.np.selector" (dict "ctx" . "name" "pipeline" "component" "inference") -}}
{{- end -}}

{{/* Peers: the inference server's pods (pipeline namespace), when inference.enabled; empty otherwise. */}}
{{- define "mlp.np.inferencePeers" -}}
{{- if .Values.inference.enabled }}
{{ include "mlp.np.peer" (dict "namespace" (include "mlp.pipeline.namespace" .) "selector" (include "mlp.np.inferenceSelector" . | fromYaml)) }}
{{- end }}
{{- end -}}

{{/* Peers: Airflow's components (release namespace). */}}
{{- define "mlp.np.airflowComponentPeers" -}}
{{- include "mlp.np.peer" (dict "namespace" .Release.Namespace "selector" (include "mlp.np.airflowComponentsSelector" . | fromYaml)) -}}
{{- end -}}

{{/* Peers: Airflow's worker pods (pipeline namespace). */}}
{{- define "mlp.np.airflowWorkerPeers" -}}
{{- include "mlp.np.peer" (dict "namespace" (include "mlp.pipeline.namespace" .) "selector" (include "mlp.np.selector" (dict "ctx" . "name" "airflow" "component" "worker") | fromYaml)) -}}
{{- end -}}

{{/* Peers: a component of the release in the release namespace: (dict "ctx" $ "name" <app> ["component" <c>]). */}}
{{- define "mlp.np.componentPeer" -}}
{{- include "mlp.np.peer" (dict "namespace" .ctx.Release.Namespace "selector" (include "mlp.np.selector" . | fromYaml)) -}}
{{- end -}}

{{/* Egress rules to destinations outside the cluster (global.networkPolicy.externalEgress). */}}
{{- define "mlp.np.externalEgress" -}}
{{- range .Values.global.networkPolicy.externalEgress }}
- to:
    - ipBlock:
        cidr: {{ .cidr }}
        {{- with .except }}
        except:
          {{- toYaml . | nindent 10 }}
        {{- end }}
  ports:
    {{- range .ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* An egress rule to the cluster DNS (global.networkPolicy.dns). */}}
{{- define "mlp.np.dnsEgress" -}}
{{- $dns := .Values.global.networkPolicy.dns -}}
- to:
    {{- include "mlp.np.peer" (dict "namespace" $dns.namespace "selector" (dict "matchLabels" $dns.podLabels)) | nindent 4 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}

{{/* A rule (egress `to` or ingress `from`, by "direction") to/from peers on TCP ports: (dict "direction" "to"|"from" "peers" <yaml> "ports" <list>). */}}
{{- define "mlp.np.rule" -}}
- {{ .direction }}:
    {{- .peers | nindent 4 }}
  ports:
    {{- range .ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end -}}

{{/* The container ports the backing services listen on (what NetworkPolicies match, after the Services' translation). */}}
{{- define "mlp.np.ports" -}}
{{- dict "postgresql" 5432 "cnpgStatus" 8000 "minio" 9000 "mlflow" 5000 "redis" 6379 "workerLogs" 8793 "triggererLogs" 8794 "airflowApi" (include "mlp.airflow.apiServerPort" . | int) | toJson -}}
{{- end -}}

{{/* Metadata of a NetworkPolicy: (dict "ctx" $ "name" <component> "namespace" <ns> "app" <app>). */}}
{{- define "mlp.np.metadata" -}}
metadata:
  name: {{ include "mlp.name" (dict "ctx" .ctx "component" .name) }}
  namespace: {{ .namespace }}
  labels:
    {{- include "mlp.labels" (dict "ctx" .ctx "name" .app "component" "network-policy") | nindent 4 }}
{{- end -}}

{{/* LabelSelector of the CloudNativePG instance pods (and the operator's initdb/join Jobs) of the release's Cluster. */}}
{{- define "mlp.np.cnpgSelector" -}}
matchLabels:
  cnpg.io/cluster: {{ include "mlp.cnpg.name" . }}
{{- end -}}

{{/* Peers: the PostgreSQL the release runs (the bundled server, or the CloudNativePG instances); empty when the database is external. */}}
{{- define "mlp.np.databasePeers" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "mlp.np.componentPeer" (dict "ctx" . "name" "postgresql") -}}
{{- else if .Values.cnpg.enabled -}}
{{- include "mlp.np.peer" (dict "namespace" .Release.Namespace "selector" (include "mlp.np.cnpgSelector" . | fromYaml)) -}}
{{- end -}}
{{- end -}}

{{/* An egress rule to the release's PostgreSQL (see mlp.np.databasePeers); nothing when it is external (global.networkPolicy.externalEgress covers that). */}}
{{- define "mlp.np.databaseEgress" -}}
{{- $peers := include "mlp.np.databasePeers" . -}}
{{- if $peers -}}
{{- include "mlp.np.rule" (dict "direction" "to" "peers" $peers "ports" (list (include "mlp.np.ports" . | fromJson).postgresql)) -}}
{{- end -}}
{{- end -}}

{{/* An egress rule to the Kubernetes API server (global.networkPolicy.apiServer). */}}
{{- define "mlp.np.kubeApiEgress" -}}
{{- $kubeApi := .Values.global.networkPolicy.apiServer -}}
- to:
    {{- range $kubeApi.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range $kubeApi.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end -}}

{{/* A CiliumNetworkPolicy body allowing the selected pods to the `kube-apiserver` entity: (dict "ctx" $ "selector" <LabelSelector yaml>). */}}
{{- define "mlp.np.ciliumKubeApiSpec" -}}
spec:
  endpointSelector:
    {{- .selector | nindent 4 }}
  egress:
    - toEntities: [kube-apiserver]
      toPorts:
        - ports:
            {{- range .ctx.Values.global.networkPolicy.apiServer.ports }}
            - port: {{ . | quote }}
              protocol: TCP
            {{- end }}
{{- end -}}

{{/*
Extra sources of a UI (dict "ctx" $ "ui" airflow|mlflow): global.networkPolicy.uiIngressFrom, and
the ingress controller's pods (ingress.controller) when that UI has an Ingress (ingress.enabled
and ingress.<ui>.host). Empty when there are none.
*/}}
{{- define "mlp.np.uiPeers" -}}
{{- $values := .ctx.Values -}}
{{- with $values.global.networkPolicy.uiIngressFrom }}
{{ toYaml . }}
{{- end }}
{{- if and $values.ingress.enabled (get $values.ingress .ui).host }}
{{ include "mlp.np.peer" (dict "namespace" $values.ingress.controller.namespace "selector" (dict "matchLabels" $values.ingress.controller.podLabels)) }}
{{- end }}
{{- end -}}

{{/* Peers: every client of the release's PostgreSQL: Airflow's components and migration Job (metadata), MLflow's server and migration Job (backend store), the pipeline's pods (feature store) and the inference server (its prediction log, in the feature store's database). */}}
{{- define "mlp.np.databaseClientPeers" -}}
{{- if .Values.airflow.enabled }}
{{ include "mlp.np.airflowComponentPeers" . }}
{{- end }}
{{- if .Values.mlflow.enabled }}
{{ include "mlp.np.componentPeer" (dict "ctx" . "name" "mlflow") }}
{{- end }}
{{- include "mlp.np.pipelinePeers" . }}
{{- include "mlp.np.inferencePeers" . }}
{{- end -}}
