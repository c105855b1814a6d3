#!/usr/bin/env bash
# The H200 run behind the build-time and timeline diagnosis: cold builds with their phases
# (benchmarks/build_profile.py), then the pipeline timelines (benchmarks/timeline.py) on the
# packages the default variant left in the cache, then the other build variants.
# Usage (repo root, wheels from ../shared/gpu/wheels.sh in .whl): bash benchmarks/profile_h200.sh OUTDIR [VARIANT ...]
set -u
out=${1:-/tmp/trtdet-profile}; shift; variants=${*:-wrapper-O1}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1
export TRTDET_CACHE_DIR=/tmp/trtdet-cache PYTHONUNBUFFERED=1
python3 -m tests.trtdet.gpu.checkpoints /tmp/trtdet-ckpt >/dev/null
yolo=$(python3 -c "from trtdet_yolo.plugin import default_model_path as p; print(p())")
ckpt=/tmp/trtdet-ckpt/resdcn18.pth
profile() { timeout ${BUILD_TIMEOUT:-200} python3 benchmarks/build_profile.py "$@" --out "$out/builds.jsonl" 2>>"$out/builds.err" | tee -a "$out/builds.log"; }
profile "$yolo" --model yolo --keep
profile "$ckpt" --kind weights --model centernet --keep
timeout ${TIMELINE_TIMEOUT:-240} python3 benchmarks/timeline.py --checkpoint "$ckpt" --network --out "$out/timeline.md" 2>&1 \
  | grep -v -i "warn" | tail -5
for variant in $variants; do
  profile "$yolo" --model yolo --variants "$variant"
  profile "$ckpt" --kind weights --model centernet --variants "$variant"
done
tail -c 20000 "$out/builds.err" > "$out/builds.err.tail" && rm "$out/builds.err"
