{{/* Chart name. */}}
{{- define "regmirror.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, prefixed with the chart name unless it contains it. */}}
{{- define "regmirror.fullname" -}}
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

{{/* Labels that select the pods. */}}
{{- define "regmirror.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regmirror.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "regmirror.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "regmirror.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: regmirror
{{- end }}

{{- define "regmirror.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "regmirror.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The ServiceAccount's annotations: the user's, then each cloud identity's. */}}
{{- define "regmirror.serviceAccountAnnotations" -}}
{{- $a := deepCopy (default dict .Values.serviceAccount.annotations) -}}
{{- $id := .Values.identity -}}
{{- with $id.aws.roleArn }}{{- $_ := set $a "eks.amazonaws.com/role-arn" . }}{{- end }}
{{- with $id.azure.clientId }}{{- $_ := set $a "azure.workload.identity/client-id" . }}{{- end }}
{{- with $id.azure.tenantId }}{{- $_ := set $a "azure.workload.identity/tenant-id" . }}{{- end }}
{{- with $id.gcp.serviceAccount }}{{- $_ := set $a "iam.gke.io/gcp-service-account" . }}{{- end }}
{{- if $a }}{{ toYaml $a }}{{ end -}}
{{- end }}

{{- define "regmirror.configMapName" -}}
{{- default (printf "%s-config" (include "regmirror.fullname" .)) .Values.config.existingConfigMap }}
{{- end }}

{{- define "regmirror.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Pod template metadata. */}}
{{- define "regmirror.podMetadata" -}}
metadata:
  labels:
    {{- include "regmirror.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/part-of: regmirror
    {{- if .Values.identity.azure.clientId }}
    # Azure workload identity: the webhook injects the AZURE_* variables and token file.
    azure.workload.identity/use: "true"
    {{- end }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if not (or .Values.config.existingConfigMap .Values.watchConfig) }}
    # A new config rolls the pods (with watchConfig, `serve` reloads it
    # instead and a rejected one leaves the running config in force).
    checksum/config: {{ .Values.config.toml | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
The pod spec of every mode. Call with (dict "root" $ "command" "serve"|"sync"
"restartPolicy" "" "shardEnv" list).
*/}}
{{- define "regmirror.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
serviceAccountName: {{ include "regmirror.serviceAccountName" $root }}
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.affinity }}
affinity:
  {{- toYaml $v.affinity | nindent 2 }}
{{- else if eq $v.mode "statefulset" }}
# Prefer one shard per node, so that losing a node pauses one shard.
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "regmirror.selectorLabels" $root | nindent 14 }}
{{- end }}
containers:
  - name: regmirror
    image: {{ include "regmirror.image" $root | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      - {{ .command }}
      - --config
      - /etc/regmirror/config.toml
      - --log-format
      - {{ eq .command "sync" | ternary $v.cronjob.logFormat $v.logFormat }}
      {{- if and (eq .command "serve") (or $v.watchConfig $v.config.existingConfigMap) }}
      - --watch-config
      {{- end }}
      {{- if eq .command "serve" }}
      {{- /* A restart with a bad config runs the last accepted one (in the /tmp emptyDir). */}}
      - --keep-last-good
      - /tmp/regmirror-last-good
      {{- end }}
      {{- /* The run-state store (values: state). */}}
      - --state-dir
      - /var/lib/regmirror
      {{- if eq .command "sync" }}
      {{- /* Images deferred to keep a pull budget floor: a success for the Job. */}}
      - --deferred-exit-code
      - "0"
      {{- end }}
    {{- if or .shardEnv $v.env }}
    env:
      {{- with .shardEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
      {{- with $v.env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- end }}
    {{- if eq .command "serve" }}
    ports:
      - name: metrics
        containerPort: 9090
        protocol: TCP
    livenessProbe:
      httpGet:
        path: /healthz
        port: metrics
      initialDelaySeconds: 5
      periodSeconds: 20
      timeoutSeconds: 5
      failureThreshold: 3
    # Ready once the config is loaded and the listener is up.
    readinessProbe:
      httpGet:
        path: /readyz
        port: metrics
      periodSeconds: 10
      timeoutSeconds: 5
      failureThreshold: 3
    {{- end }}
    resources:
      {{- toYaml $v.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /etc/regmirror
        readOnly: true
      {{- if $v.credentials.existingSecret }}
      - name: credentials
        mountPath: /var/run/secrets/regmirror
        readOnly: true
      {{- end }}
      {{- if $v.credentials.dockerConfigSecret }}
      - name: docker-config
        mountPath: /var/run/secrets/regmirror-docker
        readOnly: true
      {{- end }}
      {{- if $v.notify.existingSecret }}
      - name: notify
        mountPath: /var/run/secrets/regmirror-notify
        readOnly: true
      {{- end }}
      {{- if $v.policy.keysSecret }}
      - name: policy-keys
        mountPath: /etc/regmirror/policy/keys
        readOnly: true
      {{- end }}
      {{- if $v.policy.trustedRootConfigMap }}
      - name: policy-trusted-root
        mountPath: /etc/regmirror/policy/trusted-root
        readOnly: true
      {{- end }}
      - name: tmp
        mountPath: /tmp
      - name: state
        mountPath: /var/lib/regmirror
      {{- with $v.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "regmirror.configMapName" $root }}
      items:
        - key: {{ $v.config.configKey }}
          path: config.toml
  {{- if $v.credentials.existingSecret }}
  # Optional, as in the kustomize base: a Secret not created yet leaves the
  # directory empty, and a config naming one of its files says which is missing.
  - name: credentials
    secret:
      secretName: {{ $v.credentials.existingSecret }}
      optional: true
      defaultMode: 0440
  {{- end }}
  {{- if $v.credentials.dockerConfigSecret }}
  - name: docker-config
    secret:
      secretName: {{ $v.credentials.dockerConfigSecret }}
      optional: true
      defaultMode: 0440
      items:
        - key: .dockerconfigjson
          path: config.json
  {{- end }}
  {{- if $v.notify.existingSecret }}
  # Optional: a sink whose secret or URL file is missing fails its
  # deliveries (counted, logged); the mirrors run on.
  - name: notify
    secret:
      secretName: {{ $v.notify.existingSecret }}
      optional: true
      defaultMode: 0440
  {{- end }}
  {{- if $v.policy.keysSecret }}
  # Optional: the volume does not hold the pod back; while the Secret is
  # absent, a config whose policy names one of its files is refused at start
  # (naming the file). An updated Secret is read again at the next run.
  - name: policy-keys
    secret:
      secretName: {{ $v.policy.keysSecret }}
      optional: true
      defaultMode: 0444
  {{- end }}
  {{- if $v.policy.trustedRootConfigMap }}
  - name: policy-trusted-root
    configMap:
      name: {{ $v.policy.trustedRootConfigMap }}
      optional: true
  {{- end }}
  # oci-archive sources are extracted here (values: tmp.sizeLimit).
  - name: tmp
    emptyDir:
      sizeLimit: {{ $v.tmp.sizeLimit }}
  # The run-state store (values: state).
  - name: state
    {{- if $v.state.persistence.enabled }}
    persistentVolumeClaim:
      claimName: {{ $v.state.persistence.existingClaim | default (printf "%s-state" (include "regmirror.fullname" $root)) }}
    {{- else }}
    emptyDir:
      sizeLimit: {{ $v.state.sizeLimit }}
    {{- end }}
  {{- with $v.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
