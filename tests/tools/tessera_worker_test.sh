#!/usr/bin/env bash
# tessera-worker under real `mpirun --oversubscribe` (run by ctest with the build's bin dir):
#  1. tp 2, tp 3, tp 2 with sequence parallelism, 2 pipeline stages, and tp 2 x 2 stages
#     with sequence parallelism give the tokens `tessera generate --input` gives on one rank, on
#     cpu-reference (where a shard's logits differ from the whole model's only by float
#     summation order) for greedy, chat, beam search and seeded sampling with n = 2;
#  2. with --deterministic on the fast backend, tp 2, tp 3 and tp 2 x 2 stages give one
#     rank's --deterministic output exactly (tokens, text, beam scores alike);
#     the same with --kv-cache-dtype f16 (tp 2 x 2 stages against one rank); --enforce-eager
#     is taken;
#  3. --model random:SHAPE (every rank synthesizes the same weights): 2 pipeline stages with
#     2 batches in flight give one rank's tokens; an unknown shape is a usage error;
#     a --tp that is not the number of ranks is a usage error naming --tp;
#  4. killing rank 1 mid-run ends the whole job within seconds, with a message naming it.
set -euo pipefail
bin="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
fail() { echo "FAIL: $*" >&2; exit 1; }
# Whether two output JSONL files hold the same completions, line by line.
same_completions() {
  cmp -s <(python3 -c 'import json,sys; [print(json.loads(l)["completions"]) for l in open(sys.argv[1])]' "$1") \
         <(python3 -c 'import json,sys; [print(json.loads(l)["completions"]) for l in open(sys.argv[1])]' "$2")
}

cat > "$work/req.jsonl" <<'JSONL'
{"id": "greedy", "prompt": "The capital of France is", "max_new_tokens": 6}
{"id": "chat", "messages": [{"role": "user", "content": "Name three colors."}], "max_new_tokens": 6}
{"id": "beam", "prompt": "Once upon a time", "max_new_tokens": 5, "num_beams": 3, "num_return_sequences": 2}
{"id": "sample", "prompt": "1, 2, 3,", "max_new_tokens": 5, "do_sample": true, "seed": 4, "n": 2}
JSONL
common=(--model default --backend cpu-reference --threads 1 --input "$work/req.jsonl")
"$bin/tessera" generate "${common[@]}" --output "$work/one.jsonl" 2> "$work/one.err" \
  || { cat "$work/one.err" >&2; fail "tessera generate"; }
for layout in 2 3 "2 --sp" "2 --pp 2" "4 --pp 2 --sp"; do
  read -r -a words <<< "$layout"
  np="${words[0]}"
  extra=("${words[@]:1}")
  mpirun -np "$np" "$bin/tessera-worker" "${common[@]}" "${extra[@]}" --output "$work/tp.jsonl" \
    2> "$work/tp.err" || { cat "$work/tp.err" >&2; fail "tessera-worker: $layout"; }
  grep -q "tessera-worker: $np ranks" "$work/tp.err" || fail "no layout line: $layout"
  python3 - "$work/one.jsonl" "$work/tp.jsonl" <<'PY' || fail "tokens differ: $layout"
import json, sys
one, tp = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert len(one) == len(tp) == 4, (len(one), len(tp))
for a, b in zip(one, tp):
    ta = [c["token_ids"] for c in a["completions"]]
    tb = [c["token_ids"] for c in b["completions"]]
    assert a["id"] == b["id"] and ta == tb, (a["id"], ta, tb)
PY
done

# Deterministic mode on the fast backend: any layout gives one rank's tokens bit for bit.
fast=(--model default --threads 1 --deterministic --input "$work/req.jsonl")
"$bin/tessera" generate "${fast[@]}" --output "$work/one_det.jsonl" 2> "$work/one.err" \
  || { cat "$work/one.err" >&2; fail "tessera generate --deterministic"; }
for layout in 2 3 "4 --pp 2"; do
  read -r -a words <<< "$layout"
  mpirun -np "${words[0]}" "$bin/tessera-worker" "${fast[@]}" "${words[@]:1}" \
    --output "$work/det.jsonl" 2> "$work/det.err" \
    || { cat "$work/det.err" >&2; fail "tessera-worker --deterministic: $layout"; }
  same_completions "$work/one_det.jsonl" "$work/det.jsonl" \
    || fail "--deterministic output differs: $layout"
done
# --enforce-eager (decode steps not recorded as CUDA graphs) is taken and, with no recording
# backend here, changes nothing.
"$bin/tessera" generate "${fast[@]}" --enforce-eager --output "$work/one_eager.jsonl" \
  2> "$work/one.err" || { cat "$work/one.err" >&2; fail "tessera generate --enforce-eager"; }
same_completions "$work/one_det.jsonl" "$work/one_eager.jsonl" \
  || fail "--enforce-eager changed the output on cpu"
# The same with a half KV cache: every rank of every stage must build its cache in f16 (a
# follower on a float cache would change the logprobs), and a usage error names the flag.
"$bin/tessera" generate "${fast[@]}" --kv-cache-dtype f16 --output "$work/one_f16.jsonl" \
  2> "$work/one.err" || { cat "$work/one.err" >&2; fail "tessera generate --kv-cache-dtype f16"; }
mpirun -np 4 "$bin/tessera-worker" "${fast[@]}" --pp 2 --kv-cache-dtype f16 \
  --output "$work/det_f16.jsonl" 2> "$work/det.err" \
  || { cat "$work/det.err" >&2; fail "tessera-worker --kv-cache-dtype f16"; }
same_completions "$work/one_f16.jsonl" "$work/det_f16.jsonl" \
  || fail "--kv-cache-dtype f16 output differs on 4 ranks"
cmp -s "$work/one_f16.jsonl" "$work/one_det.jsonl" && fail "--kv-cache-dtype f16 changed nothing"

# Random weights in a named shape, synthesized by every rank: 6 requests through 2 stages
# with 2 disjoint batches in flight give what one rank gives on the same random model.
for i in 1 2 3 4 5 6; do
  echo "{\"id\": \"r$i\", \"prompt\": \"request $i of six\", \"max_new_tokens\": 8}"
done > "$work/random.jsonl"
random=(--model random:tiny:q8_0 --threads 1 --kv-cache-mb 16 --input "$work/random.jsonl")
"$bin/tessera" generate "${random[@]}" --output "$work/random_one.jsonl" 2> "$work/one.err" \
  || { cat "$work/one.err" >&2; fail "tessera generate --model random:tiny:q8_0"; }
mpirun -np 2 "$bin/tessera-worker" "${random[@]}" --pp 2 --batches-in-flight 2 \
  --output "$work/random_pp.jsonl" 2> "$work/random.err" \
  || { cat "$work/random.err" >&2; fail "tessera-worker --model random:tiny:q8_0 --pp 2"; }
cmp -s "$work/random_one.jsonl" "$work/random_pp.jsonl" \
  || fail "random:tiny:q8_0 on 2 stages differs from one rank"
set +e
mpirun -np 2 "$bin/tessera-worker" --model random:no-such-shape --pp 2 \
  --input "$work/random.jsonl" > /dev/null 2> "$work/bad.err"
code=$?
set -e
[[ $code -ne 0 ]] || fail "an unknown random: shape succeeded"
grep -q "no-such-shape" "$work/bad.err" || { cat "$work/bad.err" >&2; fail "no message naming the shape"; }

# A negative --batches-in-flight is a usage error naming the flag.
set +e
mpirun -np 1 "$bin/tessera-worker" "${random[@]}" --batches-in-flight -1 > /dev/null \
  2> "$work/bad.err"
code=$?
set -e
[[ $code -eq 2 ]] || { cat "$work/bad.err" >&2; fail "--batches-in-flight -1 exited $code, not 2"; }
grep -q -- "--batches-in-flight" "$work/bad.err" || { cat "$work/bad.err" >&2; fail "no message naming --batches-in-flight"; }

# --tp x --pp must be the number of ranks.
set +e
mpirun -np 2 "$bin/tessera-worker" "${common[@]}" --tp 3 > /dev/null 2> "$work/bad.err"
code=$?
set -e
[[ $code -ne 0 ]] || fail "--tp 3 on 2 ranks succeeded"
grep -q -- "--tp 3" "$work/bad.err" || { cat "$work/bad.err" >&2; fail "no message naming --tp"; }

# A rank that dies ends the job: a long batch, rank 1 killed once it is running.
for i in $(seq 1 64); do
  echo "{\"prompt\": \"Story number $i:\", \"max_new_tokens\": 400, \"min_new_tokens\": 400}"
done > "$work/long.jsonl"
mpirun -np 2 "$bin/tessera-worker" --model default --threads 1 --input "$work/long.jsonl" \
  --output "$work/long.out" > /dev/null 2> "$work/long.err" &
job=$!
victim=""
for _ in $(seq 1 100); do
  sleep 0.2
  grep -q "requests" "$work/long.err" 2> /dev/null || continue  # the engine has started
  for pid in $(pgrep -P "$job" || true); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then
      victim="$pid"
    fi
  done
  [[ -n "$victim" ]] && break
done
[[ -n "$victim" ]] || { kill "$job" 2> /dev/null; cat "$work/long.err" >&2; fail "rank 1 never started"; }
start=$(date +%s)
kill -9 "$victim"
set +e
timeout 60 tail --pid="$job" -f /dev/null
waited=$?
wait "$job"
code=$?
set -e
elapsed=$(( $(date +%s) - start ))
[[ $waited -eq 0 ]] || { kill -9 "$job"; fail "the job still ran 60 s after rank 1 died"; }
[[ $code -ne 0 ]] || fail "the job exited 0 after rank 1 died"
grep -qi "rank 1" "$work/long.err" || { cat "$work/long.err" >&2; fail "no message naming rank 1"; }
echo "killed rank 1: the job ended after ${elapsed} s with exit code $code"
echo "PASS"
