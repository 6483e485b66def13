{{/*
Names and labels, as `helm create` and the prometheus-community charts spell them.
*/}}

{{- define "resilience-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "resilience-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "resilience-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "resilience-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "resilience-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "resilience-exporter.labels" -}}
helm.sh/chart: {{ include "resilience-exporter.chart" . }}
{{ include "resilience-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: resilience-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "resilience-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "resilience-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding DSN passwords: the user's, or the one this chart creates. */}}
{{- define "resilience-exporter.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if .Values.secrets.values }}
{{- include "resilience-exporter.fullname" . }}
{{- end }}
{{- end }}

{{- define "resilience-exporter.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "resilience-exporter.sharded" -}}
{{- if gt (int .Values.shards) 1 }}true{{ end }}
{{- end }}

{{- define "resilience-exporter.configPath" -}}
/etc/resilience-exporter/config.yml
{{- end }}

{{- define "resilience-exporter.webConfigPath" -}}
/etc/resilience-exporter/web/web-config.yml
{{- end }}

{{/*
The exporter's configuration file. Passwords only ever come from the Secret: a password
written into a DSN or given literally in values would land in a ConfigMap in clear text,
so rendering stops with the way to do it instead.
*/}}
{{- define "resilience-exporter.config" -}}
{{- range $i, $target := .Values.config.targets }}
{{- $name := default (printf "#%d" $i) $target.name }}
{{- with $target.dsn }}
{{- if or (regexMatch "^[a-z0-9+.-]+://[^/@]*:[^/@]*@" .) (regexMatch "(?i)(^|[\\s?&])password=" .) }}
{{- fail (printf "config.targets[%d] (%s): the dsn holds a password; put it in the Secret (secrets.values or secrets.existingSecret) and use password_file: or password: ${VAR}" $i $name) }}
{{- end }}
{{- end }}
{{- with $target.password_file }}
{{- if and (hasPrefix (printf "%s/" $.Values.secrets.mountPath) .) (or (not (include "resilience-exporter.secretName" $)) (ne $.Values.secrets.mountAs "file")) }}
{{- fail (printf "config.targets[%d] (%s): password_file %s is under secrets.mountPath, but no Secret is mounted there: set secrets.existingSecret or secrets.values, with secrets.mountAs: file" $i $name .) }}
{{- end }}
{{- end }}
{{- with $target.password }}
{{- if not (regexMatch "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" (toString .)) }}
{{- fail (printf "config.targets[%d] (%s): password must be a ${VARIABLE} from the Secret (secrets.mountAs: env), never a literal" $i $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml .Values.config }}
{{- end }}
