#!/usr/bin/env bash
# Runs Tessera's tessera_bench_serve (the engine on a 256-request synthetic workload, the same
# requests one at a time, and a parallel-sequence sweep) and llama.cpp's llama-batched-bench
# (the same sweep: NPL sequences of PP prompt and TG generated tokens) one after the other,
# with the same thread count, and writes both into docs/benchmarks.md (the section between
# the "serve-compare" markers, replaced on each run).
#
# Usage: bench/serve_compare.sh [-t THREADS] [-m MODEL] [-b TESSERA_BUILD_DIR]
#                               [-l LLAMA_CPP_DIR] [-n REQUESTS] [-g TG] [-k KV_DTYPE]
#                               [-r ROUNDS]
#   THREADS            default: nproc
#   MODEL              default: ~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf
#   TESSERA_BUILD_DIR  a build with -DTESSERA_BUILD_BENCH=ON (default: build)
#   LLAMA_CPP_DIR      a llama.cpp tree with build/bin/llama-batched-bench (default:
#                      /work/peers/llama.cpp; see compare_llamacpp.sh for the build)
#   REQUESTS           workload size (default 256); TG: sweep generated tokens (default 128)
#   KV_DTYPE           Tessera's KV cache element type (default f16, as llama.cpp's default
#                      cache); the other type's 1- and 32-sequence sweep is reported as well
#   ROUNDS             extra back-to-back runs of the 1- and 32-sequence sweep (default 5)
# The issue's target: total decode tokens/s at 32 parallel sequences >= 3x one sequence's.
# On a shared machine one sample of each swings by 30% with the neighbours' load, so the
# verdict is the median of the ROUNDS ratios, each from a 1- and a 32-sequence run made back
# to back (every ratio is printed). The script exits 0 either way (it measures; it does not
# gate).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
repo="$bench_repo"
threads="$(nproc)"
model="$bench_default_model"
build="$repo/build"
llama_dir="$bench_default_llama_dir"
requests=256
tg=128
kv=f16
rounds=5
while getopts "t:m:b:l:n:g:k:r:" opt; do
  case "$opt" in
    t) threads="$OPTARG" ;;
    m) model="$OPTARG" ;;
    b) build="$OPTARG" ;;
    l) llama_dir="$OPTARG" ;;
    n) requests="$OPTARG" ;;
    g) tg="$OPTARG" ;;
    k) kv="$OPTARG" ;;
    r) rounds="$OPTARG" ;;
    *) sed -n '2,24p' "$0" >&2; exit 2 ;;
  esac
done

ours="$build/bin/tessera_bench_serve"
theirs="$llama_dir/build/bin/llama-batched-bench"
bench_require_file "$model" model
bench_require_exe "$ours" "configure with -DTESSERA_BUILD_BENCH=ON"
bench_require_exe "$theirs" "build llama.cpp's llama-batched-bench"
commit="$(bench_llama_commit "$llama_dir")"

npl="1,4,16,32"
other_kv=$([[ "$kv" == f16 ]] && echo f32 || echo f16)
ours_cmd=("$ours" -m "$model" -t "$threads" --requests "$requests" --npl "$npl" --pp 128
          --tg "$tg" --kv-cache-dtype "$kv" --json)
ours_det_cmd=("$ours" -m "$model" -t "$threads" --requests 32 --sequential 0 --npl 1,32
              --pp 128 --tg "$tg" --kv-cache-dtype "$kv" --json)
ours_other_cmd=("$ours" -m "$model" -t "$threads" --requests 32 --sequential 0 --npl 1,32
                --pp 128 --tg "$tg" --kv-cache-dtype "$other_kv" --json)
theirs_cmd=("$theirs" -m "$model" -c 16384 -b 2048 -ub 512 -npp 128 -ntg "$tg" -npl "$npl"
            -t "$threads" --output-format jsonl)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "${ours_cmd[*]}" >&2
"${ours_cmd[@]}" > "$work/ours.json"
echo "${ours_det_cmd[*]} (plain, then --deterministic)" >&2
"${ours_det_cmd[@]}" > "$work/ours_plain.json"
"${ours_det_cmd[@]}" --deterministic > "$work/ours_det.json"
echo "${ours_other_cmd[*]}" >&2
"${ours_other_cmd[@]}" > "$work/ours_other.json"
echo "${ours_det_cmd[*]} x $rounds rounds" >&2
for round in $(seq 1 "$rounds"); do
  "${ours_det_cmd[@]}" > "$work/round_$round.json"
done
for fa in off on; do
  echo "${theirs_cmd[*]} -fa $fa" >&2
  "${theirs_cmd[@]}" -fa "$fa" 2> "$work/theirs.err" | grep '^{' > "$work/theirs_$fa.jsonl" \
    || { cat "$work/theirs.err" >&2; exit 1; }
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
date_utc="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

python3 - "$work" "$repo/docs/benchmarks.md" "$commit" "$cpu" "$(nproc)" "$date_utc" \
  "$threads" "${ours_cmd[*]}" "${ours_det_cmd[*]}" "${theirs_cmd[*]}" "$load_before" \
  "$load_after" "$kv" "$other_kv" "${ours_other_cmd[*]}" <<'PY'
import glob, json, os, re, statistics, sys
(work, doc, commit, cpu, cores, date, threads, ours_cmd, det_cmd, theirs_cmd, load_before,
 load_after, kv, other_kv, other_cmd) = sys.argv[1:]
ours = json.load(open(f"{work}/ours.json"))
plain = json.load(open(f"{work}/ours_plain.json"))
det = json.load(open(f"{work}/ours_det.json"))
other = {s["npl"]: s for s in json.load(open(f"{work}/ours_other.json"))["sweep"]}
round_ratios = []
for f in sorted(glob.glob(f"{work}/round_*.json")):
    r = {s["npl"]: s for s in json.load(open(f))["sweep"]}
    round_ratios.append((r[1]["s_tg"], r[32]["s_tg"], r[32]["s_tg"] / r[1]["s_tg"]))
theirs = {}
for fa in ("off", "on"):
    for line in open(f"{work}/theirs_{fa}.jsonl"):
        r = json.loads(line)
        best = theirs.get(r["pl"])
        if best is None or r["speed_tg"] > best["speed_tg"]:
            theirs[r["pl"]] = dict(r, fa=fa)
home = os.path.expanduser("~")
show = lambda s: s.replace(home, "~")
w, a = ours["workload"], ours["one_at_a_time"]
sweep = {s["npl"]: s for s in ours["sweep"]}
single = sweep[1]["s_tg"]
rows = "\n".join(
    f"| {n} | {s['s_pp']:.1f} | {s['s_tg']:.1f} | {s['s_tg'] / single:.2f} | "
    f"{theirs[n]['speed_pp']:.1f} | {theirs[n]['speed_tg']:.1f} (-fa {theirs[n]['fa']}) | "
    f"{s['s_tg'] / theirs[n]['speed_tg']:.2f} |"
    for n, s in sorted(sweep.items()))
sweep_ratio = sweep[32]["s_tg"] / single
ratio32 = statistics.median([r for _, _, r in round_ratios]) if round_ratios else sweep_ratio
rounds_text = ", ".join(f"{r:.2f}x ({a:.0f} / {b:.0f})" for b, a, r in round_ratios)
dsweep = {s["npl"]: s for s in det["sweep"]}
psweep = {s["npl"]: s for s in plain["sweep"]}
cost = lambda key, n: dsweep[n][key] / psweep[n][key]
section = f"""<!-- serve-compare:begin (written by bench/serve_compare.sh; do not edit by hand) -->
## Engine serving: continuous batching vs one at a time, and vs llama-batched-bench

Workload: {w['requests']} requests (fixed seed), prompts of 32-512 random tokens, 16-256 new
tokens each (greedy, no EOS), all arriving at once; engine limits {ours['max_num_seqs']}
sequences and {ours['max_batched_tokens']} tokens per step (chunked prefill); KV cache of
{kv} elements (llama.cpp's default cache is f16).

| | output tokens/s | TTFT p50 / p99 (ms) | TPOT p50 / p99 (ms) |
|---|---:|---:|---:|
| engine, {w['requests']} requests | {w['output_tokens_per_s']:.1f} | {w['ttft_p50_ms']:.0f} / {w['ttft_p99_ms']:.0f} | {w['tpot_p50_ms']:.1f} / {w['tpot_p99_ms']:.1f} |
| one at a time, first {a['requests']} | {a['output_tokens_per_s']:.1f} | {a['ttft_p50_ms']:.0f} / {a['ttft_p99_ms']:.0f} | {a['tpot_p50_ms']:.1f} / {a['tpot_p99_ms']:.1f} |

Engine / one at a time: **{w['output_tokens_per_s'] / a['output_tokens_per_s']:.2f}x** output tokens/s.

Parallel sequences (prompt 128, {sweep[1]['tg']} generated each; S_PP prompt tokens/s, S_TG
generated tokens/s; llama.cpp: the better of `-fa off` / `-fa on` per row):

| NPL | Tessera S_PP | Tessera S_TG | S_TG / NPL 1 | llama.cpp S_PP | llama.cpp S_TG | Tessera / llama.cpp S_TG |
|---:|---:|---:|---:|---:|---:|---:|
{rows}

Target (total decode at 32 sequences >= 3x one sequence): **{"met" if ratio32 >= 3 else "NOT met"}**:
the median of {len(round_ratios)} back-to-back pairs of runs is **{ratio32:.2f}x** (S_TG at 32 / at 1:
{rounds_text}); the sweep above gives {sweep_ratio:.2f}x.

With a KV cache of {other_kv} elements instead: S_TG {other[1]['s_tg']:.1f} at 1 sequence,
{other[32]['s_tg']:.1f} at 32 (**{other[32]['s_tg'] / other[1]['s_tg']:.2f}x**); S_PP at 32
{other[32]['s_pp']:.1f}.

Deterministic mode (`--deterministic`, batch-invariant kernels) against the default on the
same sweep: S_PP x{cost('s_pp', 32):.2f}, S_TG x{cost('s_tg', 32):.2f} at 32 sequences; S_TG
x{cost('s_tg', 1):.2f} at 1. With packed weights (CPUs with AVX-512 VNNI) every row goes
through the same kernels in any batch, so the two modes do the same work and the ratios
differ from 1 by load noise only; elsewhere deterministic mode gives up the 4-row kernels.

- Date: {date}; CPU: {cpu} ({cores} cores visible), {threads} threads for both
- llama.cpp commit `{commit}`. Load average before {load_before}, after {load_after}.
- Commands (`bench/serve_compare.sh -t {threads} -r {len(round_ratios)}`):
  - `{show(ours_cmd)}`
  - `{show(det_cmd)}` (and again with `--deterministic`, and {len(round_ratios)} more times for the target)
  - `{show(other_cmd)}`
  - `{show(theirs_cmd)} -fa off|on`
<!-- serve-compare:end -->
"""
text = open(doc).read()
pat = re.compile(r"<!-- serve-compare:begin .*?<!-- serve-compare:end -->\n", re.S)
text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section
open(doc, "w").write(text)
print(f"engine {w['output_tokens_per_s']:.1f} tok/s vs one at a time {a['output_tokens_per_s']:.1f}; "
      f"S_TG at 32 / at 1 = {ratio32:.2f} (target 3): {'met' if ratio32 >= 3 else 'NOT met'}")
PY
