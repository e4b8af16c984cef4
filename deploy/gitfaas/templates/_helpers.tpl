{{/* Chart name. */}}
{{- define "gitfaas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, unless it lacks the chart name. */}}
{{- define "gitfaas.fullname" -}}
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

{{- define "gitfaas.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "gitfaas.labels" -}}
helm.sh/chart: {{ include "gitfaas.chart" . }}
{{ include "gitfaas.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "gitfaas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gitfaas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gitfaas.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gitfaas.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Base URL functions reach gitfaas at ({{GITFAAS_URL}}). */}}
{{- define "gitfaas.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl | trimSuffix "/" }}
{{- else }}
{{- printf "http://%s.%s.svc:%v" (include "gitfaas.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}
{{- end }}

{{/*
Secrets. With existingSecret.name, that Secret and the keys named in
existingSecret; otherwise the chart's own Secret, holding only the values set.
*/}}
{{- define "gitfaas.secretName" -}}
{{- if .Values.existingSecret.name }}
{{- .Values.existingSecret.name }}
{{- else }}
{{- include "gitfaas.fullname" . }}
{{- end }}
{{- end }}

{{- define "gitfaas.tokenKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.tokenKey }}{{ else if .Values.git.token }}git-token{{ end }}
{{- end }}

{{- define "gitfaas.sshKeyKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.sshKeyKey }}{{ else if .Values.git.sshKey }}ssh-privatekey{{ end }}
{{- end }}

{{- define "gitfaas.redisUrlKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.redisUrlKey }}{{ else if .Values.redis.url }}redis-url{{ end }}
{{- end }}

{{- define "gitfaas.apiTokensKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.apiTokensKey }}{{ else if .Values.auth.apiTokens }}api-tokens{{ end }}
{{- end }}

{{- define "gitfaas.webhookSecretKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.webhookSecretKey }}{{ else if .Values.auth.webhookSecret }}webhook-secret{{ end }}
{{- end }}

{{- define "gitfaas.callbackSigningSecretKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.callbackSigningSecretKey }}{{ else if .Values.callbacks.signingSecret }}callback-signing-secret{{ end }}
{{- end }}

{{- define "gitfaas.createSecret" -}}
{{- if and (not .Values.existingSecret.name) (or .Values.git.token .Values.git.sshKey .Values.redis.url .Values.auth.apiTokens .Values.auth.webhookSecret .Values.callbacks.signingSecret) }}true{{ end }}
{{- end }}

{{/* Secret entries mounted as files in /etc/gitfaas/secrets: "key:path" lines. */}}
{{- define "gitfaas.secretFiles" -}}
{{- with include "gitfaas.sshKeyKey" . }}{{ . }}:ssh-key{{ "\n" }}{{ end }}
{{- with include "gitfaas.apiTokensKey" . }}{{ . }}:api-tokens{{ "\n" }}{{ end }}
{{- with include "gitfaas.webhookSecretKey" . }}{{ . }}:webhook-secret{{ "\n" }}{{ end }}
{{- with include "gitfaas.callbackSigningSecretKey" . }}{{ . }}:callback-signing-secret{{ "\n" }}{{ end }}
{{- end }}

{{- define "gitfaas.pvcName" -}}
{{- default (printf "%s-data" (include "gitfaas.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{- define "gitfaas.knownHostsConfigMap" -}}
{{- if .Values.git.existingKnownHostsConfigMap }}
{{- .Values.git.existingKnownHostsConfigMap }}
{{- else if .Values.git.knownHosts }}
{{- printf "%s-known-hosts" (include "gitfaas.fullname" .) }}
{{- end }}
{{- end }}

{{/* Where functions run: functionsNamespace, else "<release namespace>-functions". */}}
{{- define "gitfaas.functionsNamespace" -}}
{{- .Values.functionsNamespace | default (printf "%s-functions" .Release.Namespace) }}
{{- end }}

{{/* Namespaces the namespaced Role is granted in: the functions', then rbac.namespaces (never gitfaas' own). */}}
{{- define "gitfaas.rbacNamespaces" -}}
{{- $list := list (include "gitfaas.functionsNamespace" .) }}
{{- range .Values.rbac.namespaces }}
{{- if not (has . $list) }}{{ $list = append $list . }}{{ end }}
{{- end }}
{{- join "," $list }}
{{- end }}

{{/* Values that cannot work together: fail early with a message. */}}
{{- define "gitfaas.validate" -}}
{{- if not .Values.git.url }}
{{- fail "git.url is required: the functions repository (https://, ssh:// or git@host:path)" }}
{{- end }}
{{- if and (include "gitfaas.tokenKey" .) (not .Values.git.user) }}
{{- fail "a git token needs git.user (GIT_USER_NAME)" }}
{{- end }}
{{- if not (has .Values.rbac.scope (list "namespaced" "clusterWide")) }}
{{- fail (printf "rbac.scope must be namespaced or clusterWide, not %q" .Values.rbac.scope) }}
{{- end }}
{{- if not (has .Values.log.format (list "text" "json")) }}
{{- fail (printf "log.format must be text or json, not %q" .Values.log.format) }}
{{- end }}
{{- if eq (include "gitfaas.functionsNamespace" .) .Release.Namespace }}
{{- fail (printf "functionsNamespace must differ from the release namespace %q: gitfaas' ServiceAccount and Secret live there, and any pod of a namespace can mount its Secrets; leave it empty for %q" .Release.Namespace (printf "%s-functions" .Release.Namespace)) }}
{{- end }}
{{- if and .Values.rbac.create (eq .Values.rbac.scope "namespaced") (has .Release.Namespace .Values.rbac.namespaces) }}
{{- fail (printf "rbac.namespaces lists the release namespace %q: gitfaas gets no right in its own namespace but its scheduler's Lease (its ServiceAccount and Secret live there)" .Release.Namespace) }}
{{- end }}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) (not (include "gitfaas.redisUrlKey" .)) }}
{{- fail "persistence.enabled with replicaCount > 1: the embedded store is one file per pod; set redis.url to share one store between replicas" }}
{{- end }}
{{- range splitList "\n" (.Values.callbacks.signingSecret | trim) }}
{{- if and (trim .) (not (hasPrefix "whsec_" (trim .))) }}
{{- fail "callbacks.signingSecret: each line must be a Standard Webhooks key, whsec_ followed by the base64 of 24 to 64 random bytes (echo \"whsec_$(head -c 32 /dev/urandom | base64)\")" }}
{{- end }}
{{- end }}
{{- $auth := splitList "," (.Values.auth.mode | replace " " "") }}
{{- range $auth }}
{{- if not (has . (list "kubernetes" "tokens" "none")) }}
{{- fail (printf "auth.mode: %q is not a way to check callers: write kubernetes, tokens, kubernetes,tokens or none" .) }}
{{- end }}
{{- end }}
{{- if and (include "gitfaas.apiTokensKey" .) (not (has "tokens" $auth)) }}
{{- fail "auth.apiTokens (or existingSecret.apiTokensKey) is set but auth.mode does not have tokens: set auth.mode to kubernetes,tokens or tokens" }}
{{- end }}
{{- if and (has "tokens" $auth) (not (include "gitfaas.apiTokensKey" .)) }}
{{- fail "auth.mode has tokens but no auth.apiTokens (or existingSecret.apiTokensKey) is set" }}
{{- end }}
{{- if and .Values.git.insecureSkipHostKeyCheck (include "gitfaas.knownHostsConfigMap" .) }}
{{- fail "git.insecureSkipHostKeyCheck and git.knownHosts/existingKnownHostsConfigMap exclude each other" }}
{{- end }}
{{- end }}
