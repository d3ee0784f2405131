{{/*
A small StatefulSet from an official image, with a headless Service for its pod and a
ClusterIP Service for clients:
  include "openchatkit.store" (dict "root" $ "component" "redis" "values" .Values.redis "port" 6379
    "uid" 999 "dataPath" "/data" "container" (include "openchatkit.redisContainer" $))
*/}}
{{- define "openchatkit.store" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $ctx := dict "root" $root "component" .component -}}
{{- $name := include "openchatkit.componentName" $ctx -}}
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
    - {name: {{ .portName | default "tcp" }}, port: {{ .port }}, targetPort: {{ .port }}, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}-headless
  labels:
    {{- include "openchatkit.labels" $ctx | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "openchatkit.selectorLabels" $ctx | nindent 4 }}
  ports:
    - {name: {{ .portName | default "tcp" }}, port: {{ .port }}, targetPort: {{ .port }}, protocol: TCP}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  labels:
    {{- include "openchatkit.labels" $ctx | nindent 4 }}
spec:
  replicas: 1
  serviceName: {{ $name }}-headless
  selector:
    matchLabels:
      {{- include "openchatkit.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "openchatkit.selectorLabels" $ctx | nindent 8 }}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: {{ .uid }}
        runAsGroup: {{ .uid }}
        fsGroup: {{ .uid }}
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: {{ .component }}
          image: {{ printf "%s:%s" $v.image.repository $v.image.tag }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          {{- .container | nindent 10 }}
          ports:
            - {name: {{ .portName | default "tcp" }}, containerPort: {{ .port }}, protocol: TCP}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts:
            - {name: data, mountPath: {{ .dataPath }}}
            - {name: tmp, mountPath: /tmp}
            {{- with .extraMounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {}
        {{- with .extraVolumes }}
        {{- . | nindent 8 }}
        {{- end }}
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        {{- with $v.persistence.storageClass }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ $v.persistence.size }}
{{- end -}}
