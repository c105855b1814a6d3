"""Does a CUDA graph captured over a network replay what the network computes? (H200 diagnosis)

For each AOTInductor package given (and, with ``--eager MODEL``, the eager torch engine of a
model), captures one graph at batch 2 and replays it on two random inputs, comparing the
replays with each other and with direct calls, per output channel group. Then repeats the
capture with variations (global capture mode, contiguous input, a fresh runner), so the run
says which condition breaks the replay.

    python benchmarks/graph_probe.py /tmp/trtdet-pkg/centernet-fp16.pt2 ... [--eager centernet]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def probe(name: str, network, shape, dtype, memory_format, mode: str = "thread_local") -> None:
    static = torch.zeros(shape, device="cuda", dtype=dtype).contiguous(memory_format=memory_format)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(2):
            network(static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.no_grad(), torch.cuda.graph(graph, stream=side, capture_error_mode=mode):
            outputs = network(static)
    except Exception as exc:  # the point is to see what breaks
        print(f"{name} [{mode}]: capture failed: {str(exc).splitlines()[0]}")
        return
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    torch.cuda.synchronize()
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.rand(shape, device="cuda", generator=gen).to(dtype).contiguous(memory_format=memory_format)
    b = torch.rand(shape, device="cuda", generator=gen).to(dtype).contiguous(memory_format=memory_format)
    replays = []
    for x in (a, b):
        static.copy_(x)
        graph.replay()
        torch.cuda.synchronize()
        replays.append([o.clone() for o in outputs])
    with torch.no_grad():
        direct = [network(x) for x in (a, b)]
        direct = [d if isinstance(d, (tuple, list)) else (d,) for d in direct]
        again = network(a)
        again = again if isinstance(again, (tuple, list)) else (again,)
    for k, out in enumerate(outputs):
        channels = out.shape[-1]
        cuts = {"all": slice(0, channels)}
        if channels == 164:
            cuts = {"reg": slice(0, 2), "wh": slice(2, 4), "hm": slice(4, 84), "pool_hm": slice(84, 164)}
        parts = []
        for label, cut in cuts.items():
            parts.append(
                f"{label}: replayA-replayB {max_diff(replays[0][k][..., cut], replays[1][k][..., cut]):.3g} "
                f"replayA-directA {max_diff(replays[0][k][..., cut], direct[0][k][..., cut]):.3g} "
                f"directA-directB {max_diff(direct[0][k][..., cut], direct[1][k][..., cut]):.3g}"
            )
        print(f"{name} [{mode}] output {k} {tuple(out.shape)} strides {out.stride()} | " + " | ".join(parts)
              + f" | directA twice {max_diff(direct[0][k], again[k]):.3g}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("packages", nargs="*", type=Path)
    parser.add_argument("--eager", action="append", default=[])
    args = parser.parse_args()
    from trtdet.engines.inductor.package import read_package_metadata
    from trtdet.engines.inductor.runtime import load_runner

    for path in args.packages:
        metadata = read_package_metadata(path)
        dtype = getattr(torch, metadata.extra.get("input_dtype", "float32"))
        shape = (2, 3, *metadata.input_size)
        for mode, layout in (("thread_local", torch.channels_last), ("global", torch.channels_last),
                             ("thread_local", torch.contiguous_format)):
            runner = load_runner(path, metadata)
            probe(f"{path.name} {'NHWC' if layout is torch.channels_last else 'NCHW'}", runner, shape, dtype, layout, mode)
        print(f"{path.name}: ops {metadata.extra.get('op_libraries')}, export {metadata.extra.get('export_s')} s, "
              f"compile {metadata.extra.get('compile_s')} s")
    import trtdet

    for model in args.eager:
        for precision in ("fp16", "fp32"):
            detector = trtdet.load(model, device="cuda", backend="torch", precision=precision, cuda_graphs=False)
            engine = detector.engine
            shape = (2, 3, *detector.spec.input_size)
            probe(f"eager {model} {precision}", engine.module, shape, engine.dtype, engine.memory_format)
            detector.close()


if __name__ == "__main__":
    main()
