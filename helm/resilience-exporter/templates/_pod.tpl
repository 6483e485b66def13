{{/*
The pod template shared by the Deployment (one shard) and the StatefulSet (several shards).
*/}}
{{- define "resilience-exporter.podTemplate" -}}
{{- $secretName := include "resilience-exporter.secretName" . -}}
metadata:
  labels:
    {{- include "resilience-exporter.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A change of the configuration or of the chart-managed Secret rolls the pods.
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if and .Values.secrets.values (not .Values.secrets.existingSecret) }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "resilience-exporter.serviceAccountName" . }}
  # The exporter never talks to the Kubernetes API.
  automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: exporter
      image: {{ include "resilience-exporter.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config.file={{ include "resilience-exporter.configPath" . }}
        - --web.listen-address=:{{ .Values.exporter.port }}
        - --web.telemetry-path={{ .Values.exporter.telemetryPath }}
        - --log.level={{ .Values.exporter.logLevel }}
        - --log.format={{ .Values.exporter.logFormat }}
        {{- if .Values.webConfig.enabled }}
        - --web.config.file={{ include "resilience-exporter.webConfigPath" . }}
        {{- end }}
        {{- range .Values.exporter.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- if or (include "resilience-exporter.sharded" .) .Values.extraEnv }}
      env:
        {{- if include "resilience-exporter.sharded" . }}
        # Replica i of the StatefulSet probes the targets whose hash mod shards is i.
        - name: RESILIENCE_EXPORTER_SHARD_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        - name: RESILIENCE_EXPORTER_SHARD_COUNT
          value: {{ .Values.shards | quote }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- if and $secretName (eq .Values.secrets.mountAs "env") }}
      # Each key of the Secret becomes an environment variable, for `password: ${KEY}`.
      envFrom:
        - secretRef:
            name: {{ $secretName }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.exporter.port }}
          protocol: TCP
      livenessProbe:
        {{- include "resilience-exporter.probeAction" (list . "/-/healthy") | nindent 8 }}
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- include "resilience-exporter.probeAction" (list . "/-/ready") | nindent 8 }}
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/resilience-exporter/config.yml
          subPath: config.yml
          readOnly: true
        # The root filesystem is read-only; libraries that want a scratch file get this.
        - name: tmp
          mountPath: /tmp
        {{- if and $secretName (eq .Values.secrets.mountAs "file") }}
        # Each key of the Secret is a file, for `password_file: <mountPath>/<key>`; a rotated
        # Secret reaches the file without a restart and the exporter reads it at each connection.
        - name: secrets
          mountPath: {{ .Values.secrets.mountPath }}
          readOnly: true
        {{- end }}
        {{- if .Values.webConfig.enabled }}
        - name: web-config
          mountPath: /etc/resilience-exporter/web
          readOnly: true
        {{- end }}
        {{- if eq .Values.hostMetrics.mode "node" }}
        # The node's /proc and / for host metrics (config.host procfs and rootfs).
        - name: host-proc
          mountPath: /host/proc
          readOnly: true
        - name: host-root
          mountPath: /host/root
          mountPropagation: HostToContainer
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "resilience-exporter.fullname" . }}
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
    {{- if and $secretName (eq .Values.secrets.mountAs "file") }}
    - name: secrets
      secret:
        secretName: {{ $secretName }}
        defaultMode: 0440
    {{- end }}
    {{- if .Values.webConfig.enabled }}
    - name: web-config
      secret:
        secretName: {{ required "webConfig.existingSecret is required when webConfig.enabled" .Values.webConfig.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if eq .Values.hostMetrics.mode "node" }}
    - name: host-proc
      hostPath:
        path: /proc
        type: Directory
    - name: host-root
      hostPath:
        path: /
        type: Directory
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
What the kubelet does for a probe of `path`: an HTTP(S) GET without credentials (the exporter
answers its health checks without basic auth), or a TCP connect when the web config requires a
client certificate the kubelet cannot present.
*/}}
{{- define "resilience-exporter.probeAction" -}}
{{- $ := index . 0 -}}
{{- $path := index . 1 -}}
{{- $web := $.Values.webConfig -}}
{{- if and $web.enabled $web.requireClientCert -}}
tcpSocket:
  port: http
{{- else -}}
httpGet:
  path: {{ $path }}
  port: http
  {{- if $web.enabled }}
  scheme: {{ ternary "HTTPS" "HTTP" $web.tls }}
  {{- end }}
{{- end }}
{{- end }}
