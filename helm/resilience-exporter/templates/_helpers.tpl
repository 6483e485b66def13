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
{{- $config := deepCopy .Values.config }}
{{- if eq .Values.hostMetrics.mode "node" }}
{{- $host := merge (dict "procfs" "/host/proc" "rootfs" "/host/root") ($config.host | default dict) }}
{{- $_ := set $config "host" $host }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
The `job` label Prometheus gives the exporter's series through the ServiceMonitor: the value
of the Service's `serviceMonitor.jobLabel` label, else the Service's name (what the operator
does); prometheusRule.job wins when set (a scrape config of your own).
*/}}
{{- define "resilience-exporter.job" -}}
{{- if .Values.prometheusRule.job }}
{{- .Values.prometheusRule.job }}
{{- else }}
{{- $labels := include "resilience-exporter.labels" . | fromYaml }}
{{- $_ := set $labels "app.kubernetes.io/component" "metrics" }}
{{- $jobLabel := .Values.serviceMonitor.jobLabel }}
{{- default (include "resilience-exporter.fullname" .) (and $jobLabel (get $labels $jobLabel)) }}
{{- end }}
{{- end }}

{{/*
`${scope.key}` -> text for the rules: the defaults of files/alerts/thresholds.yml (settings,
alerts and recording rules) with prometheusRule.thresholds (the shape of
alerts/thresholds.yml, only keys that exist),
runbookBaseUrl and the job laid over them. Values land inside PromQL: numbers and Prometheus
durations only, as alerts/thresholds.py checks.
*/}}
{{- define "resilience-exporter.ruleParameters" -}}
{{- $pr := .Values.prometheusRule }}
{{- $defaults := dict }}
{{- with .Files.Get "files/alerts/thresholds.yml" }}
{{- $defaults = fromYaml . }}
{{- end }}
{{- $settings := deepCopy (get $defaults "settings" | default dict) }}
{{- $tables := dict "alerts" (deepCopy (get $defaults "alerts" | default dict)) "records" (deepCopy (get $defaults "records" | default dict)) }}
{{- $over := $pr.thresholds | default dict }}
{{- range $key, $value := $over.settings | default dict }}
{{- if not (hasKey $settings $key) }}
{{- fail (printf "prometheusRule.thresholds.settings.%s is not a known setting (known: %s)" $key (keys $settings | sortAlpha | join ", ")) }}
{{- end }}
{{- $_ := set $settings $key $value }}
{{- end }}
{{- range $kind, $known := $tables }}
{{- range $name, $values := get $over $kind | default dict }}
{{- if not (hasKey $known $name) }}
{{- fail (printf "prometheusRule.thresholds.%s.%s is not a known %s" $kind $name (ternary "alert" "recording rule" (eq $kind "alerts"))) }}
{{- end }}
{{- $table := get $known $name }}
{{- range $key, $value := $values }}
{{- if not (hasKey $table $key) }}
{{- fail (printf "prometheusRule.thresholds.%s.%s.%s is not a known key (known: %s)" $kind $name $key (keys $table | sortAlpha | join ", ")) }}
{{- end }}
{{- if or (kindIs "bool" $value) (and (kindIs "string" $value) (not (regexMatch "^([0-9]+(ms|s|m|h|d|w|y))+$" $value))) (and (eq $key "for") (not (kindIs "string" $value))) }}
{{- fail (printf "prometheusRule.thresholds.%s.%s.%s: %v is not a %s" $kind $name $key $value (ternary "Prometheus duration" "number or Prometheus duration" (eq $key "for"))) }}
{{- end }}
{{- $_ := set $table $key $value }}
{{- end }}
{{- end }}
{{- end }}
{{- with $pr.runbookBaseUrl }}
{{- $_ := set $settings "runbook_base_url" . }}
{{- end }}
{{- if hasKey $settings "exporter_job" }}
{{- $_ := set $settings "exporter_job" (include "resilience-exporter.job" .) }}
{{- end }}
{{- $flat := dict }}
{{- range $key, $value := $settings }}
{{- $_ := set $flat (printf "${settings.%s}" $key) (include "resilience-exporter.ruleNumber" $value) }}
{{- end }}
{{- range $kind, $known := $tables }}
{{- range $name, $table := $known }}
{{- range $key, $value := $table }}
{{- $_ := set $flat (printf "${%s.%s}" $name $key) (include "resilience-exporter.ruleNumber" $value) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $flat }}
{{- end }}

{{/* A threshold as the generator writes it: 86400, not 86400.0 or 8.64e+04. */}}
{{- define "resilience-exporter.ruleNumber" -}}
{{- if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) }}
{{- if eq (float64 .) (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}{{ . }}{{ end }}
{{- end }}

{{/* (list text parameters file): the text with every `${scope.key}` filled. */}}
{{- define "resilience-exporter.fillRuleText" -}}
{{- $text := index . 0 }}
{{- if contains "${" $text }}
{{- range $placeholder, $value := index . 1 }}
{{- $text = replace $placeholder $value $text }}
{{- end }}
{{- with regexFind "\\$\\{[A-Za-z_][A-Za-z0-9_]*\\.[A-Za-z_][A-Za-z0-9_]*\\}" $text }}
{{- fail (printf "%s: %s has no value (files/alerts/thresholds.yml is out of date: run `make alerts`)" (index $ 2) .) }}
{{- end }}
{{- end }}
{{- $text }}
{{- end }}
