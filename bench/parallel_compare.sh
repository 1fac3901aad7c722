#!/usr/bin/env bash
# Runs tessera_bench_parallel under mpirun for each layout this machine can hold (one rank
# with 1 and with all threads, tp 2, tp 2 with sequence parallelism, tp 3, 2 pipeline
# stages, tp 2 x 2 stages),
# one after the other in this one script, and writes the figures plus a model of the same
# figures for a Llama-3-70B-shape model on 8 GPUs per node over NVLink and 2-16 nodes over
# 400 Gb/s links into docs/benchmarks.md (the section between the "parallel-layouts"
# markers, replaced on each run). The model's assumptions are printed with it.
#
# Usage: bench/parallel_compare.sh [-m MODEL] [-b TESSERA_BUILD_DIR] [-n BATCH] [-p PROMPT]
#                                  [-d DECODE]
#   MODEL              default: 'default' (SmolLM2-135M-Instruct Q4_1)
#   TESSERA_BUILD_DIR  a build with -DTESSERA_BUILD_BENCH=ON (default: build)
#   BATCH, PROMPT, DECODE  sequences, prompt tokens each, decode steps (16, 64, 32)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
repo="$bench_repo"
model="default"
build="$repo/build"
batch=16
prompt=64
decode=32
while getopts "m:b:n:p:d:" opt; do
  case "$opt" in
    m) model="$OPTARG" ;;
    b) build="$OPTARG" ;;
    n) batch="$OPTARG" ;;
    p) prompt="$OPTARG" ;;
    d) decode="$OPTARG" ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
  esac
done
bench="$build/bin/tessera_bench_parallel"
bench_require_exe "$bench" "configure with -DTESSERA_BUILD_BENCH=ON"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cores="$(nproc)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
args=(--model "$model" --batch "$batch" --prompt "$prompt" --decode "$decode" --json)
layouts=("1 --threads 1" "1 --threads $cores" "2 --threads 1" "2 --threads 1 --sp"
         "3 --threads 1" "2 --threads 1 --pp 2" "4 --threads 1 --pp 2")
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for i in "${!layouts[@]}"; do
  read -r -a l <<< "${layouts[$i]}"
  # --bind-to none: Open MPI would pin a small job to one core per rank.
  cmd=(mpirun --bind-to none -np "${l[0]}" "$bench" "${args[@]}" "${l[@]:1}")
  echo "${cmd[*]}" >&2
  "${cmd[@]}" > "$work/$i.json"
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
date_utc="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

python3 - "$work" "$repo/docs/benchmarks.md" "$cpu" "$cores" "$date_utc" "$load_before" \
  "$load_after" "${args[*]}" <<'PY'
import glob, json, os, re, sys
work, doc, cpu, cores, date, load_before, load_after, args = sys.argv[1:]
runs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/*.json"), key=lambda p: int(os.path.basename(p)[:-5]))]
base = runs[1]  # one rank, every core: the same cores the multi-rank layouts use
rows = []
for r in runs:
    name = (f"tp {r['tp']} x pp {r['pp']}" + (" + SP" if r["sp"] else "") +
            (f", {r['micro_batches']} micro-batches" if r["pp"] > 1 else "") +
            f", {r['ranks']} rank(s) x {r['threads_per_rank']} thread(s)")
    rows.append(f"| {name} | {r['prefill_tokens_per_s']:.1f} | {r['prefill_comm_share']:.0%} | "
                f"{r['prefill_bubble_share']:.0%} | {r['decode_step_ms']:.2f} | "
                f"{r['decode_tokens_per_s']:.1f} | "
                f"{r['decode_tokens_per_s'] / base['decode_tokens_per_s']:.2f} | "
                f"{r['decode_comm_share']:.0%} | {r['decode_bubble_share']:.0%} |")
measured = "\n".join(rows)

# --- Model: Llama-3-70B shape on H100 nodes (8 GPUs over NVLink; nodes over 400 Gb/s). ---
L, h, ffn, kvh, hd, vocab = 80, 8192, 28672, 8, 128, 128256
layer_params = h * h * 2 + 2 * kvh * hd * h + 3 * h * ffn
wbytes = 2  # bf16 weights and activations
hbm, flops = 3.35e12 * 0.8, 989e12 * 0.6          # achieved HBM bandwidth, achieved bf16 FLOP/s
nvlink, nvlink_lat = 450e9 * 0.8, 1e-6           # per-GPU NVLink bandwidth per direction, per ring step
ib, ib_lat = 50e9 * 0.8, 10e-6                   # 400 Gb/s per GPU, latency
ctx = 2048                                       # attended positions per sequence (decode)
def allreduce(nbytes, tp):                       # ring all-reduce inside a node
    return 0.0 if tp == 1 else 2 * (tp - 1) / tp * nbytes / nvlink + 2 * (tp - 1) * nvlink_lat
def stage_time(tokens, seqs, tp, layers):
    w = layer_params * wbytes / tp
    kv = seqs * ctx * 2 * kvh * hd * wbytes / tp if tokens == seqs else 0.0  # decode reads the cache
    compute = max((w + kv) / hbm, 2 * layer_params * tokens / tp / flops)
    comm = 2 * allreduce(tokens * h * wbytes, tp)
    return layers * compute, layers * comm
def stage(tokens, seqs, tp, pp):
    comp, comm = stage_time(tokens, seqs, tp, L / pp)
    p2p = (tokens * h * wbytes / ib + ib_lat) if pp > 1 else 0.0
    return comp + comm + p2p, (comm + p2p) / (comp + comm + p2p)
model_rows = []
for nodes in (1, 2, 4, 8, 16):
    tp, pp = 8, nodes
    gb = (L * layer_params + 2 * vocab * h) * wbytes / (8 * nodes) / 2**30
    # Decode: pp batches of 64 sequences in flight, one per stage (DESIGN.md), so no bubble
    # at steady state; a step of one batch takes pp stage times.
    tau, share = stage(64, 64, tp, pp)
    model_rows.append(f"| {nodes} x 8 | tp 8 x pp {pp} | decode, {pp} x 64 sequences in flight | - | "
                      f"{1e3 * pp * tau:.1f} | {64 / tau:,.0f} | 0% | {share:.0%} | {gb:.1f} |")
    # Prefill: one batch of 8 x 2048 tokens split into 4 x pp micro-batches.
    m = 4 * pp if pp > 1 else 1
    tau, share = stage(8 * 2048 / m, 8 / m, tp, pp)
    step = (m + pp - 1) * tau
    model_rows.append(f"| {nodes} x 8 | tp 8 x pp {pp} | prefill, 8 x 2048 tokens | {m if pp > 1 else '-'} | "
                      f"{1e3 * step:.1f} | {8 * 2048 / step:,.0f} | {(pp - 1) / (m + pp - 1):.0%} | {share:.0%} | {gb:.1f} |")
model = "\n".join(model_rows)

section = f"""<!-- parallel-layouts:begin (written by bench/parallel_compare.sh; do not edit by hand) -->
## Parallel layouts on this machine, and a model for GPU clusters

Measured by `tessera_bench_parallel` under `mpirun --bind-to none --oversubscribe`
({args}): a prefill step over all prompts, then one-token decode steps of every sequence,
through the worker's StageRunner (no engine). "Communicating" is the share of time inside
the tensor group's collectives, "bubble" the share a stage spends sending to or waiting
for its pipeline neighbours (transfers and load imbalance included); both are the largest
over the ranks. The ratio column compares decode tokens/s with one rank using every core.

| layout | prefill tok/s | communicating | bubble | decode ms/step | decode tok/s | vs 1 rank, {cores} threads | communicating | bubble |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{measured}

This machine has {cores} cores, so 3 or 4 ranks oversubscribe it: their collectives and
stage links wait for a descheduled rank, which the shares show. Splitting a 135M model
over ranks of one small CPU does not pay; the layouts are here to show what each code
path costs, not as a way to run SmolLM2.

- Date: {date}; CPU: {cpu}; load average before {load_before}, after {load_after}.
- Command: `bench/parallel_compare.sh` (see its header).

### Model: Llama-3-70B shape on H100 nodes

Computed, not measured (no GPU here): 80 layers, hidden 8192, FFN 28672, 8 KV heads of
128, bf16 weights and activations. Each layer costs max(weight and KV-cache bytes / HBM
bandwidth, 2 x params x tokens / FLOP/s) split over tp GPUs, plus two ring all-reduces of
tokens x hidden x 2 bytes over NVLink; stages pass tokens x hidden x 2 bytes over the
inter-node link. Decode keeps pp batches in flight, one per stage (DESIGN.md §4): no
bubble at steady state, tokens/s = 64 / stage time, and a step's latency is pp stage times
(splitting one decode batch into micro-batches would re-read every stage's weights per
micro-batch). Prefill splits one batch into 4 x pp micro-batches (bubble = (pp - 1) /
(micro-batches + pp - 1)). Assumptions: H100 SXM at 80% of 3.35 TB/s HBM and 60% of
989 TFLOP/s bf16; NVLink 450 GB/s per direction per GPU at 80% and 1 us per ring step
(about NCCL's 15 us for a small 8-GPU all-reduce); 400 Gb/s per GPU at 80%, 10 us latency;
decode attends 2048 positions per sequence. The decode rows assume the leader keeps pp
batches in flight, which the engine does not do yet (it keeps one step in flight and
splits it into micro-batches): these rows are what the design should reach.

| GPUs | layout | step | micro-batches | step ms | tokens/s | bubble | communicating | weights GiB / GPU |
|---|---|---|---:|---:|---:|---:|---:|---:|
{model}
<!-- parallel-layouts:end -->
"""
text = open(doc).read()
pat = re.compile(r"<!-- parallel-layouts:begin .*?<!-- parallel-layouts:end -->\n", re.S)
text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section
open(doc, "w").write(text)
print(measured)
print(f"wrote {doc}")
PY
