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
    if _tiles(b, x, out, kernel, strides, pads, dilations, group):
        return _tiled(b, x, w, bias, channels=channels, out=out, kernel=kernel, strides=strides, pads=pads, dilations=dilations)
    return b.Conv(
        x, w, bias, kernel_shape=kernel, strides=strides, pads=pads, dilations=dilations, group=group
    )


def _out_sizes(x, kernel, strides, pads, dilations):
    """The output's spatial sizes where the input's are known, else None."""
    if x.type is None or not all(isinstance(d, int) for d in x.shape[2:]):
        return None
    n = len(kernel)
    return [
        (length + pads[i] + pads[n + i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
        for i, length in enumerate(x.shape[2:])
    ]


def _tiles(b, x, out, kernel, strides, pads, dilations, group) -> bool:
    if not b.trains or group != 1 or out is None or math.prod(out) > _TILE_MAX_POSITIONS:
        return False
    padded = x.shape[2] + pads[0] + pads[len(kernel)]
    # The tiles' rows must fall on the stride's grid, and the rows added below the last tile
    # (`_tiled`'s end pad) cannot be negative.
    return padded % strides[0] == 0 and dilations[0] * (kernel[0] - 1) + 1 >= strides[0]


def _tiled(b, x, w, bias, *, channels, out, kernel, strides, pads, dilations):
    """The batch laid along the first spatial axis: x [N, C, S1, ...] padded, moved to
    [1, C, N * S1p, ...], one Conv without pads (each image carries its own), then the
    rows of each image's outputs taken back out. An output row that straddles two images
    is computed and dropped: (k - 1) d rows of N * S1p."""
    n = len(kernel)
    swap = [1, 0, *range(2, n + 2)]
    moved = b.Transpose(x, perm=swap)  # [C, N, S1, ...]
    if any(pads):
        moved = b.Pad(moved, b.ints([0, 0, *pads[:n], 0, 0, *pads[n:]]))
    padded = [length + pads[i] + pads[n + i] for i, length in enumerate(x.shape[2:])]
    tall = b.Reshape(moved, b.ints([1, x.shape[1], -1, *padded[1:]]))
    # Rows below the last image, so that the output has N * S1p / s rows: S1p / s per image.
    end = dilations[0] * (kernel[0] - 1) + 1 - strides[0]
    y = b.Conv(
        tall,
        w,
        bias,
        kernel_shape=kernel,
        strides=strides,
        pads=[0] * n + [end] + [0] * (n - 1),
        dilations=dilations,
    )
    rows = padded[0] // strides[0]
    images = b.Reshape(y, b.ints([channels, -1, rows, *out[1:]]))  # [O, N, S1p / s, ...]
    if rows != out[0]:
        images = b.Slice(images, b.ints([0]), b.ints([out[0]]), b.ints([2]))
    return b.Transpose(images, perm=swap)


def onnx_conv_adjoint(b, g, w, *, channels, sizes, kernel, pads, dilations):
    """The input gradient of a stride-1 ungrouped convolution whose input had spatial
    `sizes`: ConvTranspose(g, w) with the forward's `pads`, producing `channels` channels.
    Where the forward would be tiled, so is this (its adjoint: g's images stacked with the
    rows the forward dropped as zeros, each image's interior taken back out); else None,
    for the caller's own lowering."""
    kernel, pads, dilations = list(kernel), list(pads), list(dilations)
    n = len(kernel)
    if not b.trains or not all(isinstance(d, int) for d in sizes):
        return None
    padded = [length + pads[i] + pads[n + i] for i, length in enumerate(sizes)]
    out = [p - d * (k - 1) for p, k, d in zip(padded, kernel, dilations)]
    if math.prod(out) > _TILE_MAX_POSITIONS or min(out) < 1:
        return None
    swap = [1, 0, *range(2, n + 2)]
    moved = b.Transpose(g, perm=swap)  # [O, N, out1, ...]
    moved = b.Pad(moved, b.ints([0] * (n + 2) + [0, 0, padded[0] - out[0]] + [0] * (n - 1)))
    tall = b.Reshape(moved, b.ints([1, g.shape[1], -1, *out[1:]]))
    end = dilations[0] * (kernel[0] - 1)
    y = b.ConvTranspose(tall, w, kernel_shape=kernel, pads=[0] * n + [end] + [0] * (n - 1), dilations=dilations)
    images = b.Reshape(y, b.ints([channels, -1, *padded]))  # [C, N, S1p, ...]
    if any(pads):
        ends = [padded[i] - pads[n + i] for i in range(n)]
        images = b.Slice(images, b.ints(pads[:n]), b.ints(ends), b.ints(range(2, n + 2)))
    return b.Transpose(images, perm=swap)
