#!/usr/bin/env bash
# Runs Tessera's tessera_bench_generate and llama.cpp's llama-bench on the same model file
# with the same thread count, one after the other in this one script, and writes both
# numbers and the ratios (Tessera / llama.cpp) into docs/benchmarks.md (the section between
# the "llamacpp-compare" markers for that thread count, replaced on each run).
#
# Usage: bench/compare_llamacpp.sh [-t THREADS] [-m MODEL] [-b TESSERA_BUILD_DIR]
#                                  [-l LLAMA_CPP_DIR] [-r REPS] [-k ROUNDS]
#   THREADS            default: nproc
#   MODEL              default: ~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf
#   TESSERA_BUILD_DIR  a build with -DTESSERA_BUILD_BENCH=ON (default: build)
#   LLAMA_CPP_DIR      a llama.cpp tree with build/bin/llama-bench, built with
#                      cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
#                      (default: /work/peers/llama.cpp); its commit comes from git, or
#                      $LLAMA_CPP_COMMIT, or TESSERA_PEER_COMMIT.txt in it.
#   REPS, ROUNDS       each round runs Tessera then llama.cpp with REPS timed repetitions
#                      (default 3 and 3); medians are over all rounds' samples, so that load
#                      from other processes drifting during the run hits both alike.
# It also reports each program's peak resident memory (GNU time) and decode as a fraction
# of the roofline (weight bytes per token x tokens/s / read bandwidth measured in the same
# run), and whether the fast-CPU issue's floors and goals hold: decode >= 1.5x (goal 2x),
# prefill >= 1.2x (goal 1.5x), memory <= 1.1x (goal 1.0x). It exits 0 either way (it
# measures; it does not gate). The section is keyed by thread count and quantization (from
# the model's file name), so a Q4_1 and a Q8_0 run each keep their own.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
repo="$bench_repo"
threads="$(nproc)"
model="$bench_default_model"
build="$repo/build"
llama_dir="$bench_default_llama_dir"
reps=3
rounds=3
while getopts "t:m:b:l:r:k:" opt; do
  case "$opt" in
    t) threads="$OPTARG" ;;
    m) model="$OPTARG" ;;
    b) build="$OPTARG" ;;
    l) llama_dir="$OPTARG" ;;
    r) reps="$OPTARG" ;;
    k) rounds="$OPTARG" ;;
    *) sed -n '2,19p' "$0" >&2; exit 2 ;;
  esac
done

ours="$build/bin/tessera_bench_generate"
theirs="$llama_dir/build/bin/llama-bench"
bench_require_file "$model" model
bench_require_exe "$ours" "configure with -DTESSERA_BUILD_BENCH=ON"
bench_require_exe "$theirs" "build llama.cpp's llama-bench"

commit="$(bench_llama_commit "$llama_dir")"

ours_cmd=("$ours" -m "$model" -t "$threads" -p 512 -n 128 -r "$reps" --json)
theirs_cmd=("$theirs" -m "$model" -p 512 -n 128 -t "$threads" -r "$reps" -o json)
bandwidth_cmd=("$ours" --bandwidth-only -t "$threads" --json)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
"${bandwidth_cmd[@]}" > "$work/bandwidth_0.json"
for ((i = 0; i < rounds; ++i)); do
  # GNU time's %M: the process's peak resident set (KiB), measured the same way for both.
  echo "round $((i + 1))/$rounds: ${ours_cmd[*]}" >&2
  /usr/bin/time -f %M -o "$work/ours_rss_$i" "${ours_cmd[@]}" > "$work/ours_$i.json"
  echo "round $((i + 1))/$rounds: ${theirs_cmd[*]}" >&2
  /usr/bin/time -f %M -o "$work/theirs_rss_$i" "${theirs_cmd[@]}" > "$work/theirs_$i.json" \
    2> "$work/theirs.err" || { cat "$work/theirs.err" >&2; exit 1; }
done
"${bandwidth_cmd[@]}" > "$work/bandwidth_1.json"
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
cores="$(nproc)"
date_utc="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
quant="$(python3 -c 'import re,sys; m=re.search(r"\.(Q\d_\w+|F16|BF16|F32)\.gguf$", sys.argv[1]); print(m.group(1) if m else "model")' "$model")"

python3 - "$work" "$repo/docs/benchmarks.md" "$commit" "$cpu" "$cores" "$date_utc" \
  "$threads" "${ours_cmd[*]}" "${theirs_cmd[*]}" "$rounds" "$load_before" "$load_after" \
  "$quant" "${bandwidth_cmd[*]}" <<'EOF'
import glob, json, os, re, statistics, sys
(work, doc, commit, cpu, cores, date, threads, ours_cmd, theirs_cmd, rounds, load_before,
 load_after, quant, bandwidth_cmd) = sys.argv[1:]
ours_runs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/ours_*.json"))]
theirs_runs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/theirs_*.json"))]
ours = ours_runs[0]
ours_pp_s = [x for r in ours_runs for x in r["prefill_tps"]]
ours_tg_s = [x for r in ours_runs for x in r["decode_tps"]]
def samples(pred):
    out = []
    for run in theirs_runs:
        rows = [r for r in run if pred(r)]
        assert len(rows) == 1, rows
        out += rows[0]["samples_ts"]
    return out
ll_pp_s = samples(lambda r: r["n_prompt"] == 512 and r["n_gen"] == 0)
ll_tg_s = samples(lambda r: r["n_prompt"] == 0 and r["n_gen"] == 128)
ll_pp, ll_tg = statistics.median(ll_pp_s), statistics.median(ll_tg_s)
ours_pp, ours_tg = statistics.median(ours_pp_s), statistics.median(ours_tg_s)
r2 = lambda xs: [round(x, 1) for x in xs]
home = os.path.expanduser("~")
show = lambda s: s.replace(home, "~")
bo_pp, bo_tg, bl_pp, bl_tg = max(ours_pp_s), max(ours_tg_s), max(ll_pp_s), max(ll_tg_s)
rss = lambda who: max(int(open(f).read().split()[-1]) for f in glob.glob(f"{work}/{who}_rss_*")) / 1024
ours_rss, ll_rss = rss("ours"), rss("theirs")
gbps = [json.load(open(f))["read_gbps"] for f in sorted(glob.glob(f"{work}/bandwidth_*.json"))]
bandwidth = max(gbps)
weight_mb = ours["weight_mb_per_token"]
roof = lambda tps: tps * weight_mb / 1e3 / bandwidth
# The fast-CPU issue's floors and goals: (figure, ratio, floor, goal, higher is better).
targets = [("decode (tg128)", ours_tg / ll_tg, 1.5, 2.0, True),
           ("prefill (pp512)", ours_pp / ll_pp, 1.2, 1.5, True),
           ("peak resident memory", ours_rss / ll_rss, 1.1, 1.0, False)]
def verdict(ratio, floor, goal, higher):
    ok = (lambda a, b: a >= b) if higher else (lambda a, b: a <= b)
    return "goal met" if ok(ratio, goal) else "floor met" if ok(ratio, floor) else "NOT met"
verdicts = "; ".join(f"{name} {ratio:.2f}x (floor {floor}, goal {goal}): **{verdict(ratio, floor, goal, hi)}**"
                     for name, ratio, floor, goal, hi in targets)
if quant not in ("Q4_1", "Q8_0"):
    verdicts += f" (the fast-CPU issue sets these for Q8_0 and Q4_1; shown for {quant} for reference)"
section = f"""<!-- llamacpp-compare:begin t={threads} {quant} (written by bench/compare_llamacpp.sh; do not edit by hand) -->
## Tessera vs llama.cpp, one rank, CPU, {threads} thread(s), {quant}

| | Tessera median | llama.cpp median | ratio | Tessera best | llama.cpp best | ratio |
|---|---:|---:|---:|---:|---:|---:|
| prefill, 512 tokens (pp512), tokens/s | {ours_pp:.1f} | {ll_pp:.1f} | {ours_pp / ll_pp:.2f} | {bo_pp:.1f} | {bl_pp:.1f} | {bo_pp / bl_pp:.2f} |
| decode, 128 tokens (tg128), tokens/s | {ours_tg:.1f} | {ll_tg:.1f} | {ours_tg / ll_tg:.2f} | {bo_tg:.1f} | {bl_tg:.1f} | {bo_tg / bl_tg:.2f} |
| decode as a fraction of the roofline | {roof(ours_tg):.0%} | {roof(ll_tg):.0%} | | {roof(bo_tg):.0%} | {roof(bl_tg):.0%} | |
| peak resident memory, MiB (max of the runs) | {ours_rss:.1f} | {ll_rss:.1f} | {ours_rss / ll_rss:.2f} | | | |

Ratios are Tessera / llama.cpp. "Best" is the fastest sample, the estimate least touched by
other processes on a shared machine. Roofline: {weight_mb:.1f} MB of weights read per decode
token x tokens/s / {bandwidth:.1f} GB/s, the read bandwidth of {threads} thread(s) measured by
`{show(bandwidth_cmd)}` before and after the runs ({", ".join(f"{g:.1f}" for g in gbps)} GB/s;
the higher is used). Peak resident memory is GNU time's maximum resident set of each whole
run (pp512 and tg128 with warm-ups).
Targets on the medians: {verdicts}.

- Date: {date}
- CPU: {cpu} ({cores} cores visible), {threads} threads for both
- Model: `{show(ours["model"])}` (Tessera backend `{ours["backend"]}`)
- llama.cpp: commit `{commit}`, built CPU-only Release with `-DGGML_NATIVE=ON -DLLAMA_CURL=OFF`
- Medians over {rounds} alternating rounds of {ours["reps"]} timed runs each (after a
  warm-up in each). Load average (1/5/15 min) before {load_before}, after {load_after}.
  Samples in run order: Tessera prefill {r2(ours_pp_s)}, decode {r2(ours_tg_s)};
  llama.cpp (llama-bench samples_ts) pp {r2(ll_pp_s)}, tg {r2(ll_tg_s)}.
- Commands (alternated by `bench/compare_llamacpp.sh -t {threads} -m {show(ours["model"])} -r {ours["reps"]} -k {rounds}`):
  - `{show(ours_cmd)}`
  - `{show(theirs_cmd)}`
<!-- llamacpp-compare:end t={threads} {quant} -->
"""
header = """# Benchmarks

Throughput of Tessera against a baseline run on the same machine, in the same script.
Regenerate the section below with `bench/compare_llamacpp.sh` (see its header for the
llama.cpp build it expects). Prefill is one forward over 512 tokens on an empty KV cache;
decode is 128 single-token forwards from an empty cache, as llama-bench's pp512 and tg128.
Each section alternates the two programs for a few rounds and reports the median and the
fastest sample of each. On a shared machine (this project's is 2 vCPUs that other jobs also
use) throughput swings by 10x with the load, and both programs' thread pools suffer when
a thread is descheduled; the fastest samples are the better estimate of uncontended speed.

"""
text = open(doc).read() if os.path.exists(doc) else header
pat = re.compile(rf"<!-- llamacpp-compare:begin t={threads} {quant} .*?<!-- llamacpp-compare:end t={threads} {quant} -->\n", re.S)
text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section
open(doc, "w").write(text)
print(f"prefill: Tessera {ours_pp:.1f} t/s, llama.cpp {ll_pp:.1f} t/s, ratio {ours_pp / ll_pp:.2f}"
      f" (best samples {bo_pp:.1f} / {bl_pp:.1f} = {bo_pp / bl_pp:.2f})")
print(f"decode:  Tessera {ours_tg:.1f} t/s, llama.cpp {ll_tg:.1f} t/s, ratio {ours_tg / ll_tg:.2f}"
      f" (best samples {bo_tg:.1f} / {bl_tg:.1f} = {bo_tg / bl_tg:.2f})")
print(f"roofline: Tessera {roof(ours_tg):.0%}, llama.cpp {roof(ll_tg):.0%} of {bandwidth:.1f} GB/s;"
      f" peak resident Tessera {ours_rss:.1f} MiB, llama.cpp {ll_rss:.1f} MiB")
print(verdicts.replace("**", ""))
print(f"wrote {doc}")
EOF
