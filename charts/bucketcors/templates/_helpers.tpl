{{/*
Name of the chart, or nameOverride.
*/}}
{{- define "bucketcors.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: fullnameOverride, else the release name when it already contains the chart name,
else "<release>-<chart>". At most 63 characters (a DNS label).
*/}}
{{- define "bucketcors.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "bucketcors.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "bucketcors.labels" -}}
helm.sh/chart: {{ include "bucketcors.chart" . }}
{{ include "bucketcors.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bucketcors
{{- end }}

{{/*
Labels that select the operator's pods. Never change them: a Deployment's selector is immutable.
*/}}
{{- define "bucketcors.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bucketcors.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "bucketcors.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bucketcors.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Lease used for leader election (in the release namespace).
*/}}
{{- define "bucketcors.leaseName" -}}
{{- include "bucketcors.fullname" . }}
{{- end }}

{{/*
Image reference: repository@digest when a digest is set, else repository:tag (tag defaulting
to the chart's appVersion).
*/}}
{{- define "bucketcors.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The permissions the operator needs in each namespace it watches: read and update its own
objects, their status and finalizers; record Events; read the credential Secrets its objects
name (get only: it never lists or watches Secrets).
*/}}
{{- define "bucketcors.rules" -}}
- apiGroups: ["bucketcors.dev"]
  resources: ["bucketcors"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["bucketcors.dev"]
  resources: ["bucketcors/status", "bucketcors/finalizers"]
  verbs: ["update", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.tenancy.tenantSecrets }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- end }}
