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

{{/* The namespace the kubernetes backend launches into: its own by default, never the agent's unless asked. */}}
{{- define "federation-member.launchNamespace" -}}
{{- default (printf "%s-launches" (default "default" .Release.Namespace)) .Values.config.backend.namespace -}}
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
{{- /* Launched servers mount the claims read-only, each only into the launches that ask for its dataset. */ -}}
{{- $volumes := default (dict) $config.backend.dataset_volumes -}}
{{- range $i, $d := .Values.datasets -}}
{{- $_ := set $volumes (printf "dataset-%d" $i) (dict "claim_name" $d.claimName "mount_path" $d.mountPath "dataset_id" $d.id "prefix" (default false $d.prefix)) -}}
{{- end -}}
{{- if $volumes }}{{ $_ := set $config.backend "dataset_volumes" $volumes }}{{ end -}}
{{- if include "federation-member.proxyEnabled" . -}}
{{- $_ := set $config.backend "proxy_api_url" (printf "http://%s-api:8001" (include "federation-member.proxyName" .)) -}}
{{- $_ := set $config.backend "proxy_token" (dict "token_file" "/run/fedmember/proxy/token") -}}
{{- if not (hasKey $config.backend "route_check_interval") }}{{ $_ := set $config.backend "route_check_interval" 10 }}{{ end -}}
{{- end -}}
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

{{/* The kubernetes backend's routing proxy (configurable-http-proxy). */}}
{{- define "federation-member.proxyEnabled" -}}
{{- if and .Values.proxy.enabled (include "federation-member.kubernetesBackend" .) -}}true{{- end -}}
{{- end -}}

{{- define "federation-member.proxyName" -}}
{{- printf "%s-proxy" (include "federation-member.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "federation-member.proxySelectorLabels" -}}
app.kubernetes.io/name: {{ include "federation-member.name" . }}-proxy
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "federation-member.proxyTokenSecret" -}}
{{- default (printf "%s-proxy-token" (include "federation-member.fullname" .)) .Values.proxy.tokenSecret.name -}}
{{- end -}}

{{- define "federation-member.proxyImage" -}}
{{- if .Values.proxy.image.digest -}}
{{- printf "%s:%s@%s" .Values.proxy.image.repository .Values.proxy.image.tag .Values.proxy.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.proxy.image.repository .Values.proxy.image.tag -}}
{{- end -}}
{{- end -}}

{{/* Only the local backend reads datasets itself; other backends' servers mount them. */}}
{{- define "federation-member.agentMountsDatasets" -}}
{{- if eq (toString .Values.config.backend.kind) "local" -}}true{{- end -}}
{{- end -}}
