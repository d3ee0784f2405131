{{/*
One template for every model server (the chat model and the moderation model):
  include "openchatkit.modelServer" (dict "root" $ "component" "chat-model" "values" .Values.chatModel)
Renders its Deployment, Service, model-cache PVC, PDB and KEDA ScaledObject.
*/}}
{{- define "openchatkit.modelServer" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $ctx := dict "root" $root "component" .component -}}
{{- $name := include "openchatkit.componentName" $ctx -}}
{{- $cacheClaim := default (printf "%s-cache" $name) $v.modelCache.existingClaim -}}
{{- if and $v.modelCache.enabled (not $v.modelCache.existingClaim) }}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ $cacheClaim }}
  labels:
    {{- include "openchatkit.labels" $ctx | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep  # downloaded weights survive an uninstall
spec:
  accessModes:
    {{- toYaml $v.modelCache.accessModes | nindent 4 }}
  {{- with $v.modelCache.storageClass }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ $v.modelCache.size }}
{{- end }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "openchatkit.labels" $ctx | nindent 4 }}
spec:
  {{- if not $v.keda.enabled }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "openchatkit.selectorLabels" $ctx | nindent 6 }}
  strategy:
    # A new pod needs the GPUs the old one holds: replace, never surge.
    type: RollingUpdate
    rollingUpdate: {maxSurge: 0, maxUnavailable: 1}
  template:
    metadata:
      labels:
        {{- include "openchatkit.selectorLabels" $ctx | nindent 8 }}
      {{- with $v.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "openchatkit.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.runtimeClassName }}
      runtimeClassName: {{ . }}
      {{- end }}
      {{- include "openchatkit.scheduling" $v | nindent 6 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      terminationGracePeriodSeconds: 60
      containers:
        - name: vllm
          image: {{ printf "%s:%s" $v.image.repository $v.image.tag }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          {{- if eq $v.launcher "vllm" }}
          command: ["python3", "-m", "vllm.entrypoints.openai.api_server"]
          args:
            - --model
            - {{ $v.model | quote }}
            - --served-model-name
            - {{ $v.servedModelName | quote }}
            - --host
            - "0.0.0.0"
            - --port
            - "8001"
            - --max-model-len
            - {{ $v.maxModelLen | quote }}
            - --dtype
            - {{ $v.dtype | quote }}
            - --tensor-parallel-size
            - {{ $v.tensorParallelSize | quote }}
            {{- with $v.chatTemplate }}
            - --chat-template
            - {{ printf "/templates/%s" . | quote }}
            {{- end }}
            {{- with $v.generationConfig }}
            - --generation-config
            - vllm
            - --override-generation-config
            - {{ toJson . | quote }}
            {{- end }}
            - --gpu-memory-utilization
            - {{ $v.gpuMemoryUtilization | quote }}
            {{- if or $v.lora.modules $v.lora.runtime }}
            - --enable-lora
            - --max-loras
            - {{ $v.lora.maxLoras | default 4 | quote }}
            - --max-lora-rank
            - {{ $v.lora.maxRank | quote }}
            {{- end }}
            {{- if $v.lora.modules }}
            - --lora-modules
            {{- range $adapter, $dir := $v.lora.modules }}
            - {{ printf "%s=/adapters/%s" $adapter $dir | quote }}
            {{- end }}
            {{- end }}
            {{- range $v.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          {{- end }}
          env:
            {{- include "openchatkit.secretEnv" (dict "root" $root "name" "VLLM_API_KEY" "key" "vllm-api-key") | nindent 12 }}
            {{- include "openchatkit.secretEnv" (dict "root" $root "name" "HF_TOKEN" "key" "hf-token" "optional" true) | nindent 12 }}
            - {name: HOME, value: /tmp}
            - {name: HF_HOME, value: {{ printf "%s/hf" $v.modelCache.mountPath | quote }}}
            - {name: VLLM_CACHE_ROOT, value: {{ printf "%s/vllm" $v.modelCache.mountPath | quote }}}
            {{- if and $v.lora.runtime (eq $v.launcher "vllm") }}
            - {name: VLLM_ALLOW_RUNTIME_LORA_UPDATING, value: "True"}  # `openchatkit adapters load` (internal API)
            {{- end }}
            {{- if eq $v.launcher "chat_server" }}
            - {name: CHAT_HOST, value: "0.0.0.0"}
            - {name: CHAT_PORT, value: "8001"}
            - {name: CHAT_LOG_LEVEL, value: {{ $root.Values.logLevel | quote }}}
            - {name: CHAT_PROFILE, value: {{ $v.profile | quote }}}
            - {name: CHAT_KV_CACHE_SPACE_GIB, value: {{ $v.kvCacheSpaceGiB | quote }}}
            - {name: CHAT_ENABLE_LORA, value: {{ $v.lora.runtime | default false | quote }}}
            {{- if $v.lora.modules }}
            - name: CHAT_LORA_MODULES
              value: {{ include "openchatkit.loraModules" $v.lora.modules | quote }}
            - {name: CHAT_MAX_LORA_RANK, value: {{ $v.lora.maxRank | quote }}}
            {{- end }}
            {{- if $v.extraArgs }}
            - {name: CHAT_EXTRA_ARGS, value: {{ toJson $v.extraArgs | quote }}}
            {{- end }}
            {{- end }}
            {{- range $key, $value := $v.env }}
            - {name: {{ $key }}, value: {{ $value | quote }}}
            {{- end }}
          ports:
            - {name: http, containerPort: 8001, protocol: TCP}
          startupProbe:
            httpGet: {path: /health, port: http}
            {{- toYaml $v.startupProbe | nindent 12 }}
          readinessProbe:
            httpGet: {path: /health, port: http}
            {{- toYaml $v.readinessProbe | nindent 12 }}
          livenessProbe:
            httpGet: {path: /health, port: http}
            {{- toYaml $v.livenessProbe | nindent 12 }}
          resources:
            {{- $gpu := dict }}
            {{- if gt (int $v.gpus) 0 }}
            {{- $gpu = dict "nvidia.com/gpu" (int $v.gpus) }}
            {{- end }}
            requests:
              {{- toYaml (merge (deepCopy (default dict $v.resources.requests)) $gpu) | nindent 14 }}
            limits:
              {{- toYaml (merge (deepCopy (default dict $v.resources.limits)) $gpu) | nindent 14 }}
          securityContext:
            {{- toYaml $v.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - {name: dshm, mountPath: /dev/shm}
            - {name: tmp, mountPath: /tmp}
            {{- if $v.modelCache.enabled }}
            - {name: model-cache, mountPath: {{ $v.modelCache.mountPath }}}
            {{- end }}
            {{- if $v.chatTemplate }}
            - {name: templates, mountPath: /templates, readOnly: true}
            {{- end }}
            {{- if $v.lora.existingClaim }}
            - {name: adapters, mountPath: /adapters, readOnly: true}
            {{- end }}
      volumes:
        # Tensor-parallel workers share tensors through /dev/shm; the default 64 MiB is far too small.
        - name: dshm
          emptyDir: {medium: Memory, sizeLimit: {{ $v.shmSizeLimit }}}
        - name: tmp
          emptyDir: {}
        {{- if $v.modelCache.enabled }}
        - name: model-cache
          persistentVolumeClaim: {claimName: {{ $cacheClaim }}}
        {{- end }}
        {{- if $v.chatTemplate }}
        - name: templates
          configMap: {name: {{ include "openchatkit.componentName" (dict "root" $root "component" "chat-templates") }}}
        {{- end }}
        {{- if $v.lora.existingClaim }}
        - name: adapters
          persistentVolumeClaim: {claimName: {{ $v.lora.existingClaim }}, readOnly: true}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "openchatkit.labels" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "openchatkit.selectorLabels" $ctx | nindent 4 }}
  ports:
    - {name: http, port: 8001, targetPort: http, protocol: TCP}
---
# Headless: one DNS record per ready pod, so the gateway sees (and routes across) every replica.
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}-replicas
  labels:
    {{- include "openchatkit.labels" $ctx | nindent 4 }}
spec:
  clusterIP: None
  selector:
    {{- include "openchatkit.selectorLabels" $ctx | nindent 4 }}
  ports:
    - {name: http, port: 8001, targetPort: http, protocol: TCP}
{{- if $v.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "openchatkit.labels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ $v.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "openchatkit.selectorLabels" $ctx | nindent 6 }}
{{- end }}
{{- if $v.keda.enabled }}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $name }}
  labels:
    {{- include "openchatkit.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    name: {{ $name }}
  minReplicaCount: {{ $v.keda.minReplicas }}
  maxReplicaCount: {{ $v.keda.maxReplicas }}
  cooldownPeriod: {{ $v.keda.cooldownPeriod }}
  triggers:
    - type: prometheus
      metadata:
        serverAddress: {{ $v.keda.prometheusAddress | quote }}
        query: {{ printf "sum(vllm:num_requests_waiting{model_name=\"%s\"})" $v.servedModelName | quote }}
        threshold: {{ $v.keda.waitingThreshold | quote }}
{{- end }}
{{- end -}}

{{/* CHAT_LORA_MODULES: {"name": "/adapters/dir"} as JSON. */}}
{{- define "openchatkit.loraModules" -}}
{{- $out := dict -}}
{{- range $adapter, $dir := . -}}
{{- $_ := set $out $adapter (printf "/adapters/%s" $dir) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
