// A whole-sequence LSTM for XLA:CPU: forward and backward passes as two FFI calls.
//
// The recurrence is what jaxrnn.lstm() computes (gates u, f, c~, o stacked along the last axis,
// PyTorch's i, f, g, o), batch-major: xs (B, T, D), carries (B, H), outputs (B, T, H).
// Each call packs the weights once into oneDNN's blocked layout: a forward step is one product
// [x_t, h_{t-1}] [w_x; w_h] from weights that stay in cache, a backward step one product with
// w_h's transpose, and the weight gradients and dL/dxs are single products over all B * T rows.
// jax.lax.scan of the cell's step stays the definition: tests/test_native.py checks the kernel
// against it.

#include "common.h"

namespace {

using namespace jaxrnn_native;

// The pointwise part of one step for one example and n of its H units: from the gate
// pre-activations z (4 gates H apart), writes their activations, the memory cell c and the
// output h.
JAXRNN_VECTOR void Gates(int64_t n, int64_t H, const float* __restrict z, float* __restrict act,
                         const float* __restrict c_prev, float* __restrict c,
                         float* __restrict h) {
  for (int64_t j = 0; j < n; ++j) {
    const float u = Sigmoid(z[j]), f = Sigmoid(z[H + j]), g = Tanh(z[2 * H + j]),
                o = Sigmoid(z[3 * H + j]);
    act[j] = u, act[H + j] = f, act[2 * H + j] = g, act[3 * H + j] = o;
    c[j] = u * g + f * c_prev[j];
    h[j] = o * Tanh(c[j]);
  }
}

// ∂L/∂z of one step for one example and n of its H units from the saved activations; updates
// ∂L/∂c in place and adds the output's cotangent dy to dh.
JAXRNN_VECTOR void GatesBackward(int64_t n, int64_t H, const float* __restrict a,
                                 const float* __restrict c, const float* __restrict c_prev,
                                 const float* __restrict dy, const float* __restrict dh,
                                 float* __restrict dc, float* __restrict dz) {
  for (int64_t j = 0; j < n; ++j) {
    const float u = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
    const float tc = Tanh(c[j]);
    const float dht = dh[j] + dy[j];
    const float dct = dc[j] + dht * o * (1.0f - tc * tc);
    dz[j] = dct * g * u * (1.0f - u);
    dz[H + j] = dct * c_prev[j] * f * (1.0f - f);
    dz[2 * H + j] = dct * u * (1.0f - g * g);
    dz[3 * H + j] = dht * tc * o * (1.0f - o);
    dc[j] = dct * f;
  }
}

// The forward pass for up to kFewRows sequences (FewRowsForward in common.h): the input side of
// every step is one product before the loop. `gates` and `cells` are written when they are not
// null; the memory cells of two steps are kept in turn, as the carries are.
void ForwardFew(Runner& run, const Shape& s, const float* xs, const float* h0, const float* c0,
                const float* w_x, const float* w_h, const float* bias, float* ys,
                float* h_last, float* c_last, float* gates, float* cells, bool reverse) {
  const int64_t B = s.B, T = s.T, D = s.D, H = s.H, G = 4 * H;
  float* zx = run.scratch.Take(B * T * G);
  run.Once({B * T, D, D}, xs, {D, G, G}, w_x, zx, G, bias);
  float* z = run.scratch.Take(B * G);
  float* act = run.scratch.Take(B * G);
  float* c[2] = {run.scratch.Copy(c0, B * H), run.scratch.Take(B * H)};
  auto input_side = [&](int64_t t, int64_t* stride) {
    *stride = T * G;
    return zx + t * G;
  };
  auto step_gates = [&](int64_t step, int64_t t, int64_t b, int64_t first, int64_t n,
                        const float* h_read, float* h_next) {
    const int64_t row = b * T + t, at = b * H + first;
    const float* c_read = c[step % 2];
    float* c_next = c[1 - step % 2];
    float* y = ys + row * H + first;
    if (s.Runs(b, t)) {
      Gates(n, H, z + b * G + first, (gates ? gates + row * G : act + b * G) + first,
            c_read + at, c_next + at, y);
      std::memcpy(h_next + at, y, n * sizeof(float));
    } else {
      std::memset(y, 0, n * sizeof(float));
      std::memcpy(h_next + at, h_read + at, n * sizeof(float));
      std::memcpy(c_next + at, c_read + at, n * sizeof(float));
    }
    if (cells) std::memcpy(cells + row * H + first, c_next + at, n * sizeof(float));
  };
  const float* h = FewRowsForward(run.scratch, s, G, h0, w_h, reverse, z, input_side, step_gates);
  std::memcpy(h_last, h, B * H * sizeof(float));
  std::memcpy(c_last, c[T % 2], B * H * sizeof(float));
}

// ys (B, T, H), last h and c (B, H); with `save`, the gate activations (B, T, 4H) and the
// memory cells (B, T, H) that the backward pass reads.
ffi::Error ForwardImpl(ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0,
                       ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> w_x,
                       ffi::Buffer<ffi::F32> w_h, ffi::Buffer<ffi::F32> bias,
                       ffi::Buffer<ffi::S32> lengths, ffi::ResultBuffer<ffi::F32> ys,
                       ffi::ResultBuffer<ffi::F32> h_last, ffi::ResultBuffer<ffi::F32> c_last, ffi::ResultBuffer<ffi::F32> gates,
                       ffi::ResultBuffer<ffi::F32> cells, bool reverse, bool save) {
  const Shape s = ShapeOf(xs, h0, lengths);
  const int64_t B = s.B, T = s.T, D = s.D, H = s.H, G = 4 * H;
  if (auto e = CheckWeights("lstm", s, 4, w_x, w_h); e.failure()) return e;
  return Guarded("lstm", [&] {
    if (T == 0) {
      std::memcpy(h_last->typed_data(), h0.typed_data(), B * H * sizeof(float));
      std::memcpy(c_last->typed_data(), c0.typed_data(), B * H * sizeof(float));
      return;
    }
    PreferHugePages(ys->typed_data(), B * T * H * sizeof(float));
    if (save) {
      PreferHugePages(gates->typed_data(), B * T * G * sizeof(float));
      PreferHugePages(cells->typed_data(), B * T * H * sizeof(float));
    }
    Runner run;
    if (B <= kFewRows)
      return ForwardFew(run, s, xs.typed_data(), h0.typed_data(), c0.typed_data(),
                        w_x.typed_data(), w_h.typed_data(), bias.typed_data(), ys->typed_data(),
                        h_last->typed_data(), c_last->typed_data(),
                        save ? gates->typed_data() : nullptr,
                        save ? cells->typed_data() : nullptr, reverse);
    // One product per step, [x_t, h_{t-1}] (B, D + H) times [w_x; w_h] (D + H, 4H) plus the
    // bias: the pre-activations of a step never leave the cache.
    const int64_t K = D + H;
    Scratch& scratch = run.scratch;
    float* w = scratch.Take(K * G);
    std::memcpy(w, w_x.typed_data(), D * G * sizeof(float));
    std::memcpy(w + D * G, w_h.typed_data(), H * G * sizeof(float));
    View xh_view{B, K, K}, w_view{K, G, G};
    auto product = ProductFor(xh_view, w_view, G, /*packed=*/true, /*bias=*/true);
    Repeated step_product(run, *product, xh_view, run.Weights(*product, w_view, w), G,
                          bias.typed_data());
    float* xh = scratch.Take(B * K);
    float* z = scratch.Take(B * G);
    float* act = save ? nullptr : scratch.Take(B * G);
    float* c = scratch.Copy(c0.typed_data(), B * H);
    float* c_new = scratch.Take(B * H);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(xh + b * K + D, h0.typed_data() + b * H, H * sizeof(float));
    const float* x = xs.typed_data();
    float* y = ys->typed_data();
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? T - 1 - step : step;
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(xh + b * K, x + (b * T + t) * D, D * sizeof(float));
      step_product(xh, z);
#pragma omp parallel for schedule(static) if (B * H >= kParallelGates)
      for (int64_t b = 0; b < B; ++b) {
        float* h = xh + b * K + D;  // the next step's input
        if (s.Runs(b, t)) {
          float* a = save ? gates->typed_data() + (b * T + t) * G : act + b * G;
          Gates(H, H, z + b * G, a, c + b * H, c_new + b * H, h);
          std::memcpy(y + (b * T + t) * H, h, H * sizeof(float));
        } else {  // the carry kept, h where it is
          std::memset(y + (b * T + t) * H, 0, H * sizeof(float));
          std::memcpy(c_new + b * H, c + b * H, H * sizeof(float));
        }
        if (save)
          std::memcpy(cells->typed_data() + (b * T + t) * H, c_new + b * H, H * sizeof(float));
      }
      std::swap(c, c_new);
    }
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(h_last->typed_data() + b * H, xh + b * K + D, H * sizeof(float));
    std::memcpy(c_last->typed_data(), c, B * H * sizeof(float));
  });
}

// The gradients of a sum of <cotangent, output> over ys, last h and last c, from what the
// forward pass saved.
ffi::Error BackwardImpl(ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0,
                        ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> w_x,
                        ffi::Buffer<ffi::F32> w_h, ffi::Buffer<ffi::F32> ys,
                        ffi::Buffer<ffi::F32> gates, ffi::Buffer<ffi::F32> cells,
                        ffi::Buffer<ffi::F32> d_ys, ffi::Buffer<ffi::F32> d_h_last,
                        ffi::Buffer<ffi::F32> d_c_last, ffi::Buffer<ffi::S32> lengths,
                        ffi::ResultBuffer<ffi::F32> d_xs,
                        ffi::ResultBuffer<ffi::F32> d_h0, ffi::ResultBuffer<ffi::F32> d_c0,
                        ffi::ResultBuffer<ffi::F32> d_w_x, ffi::ResultBuffer<ffi::F32> d_w_h,
                        ffi::ResultBuffer<ffi::F32> d_bias, bool reverse) {
  const Shape s = ShapeOf(xs, h0, lengths);
  const int64_t B = s.B, T = s.T, D = s.D, H = s.H, G = 4 * H;
  if (auto e = CheckWeights("lstm", s, 4, w_x, w_h); e.failure()) return e;
  return Guarded("lstm", [&] {
    if (T == 0) {
      std::memcpy(d_h0->typed_data(), d_h_last.typed_data(), B * H * sizeof(float));
      std::memcpy(d_c0->typed_data(), d_c_last.typed_data(), B * H * sizeof(float));
      std::memset(d_w_x->typed_data(), 0, D * G * sizeof(float));
      std::memset(d_w_h->typed_data(), 0, H * G * sizeof(float));
      std::memset(d_bias->typed_data(), 0, G * sizeof(float));
      return;
    }
    Runner run;
    Scratch& scratch = run.scratch;
    const float* act = gates.typed_data();
    const float* cs = cells.typed_data();
    const float* dy = d_ys.typed_data();
    float* dz = scratch.Take(B * T * G);  // dL/dz of every step, row b * T + t
    float* dh = scratch.Copy(d_h_last.typed_data(), B * H);
    float* dc = scratch.Copy(d_c_last.typed_data(), B * H);
    float* dh_kept = scratch.Take(B * H);  // dL/dh of the examples a step does not run
    // dL/dz of example b at step t and n of its units from `first` on: zeros where the step is
    // not run, and dL/dh set aside, since the step's product overwrites it.
    auto step_backward = [&](int64_t t, int64_t b, int64_t first, int64_t n) {
      const int64_t row = b * T + t, at = b * H + first;
      if (!s.Runs(b, t)) {
        for (int64_t q = 0; q < 4; ++q)
          std::memset(dz + row * G + q * H + first, 0, n * sizeof(float));
        std::memcpy(dh_kept + at, dh + at, n * sizeof(float));
        return;
      }
      const float* c_prev = t == s.FirstRead(b, reverse)
                                ? c0.typed_data() + b * H
                                : cs + (b * T + (reverse ? t + 1 : t - 1)) * H;
      GatesBackward(n, H, act + row * G + first, cs + row * H + first, c_prev + first,
                    dy + row * H + first, dh + at, dc + at, dz + row * G + first);
    };
    auto restore_kept = [&](int64_t t, int64_t b, int64_t first, int64_t n) {
      if (!s.Runs(b, t))
        std::memcpy(dh + b * H + first, dh_kept + b * H + first, n * sizeof(float));
    };
    StepsBackward(run, s, G, w_h.typed_data(), reverse, dz, dh, step_backward, restore_kept);
    std::memcpy(d_h0->typed_data(), dh, B * H * sizeof(float));
    std::memcpy(d_c0->typed_data(), dc, B * H * sizeof(float));
    // z = [x, h] [w_x; w_h] + b: one dL/dz serves both sides and the bias.
    const float* h_prev = CarriesRead(scratch, s, h0.typed_data(), ys.typed_data(), reverse);
    ProductGradients(run, s, G, xs.typed_data(), h_prev, dz, dz, w_x.typed_data(),
                     d_w_x->typed_data(), d_w_h->typed_data(), d_xs->typed_data());
    ColumnSums(B * T, G, dz, d_bias->typed_data());
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnLstmForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xs
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_h
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b_x + b_h
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ys
                                  .Ret<ffi::Buffer<ffi::F32>>()  // h_last
                                  .Ret<ffi::Buffer<ffi::F32>>()  // c_last
                                  .Ret<ffi::Buffer<ffi::F32>>()  // gate activations
                                  .Ret<ffi::Buffer<ffi::F32>>()  // memory cells
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("save"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnLstmBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xs
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_h
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ys
                                  .Arg<ffi::Buffer<ffi::F32>>()  // gate activations
                                  .Arg<ffi::Buffer<ffi::F32>>()  // memory cells
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ∂L/∂ys
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ∂L/∂h_last
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ∂L/∂c_last
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂xs
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂h0
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂c0
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂w_x
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂w_h
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂bias
                                  .Attr<bool>("reverse"));
