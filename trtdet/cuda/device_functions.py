"""Device functions shared by the kernels: sortable keys, block-wide sort/select, inverse affine,
the preprocessors' normalised store.

Sortable keys pack a float32 score and an int index into one uint64 so that *descending*
key order is "value descending, then index ascending" -- the tie rule of the CPU decoders
(numpy stable sorts / lexsort). ``-0.0`` is keyed as ``+0.0`` because numpy compares them equal.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32, int32, int64, uint64

from trtdet.cuda.runtime import SIMULATOR, dadd_rn, dmul_rn, fadd_rn, fmul_rn

_LOW32 = uint64(0xFFFFFFFF)
_SIGN32 = uint64(0x80000000)
_SHIFT32 = uint64(32)

if SIMULATOR:

    def f32_bits(x):  # type: ignore[no-untyped-def]
        return int32(np.float32(x).view(np.int32))

    def f32_from_bits(b):  # type: ignore[no-untyped-def]
        return np.int32(b).view(np.float32)

else:
    from numba.cuda import libdevice

    f32_bits = libdevice.float_as_int
    f32_from_bits = libdevice.int_as_float


@cuda.jit(device=True)
def ordered_key(value, index):
    """uint64 key: float32 ``value`` (monotonic bits) above ``0xFFFFFFFF - index``."""
    bits = uint64(int64(f32_bits(fadd_rn(float32(value), float32(0.0)))) & int64(0xFFFFFFFF))
    if bits & _SIGN32:  # noqa: SIM108 - kernel code, kept explicit
        bits = (~bits) & _LOW32
    else:
        bits = bits | _SIGN32
    return (bits << _SHIFT32) | (_LOW32 - uint64(index))


@cuda.jit(device=True)
def key_index(key):
    """The index packed by ``ordered_key``."""
    return int64(_LOW32 - (key & _LOW32))


@cuda.jit(device=True)
def key_value(key):
    """The float32 value packed by ``ordered_key``."""
    bits = key >> _SHIFT32
    if bits & _SIGN32:  # noqa: SIM108 - kernel code, kept explicit
        bits = bits & (~_SIGN32 & _LOW32)
    else:
        bits = (~bits) & _LOW32
    return f32_from_bits(int32(int64(bits) - int64(1 << 32)) if bits >= _SIGN32 else int32(bits))


@cuda.jit(device=True)
def block_bitonic_sort_desc(keys, size):
    """Sort ``keys[0:size]`` (``size`` a power of two) descending, by the whole block.

    ``keys`` is a shared or global 1-D uint64 array; every thread of the block must call.
    """
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    k = 2
    while k <= size:
        j = k // 2
        while j > 0:
            i = tid
            while i < size:
                partner = i ^ j
                if partner > i:
                    a = keys[i]
                    b = keys[partner]
                    descending = (i & k) == 0
                    if (a < b) == descending:
                        keys[i] = b
                        keys[partner] = a
                i += nthreads
            cuda.syncthreads()
            j //= 2
        k *= 2


@cuda.jit(device=True)
def to_source(x, y, inv, b):
    """Map a network-input point through row ``b`` of ``inv`` [B, 6] (float64), as numpy does.

    ``AffineTransform.to_source`` computes ``x*i0 + y*i1 + i2`` in float64 with every product
    rounded; the float32 result is what ``boxes_to_source`` stores.
    """
    xd = float(x)
    yd = float(y)
    sx = dadd_rn(dadd_rn(dmul_rn(xd, inv[b, 0]), dmul_rn(yd, inv[b, 1])), inv[b, 2])
    sy = dadd_rn(dadd_rn(dmul_rn(xd, inv[b, 3]), dmul_rn(yd, inv[b, 4])), inv[b, 5])
    return float32(sx), float32(sy)


@cuda.jit(device=True)
def clip_f32(v, hi):
    """``np.clip(v, 0, hi)`` for float32 ``v``."""
    if v < float32(0.0):
        return float32(0.0)
    if v > hi:
        return hi
    return v


@cuda.jit(device=True)
def store_normalized(out, b, y, x, c, v, swap_rb, s0, s1, s2, t0, t1, t2):
    """``out[b, channel, y, x] = fl(fl(v * scale) + shift)`` for source channel ``c`` (BGR order).

    ``swap_rb`` writes channel ``c`` to plane ``2 - c`` (an RGB network); scale and shift are
    the plane's, rounded exactly like the CPU reference's float32 normalisation.
    """
    channel = 2 - c if swap_rb else c
    if channel == 0:
        value = fadd_rn(fmul_rn(v, s0), t0)
    elif channel == 1:
        value = fadd_rn(fmul_rn(v, s1), t1)
    else:
        value = fadd_rn(fmul_rn(v, s2), t2)
    out[b, channel, y, x] = value
