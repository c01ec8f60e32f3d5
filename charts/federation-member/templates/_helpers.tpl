{{/* Names and labels shared by every template of the chart. */}}

{{- define "federation-member.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "federation-member.fullname" -}}
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

{{- define "federation-member.selectorLabels" -}}
app.kubernetes.io/name: {{ include "federation-member.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "federation-member.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "federation-member.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: member-agent
app.kubernetes.io/part-of: binder-federation
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "federation-member.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "federation-member.keysSecret" -}}
{{- default (printf "%s-keys" (include "federation-member.fullname" .)) .Values.keys.secretName -}}
{{- end -}}

{{- define "federation-member.serviceAccount" -}}
{{- default (include "federation-member.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "federation-member.kubernetesBackend" -}}
{{- if eq (toString .Values.config.backend.kind) "kubernetes" -}}true{{- end -}}
{{- end -}}

{{/* The namespace the kubernetes backend launches into. */}}
{{- define "federation-member.launchNamespace" -}}
{{- default .Release.Namespace .Values.config.backend.namespace -}}
{{- end -}}

{{/*
member.toml: the values' config, the chart-owned [member] keys (where it listens, its state
directory), the datasets of .Values.datasets with their mount paths and, for the kubernetes
backend, its namespace and the datasets' claims.
*/}}
{{- define "federation-member.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $member := merge (dict "host" "0.0.0.0" "port" 8586 "state_dir" "/var/lib/fedmember/state") $config.member -}}
{{- $datasets := default (list) $member.datasets -}}
{{- range .Values.datasets -}}
{{- $entry := dict "id" .id "mount_path" .mountPath -}}
{{- if hasKey . "prefix" }}{{ $_ := set $entry "prefix" .prefix }}{{ end -}}
{{- if hasKey . "size_bytes" }}{{ $_ := set $entry "size_bytes" .size_bytes }}{{ end -}}
{{- $datasets = append $datasets $entry -}}
{{- end -}}
{{- if $datasets }}{{ $_ := set $member "datasets" $datasets }}{{ end -}}
{{- $_ := set $config "member" $member -}}
{{- if include "federation-member.kubernetesBackend" . -}}
{{- /* The Role is made for this namespace, so the backend must launch there. */ -}}
{{- $_ := set $config.backend "namespace" (include "federation-member.launchNamespace" .) -}}
{{- /* Launched servers mount the same claims, read-only. */ -}}
{{- $volumes := default (dict) $config.backend.dataset_volumes -}}
{{- range $i, $d := .Values.datasets -}}
{{- $_ := set $volumes (printf "dataset-%d" $i) (dict "claim_name" $d.claimName "mount_path" $d.mountPath) -}}
{{- end -}}
{{- if $volumes }}{{ $_ := set $config.backend "dataset_volumes" $volumes }}{{ end -}}
{{- end -}}
{{- include "federation-member.wholeNumbers" $config -}}
{{- toToml $config -}}
{{- end -}}

{{/*
Helm reads every number in values as a float, and toToml would write `max_attempts = 3.0`:
turn whole numbers back into integers, in place, through nested tables and arrays.
*/}}
{{- define "federation-member.wholeNumbers" -}}
{{- $table := . -}}
{{- range $key, $value := $table -}}
{{- if kindIs "map" $value -}}
{{- include "federation-member.wholeNumbers" $value -}}
{{- else if kindIs "slice" $value -}}
{{- $items := list -}}
{{- range $value -}}
{{- if kindIs "map" . -}}
{{- include "federation-member.wholeNumbers" . -}}
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
