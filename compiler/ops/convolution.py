"""ONNX lowerings of a convolution shared by conv1d/conv2d, the internal `convolve` and a
convolution's input gradient: `onnx_conv` emits Conv(x, w[, bias]) and `onnx_conv_adjoint`
a stride-1 ConvTranspose, each in the form onnxruntime runs fastest on a CPU. Their
results equal the plain node's; only the nodes differ.

Why a choice at all: in a training model the weights are graph inputs, so onnxruntime's
NCHWc kernels (which reorder constant weights when the model loads) do not apply, and its
plain Conv runs one im2col and one GEMM per image with the image's positions as the GEMM's
columns. A small feature map makes that GEMM thin: resnet18's last stages (14x14 and 7x7,
256 and 512 channels) ran at about two thirds of the throughput of its first (56x56). Laid
side by side along their first spatial axis, the batch's images make one tall image and
one GEMM N times wider (`_tiled`).
"""

from __future__ import annotations

import math

# Tiling pays while a single image gives the GEMM few columns. Measured on resnet18's
# training step (batch 8): 196 positions (14x14) gained most, 3136 (56x56) nothing.
_TILE_MAX_POSITIONS = 256


def onnx_conv(b, x, w, bias=None, *, channels, kernel, strides, pads, dilations, group=1):
    """Conv(x, w[, bias]) producing `channels` channels. `pads` are ONNX's (all begins, then
    all ends)."""
    kernel, strides, pads, dilations = list(kernel), list(strides), list(pads), list(dilations)
    out = _out_sizes(x, kernel, strides, pads, dilations)
    if b.trains and group == 1 and out is not None and math.prod(out) <= _TILE_MAX_POSITIONS:
        rows = _Rows.of(x.shape[2], kernel[0], strides[0], pads, dilations[0])
        if rows is not None:
            return _tiled(
                b,
                x,
                w,
                bias,
                rows,
                channels=channels,
                out=out,
                kernel=kernel,
                strides=strides,
                pads=pads,
                dilations=dilations,
            )
    return b.Conv(x, w, bias, kernel_shape=kernel, strides=strides, pads=pads, dilations=dilations, group=group)


def _out_sizes(x, kernel, strides, pads, dilations):
    """The output's spatial sizes where the input's are known, else None."""
    if x.type is None or not all(isinstance(d, int) for d in x.shape[2:]):
        return None
    n = len(kernel)
    return [
        (length + pads[i] + pads[n + i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
        for i, length in enumerate(x.shape[2:])
    ]


class _Rows:
    """How the batch's images lie along the first spatial axis of one tall image: each
    image's rows padded by (`above`, `below`), so that an image starts every `period` rows,
    the tall Conv padded by (`top`, `bottom`), and `out_period` output rows an image, the
    first `out` of them its own (the rest read two images and are dropped).

    Stride 1 shares the zero rows between neighbours: max(begin, end) pad rows an image,
    not begin + end (resnet18's 7x7 images: 8 rows each, not 9). A larger stride pads each
    image by its own pads, and then needs a padded length the stride divides, so that every
    image starts on the stride's grid."""

    def __init__(self, above, below, top, bottom, period, out_period, out):
        self.above, self.below, self.top, self.bottom = above, below, top, bottom
        self.period, self.out_period, self.out = period, out_period, out

    @classmethod
    def of(cls, length, k, s, pads, d):
        begin, end = pads[0], pads[len(pads) // 2]
        span = d * (k - 1)
        out = (length + begin + end - span - 1) // s + 1
        if s == 1:
            gap = max(begin, end)
            if begin > span or out > length + gap:
                return None
            return cls(0, gap, begin, span - begin, length + gap, length + gap, out)
        padded = length + begin + end
        if padded % s or span + 1 < s:
            return None
        return cls(begin, end, 0, span + 1 - s, padded, padded // s, out)


def _tiled(b, x, w, bias, rows, *, channels, out, kernel, strides, pads, dilations):
    """The batch laid along the first spatial axis (`_Rows`): x [N, C, S1, ...] moved to
    [C, N, S1, ...], padded, seen as [1, C, N * period, ...], one Conv, then each image's
    output rows taken back out."""
    n = len(kernel)
    swap = [1, 0, *range(2, n + 2)]
    moved = b.Transpose(x, perm=swap)  # [C, N, S1, ...]
    begins = [rows.above, *pads[1:n]]
    ends = [rows.below, *pads[n + 1 :]]
    if any(begins) or any(ends):
        moved = b.Pad(moved, b.ints([0, 0, *begins, 0, 0, *ends]))
    widths = [length + pads[i] + pads[n + i] for i, length in enumerate(x.shape[2:])][1:]
    tall = b.Reshape(moved, b.ints([1, x.shape[1], -1, *widths]))
    y = b.Conv(
        tall,
        w,
        bias,
        kernel_shape=kernel,
        strides=strides,
        pads=[rows.top] + [0] * (n - 1) + [rows.bottom] + [0] * (n - 1),
        dilations=dilations,
    )
    images = b.Reshape(y, b.ints([channels, -1, rows.out_period, *out[1:]]))  # [O, N, period / s, ...]
    if rows.out_period != rows.out:
        images = b.Slice(images, b.ints([0]), b.ints([rows.out]), b.ints([2]))
    return b.Transpose(images, perm=swap)


def onnx_conv_adjoint(b, g, w, *, channels, sizes, pads, dilations):
    """The input gradient of a stride-1 ungrouped convolution whose input had spatial
    `sizes`: ConvTranspose(g, w) with the forward's `pads`, producing `channels` channels.
    Where the forward would be tiled, so is this (its adjoint: g's images stacked with the
    rows the forward dropped as zeros, each image's own rows taken back out); else None,
    for the caller's own lowering."""
    kernel, pads, dilations = list(w.shape[2:]), list(pads), list(dilations)
    n = len(kernel)
    out = g.shape[2:]  # the forward's output sizes
    if not b.trains or not all(isinstance(d, int) for d in (*sizes, *out)):
        return None
    if math.prod(out) > _TILE_MAX_POSITIONS:
        return None
    padded = [length + pads[i] + pads[n + i] for i, length in enumerate(sizes)]
    rows = _Rows.of(sizes[0], kernel[0], 1, pads, dilations[0])
    if rows is None:
        return None
    swap = [1, 0, *range(2, n + 2)]
    moved = b.Transpose(g, perm=swap)  # [O, N, out1, ...]
    if rows.out_period != rows.out:
        moved = b.Pad(moved, b.ints([0] * (n + 2) + [0, 0, rows.out_period - rows.out] + [0] * (n - 1)))
    tall = b.Reshape(moved, b.ints([1, g.shape[1], -1, *out[1:]]))
    y = b.ConvTranspose(
        tall,
        w,
        kernel_shape=kernel,
        pads=[rows.top] + [0] * (n - 1) + [rows.bottom] + [0] * (n - 1),
        dilations=dilations,
    )
    images = b.Reshape(y, b.ints([channels, -1, rows.period, *padded[1:]]))  # [C, N, period, ...]
    starts = [rows.above, *pads[1:n]]
    stops = [rows.above + sizes[0], *(padded[i] - pads[n + i] for i in range(1, n))]
    if starts != [0] * n or stops != [rows.period, *padded[1:]]:
        images = b.Slice(images, b.ints(starts), b.ints(stops), b.ints(range(2, n + 2)))
    return b.Transpose(images, perm=swap)
