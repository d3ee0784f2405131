{{/*
One template for our Python services (one image, the command picks the service):
  include "openchatkit.service" (dict "root" $ "component" "gateway" "values" .Values.gateway
    "command" "gateway" "prefix" "GATEWAY" "port" 8000 "env" (include "openchatkit.gatewayEnv" $))
port 0: no HTTP server (the feedback worker). Renders Deployment, Service, HPA and PDB.
*/}}
{{- define "openchatkit.service" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $ctx := dict "root" $root "component" .component -}}
{{- $name := include "openchatkit.componentName" $ctx -}}
{{- $port := int .port -}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "openchatkit.labels" $ctx | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "openchatkit.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "openchatkit.selectorLabels" $ctx | nindent 8 }}
      annotations:
        checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "openchatkit.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- include "openchatkit.scheduling" $v | nindent 6 }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 30
      containers:
        - name: {{ .component }}
          image: {{ include "openchatkit.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [{{ .command | quote }}]
          env:
            {{- if $port }}
            - {name: {{ printf "%s_HOST" .prefix }}, value: "0.0.0.0"}
            - {name: {{ printf "%s_PORT" .prefix }}, value: {{ $port | quote }}}
            {{- end }}
            - {name: {{ printf "%s_LOG_LEVEL" .prefix }}, value: {{ $root.Values.logLevel | quote }}}
            {{- include "openchatkit.secretEnv" (dict "root" $root "name" (printf "%s_INTERNAL_TOKEN" .prefix) "key" "internal-token") | nindent 12 }}
            {{- .env | nindent 12 }}
            {{- range $key, $value := $v.env }}
            - {name: {{ $key }}, value: {{ $value | quote }}}
            {{- end }}
          {{- if $port }}
          ports:
            - {name: http, containerPort: {{ $port }}, protocol: TCP}
          startupProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 5
            failureThreshold: 120  # first start may export the embedding model (minutes on a small CPU)
          readinessProbe:
            httpGet: {path: /ready, port: http}
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 3
          livenessProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 20
            timeoutSeconds: 5
            failureThreshold: 3
          {{- else }}
          livenessProbe:
            exec: {command: ["python", "/usr/local/bin/healthcheck.py"]}
            periodSeconds: 30
            timeoutSeconds: 10
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            - {name: data, mountPath: /data}
      volumes:
        - name: tmp
          emptyDir: {}
        - name: data
          emptyDir:
            {{- with $v.cacheSizeLimit }}
            sizeLimit: {{ . }}
            {{- end }}
{{- if $port }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "openchatkit.labels" $ctx | nindent 4 }}
  {{- with (($v.service | default dict).annotations) }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ (($v.service | default dict).type) | default "ClusterIP" }}
  selector:
    {{- include "openchatkit.selectorLabels" $ctx | nindent 4 }}
  ports:
    - {name: http, port: {{ $port }}, targetPort: http, protocol: TCP}
{{- end }}
{{- if $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "openchatkit.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
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
{{- end -}}
