# Sourced by the bench/*.sh scripts: the defaults they share and the checks they all make.
# Defines bench_repo, bench_default_model and bench_default_llama_dir, and:
#   bench_require_file PATH WHAT        exits 1 with a message when PATH is not a file
#   bench_require_exe PATH HINT         exits 1 with "no PATH (HINT)" when not executable
#   bench_llama_commit DIR              prints llama.cpp's commit: from git, else
#                                       $LLAMA_CPP_COMMIT, else DIR/TESSERA_PEER_COMMIT.txt
bench_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench_default_model="$HOME/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf"
bench_default_llama_dir="/work/peers/llama.cpp"

bench_require_file() {
  [[ -f "$1" ]] || { echo "$2 not found: $1" >&2; exit 1; }
}

bench_require_exe() {
  [[ -x "$1" ]] || { echo "no $1 ($2)" >&2; exit 1; }
}

bench_llama_commit() {
  local commit
  if commit="$(git -C "$1" rev-parse --short=9 HEAD 2>/dev/null)"; then echo "$commit";
  elif [[ -n "${LLAMA_CPP_COMMIT:-}" ]]; then echo "$LLAMA_CPP_COMMIT";
  elif [[ -f "$1/TESSERA_PEER_COMMIT.txt" ]]; then head -1 "$1/TESSERA_PEER_COMMIT.txt";
  else echo "unknown"; fi
}
