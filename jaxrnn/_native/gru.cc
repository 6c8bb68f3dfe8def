// A whole-sequence GRU with the reset gate after the recurrent product (jaxrnn.gru(reset="after"),
// PyTorch's, Keras's and Flax's GRU) for XLA:CPU: forward and backward passes as two FFI calls.
//
//   z_x = x_t w_x + b_x,  z_h = h_{t-1} w_h + b_h      (gates r, u, c~ along the last axis)
//   r = sigmoid(x_r + h_r),  u = sigmoid(x_u + h_u),  c~ = tanh(x_c + r * h_c)
//   h_t = u * c~ + (1 - u) * h_{t-1}
//
// Batch-major: xs (B, T, D), carry (B, H), outputs (B, T, H). The input side of every step is one
// product over all B * T rows before the loop (the reset gate keeps the two sides apart); a step
// is one product with w_h packed once per call. jax.lax.scan of the cell's step stays the
// definition: tests/test_native.py checks the kernel against it.

#include <optional>

#include "common.h"

namespace {

using namespace jaxrnn_native;

// One step for one example and n of its H units: zx and zh are the two sides' pre-activations
// (3 gates H and zq apart); writes h and, when kKeep, the activations r, u, c~ and the recurrent
// candidate h_c that the backward pass needs.
template <bool kKeep>
__attribute__((always_inline)) inline void GatesOf(int64_t n, int64_t H, int64_t zq,
                                                   const float* __restrict zx,
                                                   const float* __restrict zh,
                                                   const float* __restrict h_prev,
                                                   float* __restrict act,
                                                   float* __restrict h_c, float* __restrict h) {
  for (int64_t j = 0; j < n; ++j) {
    const float r = Sigmoid(zx[j] + zh[j]), u = Sigmoid(zx[H + j] + zh[zq + j]);
    const float c = Tanh(zx[2 * H + j] + r * zh[2 * zq + j]);
    if constexpr (kKeep) act[j] = r, act[H + j] = u, act[2 * H + j] = c, h_c[j] = zh[2 * zq + j];
    h[j] = u * c + (1.0f - u) * h_prev[j];
  }
}

// GatesOf, act and h_c written where act is not null; zq the gates' distance in zh where it
// differs from H.
JAXRNN_VECTOR void Gates(int64_t n, int64_t H, const float* __restrict zx,
                         const float* __restrict zh, const float* __restrict h_prev,
                         float* __restrict act, float* __restrict h_c, float* __restrict h,
                         int64_t zq = 0) {
  zq = zq ? zq : H;
  if (act)
    GatesOf<true>(n, H, zq, zx, zh, h_prev, act, h_c, h);
  else
    GatesOf<false>(n, H, zq, zx, zh, h_prev, act, h_c, h);
}

// One step backwards for one example and n of its H units: from dL/dh_t = dy + dh_rec +
// dh_direct (the output's cotangent, and the two ways h_t reaches the next step), writes dL/dz_x
// and dL/dz_h (3 gates H apart) and the direct part (1 - u) dL/dh_t of dL/dh_{t-1}.
JAXRNN_VECTOR void GatesBackward(int64_t n, int64_t H, const float* __restrict act,
                                 const float* __restrict h_c, const float* __restrict h_prev,
                                 const float* __restrict dy, const float* __restrict dh_rec,
                                 float* __restrict dh_direct, float* __restrict dzx,
                                 float* __restrict dzh) {
  for (int64_t j = 0; j < n; ++j) {
    const float r = act[j], u = act[H + j], c = act[2 * H + j];
    const float dh = dy[j] + dh_rec[j] + dh_direct[j];
    const float dzc = dh * u * (1.0f - c * c);
    const float dzr = dzc * h_c[j] * r * (1.0f - r);
    const float dzu = dh * (c - h_prev[j]) * u * (1.0f - u);
    dzx[j] = dzr, dzx[H + j] = dzu, dzx[2 * H + j] = dzc;
    dzh[j] = dzr, dzh[H + j] = dzu, dzh[2 * H + j] = dzc * r;
    dh_direct[j] = dh * (1.0f - u);
  }
}

// The forward pass over the examples of s that its buffers hold, all of a call's or a thread's
// part (GruForward in common.h): ys, the last h, and with `save` the activations r, u, c~
// (B, T, 3H) and the recurrent candidates h_c (B, T, H) that the backward pass reads.
void ForwardPart(const Shape& s, ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0,
                 ffi::Buffer<ffi::F32> w_x, ffi::Buffer<ffi::F32> w_h,
                 ffi::Buffer<ffi::F32> b_x, ffi::Buffer<ffi::F32> b_h,
                 ffi::Buffer<ffi::F32> h_restart, ffi::ResultBuffer<ffi::F32> ys,
                 ffi::ResultBuffer<ffi::F32> h_last, ffi::ResultBuffer<ffi::F32> gates,
                 ffi::ResultBuffer<ffi::F32> candidates, bool reverse, bool save) {
  const int64_t B = s.B, T = s.T, H = s.H, G = 3 * H;
  Runner run;
  Scratch& scratch = run.scratch;
  const float* zx = GruForwardStart(run, s, xs, h0, w_x, b_x, ys, h_last, gates, candidates, save);
  if (zx == nullptr) return;
  float* y = ys->typed_data();
  if (B <= kFewRows) {  // FewRowsForward in common.h; slot b is example b
    float* zh = scratch.Take(B * G);
    auto recurrent_bias = [&](int64_t, int64_t* stride) {
      *stride = 0;
      return b_h.typed_data();
    };
    auto step_gates = [&](int64_t, int64_t t, int64_t b, int64_t first, int64_t n,
                          const float* h_read, float* h_next) {
      const int64_t row = b * T + t, at = b * H + first;
      if (!s.Runs(b, t)) {  // the carry kept
        std::memcpy(h_next + at, h_read + at, n * sizeof(float));
        std::memset(y + row * H + first, 0, n * sizeof(float));
        RestartAfter(s, b, t, reverse, first, n, h_restart.typed_data(), h_next);
        return;
      }
      float* a = save ? gates->typed_data() + row * G + first : nullptr;
      float* hc = save ? candidates->typed_data() + row * H + first : nullptr;
      Gates(n, H, zx + (s.start[b] + t) * G + first, zh + b * G + first, h_read + at, a, hc,
            h_next + at);
      std::memcpy(y + row * H + first, h_next + at, n * sizeof(float));
      RestartAfter(s, b, t, reverse, first, n, h_restart.typed_data(), h_next);
    };
    const float* first_carries =
        FirstCarries(scratch, s, H, h0.typed_data(), h_restart.typed_data(), reverse);
    const float* h = FewRowsForward(scratch, s, G, first_carries, w_h.typed_data(), reverse, zh,
                                    recurrent_bias, step_gates);
    std::memcpy(h_last->typed_data(), h, B * H * sizeof(float));
    return;
  }
  // More sequences: one parallel region runs every step (TeamProducts in common.h), each
  // thread the product h_{t-1} w_h and the gates of its own units, in the slots' order (Shape):
  // a step multiplies and updates only the slots up to the last that runs it. A slot's carry is
  // written only at the steps it runs, so both of its copies start at h0 and the last it wrote
  // stays where it is.
  const int team = FewRowsTeam(H);
  const float* w = w_h.typed_data();
  const TeamProducts products(run, B, H, H, 3, team, [&](int64_t k) { return w + k * G; },
                              b_h.typed_data());
  float* zh = scratch.Take(B * G);
  float* carries[2] = {
      FirstCarries(scratch, s, H, h0.typed_data(), h_restart.typed_data(), reverse),
      scratch.Take(B * H)};
  std::memcpy(carries[1], carries[0], B * H * sizeof(float));
  ZeroStepsNotRun(s, H, y);
  InTeam(team, [&] {
    TeamProducts::Member product(products, omp_get_thread_num(), zh);
    const int64_t first = product.first, n = product.n;
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? T - 1 - step : step;
      const float* h_read = carries[step % 2];
      float* h_next = carries[1 - step % 2];
      const int64_t slots = s.through[t];
      product(h_read, slots);
      for (int64_t r = 0; r < slots; ++r) {
        if (!s.Runs(r, t)) continue;
        const int64_t row = s.Row(r, t), at = r * H + first;
        float* a = save ? gates->typed_data() + row * G + first : nullptr;
        float* hc = save ? candidates->typed_data() + row * H + first : nullptr;
        Gates(n, H, zx + (s.start[r] + t) * G + first, product.z_i + r * 3 * n, h_read + at,
              a, hc, h_next + at, n);
        std::memcpy(y + row * H + first, h_next + at, n * sizeof(float));
        RestartAfter(s, r, t, reverse, first, n, h_restart.typed_data(), h_next);
      }
#pragma omp barrier
    }
  });
  for (int64_t r = 0; r < B; ++r)  // where the slot's last step left its carry
    std::memcpy(h_last->typed_data() + s.order[r] * H,
                carries[(reverse ? T : s.length[r]) % 2] + r * H, H * sizeof(float));
}


// The backward pass over the examples of s that its buffers hold (GruBackward in common.h).
void BackwardPart(const Shape& s, ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0,
                  ffi::Buffer<ffi::F32> w_x, ffi::Buffer<ffi::F32> w_h,
                  ffi::Buffer<ffi::F32> ys, ffi::Buffer<ffi::F32> gates,
                  ffi::Buffer<ffi::F32> candidates, ffi::Buffer<ffi::F32> d_ys,
                  ffi::Buffer<ffi::F32> d_h_last, ffi::Buffer<ffi::F32> h_restart,
                  ffi::ResultBuffer<ffi::F32> d_xs, ffi::ResultBuffer<ffi::F32> d_h0,
                  ffi::ResultBuffer<ffi::F32> d_w_x, ffi::ResultBuffer<ffi::F32> d_w_h,
                  ffi::ResultBuffer<ffi::F32> d_b_x, ffi::ResultBuffer<ffi::F32> d_b_h,
                  ffi::ResultBuffer<ffi::F32> d_h_restart, bool reverse) {
  const int64_t B = s.B, T = s.T, D = s.D, H = s.H, G = 3 * H;
  if (T == 0)
    return GruNoStepsBackward(s, d_h_last, d_xs, d_h0, d_w_x, d_w_h, d_b_x, d_b_h, d_h_restart);
  Runner run;
  Scratch& scratch = run.scratch;
  // The carries each step run read, slot after slot (Shape); dL/dz_x and dL/dz_h step after
  // step (dL/dz_x all of it where dL/dxs is wanted); the rest in the slots' order: the carry's
  // dL/d in two parts.
  const float* h_prev =
      StepCarriesRead(scratch, s, h0.typed_data(), h_restart.typed_data(), ys.typed_data(),
                      reverse);
  const DzBySteps dzx(scratch, s, G, reverse, /*keep_all=*/WantedOut(d_xs) != nullptr);
  const DzBySteps dzh(scratch, s, G, reverse, /*keep_all=*/false);
  std::optional<ChunkedWeightGradient> d_w_x_sum, d_w_h_sum;
  if (WantedOut(d_w_h)) {
    d_w_x_sum.emplace(run, s, dzx, D, G);
    d_w_h_sum.emplace(run, s, dzh, H, G);
  }
  float* dh_rec = scratch.Zeros(B * H);
  float* dh_direct = scratch.Take(B * H);
  Reorder<true>(s, H, d_h_last.typed_data(), dh_direct);
  float* dh_restart = scratch.Zeros(B * H);  // the restart carry's, in the slots' order
  // The bias gradients, where the weights' are wanted: each thread adds its units' as it goes.
  float* d_b_x_sums = WantedOut(d_b_x);
  float* d_b_h_sums = WantedOut(d_b_h);
  if (d_b_x_sums) std::memset(d_b_x_sums, 0, G * sizeof(float));
  if (d_b_h_sums) std::memset(d_b_h_sums, 0, G * sizeof(float));
  auto step_backward = [&](int64_t t, int64_t r, int64_t first, int64_t n) {
    const int64_t row = s.Row(r, t), at = r * H + first;
    float* dzx_row = dzx.Row(t, r) + first;
    float* dzh_row = dzh.Row(t, r) + first;
    if (!s.Runs(r, t)) {  // dL/dh passes the step by: all of it direct, none through w_h
      for (int64_t q = 0; q < 3; ++q) {
        std::memset(dzx_row + q * H, 0, n * sizeof(float));
        std::memset(dzh_row + q * H, 0, n * sizeof(float));
      }
      for (int64_t j = at; j < at + n; ++j) dh_direct[j] += dh_rec[j];
      return;
    }
    GatesBackward(n, H, gates.typed_data() + row * G + first,
                  candidates.typed_data() + row * H + first,
                  h_prev + (s.start[r] + t) * H + first, d_ys.typed_data() + row * H + first,
                  dh_rec + at, dh_direct + at, dzx_row, dzh_row);
    if (d_b_x_sums) AddToColumnSums(3, n, H, dzx_row, d_b_x_sums + first);
    if (d_b_h_sums) AddToColumnSums(3, n, H, dzh_row, d_b_h_sums + first);
  };
  // Where step t starts a segment, both parts of dL/dh_{t-1} belong to the restart carry.
  auto after_product = [&](int64_t t, int64_t r, int64_t first, int64_t n) {
    MoveToRestart(s, r, t, first, n, dh_rec, dh_restart);
    MoveToRestart(s, r, t, first, n, dh_direct, dh_restart);
  };
  // dL/dw_x = xsᵀ dz_x and dL/dw_h = h_prevᵀ dz_h, chunk by chunk.
  auto x_row = [&](int64_t t, int64_t r, int64_t k0, int64_t k1, float* row) {
    std::memcpy(row, xs.typed_data() + s.Row(r, t) * D + k0, (k1 - k0) * sizeof(float));
  };
  auto h_row = [&](int64_t t, int64_t r, int64_t k0, int64_t k1, float* row) {
    std::memcpy(row, h_prev + (s.start[r] + t) * H + k0, (k1 - k0) * sizeof(float));
  };
  auto chunk_done = [&](int64_t c, int thread) {
    if (!d_w_h_sum) return;
    d_w_x_sum->Add(thread, c, s, x_row);
    d_w_h_sum->Add(thread, c, s, h_row);
  };
  StepsBackward(run, s, G, w_h.typed_data(), reverse, dzh, dh_rec, step_backward,
                after_product, chunk_done);
  for (int64_t i = 0; i < B * H; ++i) dh_rec[i] += dh_direct[i];
  Reorder<false>(s, H, dh_rec, d_h0->typed_data());
  Reorder<false>(s, H, dh_restart, d_h_restart->typed_data());
  if (d_w_h_sum) {
    d_w_x_sum->Finish(scratch, D, d_w_x->typed_data(), nullptr);
    d_w_h_sum->Finish(scratch, H, d_w_h->typed_data(), nullptr);
  }
  InputGradientsBySteps(run, s, dzx, G, w_x.typed_data(), WantedOut(d_xs));
}


}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnGruForward, GruForward<ForwardPart>, GruForwardSignature());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnGruBackward, GruBackward<BackwardPart>, GruBackwardSignature());
