// The constant tables of NF4 / FP4 quantization (header-only, constexpr), shared by the reference
// (nf4_ref.cpp) and the host side of the CUDA launchers (kernels/cuda/nf4.cu passes them to the kernels by
// value). Where every constant comes from is written next to it; tests/base/test_nf4_ref.cpp checks the
// float32 bit patterns against docs/nf4-spec.md.
#pragma once
#include <cstdint>

namespace qlora {

// bitsandbytes functional.py get_4bit_type("nf4") == kernels.cu nf4_dequantization_lut. Built by
// create_normal_map (quantiles of N(0,1), normalised to [-1, 1]); the float32 bit patterns are checked in
// tests/base/test_nf4_ref.cpp against docs/nf4-spec.md section 1.1 (bf800000 ... 3f800000).
inline constexpr float kNf4Code[16] = {
    -1.0f,                  // 0b0000
    -0.6961928009986877f,   // 0b0001
    -0.5250730514526367f,   // 0b0010
    -0.39491748809814453f,  // 0b0011
    -0.28444138169288635f,  // 0b0100
    -0.18477343022823334f,  // 0b0101
    -0.09105003625154495f,  // 0b0110
    0.0f,                   // 0b0111
    0.07958029955625534f,   // 0b1000
    0.16093020141124725f,   // 0b1001
    0.24611230194568634f,   // 0b1010
    0.33791524171829224f,   // 0b1011
    0.44070982933044434f,   // 0b1100
    0.5626170039176941f,    // 0b1101
    0.7229568362236023f,    // 0b1110
    1.0f,                   // 0b1111
};

// FP4 e2m1 (bias 2), raw values [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12; sign is bit 3. The literals are
// kernels.cu fp4_dequantization_lut; they round to the same float32 as x / 12 (spec 1.2). CUDA decodes
// lut[c & 7] * (1 - 2 * (c >> 3)), so index 8 is -0.0 here.
inline constexpr float kFp4Code[16] = {
    0.0f,  0.005208333333f,  0.66666667f,  1.0f,  0.33333333f,  0.5f,  0.16666667f,  0.25f,
    -0.0f, -0.005208333333f, -0.66666667f, -1.0f, -0.33333333f, -0.5f, -0.16666667f, -0.25f,
};
// What bnb stores as FP4 quant_map: get_4bit_type("fp4") writes the Python integer -0, i.e. +0.0.
inline constexpr float kFp4QuantMap[16] = {
    0.0f, 0.005208333333f,  0.66666667f,  1.0f,  0.33333333f,  0.5f,  0.16666667f,  0.25f,
    0.0f, -0.005208333333f, -0.66666667f, -1.0f, -0.33333333f, -0.5f, -0.16666667f, -0.25f,
};

// dQuantizeNF4's decision-tree literals (kernels.cu), ascending, as nvcc rounds them: each decimal
// literal (e.g. -0.8480964004993439f) goes straight to the nearest float32 (bit patterns read from the PTX
// of nvcc 13; g++ rounds them the same way). The exact midpoint (c[i] + c[i + 1]) / 2 of two float32 codes
// is often a float32 tie; the 16-digit decimal printed from it sits just off the tie, so 4 of the 15
// literals land one ulp away from the float32-rounded midpoint that bnb's CPU path bucketizes with
// (indices 0, 8, 12, 14; docs/nf4-spec.md section 1.3 calls them bit-equal because it rounded through a double).
// Hex floats so that no compiler can round them differently.
inline constexpr float kNf4Thresholds[15] = {
    -0x1.b239b2p-1f,  // -0.8480964004993439f   (bf591cd9; float32 midpoint bf591cd8)
    -0x1.38a4ep-1f,   // -0.6106329262256622f   (bf1c5270)
    -0x1.d709p-2f,    // -0.4599952697753906f   (beeb8480)
    -0x1.5bd4ecp-2f,  // -0.33967943489551544f  (beadea76)
    -0x1.e079d8p-3f,  // -0.23460740596055984f  (be703cec)
    -0x1.1a7178p-3f,  // -0.13791173323988914f  (be0d38bc)
    -0x1.74f0e2p-5f,  // -0.045525018125772476f (bd3a7871)
    0x1.45f5fep-5f,   // 0.03979014977812767f   (3d22faff)
    0x1.ec90c6p-4f,   // 0.1202552504837513f    (3df64863; float32 midpoint 3df64862)
    0x1.a0cfcp-3f,    // 0.2035212516784668f    (3e5067e0)
    0x1.2b05a8p-2f,   // 0.2920137718319893f    (3e9582d4)
    0x1.8ea7f2p-2f,   // 0.3893125355243683f    (3ec753f9)
    0x1.00da06p-1f,   // 0.5016634166240692f    (3f006d03; float32 midpoint 3f006d04)
    0x1.491b5ep-1f,   // 0.6427869200706482f    (3f248daf)
    0x1.b913b2p-1f,   // 0.8614784181118011f    (3f5c89d9; float32 midpoint 3f5c89da)
};

// dQuantizeFP4's literals on |s| (kernels.cu), ascending, as nvcc rounds them (hex from its PTX). Not
// exact midpoints (0.583333f is below 7/12 = 0.5833334f): copied as written, since they make CUDA's bytes.
inline constexpr float kFp4Thresholds[7] = {
    0x1.555572p-9f,  // 0.00260417f (3b2aaab9)
    0x1.6p-4f,       // 0.0859375f  (3db00000)
    0x1.aaaaaap-3f,  // 0.20833333f (3e555555)
    0x1.2aaaaap-2f,  // 0.29166667f (3e955555)
    0x1.aaaaacp-2f,  // 0.4166667f  (3ed55556)
    0x1.2aaaap-1f,   // 0.583333f   (3f155550)
    0x1.aaaaaap-1f,  // 0.8333333f  (3f555555)
};
// FP4 magnitude codes in ascending order of value: k thresholds exceeded -> code. This is the decision
// tree of dQuantizeFP4 written as a table (0, 1/192, 1/6, 1/4, 1/3, 1/2, 2/3, 1).
inline constexpr uint8_t kFp4CodeOfRank[8] = {0, 1, 6, 7, 4, 5, 2, 3};
// The same table with rank r in nibble r, the form nf4_encode_fp4 takes (one register on the device).
inline constexpr uint32_t kFp4CodeOfRankNibbles = 0x32547610u;
static_assert([] {
  for (int r = 0; r < 8; ++r)
    if (((kFp4CodeOfRankNibbles >> (4 * r)) & 0xfu) != kFp4CodeOfRank[r]) return false;
  return true;
}(), "kFp4CodeOfRankNibbles must be kFp4CodeOfRank");

}  // namespace qlora
