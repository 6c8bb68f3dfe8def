// A whole-sequence LSTM, and the basic RNN, for XLA:CPU: forward and backward passes as two FFI
// calls each.
//
// The recurrence is what jaxrnn.lstm() computes (gates u, f, c~, o stacked along the last axis,
// PyTorch's i, f, g, o), batch-major: xs (B, T, D), carries (B, H), outputs (B, T, H).
// Each call packs the weights once into oneDNN's blocked layout: a forward step is one product
// [x_t, h_{t-1}] [w_x; w_h] from weights that stay in cache, a backward step one product with
// w_h's transpose; the weight gradients are products over chunks of about 512 rows of dL/dz,
// added as the backward steps write them (ChunkedWeightGradient), and dL/dxs one product over all
// B * T rows.
// With peepholes (jaxrnn.lstm(peephole=True), Gers & Schmidhuber 2000) the gates u and f also
// read p_u * c_{t-1} and p_f * c_{t-1}, and o reads p_o * c_t, p (3, H); they are elementwise, so
// the products stay as they are. The basic RNN (jaxrnn.rnn("tanh" | "relu")) is the same loop
// with one gate and no memory cell, h_t = g([x_t, h_{t-1}] [w_x; w_h] + b), and so is the
// course's simplified GRU (jaxrnn.simplified_gru(), gates u, c~): h_t = u c~ + (1 - u) h_{t-1}.
// jax.lax.scan of the cell's step stays the definition: tests/test_native.py checks the kernels
// against it.

#include <optional>

#include "common.h"

namespace {

using namespace jaxrnn_native;

// The pointwise part of one step for one example and n of its H units: from the gate
// pre-activations z (4 gates zq apart), writes their activations (4 gates H apart, when kKeep),
// the memory cell c and the output h; with kPeep, the peepholes p (3 of n, H apart) too.
template <bool kKeep, bool kPeep>
__attribute__((always_inline)) inline void GatesOf(int64_t n, int64_t H, int64_t zq,
                                                   const float* __restrict z,
                                                   float* __restrict act,
                                                   const float* __restrict c_prev,
                                                   float* __restrict c, float* __restrict h,
                                                   const float* __restrict p) {
  for (int64_t j = 0; j < n; ++j) {
    float zu = z[j], zf = z[zq + j], zo = z[3 * zq + j];
    if constexpr (kPeep) zu += p[j] * c_prev[j], zf += p[H + j] * c_prev[j];
    const float u = Sigmoid(zu), f = Sigmoid(zf), g = Tanh(z[2 * zq + j]);
    c[j] = u * g + f * c_prev[j];
    if constexpr (kPeep) zo += p[2 * H + j] * c[j];
    const float o = Sigmoid(zo);
    if constexpr (kKeep) act[j] = u, act[H + j] = f, act[2 * H + j] = g, act[3 * H + j] = o;
    h[j] = o * Tanh(c[j]);
  }
}

// GatesOf, the activations kept where `act` is not null, the peepholes read where `p` is not;
// zq the gates' distance in z where it differs from act's.
JAXRNN_VECTOR void Gates(int64_t n, int64_t H, const float* __restrict z, float* __restrict act,
                         const float* __restrict c_prev, float* __restrict c,
                         float* __restrict h, const float* __restrict p, int64_t zq = 0) {
  zq = zq ? zq : H;
  if (act && p)
    GatesOf<true, true>(n, H, zq, z, act, c_prev, c, h, p);
  else if (act)
    GatesOf<true, false>(n, H, zq, z, act, c_prev, c, h, p);
  else if (p)
    GatesOf<false, true>(n, H, zq, z, act, c_prev, c, h, p);
  else
    GatesOf<false, false>(n, H, zq, z, act, c_prev, c, h, p);
}

// ∂L/∂z of one step for one example and n of its H units from the saved activations; updates
// ∂L/∂c in place and adds the output's cotangent dy to dh. With kPeep, reads the peepholes p and
// adds their gradients to dp (both 3 of n, H apart).
template <bool kPeep>
__attribute__((always_inline)) inline void GatesBackwardOf(
    int64_t n, int64_t H, const float* __restrict a, const float* __restrict c,
    const float* __restrict c_prev, const float* __restrict dy, const float* __restrict dh,
    float* __restrict dc, float* __restrict dz, const float* __restrict p,
    float* __restrict dp) {
  for (int64_t j = 0; j < n; ++j) {
    const float u = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
    const float tc = Tanh(c[j]);
    const float dht = dh[j] + dy[j];
    const float dzo = dht * tc * o * (1.0f - o);
    float dct = dc[j] + dht * o * (1.0f - tc * tc);
    if constexpr (kPeep) dct += dzo * p[2 * H + j];
    const float dzu = dct * g * u * (1.0f - u), dzf = dct * c_prev[j] * f * (1.0f - f);
    dz[j] = dzu;
    dz[H + j] = dzf;
    dz[2 * H + j] = dct * u * (1.0f - g * g);
    dz[3 * H + j] = dzo;
    dc[j] = dct * f;
    if constexpr (kPeep) {
      dc[j] += dzu * p[j] + dzf * p[H + j];
      dp[j] += dzu * c_prev[j], dp[H + j] += dzf * c_prev[j], dp[2 * H + j] += dzo * c[j];
    }
  }
}

JAXRNN_VECTOR void GatesBackward(int64_t n, int64_t H, const float* __restrict a,
                                 const float* __restrict c, const float* __restrict c_prev,
                                 const float* __restrict dy, const float* __restrict dh,
                                 float* __restrict dc, float* __restrict dz,
                                 const float* __restrict p, float* __restrict dp) {
  if (p)
    GatesBackwardOf<true>(n, H, a, c, c_prev, dy, dh, dc, dz, p, dp);
  else
    GatesBackwardOf<false>(n, H, a, c, c_prev, dy, dh, dc, dz, p, dp);
}

// The peepholes (3, H), or null for an LSTM without them (an empty buffer).
const float* Peepholes(ffi::Buffer<ffi::F32>& peephole) {
  return peephole.element_count() == 0 ? nullptr : peephole.typed_data();
}

ffi::Error CheckPeephole(const Shape& s, ffi::Buffer<ffi::F32>& peephole) {
  auto d = peephole.dimensions();
  if (peephole.element_count() != 0 && (d.size() != 2 || d[0] != 3 || d[1] != s.H))
    return ffi::Error::InvalidArgument("lstm kernel: peepholes do not match the carry");
  return ffi::Error::Success();
}

// The basic RNN's activation of n units, y = tanh(z) or max(z, 0).
template <bool kRelu>
__attribute__((always_inline)) inline void ActivateOf(int64_t n, const float* __restrict z,
                                                      float* __restrict y) {
  for (int64_t j = 0; j < n; ++j) y[j] = kRelu ? std::max(z[j], 0.0f) : Tanh(z[j]);
}

JAXRNN_VECTOR void Activate(int64_t n, bool relu, const float* __restrict z, float* __restrict y) {
  if (relu)
    ActivateOf<true>(n, z, y);
  else
    ActivateOf<false>(n, z, y);
}

// dL/dz = (dy + dh) g'(z) of n units, from the outputs y = g(z).
template <bool kRelu>
__attribute__((always_inline)) inline void ActivateBackwardOf(int64_t n,
                                                              const float* __restrict y,
                                                              const float* __restrict dy,
                                                              const float* __restrict dh,
                                                              float* __restrict dz) {
  for (int64_t j = 0; j < n; ++j) {
    const float slope = kRelu ? (y[j] > 0.0f ? 1.0f : 0.0f) : 1.0f - y[j] * y[j];
    dz[j] = (dy[j] + dh[j]) * slope;
  }
}

JAXRNN_VECTOR void ActivateBackward(int64_t n, bool relu, const float* __restrict y,
                                    const float* __restrict dy, const float* __restrict dh,
                                    float* __restrict dz) {
  if (relu)
    ActivateBackwardOf<true>(n, y, dy, dh, dz);
  else
    ActivateBackwardOf<false>(n, y, dy, dh, dz);
}

// The simplified GRU's n units: u = sigmoid(z_u), c~ = tanh(z_c) (z: 2 gates zq apart),
// h = u c~ + (1 - u) h_{t-1}; u and c~ into act (H apart) when kKeep.
template <bool kKeep>
__attribute__((always_inline)) inline void UpdateGatesOf(int64_t n, int64_t H, int64_t zq,
                                                         const float* __restrict z,
                                                         float* __restrict act,
                                                         const float* __restrict h_prev,
                                                         float* __restrict h) {
  for (int64_t j = 0; j < n; ++j) {
    const float u = Sigmoid(z[j]), c = Tanh(z[zq + j]);
    if constexpr (kKeep) act[j] = u, act[H + j] = c;
    h[j] = u * c + (1.0f - u) * h_prev[j];
  }
}

JAXRNN_VECTOR void UpdateGates(int64_t n, int64_t H, const float* __restrict z, int64_t zq,
                               float* __restrict act, const float* __restrict h_prev,
                               float* __restrict h) {
  if (act)
    UpdateGatesOf<true>(n, H, zq, z, act, h_prev, h);
  else
    UpdateGatesOf<false>(n, H, zq, z, act, h_prev, h);
}

JAXRNN_VECTOR void UpdateGatesBackward(int64_t n, int64_t H, const float* __restrict act,
                                       const float* __restrict h_prev,
                                       const float* __restrict dy, const float* __restrict dh,
                                       float* __restrict dz, float* __restrict direct) {
  for (int64_t j = 0; j < n; ++j) {
    const float u = act[j], c = act[H + j], g = dy[j] + dh[j];
    dz[j] = g * (c - h_prev[j]) * u * (1.0f - u);
    dz[H + j] = g * u * (1.0f - c * c);
    direct[j] = g * (1.0f - u);
  }
}

// What follows a step's product z = [x_t, h_{t-1}] [w_x; w_h] + b, for n units of one example
// from `first` on: the LSTM's four gates and memory cell (peepholes where given) ...
struct LstmCell {
  static constexpr int64_t kGates = 4;
  static constexpr bool kMemory = true;   // a memory cell c beside the carry h
  static constexpr bool kDirect = false;  // h_{t-1} reaches h_t other than through the product
  static constexpr bool kSharesExamples = false;  // whether its threads would (SharesExamples)
  const float* peephole;  // (3, H), or null
  // y (and c_next, and the activations into act where not null) from z, gates zq apart.
  void Step(int64_t n, int64_t H, int64_t first, const float* z, int64_t zq, float* act,
            const float* c_read, float* c_next, const float*, float* y) const {
    Gates(n, H, z, act, c_read, c_next, y, peephole ? peephole + first : nullptr, zq);
  }
  // dL/dz from dL/dh (and dL/dc in place, the peepholes' gradients added to dp).
  void Backward(int64_t n, int64_t H, int64_t first, const float* act, const float* c,
                const float* c_prev, const float*, const float*, const float* dy,
                const float* dh, float* dc, float* dz, float* dp, float*) const {
    GatesBackward(n, H, act, c, c_prev, dy, dh, dc, dz, peephole ? peephole + first : nullptr,
                  peephole ? dp + first : nullptr);
  }
};

// ... or the basic RNN's activation, which needs nothing saved but its outputs.
struct RnnCell {
  static constexpr int64_t kGates = 1;
  static constexpr bool kMemory = false;
  static constexpr bool kDirect = false;
  static constexpr bool kSharesExamples = true;
  bool relu;
  void Step(int64_t n, int64_t, int64_t, const float* z, int64_t, float*, const float*, float*,
            const float*, float* y) const {
    Activate(n, relu, z, y);
  }
  void Backward(int64_t n, int64_t, int64_t, const float*, const float*, const float*,
                const float*, const float* y, const float* dy, const float* dh, float*,
                float* dz, float*, float*) const {
    ActivateBackward(n, relu, y, dy, dh, dz);
  }
};

// ... or the simplified GRU's update gate and candidate, whose carry also reaches the next one
// directly, (1 - u) h_{t-1}.
struct SimplifiedGruCell {
  static constexpr int64_t kGates = 2;
  static constexpr bool kMemory = false;
  static constexpr bool kDirect = true;
  static constexpr bool kSharesExamples = true;
  void Step(int64_t n, int64_t H, int64_t, const float* z, int64_t zq, float* act, const float*,
            float*, const float* h_prev, float* y) const {
    UpdateGates(n, H, z, zq, act, h_prev, y);
  }
  // dL/dz from dL/dh_t = dy + dh, and the direct part (1 - u) dL/dh_t of dL/dh_{t-1}.
  void Backward(int64_t n, int64_t H, int64_t, const float* act, const float*, const float*,
                const float* h_prev, const float*, const float* dy, const float* dh, float*,
                float* dz, float*, float* direct) const {
    UpdateGatesBackward(n, H, act, h_prev, dy, dh, dz, direct);
  }
};

// What a forward pass reads and writes: the memory cell's arrays (c0 to cells) null for a cell
// without one, gates and cells null where not saved (the RNN saves nothing).
struct ForwardArrays {
  const float *xs, *h0, *c0, *h_restart, *c_restart, *w_x, *w_h, *bias;
  float *ys, *h_last, *c_last, *gates, *cells;
};

// The forward pass for up to kFewRows sequences (FewRowsForward in common.h), which keep their
// order (slot b is example b): the input side of every step is one product before the loop.
// The memory cells of two steps are kept in turn, as the carries are.
template <typename Cell>
void ForwardFew(Runner& run, const Shape& s, const Cell& cell, const ForwardArrays& a,
                bool reverse) {
  const int64_t B = s.B, T = s.T, D = s.D, H = s.H, G = Cell::kGates * H;
  float* zx = run.scratch.Take(B * T * G);
  run.Once({B * T, D, D}, a.xs, {D, G, G}, a.w_x, zx, G, a.bias);
  float* z = run.scratch.Take(B * G);
  float* c[2] = {nullptr, nullptr};
  if constexpr (Cell::kMemory)
    c[0] = FirstCarries(run.scratch, s, H, a.c0, a.c_restart, reverse),
    c[1] = run.scratch.Take(B * H);
  auto input_side = [&](int64_t t, int64_t* stride) {
    *stride = T * G;
    return zx + t * G;
  };
  auto step_gates = [&](int64_t step, int64_t t, int64_t b, int64_t first, int64_t n,
                        const float* h_read, float* h_next) {
    const int64_t row = b * T + t, at = b * H + first;
    const float* c_read = Cell::kMemory ? c[step % 2] + at : nullptr;
    float* c_next = Cell::kMemory ? c[1 - step % 2] + at : nullptr;
    float* y = a.ys + row * H + first;
    if (s.Runs(b, t)) {
      cell.Step(n, H, first, z + b * G + first, H, a.gates ? a.gates + row * G + first : nullptr,
                c_read, c_next, h_read + at, y);
      std::memcpy(h_next + at, y, n * sizeof(float));
    } else {
      std::memset(y, 0, n * sizeof(float));
      std::memcpy(h_next + at, h_read + at, n * sizeof(float));
      if constexpr (Cell::kMemory) std::memcpy(c_next, c_read, n * sizeof(float));
    }
    RestartAfter(s, b, t, reverse, first, n, a.h_restart, h_next);
    if constexpr (Cell::kMemory) {
      if (a.cells) std::memcpy(a.cells + row * H + first, c_next, n * sizeof(float));
      RestartAfter(s, b, t, reverse, first, n, a.c_restart, c[1 - step % 2]);
    }
  };
  const float* h = FewRowsForward(run.scratch, s, G,
                                  FirstCarries(run.scratch, s, H, a.h0, a.h_restart, reverse),
                                  a.w_h, reverse, z, input_side, step_gates);
  std::memcpy(a.h_last, h, B * H * sizeof(float));
  if constexpr (Cell::kMemory) std::memcpy(a.c_last, c[T % 2], B * H * sizeof(float));
}

// The forward pass for more than kFewRows sequences, in one parallel region (TeamProducts in
// common.h): each thread computes its units' columns of every gate, [x_t, h_{t-1}] (B, K) times
// [w_x; w_h] restricted to them plus the bias, then those units' gates, a group of rows at a time
// (RowGroups); before it multiplies a group's rows it waits for the others to have written their
// units of them (TeamProgress). The [x_t, h_{t-1}] rows and the memory cells of two steps are
// kept in turn, as FewRowsForward keeps the carries, in the slots' order (Shape): a step
// multiplies and updates only the slots up to the last that runs it. A slot's carry is written
// only at the steps it runs, so both of its copies start at (h0, c0) and the last it wrote stays
// where it is. A member writes a group's rows of the step after only once the others have read
// them at this one: it has waited for them to end the step before. Where InputSideBefore says,
// x_t w_x + b of every step comes from one product before the loop, and a step's rows are h_{t-1}
// alone: each member adds its columns of the step's input side to its product.
template <typename Cell>
void ForwardTeam(Runner& run, const Shape& s, const Cell& cell, const ForwardArrays& a,
                 bool reverse) {
  const int64_t B = s.B, T = s.T, D = s.D, H = s.H, G = Cell::kGates * H;
  Scratch& scratch = run.scratch;
  // zx: the input side of every step run (rows s.start[r] + t), or null where the step's rows
  // are [x_t, h_{t-1}]; Dx: the columns of x_t in a step's rows.
  const float* zx = InputSideBefore(B, D, H) ? InputSide(run, s, G, a.xs, a.w_x, a.bias) : nullptr;
  const int64_t Dx = zx ? 0 : D, K = Dx + H;
  const int team = FewRowsTeam(H);
  const int64_t groups = RowGroups(B, team, K * Cell::kGates * UnitsOf(0, team, H).second);
  // every group planned for `per_group` rows, the last padded with rows of zeros
  const int64_t per_group = (B + groups - 1) / groups, padded = per_group * groups;
  float* xh[2] = {scratch.Zeros(padded * K), scratch.Take(padded * K)};
  float* c[2] = {nullptr, nullptr};
  if constexpr (Cell::kMemory) {
    c[0] = FirstCarries(scratch, s, H, a.c0, a.c_restart, reverse), c[1] = scratch.Take(B * H);
    std::memcpy(c[1], c[0], B * H * sizeof(float));
  }
  float* z = scratch.Take(padded * G);
  const int64_t t0 = reverse ? T - 1 : 0;
  const float* h_first = FirstCarries(scratch, s, H, a.h0, a.h_restart, reverse);
  for (int64_t r = 0; r < B; ++r) {
    std::memcpy(xh[0] + r * K, a.xs + s.Row(r, t0) * D, Dx * sizeof(float));
    std::memcpy(xh[0] + r * K + Dx, h_first + r * H, H * sizeof(float));
  }
  std::memcpy(xh[1], xh[0], padded * K * sizeof(float));
  ZeroStepsNotRun(s, H, a.ys);
  const float *w_x = a.w_x, *w_h = a.w_h;
  const TeamProducts products(
      run, per_group, K, H, Cell::kGates, team,
      [&](int64_t k) { return k < Dx ? w_x + k * G : w_h + (k - Dx) * G; },
      zx ? scratch.Zeros(G) : a.bias);
  TeamProgress progress(team, groups);
  InTeam(team, [&] {
    const int i = omp_get_thread_num();
    TeamProducts::Member product(products, i, z, padded);
    const int64_t first = product.first, n = product.n, width = Cell::kGates * n;
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? T - 1 - step : step;
      float* xh_read = xh[step % 2];
      float* xh_next = xh[1 - step % 2];
      for (int64_t group = 0; group < groups; ++group) {
        const int64_t r0 = group * per_group, r1 = std::min(s.through[t], r0 + per_group);
        progress.Await(i, group, step);
        if (r1 > r0) product(xh_read + r0 * K, r1 - r0, r0);
        for (int64_t r = r0; r < r1; ++r) {
          if (!s.Runs(r, t)) continue;
          const int64_t row = s.Row(r, t), at = r * H + first;
          float* y = a.ys + row * H + first;
          float* c_next = Cell::kMemory ? c[1 - step % 2] + at : nullptr;
          if (zx) AddInputSide(Cell::kGates, n, H, zx + (s.start[r] + t) * G + first,
                               product.z_i + r * width);
          cell.Step(n, H, first, product.z_i + r * width, n,
                    a.gates ? a.gates + row * G + first : nullptr,
                    Cell::kMemory ? c[step % 2] + at : nullptr, c_next,
                    xh_read + r * K + Dx + first, y);
          std::memcpy(xh_next + r * K + Dx + first, y, n * sizeof(float));
          if constexpr (Cell::kMemory) {
            if (a.cells) std::memcpy(a.cells + row * H + first, c_next, n * sizeof(float));
            RestartAfter(s, r, t, reverse, first, n, a.c_restart, c[1 - step % 2]);
          }
          RestartAfter(s, r, t, reverse, first, n, a.h_restart, xh_next + Dx, K);
        }
        // The group's inputs of the next step, a share of its rows each (read backwards, a
        // group without a slot at this step may have some at the next).
        if (Dx > 0 && step + 1 < T) {
          const int64_t t_next = reverse ? t - 1 : t + 1;
          const int64_t q1 = std::min(r0 + per_group * (i + 1) / team, s.through[t_next]);
          for (int64_t r = r0 + per_group * i / team; r < q1; ++r)
            std::memcpy(xh_next + r * K, a.xs + s.Row(r, t_next) * D, D * sizeof(float));
        }
        progress.Done(i, group, step + 1);
      }
    }
  });
  for (int64_t r = 0; r < B; ++r) {  // where the slot's last step left its carry
    const int64_t kept = (reverse ? T : s.length[r]) % 2, e = s.order[r];
    std::memcpy(a.h_last + e * H, xh[kept] + r * K + Dx, H * sizeof(float));
    if constexpr (Cell::kMemory)
      std::memcpy(a.c_last + e * H, c[kept] + r * H, H * sizeof(float));
  }
}

template <typename Cell>
void Forward(const Shape& s, const Cell& cell, const ForwardArrays& a, bool reverse) {
  const int64_t B = s.B, T = s.T, H = s.H, G = Cell::kGates * H;
  if (T == 0) {
    std::memcpy(a.h_last, a.h0, B * H * sizeof(float));
    if constexpr (Cell::kMemory) std::memcpy(a.c_last, a.c0, B * H * sizeof(float));
    return;
  }
  PreferHugePages(a.ys, B * T * H * sizeof(float));
  if (a.gates) PreferHugePages(a.gates, B * T * G * sizeof(float));
  if (a.cells) PreferHugePages(a.cells, B * T * H * sizeof(float));
  Runner run;
  if (B <= kFewRows)
    ForwardFew(run, s, cell, a, reverse);
  else
    ForwardTeam(run, s, cell, a, reverse);
}

// What a backward pass reads and writes: the memory cell's arrays null for a cell without one,
// the results not wanted null (WantedOut), dp the peepholes' gradients (3, H) or null.
struct BackwardArrays {
  const float *xs, *h0, *c0, *w_x, *w_h, *ys, *gates, *cells, *d_ys, *d_h_last, *d_c_last;
  const float *h_restart, *c_restart;
  float *d_xs, *d_h0, *d_c0, *d_w_x, *d_w_h, *d_bias, *dp, *d_h_restart, *d_c_restart;
};

// The gradients of a sum of <cotangent, output> over ys, last h and last c, from what the
// forward pass saved.
template <typename Cell>
void Backward(const Shape& s, const Cell& cell, const BackwardArrays& a, bool reverse) {
  const int64_t B = s.B, T = s.T, D = s.D, H = s.H, G = Cell::kGates * H;
  if (a.dp) std::memset(a.dp, 0, 3 * H * sizeof(float));  // each thread adds its own units'
  if (T == 0) {
    std::memcpy(a.d_h0, a.d_h_last, B * H * sizeof(float));
    std::memset(a.d_h_restart, 0, B * H * sizeof(float));
    if constexpr (Cell::kMemory) {
      std::memcpy(a.d_c0, a.d_c_last, B * H * sizeof(float));
      std::memset(a.d_c_restart, 0, B * H * sizeof(float));
    }
    if (a.d_w_h) {
      std::memset(a.d_w_x, 0, D * G * sizeof(float));
      std::memset(a.d_w_h, 0, H * G * sizeof(float));
      std::memset(a.d_bias, 0, G * sizeof(float));
    }
    return;
  }
  Runner run;
  Scratch& scratch = run.scratch;
  // dL/dz step after step, all of it where dL/dxs is wanted; the rest in the slots' order
  // (Shape): the carries' dL/d.
  const DzBySteps dz(scratch, s, G, reverse, /*keep_all=*/a.d_xs != nullptr);
  std::optional<ChunkedWeightGradient> d_w;
  if (a.d_w_h) d_w.emplace(run, s, dz, D + H, G);
  float* dh = scratch.Take(B * H);
  Reorder<true>(s, H, a.d_h_last, dh);
  float* dh_kept = scratch.Take(B * H);  // dL/dh of the slots a step does not run
  float* dh_restart = scratch.Zeros(B * H);  // the restart carry's, in the slots' order
  float *dc = nullptr, *dc_restart = nullptr, *dp = nullptr;
  float* direct = Cell::kDirect ? scratch.Take(B * H) : nullptr;  // dL/dh_{t-1} past the product
  if constexpr (Cell::kMemory) {
    dc = scratch.Take(B * H), dc_restart = scratch.Zeros(B * H);
    Reorder<true>(s, H, a.d_c_last, dc);
    dp = a.dp ? a.dp : scratch.Zeros(3 * H);
  }
  // The bias gradient, where the weights' are wanted: each thread adds its units' as it goes.
  if (a.d_bias) std::memset(a.d_bias, 0, G * sizeof(float));
  // dL/dz of slot r at step t and n of its units from `first` on: zeros where the step is not
  // run, and dL/dh set aside, since the step's product overwrites it.
  auto step_backward = [&](int64_t t, int64_t r, int64_t first, int64_t n) {
    const int64_t row = s.Row(r, t), at = r * H + first;
    float* dz_row = dz.Row(t, r) + first;
    if (!s.Runs(r, t)) {
      for (int64_t q = 0; q < Cell::kGates; ++q) std::memset(dz_row + q * H, 0, n * sizeof(float));
      std::memcpy(dh_kept + at, dh + at, n * sizeof(float));
      return;
    }
    const float *c = nullptr, *c_prev = nullptr, *h_prev = nullptr;
    if constexpr (Cell::kMemory) {
      c = a.cells + row * H + first;
      c_prev = CarryRead(s, r, t, reverse, a.c0, a.c_restart, a.cells) + first;
    }
    if constexpr (Cell::kDirect)
      h_prev = CarryRead(s, r, t, reverse, a.h0, a.h_restart, a.ys) + first;
    cell.Backward(n, H, first, a.gates ? a.gates + row * G + first : nullptr, c, c_prev, h_prev,
                  a.ys + row * H + first, a.d_ys + row * H + first, dh + at,
                  Cell::kMemory ? dc + at : nullptr, dz_row, dp,
                  Cell::kDirect ? direct + at : nullptr);
    if (a.d_bias) AddToColumnSums(Cell::kGates, n, H, dz_row, a.d_bias + first);
    if constexpr (Cell::kMemory) MoveToRestart(s, r, t, first, n, dc, dc_restart);
  };
  auto after_product = [&](int64_t t, int64_t r, int64_t first, int64_t n) {
    if (!s.Runs(r, t))
      std::memcpy(dh + r * H + first, dh_kept + r * H + first, n * sizeof(float));
    else if constexpr (Cell::kDirect)
      for (int64_t j = r * H + first; j < r * H + first + n; ++j) dh[j] += direct[j];
    MoveToRestart(s, r, t, first, n, dh, dh_restart);
  };
  // z = [x, h] [w_x; w_h] + b: one dL/dz serves both sides and the bias.
  auto row_of = [&](int64_t t, int64_t r, int64_t k0, int64_t k1, float* row) {
    if (k0 < D)
      std::memcpy(row, a.xs + s.Row(r, t) * D + k0, (std::min(k1, D) - k0) * sizeof(float));
    if (k1 > D) {
      const int64_t from = std::max(k0, D);
      std::memcpy(row + from - k0,
                  CarryRead(s, r, t, reverse, a.h0, a.h_restart, a.ys) + from - D,
                  (k1 - from) * sizeof(float));
    }
  };
  auto chunk_done = [&](int64_t c, int thread) {
    if (d_w) d_w->Add(thread, c, s, row_of);
  };
  StepsBackward(run, s, G, a.w_h, reverse, dz, dh, step_backward, after_product, chunk_done);
  Reorder<false>(s, H, dh, a.d_h0);
  Reorder<false>(s, H, dh_restart, a.d_h_restart);
  if constexpr (Cell::kMemory) {
    Reorder<false>(s, H, dc, a.d_c0);
    Reorder<false>(s, H, dc_restart, a.d_c_restart);
  }
  if (d_w) d_w->Finish(scratch, D, a.d_w_x, a.d_w_h);
  InputGradientsBySteps(run, s, dz, G, a.w_x, a.d_xs);
}

// The arrays of the examples [first, ...) of a call: its per-example arrays from there on.
ForwardArrays PartOf(const ForwardArrays& a, const Shape& s, int64_t G, int64_t first) {
  const int64_t T = s.T, D = s.D, H = s.H;
  auto from = [first](auto* array, int64_t per_example) {
    return array ? array + first * per_example : array;
  };
  return {from(a.xs, T * D),     from(a.h0, H),   from(a.c0, H),   from(a.h_restart, H),
          from(a.c_restart, H),  a.w_x,           a.w_h,           a.bias,
          from(a.ys, T * H),     from(a.h_last, H), from(a.c_last, H), from(a.gates, T * G),
          from(a.cells, T * H)};
}

// Forward, its examples shared among the threads where ExampleParts says so.
template <typename Cell>
void ForwardInParts(const Shape& s, const Cell& cell,
                    const ForwardArrays& a, bool reverse) {
  const auto bounds = ExampleParts(s, (s.D + s.H) * Cell::kGates * s.H, Cell::kSharesExamples);
  if (bounds.size() == 2) return Forward(s, cell, a, reverse);
  InParts(bounds, [&](int, int64_t first, int64_t n) {
    Forward(PartShape(s, first, n), cell, PartOf(a, s, Cell::kGates * s.H, first), reverse);
  });
}

// The arrays of the examples [first, ...) of a backward call; the sums over examples (the
// weights', bias's and peepholes' gradients) into `sums` where it is not null.
BackwardArrays PartOf(const BackwardArrays& a, const Shape& s, int64_t G, int64_t first,
                      float* sums) {
  const int64_t T = s.T, D = s.D, H = s.H;
  auto from = [first](auto* array, int64_t per_example) {
    return array ? array + first * per_example : array;
  };
  auto sum = [sums](float* array, int64_t at) { return sums && array ? sums + at : array; };
  return {from(a.xs, T * D),
          from(a.h0, H),
          from(a.c0, H),
          a.w_x,
          a.w_h,
          from(a.ys, T * H),
          from(a.gates, T * G),
          from(a.cells, T * H),
          from(a.d_ys, T * H),
          from(a.d_h_last, H),
          from(a.d_c_last, H),
          from(a.h_restart, H),
          from(a.c_restart, H),
          from(a.d_xs, T * D),
          from(a.d_h0, H),
          from(a.d_c0, H),
          sum(a.d_w_x, 0),
          sum(a.d_w_h, D * G),
          sum(a.d_bias, (D + H) * G),
          sum(a.dp, (D + H + 1) * G),
          from(a.d_h_restart, H),
          from(a.d_c_restart, H)};
}

// Backward, its examples shared among the threads where ExampleParts says so; the parts after
// the first add their sums into the first's.
template <typename Cell>
void BackwardInParts(const Shape& s, const Cell& cell,
                     const BackwardArrays& a, bool reverse) {
  const auto bounds = ExampleParts(s, (s.D + s.H) * Cell::kGates * s.H, Cell::kSharesExamples);
  if (bounds.size() == 2) return Backward(s, cell, a, reverse);
  const int64_t D = s.D, H = s.H, G = Cell::kGates * H;
  const int64_t floats = (D + H + 1) * G + 3 * H, parts = bounds.size() - 1;
  float* sums = PartSums(parts - 1, floats);
  InParts(bounds, [&](int p, int64_t first, int64_t n) {
    Backward(PartShape(s, first, n), cell,
             PartOf(a, s, G, first, p ? sums + (p - 1) * floats : nullptr), reverse);
  });
  for (int64_t p = 1; p < parts; ++p) {
    const BackwardArrays summed = PartOf(a, s, G, 0, sums + (p - 1) * floats);
    if (a.d_w_h) {
      AddInto(a.d_w_x, summed.d_w_x, D * G);
      AddInto(a.d_w_h, summed.d_w_h, H * G);
      AddInto(a.d_bias, summed.d_bias, G);
    }
    if (a.dp) AddInto(a.dp, summed.dp, 3 * H);
  }
}

// ys (B, T, H), last h and c (B, H); with `save`, the gate activations (B, T, 4H) and the
// memory cells (B, T, H) that the backward pass reads.
ffi::Error LstmForward(ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0,
                       ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> w_x,
                       ffi::Buffer<ffi::F32> w_h, ffi::Buffer<ffi::F32> bias,
                       ffi::Buffer<ffi::F32> peephole, ffi::Buffer<ffi::S32> lengths,
                       ffi::Buffer<ffi::U8> starts, ffi::Buffer<ffi::F32> h_restart,
                       ffi::Buffer<ffi::F32> c_restart, ffi::ResultBuffer<ffi::F32> ys,
                       ffi::ResultBuffer<ffi::F32> h_last, ffi::ResultBuffer<ffi::F32> c_last,
                       ffi::ResultBuffer<ffi::F32> gates, ffi::ResultBuffer<ffi::F32> cells,
                       bool reverse, bool save, bool bf16_products) {
  const Shape s = ShapeOf(xs, h0, lengths, starts);
  if (auto e = CheckWeights("lstm", s, 4, w_x, w_h); e.failure()) return e;
  if (auto e = CheckPeephole(s, peephole); e.failure()) return e;
  return Guarded("lstm", s, 4, bf16_products, [&] {
    const ForwardArrays a{xs.typed_data(),        h0.typed_data(),         c0.typed_data(),
                          h_restart.typed_data(), c_restart.typed_data(),  w_x.typed_data(),
                          w_h.typed_data(),       bias.typed_data(),       ys->typed_data(),
                          h_last->typed_data(),   c_last->typed_data(),
                          save ? gates->typed_data() : nullptr,
                          save ? cells->typed_data() : nullptr};
    ForwardInParts(s, LstmCell{Peepholes(peephole)}, a, reverse);
  });
}

ffi::Error LstmBackward(ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0,
                        ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> w_x,
                        ffi::Buffer<ffi::F32> w_h, ffi::Buffer<ffi::F32> peephole,
                        ffi::Buffer<ffi::F32> ys, ffi::Buffer<ffi::F32> gates,
                        ffi::Buffer<ffi::F32> cells, ffi::Buffer<ffi::F32> d_ys,
                        ffi::Buffer<ffi::F32> d_h_last, ffi::Buffer<ffi::F32> d_c_last,
                        ffi::Buffer<ffi::S32> lengths, ffi::Buffer<ffi::U8> starts,
                        ffi::Buffer<ffi::F32> h_restart, ffi::Buffer<ffi::F32> c_restart,
                        ffi::ResultBuffer<ffi::F32> d_xs, ffi::ResultBuffer<ffi::F32> d_h0,
                        ffi::ResultBuffer<ffi::F32> d_c0, ffi::ResultBuffer<ffi::F32> d_w_x,
                        ffi::ResultBuffer<ffi::F32> d_w_h, ffi::ResultBuffer<ffi::F32> d_bias,
                        ffi::ResultBuffer<ffi::F32> d_peephole,
                        ffi::ResultBuffer<ffi::F32> d_h_restart,
                        ffi::ResultBuffer<ffi::F32> d_c_restart, bool reverse,
                        bool bf16_products) {
  const Shape s = ShapeOf(xs, h0, lengths, starts);
  if (auto e = CheckWeights("lstm", s, 4, w_x, w_h); e.failure()) return e;
  if (auto e = CheckPeephole(s, peephole); e.failure()) return e;
  return Guarded("lstm", s, 4, bf16_products, [&] {
    const BackwardArrays a{
        xs.typed_data(),        h0.typed_data(),       c0.typed_data(),
        w_x.typed_data(),       w_h.typed_data(),      ys.typed_data(),
        gates.typed_data(),     cells.typed_data(),    d_ys.typed_data(),
        d_h_last.typed_data(),  d_c_last.typed_data(), h_restart.typed_data(),
        c_restart.typed_data(), WantedOut(d_xs),       d_h0->typed_data(),
        d_c0->typed_data(),     WantedOut(d_w_x),      WantedOut(d_w_h),
        WantedOut(d_bias),      WantedOut(d_peephole), d_h_restart->typed_data(),
        d_c_restart->typed_data()};
    BackwardInParts(s, LstmCell{Peepholes(peephole)}, a, reverse);
  });
}

// A bidirectional layer's two directions in one call (BothWays): xs (B, T, D), lengths and
// starts as for one direction, every other array with a leading axis of 2, the forward
// direction's then the backward one's (which reads the steps backwards). dL/dxs comes back for
// each direction apart, (2, B, T, D), for the caller to add.
// *s from xs and the carries h0, or the error that they or the weights do not fit together.
ffi::Error BothWaysShape(ffi::Buffer<ffi::F32>& xs, ffi::Buffer<ffi::F32>& h0,
                         ffi::Buffer<ffi::S32>& lengths, ffi::Buffer<ffi::U8>& starts,
                         ffi::Buffer<ffi::F32>& w_x, ffi::Buffer<ffi::F32>& w_h,
                         ffi::Buffer<ffi::F32>& bias, ffi::Buffer<ffi::F32>& peephole, Shape* s) {
  auto d = xs.dimensions(), h = h0.dimensions();
  if (d.size() != 3 || h.size() != 3 || h[0] != 2 || h[1] != d[0])
    return ffi::Error::InvalidArgument(
        "lstm kernel: both ways: xs (B, T, D) and carries (2, B, H) expected");
  *s = MakeShape(d[0], d[1], d[2], h[2], lengths.typed_data(), starts.typed_data());
  auto wx = w_x.dimensions(), wh = w_h.dimensions(), b = bias.dimensions();
  const int64_t G = 4 * s->H;
  if (wx.size() != 3 || wx[0] != 2 || wx[1] != s->D || wx[2] != G || wh.size() != 3 ||
      wh[0] != 2 || wh[1] != s->H || wh[2] != G || b.size() != 2 || b[0] != 2 || b[1] != G)
    return ffi::Error::InvalidArgument("lstm kernel: weights do not match xs and the carry");
  if (peephole.element_count() != 0 && peephole.element_count() != 2 * 3 * s->H)
    return ffi::Error::InvalidArgument("lstm kernel: peepholes do not match the carry");
  return ffi::Error::Success();
}

// The part of direction d of an array of two directions, `each` floats apart; null stays null.
inline const float* Way(const float* a, int d, int64_t each) { return a ? a + d * each : a; }
inline float* Way(float* a, int d, int64_t each) { return a ? a + d * each : a; }

ffi::Error LstmBothWaysForward(
    ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
    ffi::Buffer<ffi::F32> w_x, ffi::Buffer<ffi::F32> w_h, ffi::Buffer<ffi::F32> bias,
    ffi::Buffer<ffi::F32> peephole, ffi::Buffer<ffi::S32> lengths, ffi::Buffer<ffi::U8> starts,
    ffi::ResultBuffer<ffi::F32> ys, ffi::ResultBuffer<ffi::F32> h_last,
    ffi::ResultBuffer<ffi::F32> c_last, ffi::ResultBuffer<ffi::F32> gates,
    ffi::ResultBuffer<ffi::F32> cells, bool save, bool bf16_products) {
  Shape s;
  if (auto e = BothWaysShape(xs, h0, lengths, starts, w_x, w_h, bias, peephole, &s); e.failure())
    return e;
  const int64_t B = s.B, T = s.T, D = s.D, H = s.H, G = 4 * H;
  const float* peep = peephole.element_count() ? peephole.typed_data() : nullptr;
  return Guarded("lstm", s, 4, bf16_products, [&] {
    BothWays(s, 4, [&](int d) {
      // No step starts again (starts are all 0), so the restarts are never read.
      const ForwardArrays a{xs.typed_data(),
                            Way(h0.typed_data(), d, B * H),
                            Way(c0.typed_data(), d, B * H),
                            Way(h0.typed_data(), d, B * H),
                            Way(c0.typed_data(), d, B * H),
                            Way(w_x.typed_data(), d, D * G),
                            Way(w_h.typed_data(), d, H * G),
                            Way(bias.typed_data(), d, G),
                            Way(ys->typed_data(), d, B * T * H),
                            Way(h_last->typed_data(), d, B * H),
                            Way(c_last->typed_data(), d, B * H),
                            save ? Way(gates->typed_data(), d, B * T * G) : nullptr,
                            save ? Way(cells->typed_data(), d, B * T * H) : nullptr};
      ForwardInParts(s, LstmCell{Way(peep, d, 3 * H)}, a, d == 1);
    });
  });
}

ffi::Error LstmBothWaysBackward(
    ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
    ffi::Buffer<ffi::F32> w_x, ffi::Buffer<ffi::F32> w_h, ffi::Buffer<ffi::F32> bias,
    ffi::Buffer<ffi::F32> peephole, ffi::Buffer<ffi::F32> ys, ffi::Buffer<ffi::F32> gates,
    ffi::Buffer<ffi::F32> cells, ffi::Buffer<ffi::F32> d_ys, ffi::Buffer<ffi::F32> d_h_last,
    ffi::Buffer<ffi::F32> d_c_last, ffi::Buffer<ffi::S32> lengths, ffi::Buffer<ffi::U8> starts,
    ffi::ResultBuffer<ffi::F32> d_xs, ffi::ResultBuffer<ffi::F32> d_h0,
    ffi::ResultBuffer<ffi::F32> d_c0, ffi::ResultBuffer<ffi::F32> d_w_x,
    ffi::ResultBuffer<ffi::F32> d_w_h, ffi::ResultBuffer<ffi::F32> d_bias,
    ffi::ResultBuffer<ffi::F32> d_peephole, bool bf16_products) {
  Shape s;
  if (auto e = BothWaysShape(xs, h0, lengths, starts, w_x, w_h, bias, peephole, &s); e.failure())
    return e;
  const int64_t B = s.B, T = s.T, D = s.D, H = s.H, G = 4 * H;
  const float* peep = peephole.element_count() ? peephole.typed_data() : nullptr;
  // The restarts' gradients, which no step without a start adds to, written and dropped.
  std::vector<float> d_restarts(4 * B * H);
  return Guarded("lstm", s, 4, bf16_products, [&] {
    BothWays(s, 4, [&](int d) {
      const BackwardArrays a{xs.typed_data(),
                             Way(h0.typed_data(), d, B * H),
                             Way(c0.typed_data(), d, B * H),
                             Way(w_x.typed_data(), d, D * G),
                             Way(w_h.typed_data(), d, H * G),
                             Way(ys.typed_data(), d, B * T * H),
                             Way(gates.typed_data(), d, B * T * G),
                             Way(cells.typed_data(), d, B * T * H),
                             Way(d_ys.typed_data(), d, B * T * H),
                             Way(d_h_last.typed_data(), d, B * H),
                             Way(d_c_last.typed_data(), d, B * H),
                             Way(h0.typed_data(), d, B * H),
                             Way(c0.typed_data(), d, B * H),
                             Way(WantedOut(d_xs), d, B * T * D),
                             Way(d_h0->typed_data(), d, B * H),
                             Way(d_c0->typed_data(), d, B * H),
                             Way(WantedOut(d_w_x), d, D * G),
                             Way(WantedOut(d_w_h), d, H * G),
                             Way(WantedOut(d_bias), d, G),
                             peep ? Way(WantedOut(d_peephole), d, 3 * H) : nullptr,
                             d_restarts.data() + 2 * d * B * H,
                             d_restarts.data() + (2 * d + 1) * B * H};
      BackwardInParts(s, LstmCell{Way(peep, d, 3 * H)}, a, d == 1);
    });
  });
}

// The cells of one product and a single carry, by the FFI attribute `cell`.
enum OneProduct : int64_t { kRnnTanh = 0, kRnnRelu = 1, kSimplifiedGru = 2 };

// Runs `work` with the cell `cell` names (RnnCell or SimplifiedGruCell), or returns an error.
template <typename Work>
ffi::Error WithOneProductCell(int64_t cell, const Shape& s, ffi::Buffer<ffi::F32>& w_x,
                              ffi::Buffer<ffi::F32>& w_h, bool bf16_products, Work work) {
  const char* name = cell == kSimplifiedGru ? "simplified_gru" : "rnn";
  const int64_t gates = cell == kSimplifiedGru ? 2 : 1;
  if (cell < kRnnTanh || cell > kSimplifiedGru)
    return ffi::Error::InvalidArgument("one-product kernel: unknown cell");
  if (auto e = CheckWeights(name, s, gates, w_x, w_h); e.failure()) return e;
  return Guarded(name, s, gates, bf16_products, [&] {
    if (cell == kSimplifiedGru)
      work(SimplifiedGruCell{});
    else
      work(RnnCell{cell == kRnnRelu});
  });
}

// ys (B, T, H) and the last h (B, H) of the basic RNN or the simplified GRU; with `save`, the
// simplified GRU's activations u, c~ (B, T, 2H), which its backward pass reads beside ys (the
// RNN's reads ys alone, and its `gates` are empty).
ffi::Error OneProductForward(ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0,
                             ffi::Buffer<ffi::F32> w_x, ffi::Buffer<ffi::F32> w_h,
                             ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::S32> lengths,
                             ffi::Buffer<ffi::U8> starts, ffi::Buffer<ffi::F32> h_restart,
                             ffi::ResultBuffer<ffi::F32> ys, ffi::ResultBuffer<ffi::F32> h_last,
                             ffi::ResultBuffer<ffi::F32> gates, bool reverse, bool save,
                             bool bf16_products, int64_t cell) {
  const Shape s = ShapeOf(xs, h0, lengths, starts);
  return WithOneProductCell(cell, s, w_x, w_h, bf16_products, [&](const auto& one) {
    const ForwardArrays a{xs.typed_data(),        h0.typed_data(),   nullptr,
                          h_restart.typed_data(), nullptr,           w_x.typed_data(),
                          w_h.typed_data(),       bias.typed_data(), ys->typed_data(),
                          h_last->typed_data(),   nullptr,           WantedOut(gates),
                          nullptr};
    ForwardInParts(s, one, a, reverse);
  });
}

ffi::Error OneProductBackward(
    ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> w_x,
    ffi::Buffer<ffi::F32> w_h, ffi::Buffer<ffi::F32> ys, ffi::Buffer<ffi::F32> gates,
    ffi::Buffer<ffi::F32> d_ys, ffi::Buffer<ffi::F32> d_h_last, ffi::Buffer<ffi::S32> lengths,
    ffi::Buffer<ffi::U8> starts, ffi::Buffer<ffi::F32> h_restart,
    ffi::ResultBuffer<ffi::F32> d_xs, ffi::ResultBuffer<ffi::F32> d_h0,
    ffi::ResultBuffer<ffi::F32> d_w_x, ffi::ResultBuffer<ffi::F32> d_w_h,
    ffi::ResultBuffer<ffi::F32> d_bias, ffi::ResultBuffer<ffi::F32> d_h_restart, bool reverse,
    bool bf16_products, int64_t cell) {
  const Shape s = ShapeOf(xs, h0, lengths, starts);
  return WithOneProductCell(cell, s, w_x, w_h, bf16_products, [&](const auto& one) {
    const BackwardArrays a{
        xs.typed_data(),  h0.typed_data(), nullptr,            w_x.typed_data(),
        w_h.typed_data(), ys.typed_data(), gates.element_count() ? gates.typed_data() : nullptr,
        nullptr,          d_ys.typed_data(), d_h_last.typed_data(), nullptr,
        h_restart.typed_data(), nullptr,   WantedOut(d_xs),     d_h0->typed_data(),
        nullptr,          WantedOut(d_w_x), WantedOut(d_w_h),   WantedOut(d_bias),
        nullptr,          d_h_restart->typed_data(), nullptr};
    BackwardInParts(s, one, a, reverse);
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnLstmForward, LstmForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xs
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_h
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b_x + b_h
                                  .Arg<ffi::Buffer<ffi::F32>>()  // peepholes (3, H) or none
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths
                                  .Arg<ffi::Buffer<ffi::U8>>()   // starts
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h_restart
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c_restart
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ys
                                  .Ret<ffi::Buffer<ffi::F32>>()  // h_last
                                  .Ret<ffi::Buffer<ffi::F32>>()  // c_last
                                  .Ret<ffi::Buffer<ffi::F32>>()  // gate activations
                                  .Ret<ffi::Buffer<ffi::F32>>()  // memory cells
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("save")
                                  .Attr<bool>("bf16_products"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnLstmBackward, LstmBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xs
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_h
                                  .Arg<ffi::Buffer<ffi::F32>>()  // peepholes (3, H) or none
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ys
                                  .Arg<ffi::Buffer<ffi::F32>>()  // gate activations
                                  .Arg<ffi::Buffer<ffi::F32>>()  // memory cells
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ∂L/∂ys
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ∂L/∂h_last
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ∂L/∂c_last
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths
                                  .Arg<ffi::Buffer<ffi::U8>>()   // starts
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h_restart
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c_restart
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂xs
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂h0
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂c0
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂w_x
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂w_h
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂bias
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂peepholes
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂h_restart
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂c_restart
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("bf16_products"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnLstmBothWaysForward, LstmBothWaysForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xs (B, T, D)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0 (2, B, H)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0 (2, B, H)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_x (2, D, 4H)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_h (2, H, 4H)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b_x + b_h (2, 4H)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // peepholes (2, 3, H) or none
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths
                                  .Arg<ffi::Buffer<ffi::U8>>()   // starts (all 0)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ys (2, B, T, H)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // h_last (2, B, H)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // c_last (2, B, H)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // gate activations
                                  .Ret<ffi::Buffer<ffi::F32>>()  // memory cells
                                  .Attr<bool>("save")
                                  .Attr<bool>("bf16_products"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnLstmBothWaysBackward, LstmBothWaysBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xs
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_h
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b_x + b_h (for its shape)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // peepholes or none
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ys
                                  .Arg<ffi::Buffer<ffi::F32>>()  // gate activations
                                  .Arg<ffi::Buffer<ffi::F32>>()  // memory cells
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ∂L/∂ys
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ∂L/∂h_last
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ∂L/∂c_last
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths
                                  .Arg<ffi::Buffer<ffi::U8>>()   // starts (all 0)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂xs (2, B, T, D)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂h0
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂c0
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂w_x
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂w_h
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂bias
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂peepholes
                                  .Attr<bool>("bf16_products"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnOneProductForward, OneProductForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xs
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_h
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b_x + b_h
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths
                                  .Arg<ffi::Buffer<ffi::U8>>()   // starts
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h_restart
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ys
                                  .Ret<ffi::Buffer<ffi::F32>>()  // h_last
                                  .Ret<ffi::Buffer<ffi::F32>>()  // activations, or none
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("save")
                                  .Attr<bool>("bf16_products")
                                  .Attr<int64_t>("cell"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnOneProductBackward, OneProductBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xs
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_h
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ys
                                  .Arg<ffi::Buffer<ffi::F32>>()  // activations, or none
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ∂L/∂ys
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ∂L/∂h_last
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths
                                  .Arg<ffi::Buffer<ffi::U8>>()   // starts
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h_restart
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂xs
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂h0
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂w_x
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂w_h
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂bias
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ∂L/∂h_restart
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("bf16_products")
                                  .Attr<int64_t>("cell"));

// For the tests: SpreadTargets on plain arrays, and SpreadTeam run on the worker thread, each
// member's core before and after and the number of cores it may run on afterwards (up to
// `capacity` members); returns the team's size.
extern "C" void JaxrnnSpreadTargets(const int* where, int n, const int* allowed, int m, int* out) {
  const auto target = jaxrnn_native::SpreadTargets(std::vector<int>(where, where + n),
                                                   std::vector<int>(allowed, allowed + m));
  std::copy(target.begin(), target.end(), out);
}

// For the tests: the size of a team opened inside the first member of InTeam(team), on the
// worker thread, as oneDNN opens one for a product.
extern "C" int JaxrnnNestedTeamSize(int team) {
  int nested = 0;
  jaxrnn_native::Worker::Get().Run([&] {
    jaxrnn_native::InTeam(team, [&] {
      if (omp_get_thread_num() != 0) return;
#pragma omp parallel
      {
        if (omp_get_thread_num() == 0) nested = omp_get_num_threads();
      }
    });
  });
  return nested;
}

// For the tests: 1 where the last kernel call ran on the worker thread, 0 where it ran alone on
// the thread that made it (RunsOnCaller).
extern "C" int JaxrnnLastCallOnWorker() {
  return jaxrnn_native::last_call_on_worker.load(std::memory_order_relaxed) ? 1 : 0;
}

extern "C" int JaxrnnSpreadTeam(int* before, int* after, int* allowed, int capacity) {
  std::vector<int> b, a, c;
  jaxrnn_native::Worker::Get().Run([&] { jaxrnn_native::SpreadTeam(&b, &a, &c); });
  for (size_t i = 0; i < b.size() && static_cast<int>(i) < capacity; ++i) {
    before[i] = b[i];
    after[i] = a[i];
    allowed[i] = c[i];
  }
  return static_cast<int>(b.size());
}
