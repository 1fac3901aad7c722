{{/* Names, labels and the checks every template shares. */}}

{{- define "tessera.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tessera.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tessera.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tessera.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "tessera.coordinatorAddress" -}}
{{ include "tessera.fullname" . }}-coordinator:{{ .Values.coordinator.grpcPort }}
{{- end -}}

{{/* "LeaderWorkerSet" or "StatefulSet" for the worker groups. */}}
{{- define "tessera.groupKind" -}}
{{- $kind := .Values.workers.groupKind -}}
{{- if eq $kind "auto" -}}
{{- if .Capabilities.APIVersions.Has "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet" -}}
LeaderWorkerSet
{{- else -}}
StatefulSet
{{- end -}}
{{- else -}}
{{ $kind }}
{{- end -}}
{{- end -}}

{{/* A model's worker-group name: <release>-<model>. */}}
{{- define "tessera.groupName" -}}
{{- printf "%s-%s" (include "tessera.fullname" .root) .model.name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* Ranks per pod, after checking the layout against the pods and GPUs. */}}
{{- define "tessera.ranksPerPod" -}}
{{- $m := .model -}}
{{- $ranks := mul $m.tp $m.pp -}}
{{- if ne (mod $ranks $m.podsPerGroup) 0 -}}
{{- fail (printf "models[%s]: tp x pp = %d ranks do not divide over podsPerGroup = %d" $m.name $ranks $m.podsPerGroup) -}}
{{- end -}}
{{- $perPod := div $ranks $m.podsPerGroup -}}
{{- if and (gt (int ($m.gpusPerPod | default 0)) 0) (not .root.Values.experimentalCuda) -}}
{{- fail (printf "models[%s]: gpusPerPod > 0 runs the cuda backend, which has not passed its GPU tests yet; set experimentalCuda: true to deploy it anyway" $m.name) -}}
{{- end -}}
{{- if and (gt (int $m.gpusPerPod) 0) (ne (int $m.gpusPerPod) (int $perPod)) -}}
{{- fail (printf "models[%s]: gpusPerPod = %d but each pod runs %d ranks (one per GPU)" $m.name (int $m.gpusPerPod) $perPod) -}}
{{- end -}}
{{- if and (gt (int $m.podsPerGroup) 1) (not .root.Values.workers.sshSecretName) -}}
{{- fail (printf "models[%s]: podsPerGroup > 1 needs workers.sshSecretName (a Secret with id_ed25519 and authorized_keys)" $m.name) -}}
{{- end -}}
{{- $perPod -}}
{{- end -}}

{{/* The model-cache volume: an existing claim, or an emptyDir. */}}
{{- define "tessera.modelCacheVolume" -}}
- name: model-cache
{{- if .Values.modelCache.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.modelCache.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.modelCache.emptyDirSizeLimit }}
{{- end }}
{{- end -}}

{{/* initContainers fetching the default model when a model asks for it (or nothing). */}}
{{- define "tessera.fetchModelInit" -}}
{{- $wants := false -}}
{{- range .Values.models -}}
{{- if eq .path "default" -}}{{- $wants = true -}}{{- end -}}
{{- end -}}
{{- if and $wants .Values.modelCache.fetchDefault }}
initContainers:
  - name: fetch-model
    image: {{ include "tessera.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    command: ["python3", "/opt/tessera/scripts/fetch_model.py"]
    env:
      - name: TESSERA_CACHE
        value: {{ .Values.modelCache.mountPath }}
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: ["ALL"]
    volumeMounts:
      - name: model-cache
        mountPath: {{ .Values.modelCache.mountPath }}
{{- end }}
{{- end -}}

{{/* The pod spec of a worker-group pod (leader and workers run the same entrypoint, which
     picks its role from the pod's index). Context: dict root, model, perPod, hosts. */}}
{{- define "tessera.workerPodSpec" -}}
{{- $root := .root -}}
{{- $m := .model -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ $root.Values.workers.terminationGracePeriodSeconds }}
# A failed job restarts the leader's container under the kubelet's back-off (mpirun
# relaunches every rank over ssh), never a tight loop of recreated groups.
restartPolicy: Always
{{- with $root.Values.workers.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.workers.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "tessera.fetchModelInit" $root | trim }}
{{ . }}
{{- end }}
containers:
  - name: worker
    image: {{ include "tessera.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command: ["/opt/tessera/entrypoints/worker.sh"]
    args:
      - --threads
      - {{ $m.threads | default 0 | quote }}
      {{- if gt (int ($m.gpusPerPod | default 0)) 0 }}
      - --backend
      - cuda
      {{- end }}
      {{- if and (gt (int ($m.gpusPerPod | default 0)) 0) (gt (float64 ($m.gpuMemoryUtilization | default 0)) 0.0) }}
      - --gpu-memory-utilization
      - {{ $m.gpuMemoryUtilization | quote }}
      {{- else }}
      - --kv-cache-mb
      - {{ $m.kvCacheMb | default 512 | quote }}
      {{- end }}
      - --served-model-name
      - {{ $m.name | quote }}
      {{- if $root.Values.auth.tokenSecretName }}
      - --auth-token-file
      - /etc/tessera/auth/token
      {{- end }}
      {{- if $root.Values.tls.secretName }}
      - --tls-root
      - /etc/tessera/tls/ca.crt
      {{- end }}
    env:
      - name: TESSERA_MODEL
        value: {{ $m.path | quote }}
      - name: TESSERA_COORDINATOR
        value: {{ include "tessera.coordinatorAddress" $root | quote }}
      - name: TESSERA_TP
        value: {{ $m.tp | quote }}
      - name: TESSERA_PP
        value: {{ $m.pp | quote }}
      - name: TESSERA_SLOTS_PER_HOST
        value: {{ .perPod | quote }}
      {{- if gt (int ($m.gpusPerPod | default 0)) 0 }}
      - name: TESSERA_EXPERIMENTAL_CUDA
        value: "1"
      {{- end }}
      - name: TESSERA_HEALTH_PORT
        value: {{ $root.Values.workers.healthPort | quote }}
      - name: TESSERA_SSH_PORT
        value: {{ $root.Values.workers.sshPort | quote }}
      - name: TESSERA_WAIT_TIMEOUT
        value: {{ $root.Values.workers.hostWaitSeconds | quote }}
      - name: TESSERA_CACHE
        value: {{ $root.Values.modelCache.mountPath }}
      {{- with .hosts }}
      - name: TESSERA_GROUP_HOSTS
        value: {{ . | quote }}
      {{- end }}
      {{- with $root.Values.workers.network.interface }}
      - name: TESSERA_INTERFACE
        value: {{ . | quote }}
      {{- end }}
      {{- if not $root.Values.workers.network.infiniband }}
      - name: TESSERA_NO_IB
        value: "1"
      {{- end }}
    ports:
      - name: health
        containerPort: {{ $root.Values.workers.healthPort }}
      - name: ssh
        containerPort: {{ $root.Values.workers.sshPort }}
    # Every pod's first rank serves grpc.health.v1: NOT_SERVING while it loads. The startup
    # probe allows loadTimeoutSeconds before the liveness probe may restart anything.
    startupProbe:
      grpc:
        port: {{ $root.Values.workers.healthPort }}
      periodSeconds: 10
      failureThreshold: {{ div (add ($m.loadTimeoutSeconds | default 600) $root.Values.workers.hostWaitSeconds 9) 10 }}
    readinessProbe:
      grpc:
        port: {{ $root.Values.workers.healthPort }}
      periodSeconds: 10
    livenessProbe:
      grpc:
        port: {{ $root.Values.workers.healthPort }}
      periodSeconds: 20
      failureThreshold: 3
    resources:
      {{- $resources := deepCopy ($m.resources | default dict) }}
      {{- if gt (int ($m.gpusPerPod | default 0)) 0 }}
      {{- $limits := get $resources "limits" | default dict }}
      {{- $_ := set $limits "nvidia.com/gpu" $m.gpusPerPod }}
      {{- $_ := set $resources "limits" $limits }}
      {{- $requests := get $resources "requests" | default dict }}
      {{- $_ := set $requests "nvidia.com/gpu" $m.gpusPerPod }}
      {{- $_ := set $resources "requests" $requests }}
      {{- end }}
      {{- toYaml $resources | nindent 6 }}
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: ["ALL"]
    volumeMounts:
      - name: model-cache
        mountPath: {{ $root.Values.modelCache.mountPath }}
      - name: dshm
        mountPath: /dev/shm
      {{- if $root.Values.workers.sshSecretName }}
      - name: ssh
        mountPath: /etc/tessera/ssh
        readOnly: true
      {{- end }}
      {{- if $root.Values.auth.tokenSecretName }}
      - name: auth
        mountPath: /etc/tessera/auth
        readOnly: true
      {{- end }}
      {{- if $root.Values.tls.secretName }}
      - name: tls
        mountPath: /etc/tessera/tls
        readOnly: true
      {{- end }}
volumes:
  {{- include "tessera.modelCacheVolume" $root | nindent 2 }}
  # NCCL and Open MPI use shared memory; the container runtime's 64 MiB default is too small.
  - name: dshm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $root.Values.workers.shmSizeLimit }}
  {{- if $root.Values.workers.sshSecretName }}
  - name: ssh
    secret:
      secretName: {{ $root.Values.workers.sshSecretName }}
      defaultMode: 0400
  {{- end }}
  {{- if $root.Values.auth.tokenSecretName }}
  - name: auth
    secret:
      secretName: {{ $root.Values.auth.tokenSecretName }}
  {{- end }}
  {{- if $root.Values.tls.secretName }}
  - name: tls
    secret:
      secretName: {{ $root.Values.tls.secretName }}
  {{- end }}
{{- end -}}
