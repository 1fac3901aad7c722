#!/usr/bin/env bash
# Container entrypoint of a worker-group pod. The group's leader (LeaderWorkerSet worker
# index 0, or StatefulSet ordinal 0) runs tessera-mpirun over the group's hosts; every
# other pod runs sshd for the leader's mpirun and waits. Arguments are passed on to
# tessera-worker (leader only).
#   TESSERA_ROLE             leader | worker | auto (default: from the pod's index)
#   TESSERA_MODEL            model path as every pod sees it (default: default)
#   TESSERA_COORDINATOR      HOST:PORT of the coordinator (leader)
#   TESSERA_TP, TESSERA_PP   layout (1, 1);  TESSERA_SLOTS_PER_HOST  ranks per pod (1)
#   TESSERA_HEALTH_PORT      grpc.health.v1 port of each pod's first rank (8081)
#   TESSERA_SSH_PORT         sshd port (2222; the pods run as a non-root user)
#   TESSERA_SSH_DIR          mounted Secret with id_ed25519 and authorized_keys
#   TESSERA_INTERFACE, TESSERA_NO_IB=1, TESSERA_WAIT_TIMEOUT: as tessera-mpirun's flags
#   TESSERA_GROUP_HOSTS      the group's hosts (StatefulSet groups; LWS sets its own vars)
#   TESSERA_BIN_DIR          where the binaries are (/opt/tessera/bin)
set -euo pipefail
bin="${TESSERA_BIN_DIR:-/opt/tessera/bin}"
ssh_port="${TESSERA_SSH_PORT:-2222}"
ssh_dir="${TESSERA_SSH_DIR:-/etc/tessera/ssh}"

role="${TESSERA_ROLE:-auto}"
if [ "$role" = auto ]; then
  if [ -n "${LWS_WORKER_INDEX:-}" ]; then index="$LWS_WORKER_INDEX"; else index="${HOSTNAME##*-}"; fi
  [[ "$index" =~ ^[0-9]+$ ]] || { echo "worker.sh: cannot tell this pod's index (HOSTNAME=$HOSTNAME); set TESSERA_ROLE" >&2; exit 2; }
  if ((index == 0)); then role=leader; else role=worker; fi
fi

# The key pair the group shares, copied where ssh looks (the Secret's files are read-only
# and may be group-readable, which ssh refuses).
install_keys() {
  [ -d "$ssh_dir" ] || return 0
  mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
  for f in id_ed25519 authorized_keys; do
    if [ -r "$ssh_dir/$f" ]; then install -m 600 "$ssh_dir/$f" "$HOME/.ssh/$f"; fi
  done
}

case "$role" in
  leader)
    install_keys
    args=(--model "${TESSERA_MODEL:-default}"
          --coordinator "${TESSERA_COORDINATOR:?TESSERA_COORDINATOR (HOST:PORT) is not set}"
          --tp "${TESSERA_TP:-1}" --pp "${TESSERA_PP:-1}"
          --slots-per-host "${TESSERA_SLOTS_PER_HOST:-1}" --ssh-port "$ssh_port"
          --wait-timeout "${TESSERA_WAIT_TIMEOUT:-600}" --worker "$bin/tessera-worker")
    [ -z "${TESSERA_INTERFACE:-}" ] || args+=(--interface "$TESSERA_INTERFACE")
    [ "${TESSERA_NO_IB:-0}" != 1 ] || args+=(--no-ib)
    [ "${TESSERA_OVERSUBSCRIBE:-0}" != 1 ] || args+=(--oversubscribe)
    # The image puts tessera-mpirun beside the binaries; a source tree has it in deploy/bin.
    launcher="$bin/tessera-mpirun"
    [ -x "$launcher" ] || launcher="$(cd "$(dirname "${BASH_SOURCE[0]}")/../bin" && pwd)/tessera-mpirun"
    exec "$launcher" "${args[@]}" -- --health-port "${TESSERA_HEALTH_PORT:-8081}" "$@"
    ;;
  worker)
    install_keys
    # sshd as the pod's user: its host key and config live in a writable directory.
    state="${TESSERA_SSHD_DIR:-$HOME/.sshd}"
    mkdir -p "$state"
    [ -f "$state/host_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$state/host_ed25519"
    cat > "$state/sshd_config" <<CONFIG
Port $ssh_port
HostKey $state/host_ed25519
PidFile $state/sshd.pid
AuthorizedKeysFile $HOME/.ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitUserEnvironment no
AcceptEnv OMPI_* PRTE_* NCCL_* TESSERA_*
CONFIG
    exec "${TESSERA_SSHD:-/usr/sbin/sshd}" -D -e -f "$state/sshd_config"
    ;;
  *)
    echo "worker.sh: TESSERA_ROLE must be leader, worker or auto (is '$role')" >&2
    exit 2
    ;;
esac
