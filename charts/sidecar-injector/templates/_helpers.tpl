{{/* The release's base name, at most 52 characters so suffixes fit in 63. */}}
{{- define "sidecar-injector.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sidecar-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sidecar-injector.labels" -}}
{{ include "sidecar-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sidecar-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sidecar-injector.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository[:tag][@digest]; call with (dict "image" .Values.x.image "default" .Chart.AppVersion) */}}
{{- define "sidecar-injector.image" -}}
{{- $tag := default .default .image.tag -}}
{{- if and (not .image.digest) (not $tag) -}}
{{- fail (printf "%s: set a tag or a digest (an image reference %s: is invalid)" .what .image.repository) -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "sidecar-injector.tlsSecret" -}}
{{- printf "%s-tls" (include "sidecar-injector.fullname" .) -}}
{{- end -}}

{{- define "sidecar-injector.servingCertificate" -}}
{{- printf "%s-serving" (include "sidecar-injector.fullname" .) -}}
{{- end -}}

{{/* Namespaces the webhook can never match. */}}
{{- define "sidecar-injector.excludedNamespaces" -}}
{{- $ns := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace -}}
{{- range .Values.webhook.excludeNamespaces -}}
{{- $ns = append $ns . -}}
{{- end -}}
{{- toJson ($ns | uniq) -}}
{{- end -}}

{{/*
seconds converts a Go duration ("90s", "1h30m", "500ms") to seconds (a
float), so templates can compare durations and size the grace period.
*/}}
{{- define "sidecar-injector.seconds" -}}
{{- $total := 0.0 -}}
{{- $units := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" . -1 -}}
{{- $n := regexFind "^[0-9]+(\\.[0-9]+)?" . -}}
{{- $u := trimPrefix $n . -}}
{{- $total = addf $total (mulf ($n | float64) (get $units $u)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
istioOptIn lists every value of the sidecar.istio.io/inject label that opts
a pod in, as Istio reads it (y, yes, true, on, in any case): label selectors
match values exactly, so every casing is listed, and the injector's CLI and
explain read the same set (webhook/policy.IstioOptInValues; a test compares
them).
*/}}
{{- define "sidecar-injector.istioOptIn" -}}
["ON", "On", "TRUE", "TRUe", "TRuE", "TRue", "TrUE", "TrUe", "TruE", "True", "Y", "YES", "YEs", "YeS", "Yes", "oN", "on", "tRUE", "tRUe", "tRuE", "tRue", "trUE", "trUe", "truE", "true", "y", "yES", "yEs", "yeS", "yes"]
{{- end -}}
