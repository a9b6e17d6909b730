"""The 1-bit all-reduce's three compute stages in C, for fp32 CPU buffers (``native_cpu`` builds it).

Each stage is one call over a table of blocks (at most ``BLOCK`` elements of one chunk, see
:class:`~.compression.ChunkLayout`), split over torch's OpenMP threads, and touches each element
at most twice: worker (``e += x`` with the chunks' sums of squares, then signs, packed bits and
``e -= scale * sign``), server (the mean of the workers' chunks plus ``e``, the same two passes)
and decompression (``x = scale * sign``). Sums of squares accumulate in double, per block in a
fixed order, so results do not depend on the thread count.
"""
from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from .. import dispatch, native_cpu

#: Elements per block: a unit of work for one thread (128 KiB of fp32).
BLOCK = 1 << 15
#: The block table's column holding the chunk (``ChunkLayout.blocks``).
CHUNK = 4

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) && !defined(ONEBIT_PORTABLE)
#include <immintrin.h>
#define ONEBIT_AVX2 1
#endif

enum { Q, FLAT, LENGTH, VALID, CHUNK, FIELDS };

/* SIGNS[byte][k]: +1 where bit k of byte (from the high bit) is set, else -1; so +-scale is an
   exact product. REVERSED[m]: m's 8 bits in the opposite order. */
static float SIGNS[256][8];
static uint8_t REVERSED[256];

__attribute__((constructor)) static void tables(void)
{
    for (int byte = 0; byte < 256; ++byte) {
        unsigned reversed = 0;
        for (int k = 0; k < 8; ++k) {
            SIGNS[byte][k] = (byte >> (7 - k)) & 1 ? 1.0f : -1.0f;
            reversed |= ((byte >> k) & 1u) << (7 - k);
        }
        REVERSED[byte] = (uint8_t)reversed;
    }
}

static float scale_at(const uint8_t *row, int64_t sign_bytes, int64_t t)
{
    float s;
    memcpy(&s, row + sign_bytes + 4 * t, 4);
    return s;
}

/* Signs of y >= 0, 8 per byte (first element in the high bit), then y <- y - scale * sign on
   the valid elements; the padding (y = 0, sign +1) stays 0. */
static void signs_and_error(float *restrict y, int64_t length, int64_t valid, float scale,
                            uint8_t *restrict bits)
{
    int64_t i = 0;
#ifdef ONEBIT_AVX2
    const __m256 zero = _mm256_setzero_ps(), s = _mm256_set1_ps(scale);
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= valid; i += 8) {
        const __m256 v = _mm256_loadu_ps(y + i);
        const __m256 nonnegative = _mm256_cmp_ps(v, zero, _CMP_GE_OQ);
        const __m256 q = _mm256_xor_ps(s, _mm256_andnot_ps(nonnegative, sign_bit));
        _mm256_storeu_ps(y + i, _mm256_sub_ps(v, q));
        bits[i / 8] = REVERSED[_mm256_movemask_ps(nonnegative)];
    }
#else
    for (; i + 8 <= valid; i += 8) {
        unsigned byte = 0;
        for (int k = 0; k < 8; ++k) byte |= (unsigned)(y[i + k] >= 0.0f) << (7 - k);
        for (int k = 0; k < 8; ++k) y[i + k] -= SIGNS[byte][k] * scale;
        bits[i / 8] = (uint8_t)byte;
    }
#endif
    for (; i < length; i += 8) {
        unsigned byte = 0;
        for (int k = 0; k < 8; ++k) {
            const int nonnegative = y[i + k] >= 0.0f;
            byte |= (unsigned)nonnegative << (7 - k);
            y[i + k] = i + k < valid ? y[i + k] - (nonnegative ? scale : -scale) : 0.0f;
        }
        bits[i / 8] = (uint8_t)byte;
    }
}

static double squares(const float *restrict y, int64_t valid)
{
    double lane[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= valid; i += 16)
        for (int k = 0; k < 16; ++k) lane[k] += (double)y[i + k] * (double)y[i + k];
    double sum = 0.0;
    for (; i < valid; ++i) sum += (double)y[i] * (double)y[i];
    for (int k = 0; k < 16; ++k) sum += lane[k];
    return sum;
}

/* chunk scales = sqrt(sum of squares / valid count), written as float into the messages */
static void scales_of(int64_t nblocks, const int64_t *blocks, const double *partial,
                      int64_t first_chunk, int64_t nchunks, const float *counts, double *sums,
                      float *scales, uint8_t *message, int64_t tensors, int64_t row_bytes,
                      int64_t sign_bytes)
{
    for (int64_t c = 0; c < nchunks; ++c) sums[c] = 0.0;
    for (int64_t b = 0; b < nblocks; ++b)
        sums[blocks[b * FIELDS + CHUNK] - first_chunk] += partial[b];
    for (int64_t c = 0; c < nchunks; ++c) {
        const double count = counts[c] > 1.0f ? counts[c] : 1.0;
        const float s = (float)sqrt(sums[c] / count);
        scales[c] = s;
        memcpy(message + (c / tensors) * row_bytes + sign_bytes + 4 * (c % tensors), &s, 4);
    }
}

int onebit_worker(int64_t nblocks, const int64_t *blocks, int64_t nchunks, const float *counts,
                  int64_t tensors, int64_t width, int64_t row_bytes, const float *flat,
                  float *error, uint8_t *message, double *partial, double *sums, float *scales,
                  int threads)
{
    const int64_t sign_bytes = width / 8;
    #pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t *block = blocks + b * FIELDS;
        float *restrict y = error + block[Q];
        const float *restrict x = flat + block[FLAT];
        const int64_t valid = block[VALID];
        for (int64_t i = 0; i < valid; ++i) y[i] += x[i];
        partial[b] = squares(y, valid);
    }
    scales_of(nblocks, blocks, partial, 0, nchunks, counts, sums, scales, message, tensors,
              row_bytes, sign_bytes);
    #pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t *block = blocks + b * FIELDS;
        const int64_t row = block[CHUNK] / tensors, column = block[Q] - row * width;
        signs_and_error(error + block[Q], block[LENGTH], block[VALID], scales[block[CHUNK]],
                        message + row * row_bytes + column / 8);
    }
    return 0;
}

/* The blocks of this rank's row; incoming[w] is worker w's message for it. */
int onebit_server(int64_t nblocks, const int64_t *blocks, int64_t tensors, const float *counts,
                  int64_t width, int64_t row_bytes, int64_t world, int64_t rank,
                  const uint8_t *incoming, float *error, uint8_t *message, double *partial,
                  double *sums, float *scales, int threads)
{
    const int64_t sign_bytes = width / 8, first_chunk = rank * tensors;
    #pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t *block = blocks + b * FIELDS;
        const int64_t t = block[CHUNK] - first_chunk, column = block[Q] - rank * width;
        const int64_t valid = block[VALID];
        float *restrict z = error + column;
        float scale[world];
        for (int64_t w = 0; w < world; ++w)
            scale[w] = scale_at(incoming + w * row_bytes, sign_bytes, t);
        const uint8_t *bits = incoming + column / 8;
        for (int64_t i = 0; i < valid; i += 8) {
            float sum[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t w = 0; w < world; ++w) {
                const float *sign = SIGNS[bits[w * row_bytes + i / 8]];
                for (int k = 0; k < 8; ++k) sum[k] += sign[k] * scale[w];
            }
            if (i + 8 <= valid)
                for (int k = 0; k < 8; ++k) z[i + k] = sum[k] / (float)world + z[i + k];
            else
                for (int k = 0; k < valid - i; ++k) z[i + k] = sum[k] / (float)world + z[i + k];
        }
        partial[b] = squares(z, valid);
    }
    scales_of(nblocks, blocks, partial, first_chunk, tensors, counts, sums, scales,
              message, tensors, row_bytes, sign_bytes);
    #pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t *block = blocks + b * FIELDS;
        const int64_t column = block[Q] - rank * width;
        signs_and_error(error + column, block[LENGTH], block[VALID],
                        scales[block[CHUNK] - first_chunk], message + column / 8);
    }
    return 0;
}

int onebit_decompress(int64_t nblocks, const int64_t *blocks, int64_t tensors, int64_t width,
                      int64_t row_bytes, const uint8_t *gathered, float *flat, int threads)
{
    const int64_t sign_bytes = width / 8;
    #pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t *block = blocks + b * FIELDS;
        const int64_t row = block[CHUNK] / tensors, column = block[Q] - row * width;
        const uint8_t *message = gathered + row * row_bytes;
        const float s = scale_at(message, sign_bytes, block[CHUNK] % tensors);
        const uint8_t *restrict bits = message + column / 8;
        float *restrict x = flat + block[FLAT];
        const int64_t valid = block[VALID];
        int64_t i = 0;
        for (; i + 8 <= valid; i += 8) {
            const float *sign = SIGNS[bits[i / 8]];
            for (int k = 0; k < 8; ++k) x[i + k] = sign[k] * s;
        }
        for (; i < valid; ++i) x[i] = SIGNS[bits[i / 8]][i % 8] * s;
    }
    return 0;
}
"""


def _pointer(tensor: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(tensor.data_ptr())


class NativeCodec:
    """The C stages for one layout on the CPU.

    ``portable``: the plain C build that CPUs without AVX2 run (bit-identical; for tests).
    """

    def __init__(self, layout, portable: bool = False):
        self.layout = layout
        self.lib = self.library(portable)
        if self.lib is None:
            raise RuntimeError("the native 1-bit kernels cannot be built here (see the log)")
        self.blocks = layout.blocks(BLOCK)
        rows = self.blocks[:, CHUNK] // len(layout.numels)
        # the server's blocks: those of one row, contiguous in the table (ordered by row)
        self.row_ranges = torch.searchsorted(rows, torch.arange(layout.world + 1)).tolist()
        self.partial = torch.empty(len(self.blocks), dtype=torch.float64)
        self.sums = torch.empty(layout.counts.numel(), dtype=torch.float64)
        self.scales = torch.empty(layout.counts.numel(), dtype=torch.float32)
        self.counts = layout.counts.float().contiguous()

    @staticmethod
    def library(portable: bool = False) -> ctypes.CDLL | None:
        """The compiled kernels, or None where they cannot be built or the user switched native
        kernels off (``VISDET_MMEXT_COMPILE=off``)."""
        if dispatch.strategy_for(torch.device("cpu")) is None:
            return None
        if portable:
            return native_cpu.library("onebit_portable", "#define ONEBIT_PORTABLE 1\n" + _SOURCE)
        return native_cpu.library("onebit", _SOURCE)

    def _common(self):
        layout = self.layout
        return (ctypes.c_int64(len(layout.numels)), ctypes.c_int64(layout.width),
                ctypes.c_int64(layout.row_bytes))

    def worker(self, flat: Tensor, error: Tensor, message: Tensor) -> None:
        tensors, width, row_bytes = self._common()
        self.lib.onebit_worker(
            ctypes.c_int64(len(self.blocks)), _pointer(self.blocks),
            ctypes.c_int64(self.counts.numel()), _pointer(self.counts), tensors, width, row_bytes,
            _pointer(flat), _pointer(error), _pointer(message), _pointer(self.partial),
            _pointer(self.sums), _pointer(self.scales), ctypes.c_int(torch.get_num_threads()))

    def server(self, incoming: Tensor, error: Tensor, message: Tensor, rank: int) -> None:
        tensors, width, row_bytes = self._common()
        start, end = self.row_ranges[rank], self.row_ranges[rank + 1]
        self.lib.onebit_server(
            ctypes.c_int64(end - start), _pointer(self.blocks[start:]), tensors,
            _pointer(self.counts[rank]), width, row_bytes, ctypes.c_int64(self.layout.world),
            ctypes.c_int64(rank), _pointer(incoming), _pointer(error), _pointer(message),
            _pointer(self.partial), _pointer(self.sums), _pointer(self.scales),
            ctypes.c_int(torch.get_num_threads()))

    def decompress(self, gathered: Tensor, flat: Tensor) -> None:
        tensors, width, row_bytes = self._common()
        self.lib.onebit_decompress(
            ctypes.c_int64(len(self.blocks)), _pointer(self.blocks), tensors, width, row_bytes,
            _pointer(gathered), _pointer(flat), ctypes.c_int(torch.get_num_threads()))
