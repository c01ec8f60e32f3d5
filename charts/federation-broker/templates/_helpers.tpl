{{/* Names and labels shared by every template of the chart. */}}

{{- define "federation-broker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "federation-broker.fullname" -}}
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

{{- define "federation-broker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "federation-broker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "federation-broker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "federation-broker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: broker
app.kubernetes.io/part-of: binder-federation
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "federation-broker.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "federation-broker.dbSecret" -}}
{{- default (printf "%s-db" (include "federation-broker.fullname" .)) .Values.database.secretName -}}
{{- end -}}

{{- define "federation-broker.keysSecret" -}}
{{- default (printf "%s-keys" (include "federation-broker.fullname" .)) .Values.keys.secretName -}}
{{- end -}}

{{/*
broker.toml: the values' config plus what the chart owns (where it listens, where the keys and
the database URL are mounted). Chart-owned keys win over values.
*/}}
{{- define "federation-broker.config" -}}
{{- $owned := dict "host" "0.0.0.0" "port" 8585 "keys_dir" "/run/fedbroker/keys" "db_url_file" "/run/fedbroker/db/db_url" -}}
{{- $config := merge $owned (deepCopy .Values.config) -}}
{{- include "federation-broker.wholeNumbers" $config -}}
{{- toToml $config -}}
{{- end -}}

{{/*
Helm reads every number in values as a float, and toToml would write `max_attempts = 3.0`:
turn whole numbers back into integers, in place, through nested tables and arrays.
*/}}
{{- define "federation-broker.wholeNumbers" -}}
{{- $table := . -}}
{{- range $key, $value := $table -}}
{{- if kindIs "map" $value -}}
{{- include "federation-broker.wholeNumbers" $value -}}
{{- else if kindIs "slice" $value -}}
{{- $items := list -}}
{{- range $value -}}
{{- if kindIs "map" . -}}
{{- include "federation-broker.wholeNumbers" . -}}
{{- $items = append $items . -}}
{{- else if and (kindIs "float64" .) (eq . (float64 (int64 .))) -}}
{{- $items = append $items (int64 .) -}}
{{- else -}}
{{- $items = append $items . -}}
{{- end -}}
{{- end -}}
{{- $_ := set $table $key $items -}}
{{- else if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) -}}
{{- $_ := set $table $key (int64 $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}
