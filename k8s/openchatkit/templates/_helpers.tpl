{{/* Names and labels. */}}
{{- define "openchatkit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "openchatkit.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's resource name: <fullname>-<component>. */}}
{{- define "openchatkit.componentName" -}}
{{- printf "%s-%s" (include "openchatkit.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "openchatkit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "openchatkit.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "openchatkit.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "openchatkit.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: openchatkit
{{- end -}}

{{- define "openchatkit.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "openchatkit.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "openchatkit.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "openchatkit.secretName" -}}
{{- default (include "openchatkit.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* An env var read from the release Secret: (dict "root" $ "name" "ENV" "key" "secret-key" "optional" bool). */}}
{{- define "openchatkit.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "openchatkit.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* In-cluster URLs of the components. */}}
{{- define "openchatkit.url" -}}
{{- printf "http://%s:%d" (include "openchatkit.componentName" .) (int .port) -}}
{{- end -}}

{{- define "openchatkit.qdrantUrl" -}}
{{- if .Values.qdrant.enabled -}}
{{- include "openchatkit.url" (dict "root" . "component" "qdrant" "port" 6333) -}}
{{- else -}}
{{- .Values.qdrant.external.url -}}
{{- end -}}
{{- end -}}

{{/* A secret value kept across upgrades: the given value, else the one in the live Secret, else random. */}}
{{- define "openchatkit.keptSecret" -}}
{{- $live := (lookup "v1" "Secret" .root.Release.Namespace (include "openchatkit.fullname" .root)) | default dict -}}
{{- $data := get $live "data" | default dict -}}
{{- if .value -}}
{{- .value -}}
{{- else if hasKey $data .key -}}
{{- index $data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int (default 40 .length)) -}}
{{- end -}}
{{- end -}}

{{/* Pod-level scheduling fields of a component's values. */}}
{{- define "openchatkit.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
