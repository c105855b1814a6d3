#!/usr/bin/env bash
# The H200 run behind the compiled-engine results: pre-build every AOTInductor package the GPU
# tests and benchmarks use (in parallel, into one cache), then the GPU tests, then the benchmarks.
# Usage (repo root, wheels from ../shared/gpu/wheels.sh in .whl): bash benchmarks/run_h200.sh OUTDIR [tests|bench|multi|all]
# (multi: only benchmarks/multi_gpu.py, one detector per GPU; on one GPU it measures the single-GPU rows)
set -u
out=${1:-/tmp/trtdet-h200}; what=${2:-all}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1
export TRTDET_CACHE_DIR=${TRTDET_CACHE_DIR:-/tmp/trtdet-cache} TRTDET_GPU_TEST_CACHE=${TRTDET_CACHE_DIR:-/tmp/trtdet-cache} TRTDET_TEST_CHECKPOINTS=/tmp/trtdet-ckpt
export PYTHONUNBUFFERED=1
python3 -m tests.trtdet.gpu.checkpoints "$TRTDET_TEST_CHECKPOINTS" >/dev/null
yolo=$(python3 -c "from trtdet_yolo.plugin import default_model_path as p; print(p())")
centernet=trtdet_centernet/assets/centernet.onnx
start=$(date +%s)
build() { trtdet build --backend inductor --batch 32 -o "/tmp/trtdet-pkg/$1.pt2" "${@:2}" > "/tmp/trtdet-build-$1.log" 2>&1; echo "build $1: exit $? after $(( $(date +%s) - start )) s"; }
mkdir -p /tmp/trtdet-pkg
build yolo-fp16 "$yolo" --model yolo --precision fp16 &
build resdcn18-fp16 --weights "$TRTDET_TEST_CHECKPOINTS/resdcn18.pth" --model centernet --precision fp16 &
if [ "$what" = tests ] || [ "$what" = all ]; then
  build yolo-fp32 "$yolo" --model yolo --precision fp32 &
  build centernet-fp16 "$centernet" --model centernet --precision fp16 &
  build centernet-fp32 "$centernet" --model centernet --precision fp32 &
  [ -n "${DEPTH50:-}" ] && build resdcn50-fp16 --weights "$TRTDET_TEST_CHECKPOINTS/resdcn50.pth" --model centernet --precision fp16 &
fi
wait
for f in /tmp/trtdet-build-*.log; do echo "== $f"; grep -v -i "warn\|__new__" "$f" | tail -4; done | tee "$out/builds.log"
if [ "$what" = multi ]; then
  timeout 500 python3 benchmarks/multi_gpu.py --checkpoint "$TRTDET_TEST_CHECKPOINTS/resdcn18.pth" \
    --out "$out/multi_gpu_h200.md" 2>&1 | grep -v -i warn | tail -30
  exit 0
fi
if [ "$what" != bench ]; then
  timeout ${PROBE_TIMEOUT:-120} python3 benchmarks/transfer_probe.py > "$out/transfer_probe.log" 2>&1
  timeout ${PROBE_TIMEOUT:-120} python3 benchmarks/graph_probe.py /tmp/trtdet-pkg/*.pt2 --eager centernet 2>&1 | grep -v -i warn > "$out/graph_probe.log"
  # One pytest per GPU test file, several at once (the GPU has room; a single run outgrew a call).
  mkdir -p "$out/gpu-tests"
  # TEST_FILES (space-separated) narrows the run to those files.
  { if [ -n "${TEST_FILES:-}" ]; then printf '%s\n' $TEST_FILES; else grep -rlE "mark\.gpu|gpu = pytest" tests --include="test_*.py" | sort; fi; } | xargs -P ${TEST_JOBS:-6} -I{} sh -c \
    'timeout ${TEST_TIMEOUT:-400} python3 -m pytest -v -rA --tb=short --durations=5 -m gpu {} -p no:cacheprovider > "$0/gpu-tests/$(echo {} | tr / _).log" 2>&1' "$out"
  for f in "$out"/gpu-tests/*.log; do echo "== $(basename "$f"): $(tail -1 "$f")"; grep -E "^(FAILED|ERROR)" "$f"; done | tee "$out/gpu-tests.summary"
  tar czf "$out/gpu-tests.tgz" -C "$out" gpu-tests && rm -r "$out/gpu-tests"  # one file: a call returns only a few
  [ -n "${PRECISION:-}" ] && timeout ${PROBE_TIMEOUT:-120} python3 benchmarks/precision_probe.py 2>&1 | grep -v -i warn > "$out/precision_probe.log"
fi
if [ "$what" != tests ]; then
  timeout ${BENCH_TIMEOUT:-150} python3 benchmarks/yolo.py --batches 1 32 --iterations 30 --out "$out/yolo_h200.md" 2>&1 | grep -v -i warn | tail -30
  timeout ${BENCH_TIMEOUT:-150} python3 benchmarks/pipeline.py --batches 1 32 --iterations 20 --frames 1000 --stream-chunks 4 \
    --checkpoint "$TRTDET_TEST_CHECKPOINTS/resdcn18.pth" --cudnn-benchmark --out "$out/pipeline_h200.md" 2>&1 | grep -v -i "warn\|peaks in one" | tail -40
fi
