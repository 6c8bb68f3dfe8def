// The course's GRU, with the reset gate before the candidate's recurrent product (jaxrnn.gru(),
// Cho et al. 2014), for XLA:CPU: forward and backward passes as two FFI calls.
//
//   z_x = x_t w_x + b_x                                (gates r, u, c~ along the last axis)
//   r = sigmoid(x_r + h_{t-1} w_hr + b_hr),  u = sigmoid(x_u + h_{t-1} w_hu + b_hu)
//   c~ = tanh(x_c + (r * h_{t-1}) w_hc + b_hc),  h_t = u * c~ + (1 - u) * h_{t-1}
//
// Batch-major, as gru.cc, with the same arguments. The candidate's product reads what the gates
// of the first make, so a step is two products and the threads that share its units meet after
// each: twice a step where the reset-after GRU meets once, forward and backward. jax.lax.scan of
// the cell's step stays the definition: tests/test_native.py checks the kernel against it.

#include <optional>

#include "common.h"

namespace {

using namespace jaxrnn_native;

// Thread i's share of one of a step's products: z_i (count, gates n) = bias + rows (count, K)
// times its units' columns of every gate of a (K, gates H) matrix whose row k starts at
// row_of(k), the rows K apart; bias null for none. Up to kFewRows sequences each thread
// multiplies over panels of its own columns (FewRowsProduct), more with TeamProducts.
class SplitProduct {
 public:
  using RowOf = std::function<const float*(int64_t)>;
  SplitProduct(Runner& run, const Shape& s, int64_t K, int64_t gates, int team, RowOf row_of,
               const float* bias)
      : B_(s.B), K_(K), H_(s.H), gates_(gates), team_size_(team), row_of_(row_of), bias_(bias) {
    if (s.B <= kFewRows) {
      panels_ = run.scratch.Take(K * gates * s.H);
      return;
    }
    team_.emplace(run, s.B, K, s.H, gates, team, row_of_,
                  bias ? bias : run.scratch.Zeros(gates * s.H));
  }

  class Member {
   public:
    // Made inside the parallel region; z (B, gates H) holds every thread's z_i.
    Member(const SplitProduct& p, int i, float* z) : p_(p) {
      if (p.team_) {
        team_member_.emplace(*p.team_, i, z);
        first = team_member_->first, n = team_member_->n, z_i = team_member_->z_i;
        return;
      }
      const auto [units_first, units_last] = UnitsOf(i, p.team_size_, p.H_);
      first = units_first, n = units_last - units_first;
      z_i = z + p.B_ * p.gates_ * first;
      panel_ = p.panels_ + p.K_ * p.gates_ * first;
      for (int64_t q = 0; q < p.gates_; ++q)
        for (int64_t k = 0; k < p.K_; ++k)
          std::memcpy(panel_ + (q * p.K_ + k) * n, p.row_of_(k) + q * p.H_ + first,
                      n * sizeof(float));
    }
    void operator()(const float* rows, int64_t count) {
      if (team_member_) return (*team_member_)(rows, count);
      for (int64_t q = 0; q < p_.gates_; ++q)
        FewRowsProduct(count, p_.K_, n, rows, p_.K_, panel_ + q * p_.K_ * n, n,
                       p_.bias_ ? p_.bias_ + q * p_.H_ + first : nullptr, 0, z_i + q * n,
                       p_.gates_ * n);
    }
    int64_t first, n;
    float* z_i;

   private:
    const SplitProduct& p_;
    std::optional<TeamProducts::Member> team_member_;
    float* panel_ = nullptr;
  };

 private:
  int64_t B_, K_, H_, gates_;
  int team_size_;
  RowOf row_of_;
  const float* bias_;
  float* panels_ = nullptr;
  std::optional<TeamProducts> team_;
};

// The gates r and u of one example's units [first, first + n): from the input side zx (3 gates H
// apart) and the recurrent zh (n of r, then n of u), writes r * h_{t-1}, the candidate product's
// row, and u; and r, u into act (3 gates H apart) when kKeep.
template <bool kKeep>
__attribute__((always_inline)) inline void ResetGatesOf(int64_t n, int64_t H,
                                                        const float* __restrict zx,
                                                        const float* __restrict zh,
                                                        const float* __restrict h_prev,
                                                        float* __restrict reset_carry,
                                                        float* __restrict update,
                                                        float* __restrict act) {
  for (int64_t j = 0; j < n; ++j) {
    const float r = Sigmoid(zx[j] + zh[j]), u = Sigmoid(zx[H + j] + zh[n + j]);
    reset_carry[j] = r * h_prev[j];
    update[j] = u;
    if constexpr (kKeep) act[j] = r, act[H + j] = u;
  }
}

JAXRNN_VECTOR void ResetGates(int64_t n, int64_t H, const float* __restrict zx,
                              const float* __restrict zh, const float* __restrict h_prev,
                              float* __restrict reset_carry, float* __restrict update,
                              float* __restrict act) {
  if (act)
    ResetGatesOf<true>(n, H, zx, zh, h_prev, reset_carry, update, act);
  else
    ResetGatesOf<false>(n, H, zx, zh, h_prev, reset_carry, update, act);
}

// The candidate and the next carry of n units: c~ = tanh(x_c + z_c), h = u c~ + (1 - u) h_{t-1};
// c~ into candidate where it is not null.
JAXRNN_VECTOR void CandidateGate(int64_t n, const float* __restrict x_c,
                                 const float* __restrict z_c, const float* __restrict update,
                                 const float* __restrict h_prev, float* __restrict candidate,
                                 float* __restrict h) {
  for (int64_t j = 0; j < n; ++j) {
    const float c = Tanh(x_c[j] + z_c[j]), u = update[j];
    if (candidate) candidate[j] = c;
    h[j] = u * c + (1.0f - u) * h_prev[j];
  }
}

// The first part of a step backwards for n units: from dL/dh_t = dy + dh, writes dL/dz of u and
// c~ (dz: 3 gates H apart; their rows of the step's products, du and dc) and the direct part
// (1 - u) dL/dh_t of dL/dh_{t-1}.
JAXRNN_VECTOR void UpdateBackward(int64_t n, int64_t H, const float* __restrict act,
                                  const float* __restrict h_prev, const float* __restrict dy,
                                  const float* __restrict dh, float* __restrict direct,
                                  float* __restrict dz, float* __restrict du,
                                  float* __restrict dc) {
  for (int64_t j = 0; j < n; ++j) {
    const float u = act[H + j], c = act[2 * H + j];
    const float g = dy[j] + dh[j];
    const float dzc = g * u * (1.0f - c * c);
    const float dzu = g * (c - h_prev[j]) * u * (1.0f - u);
    dz[H + j] = dzu, dz[2 * H + j] = dzc;
    du[j] = dzu, dc[j] = dzc;
    direct[j] = g * (1.0f - u);
  }
}

// The second part, from d_reset = dL/d(r * h_{t-1}) = dz_c w_hcᵀ: dL/dz_r into dz and dr, and
// r d_reset added to the direct part.
JAXRNN_VECTOR void ResetBackward(int64_t n, const float* __restrict act,
                                 const float* __restrict h_prev,
                                 const float* __restrict d_reset, float* __restrict direct,
                                 float* __restrict dz, float* __restrict dr) {
  for (int64_t j = 0; j < n; ++j) {
    const float r = act[j];
    const float dzr = d_reset[j] * h_prev[j] * r * (1.0f - r);
    dz[j] = dzr, dr[j] = dzr;
    direct[j] += d_reset[j] * r;
  }
}

// The forward pass over the examples of s that its buffers hold, all of a call's or a thread's
// part (GruForward in common.h): ys, the last h, and with `save` the activations r, u, c~
// (B, T, 3H) and the candidate products' rows r * h_{t-1} (B, T, H) that the backward pass reads.
void ForwardPart(const Shape& s, ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0,
                 ffi::Buffer<ffi::F32> w_x, ffi::Buffer<ffi::F32> w_h,
                 ffi::Buffer<ffi::F32> b_x, ffi::Buffer<ffi::F32> b_h,
                 ffi::Buffer<ffi::F32> h_restart, ffi::ResultBuffer<ffi::F32> ys,
                 ffi::ResultBuffer<ffi::F32> h_last, ffi::ResultBuffer<ffi::F32> gates,
                 ffi::ResultBuffer<ffi::F32> reset_carries, bool reverse, bool save) {
  const int64_t B = s.B, T = s.T, H = s.H, G = 3 * H;
  Runner run;
  Scratch& scratch = run.scratch;
  const float* zx =
      GruForwardStart(run, s, xs, h0, w_x, b_x, ys, h_last, gates, reset_carries, save);
  if (zx == nullptr) return;
  float* y = ys->typed_data();
  ZeroStepsNotRun(s, H, y);
  const int team = FewRowsTeam(H);
  const float *w = w_h.typed_data(), *b = b_h.typed_data();
  const SplitProduct gates_ru(
      run, s, H, 2, team, [=](int64_t k) { return w + k * G; }, b);
  const SplitProduct candidates(
      run, s, H, 1, team, [=](int64_t k) { return w + k * G + 2 * H; }, b + 2 * H);
  float* z_ru = scratch.Take(B * 2 * H);
  float* z_c = scratch.Take(B * H);
  float* reset_carry = scratch.Take(B * H);  // r * h_{t-1}: the candidate product's rows
  float* update = scratch.Take(B * H);
  // Two carries in turn, in the slots' order (Shape): every step writes all of the next one.
  float* carries[2] = {
      FirstCarries(scratch, s, H, h0.typed_data(), h_restart.typed_data(), reverse),
      scratch.Take(B * H)};
  const float* restart = h_restart.typed_data();
  InTeam(team, [&] {
    const int i = omp_get_thread_num();
    SplitProduct::Member product_ru(gates_ru, i, z_ru), product_c(candidates, i, z_c);
    const int64_t first = product_ru.first, n = product_ru.n;
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? T - 1 - step : step;
      const float* h_read = carries[step % 2];
      float* h_next = carries[1 - step % 2];
      const int64_t slots = s.through[t];
      product_ru(h_read, slots);
      for (int64_t r = 0; r < slots; ++r) {
        if (!s.Runs(r, t)) continue;
        const int64_t at = r * H + first;
        ResetGates(n, H, zx + (s.start[r] + t) * G + first, product_ru.z_i + r * 2 * n,
                   h_read + at, reset_carry + at, update + at,
                   save ? gates->typed_data() + s.Row(r, t) * G + first : nullptr);
      }
#pragma omp barrier
      product_c(reset_carry, slots);
      for (int64_t r = 0; r < B; ++r) {
        const int64_t at = r * H + first;
        if (s.Runs(r, t)) {
          const int64_t row = s.Row(r, t);
          CandidateGate(n, zx + (s.start[r] + t) * G + 2 * H + first, product_c.z_i + r * n,
                        update + at, h_read + at,
                        save ? gates->typed_data() + row * G + 2 * H + first : nullptr,
                        h_next + at);
          std::memcpy(y + row * H + first, h_next + at, n * sizeof(float));
          if (save)
            std::memcpy(reset_carries->typed_data() + row * H + first, reset_carry + at,
                        n * sizeof(float));
        } else {  // the carry kept
          std::memcpy(h_next + at, h_read + at, n * sizeof(float));
        }
        RestartAfter(s, r, t, reverse, first, n, restart, h_next);
      }
#pragma omp barrier
    }
  });
  Reorder<false>(s, H, carries[T % 2], h_last->typed_data());
}


// The backward pass over the examples of s that its buffers hold (GruBackward in common.h).
void BackwardPart(const Shape& s, ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0,
                  ffi::Buffer<ffi::F32> w_x, ffi::Buffer<ffi::F32> w_h,
                  ffi::Buffer<ffi::F32> ys, ffi::Buffer<ffi::F32> gates,
                  ffi::Buffer<ffi::F32> reset_carries, ffi::Buffer<ffi::F32> d_ys,
                  ffi::Buffer<ffi::F32> d_h_last, ffi::Buffer<ffi::F32> h_restart,
                  ffi::ResultBuffer<ffi::F32> d_xs, ffi::ResultBuffer<ffi::F32> d_h0,
                  ffi::ResultBuffer<ffi::F32> d_w_x, ffi::ResultBuffer<ffi::F32> d_w_h,
                  ffi::ResultBuffer<ffi::F32> d_b_x, ffi::ResultBuffer<ffi::F32> d_b_h,
                  ffi::ResultBuffer<ffi::F32> d_h_restart, bool reverse) {
  const int64_t B = s.B, T = s.T, D = s.D, H = s.H, G = 3 * H;
  if (T == 0 || s.steps_run == 0)
    return GruNoStepsBackward(s, d_h_last, d_xs, d_h0, d_w_x, d_w_h, d_b_x, d_b_h, d_h_restart);
  Runner run;
  Scratch& scratch = run.scratch;
  const int team = FewRowsTeam(H);
  // The carries each step run read, slot after slot (Shape); dL/dz step after step (all of it
  // where dL/dxs is wanted, DzBySteps); the rest in the slots' order: dL/dh_t of each slot's
  // carry.
  const float* h_prev =
      StepCarriesRead(scratch, s, h0.typed_data(), h_restart.typed_data(), ys.typed_data(),
                      reverse);
  const DzBySteps dz(scratch, s, G, reverse, /*keep_all=*/WantedOut(d_xs) != nullptr);
  // dL/dw_x = xsᵀ dz, dL/dw_h = h_{t-1}ᵀ dz of r and u beside (r * h_{t-1})ᵀ dz of c~, chunk
  // by chunk.
  std::optional<ChunkedWeightGradient> d_w_x_sum, d_w_ru_sum, d_w_c_sum;
  if (WantedOut(d_w_h)) {
    d_w_x_sum.emplace(run, s, dz, D, G);
    d_w_ru_sum.emplace(run, s, dz, H, G, 0, 2 * H);
    d_w_c_sum.emplace(run, s, dz, H, G, 2 * H, H);
  }
  float* dh = scratch.Take(B * H);
  Reorder<true>(s, H, d_h_last.typed_data(), dh);
  float* direct = scratch.Take(B * H);
  float* dh_restart = scratch.Zeros(B * H);  // the restart carry's, in the slots' order
  // A step's dL/dz of r and u (B, 2H) and of c~ (B, H), the rows its two products read; two
  // of each in turn, since a thread writes the next step's while the other may still read.
  float* steps_ru[2] = {scratch.Zeros(B * 2 * H), scratch.Zeros(B * 2 * H)};
  float* steps_c[2] = {scratch.Zeros(B * H), scratch.Zeros(B * H)};
  // wᵀ (3H, H): rows [0, 2H) are w_ruᵀ, rows [2H, 3H) w_hcᵀ.
  const float* w_t = Transposed(scratch, H, G, w_h.typed_data());
  const SplitProduct reset_back(
      run, s, H, 1, team, [=](int64_t k) { return w_t + (2 * H + k) * H; }, nullptr);
  const SplitProduct carry_back(
      run, s, 2 * H, 1, team, [=](int64_t k) { return w_t + k * H; }, nullptr);
  float* d_reset = scratch.Take(B * H);
  float* d_carry = scratch.Take(B * H);
  const float* act = gates.typed_data();
  // The bias gradient, where the weights' are wanted: each thread adds its units' as it goes.
  float* d_b_sums = WantedOut(d_b_x);
  if (d_b_sums) std::memset(d_b_sums, 0, G * sizeof(float));
  auto x_row = [&](int64_t t, int64_t r, int64_t k0, int64_t k1, float* row) {
    std::memcpy(row, xs.typed_data() + s.Row(r, t) * D + k0, (k1 - k0) * sizeof(float));
  };
  auto h_row = [&](int64_t t, int64_t r, int64_t k0, int64_t k1, float* row) {
    std::memcpy(row, h_prev + (s.start[r] + t) * H + k0, (k1 - k0) * sizeof(float));
  };
  auto reset_row = [&](int64_t t, int64_t r, int64_t k0, int64_t k1, float* row) {
    std::memcpy(row, reset_carries.typed_data() + s.Row(r, t) * H + k0,
                (k1 - k0) * sizeof(float));
  };
  InTeam(team, [&] {
    const int i = omp_get_thread_num();
    SplitProduct::Member product_c(reset_back, i, d_reset), product_ru(carry_back, i, d_carry);
    const int64_t first = product_c.first, n = product_c.n;
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? step : T - 1 - step;  // backwards through the reading order
      const int64_t slots = s.through[t];
      float* step_ru = steps_ru[step % 2];
      float* step_c = steps_c[step % 2];
      for (int64_t r = 0; r < dz.RowsAt(s, t); ++r) {
        if (!s.Runs(r, t)) {  // dL/dh passes the step by, in dh; zeros in dz for the sums
          for (int64_t q = 0; q < 3; ++q)
            std::memset(dz.Row(t, r) + q * H + first, 0, n * sizeof(float));
          continue;
        }
        const int64_t row = s.Row(r, t), at = r * H + first;
        UpdateBackward(n, H, act + row * G + first, h_prev + (s.start[r] + t) * H + first,
                       d_ys.typed_data() + row * H + first, dh + at, direct + at,
                       dz.Row(t, r) + first, step_ru + r * 2 * H + H + first, step_c + at);
      }
#pragma omp barrier
      product_c(step_c, slots);
      for (int64_t r = 0; r < slots; ++r) {
        if (!s.Runs(r, t)) continue;
        const int64_t row = s.Row(r, t), at = r * H + first;
        ResetBackward(n, act + row * G + first, h_prev + (s.start[r] + t) * H + first,
                      product_c.z_i + r * n, direct + at, dz.Row(t, r) + first,
                      step_ru + r * 2 * H + first);
        if (d_b_sums) AddToColumnSums(3, n, H, dz.Row(t, r) + first, d_b_sums + first);
      }
#pragma omp barrier
      product_ru(step_ru, slots);
      for (int64_t r = 0; r < slots; ++r) {
        if (!s.Runs(r, t)) continue;
        const int64_t at = r * H + first;
        for (int64_t j = 0; j < n; ++j) dh[at + j] = direct[at + j] + product_ru.z_i[r * n + j];
        // Where step t starts a segment, dL/dh_{t-1} belongs to the restart carry.
        MoveToRestart(s, r, t, first, n, dh, dh_restart);
      }
      // The chunk's rows of dz are whole since the barrier above; the next step writes the
      // other chunk's, and the one after this chunk's only after two more barriers.
      if (d_w_x_sum && dz.EndsChunk(step)) {
        const int64_t c = step / dz.ChunkSteps();
        d_w_x_sum->Add(i, c, s, x_row);
        d_w_ru_sum->Add(i, c, s, h_row);
        d_w_c_sum->Add(i, c, s, reset_row);
      }
    }
  });
  Reorder<false>(s, H, dh, d_h0->typed_data());
  Reorder<false>(s, H, dh_restart, d_h_restart->typed_data());
  if (d_w_x_sum) {
    d_w_x_sum->Finish(scratch, D, d_w_x->typed_data(), nullptr);
    d_w_ru_sum->Finish(scratch, H, d_w_h->typed_data(), nullptr, G);
    d_w_c_sum->Finish(scratch, H, d_w_h->typed_data() + 2 * H, nullptr, G);
    std::memcpy(d_b_h->typed_data(), d_b_x->typed_data(), G * sizeof(float));
  }
  InputGradientsBySteps(run, s, dz, G, w_x.typed_data(), WantedOut(d_xs));
}


}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnGruResetBeforeForward, GruForward<ForwardPart>,
                              GruForwardSignature());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnGruResetBeforeBackward, GruBackward<BackwardPart>,
                              GruBackwardSignature());
