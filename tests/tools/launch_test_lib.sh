# Sourced by the `tessera launch` shell tests after `set -euo pipefail`, with the build's bin
# dir and the project's Python as $1 and $2: sets bin, python, root and a scratch dir
# `work` (removed at exit, with the launch session in `launch_pid` killed), and defines
# fail (prints launch.log), client (the Python client against 127.0.0.1:$port) and
# ready_replicas.
bin="$1"
python="$2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
launch_pid=""
# launch runs in a session of its own, so that a failed test can stop it and its children.
cleanup() { [ -n "$launch_pid" ] && kill -9 -- "-$launch_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export PYTHONPATH="$root/clients/python"
fail() { echo "FAIL: $*" >&2; cat "$work/launch.log" >&2 || true; exit 1; }
client() { "$python" -m tessera_client --target "127.0.0.1:$port" --timeout 60 "$@"; }
ready_replicas() { client models 2>/dev/null | awk -F'ready replicas ' '{print $2}'; }
