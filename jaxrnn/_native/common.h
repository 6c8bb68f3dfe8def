// What the native kernels share: one worker thread, oneDNN's matrix products with packed
// weights and a caller-owned scratchpad, and vectorisable float32 exp, sigmoid and tanh.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <thread>
#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <exception>
#include <mutex>
#include <new>
#include <omp.h>
#include <sched.h>
#include <sys/mman.h>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>
#include "dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using dt = dnnl::memory::data_type;
using Dims = dnnl::memory::dims;

// A loop compiled for AVX-512, AVX2 and the baseline, the CPU choosing at load time.
#define JAXRNN_VECTOR __attribute__((target_clones("avx512f", "avx2", "default")))

namespace jaxrnn_native {

// Every call runs on one thread of the library's own. oneDNN's OpenMP runtime keeps a team of
// threads per calling thread, and XLA calls from whichever of its threads is free: the teams of
// earlier callers then spin-wait on the cores the current one needs (measured: a step's matrix
// product 20% slower with two threads than with one).
class Worker {
 public:
  void Run(std::function<void()> work) {
    std::packaged_task<void()> task(std::move(work));
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> guard(lock_);
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
    done.get();  // rethrows what the work threw
  }

  static Worker& Get() {
    static Worker* worker = new Worker();  // never destroyed: the thread lives as long as the process
    return *worker;
  }

 private:
  Worker() : thread_([this] { Loop(); }) { thread_.detach(); }
  void Loop() {
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> guard(lock_);
        ready_.wait(guard, [this] { return !queue_.empty(); });
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }
  std::mutex lock_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> queue_;
  std::thread thread_;
};

inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A row-major view: rows x cols with a leading stride (in elements) and an optional transpose
// (the view then reads the stored cols x rows matrix column-wise).
struct View {
  int64_t rows, cols, stride;
  bool transposed = false;
  memory::desc desc() const {
    if (transposed) return memory::desc({rows, cols}, dt::f32, Dims{1, stride});
    return memory::desc({rows, cols}, dt::f32, Dims{stride, 1});
  }
};

// C = A B (+ bias), oneDNN's matmul with a caller-owned scratchpad (XLA may run the call on any
// of its threads, and the library's own scratchpad is per thread).
struct Product {
  dnnl::matmul primitive;
  memory::desc src;      // how the primitive reads A: the caller's view, or a bfloat16 copy
  memory::desc weights;  // the layout the primitive reads B in
  memory::desc scratchpad;
};

using ProductKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, bool,
                              bool, bool, int, bool, bool>;

// Whether the current call multiplies in bfloat16 (float32 accumulation): the caller's
// jax.default_matmul_precision("bfloat16"), set by Guarded for the call on the worker thread.
inline thread_local bool tl_bf16_products = false;

// Whether bfloat16 products convert their factors to bfloat16 first. oneDNN 3.2 rounds float32
// factors itself (fpmath_mode::bf16) only in its AMX kernels; on a CPU with AVX512_BF16 and no
// AMX it multiplies them in float32. There a product of bfloat16 factors runs its AVX512_BF16
// kernel at twice the float32 rate (Zen 4, one thread: 224 against 112 GFLOP/s).
inline bool ConvertsFactors() {
  static const bool convert = [] {
    const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
    return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_fp16;
  }();
  return convert;
}

// float32 to bfloat16, rounded to nearest even; a NaN stays a NaN.
JAXRNN_VECTOR static void ToBfloat16(const float* __restrict from, uint16_t* __restrict to,
                                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, from + i, sizeof bits);
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    to[i] = static_cast<uint16_t>((bits & 0x7fffffffu) > 0x7f800000u ? (bits >> 16) | 0x40u
                                                                      : rounded);
  }
}

// C = A B (+ bias), or C += A B where `accumulate`.
inline std::shared_ptr<Product> ProductFor(const View& a, const View& b, int64_t c_stride,
                                           bool packed, bool bias, bool accumulate = false) {
  static std::mutex lock;
  static std::map<ProductKey, std::shared_ptr<Product>> cache;
  // oneDNN plans a product for the threads it may use then: one inside a team's own steps.
  const bool bf16 = tl_bf16_products;
  ProductKey key{a.rows,       a.cols, a.stride, b.cols, b.stride, c_stride, a.transposed,
                 b.transposed, packed, bias,     omp_get_max_threads(), bf16, accumulate};
  std::lock_guard<std::mutex> guard(lock);
  auto found = cache.find(key);
  if (found != cache.end()) return found->second;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (accumulate) {
    dnnl::post_ops sum;
    sum.append_sum(1.0f);
    attr.set_post_ops(sum);
  }
  const bool convert = bf16 && ConvertsFactors();
  if (bf16 && !convert) attr.set_fpmath_mode(dnnl::fpmath_mode::bf16);
  // Converted factors: A dense, in the orientation of the caller's view (converting a transposed
  // view of dL/dz into a row-major copy transposed 67 MB at c3: 7.9 ms a training step, against
  // 2.9 for a copy in its own orientation, which the product reads as fast); B packed in
  // bfloat16 by Runner::Weights.
  memory::desc src = !convert       ? a.desc()
                     : a.transposed ? memory::desc({a.rows, a.cols}, dt::bf16, Dims{1, a.rows})
                                    : memory::desc({a.rows, a.cols}, dt::bf16, Dims{a.cols, 1});
  memory::desc weights =
      convert  ? memory::desc({b.rows, b.cols}, dt::bf16, memory::format_tag::any)
      : packed ? memory::desc({b.rows, b.cols}, dt::f32, memory::format_tag::any)
               : b.desc();
  memory::desc dst({a.rows, b.cols}, dt::f32, Dims{c_stride, 1});
  auto product = std::make_shared<Product>();
  auto keep = [&](const dnnl::matmul::primitive_desc& pd) {
    product->primitive = dnnl::matmul(pd);
    product->src = pd.src_desc();
    product->weights = pd.weights_desc();
    product->scratchpad = pd.scratchpad_desc();
  };
  if (bias) {
    memory::desc bias_desc({1, b.cols}, dt::f32, memory::format_tag::ab);
    keep(dnnl::matmul::primitive_desc(Engine(), src, weights, bias_desc, dst, attr));
  } else {
    keep(dnnl::matmul::primitive_desc(Engine(), src, weights, dst, attr));
  }
  cache.emplace(key, product);
  return product;
}

// XLA hands a call fresh output buffers (tens of MB are a new mmap at every call), and the first
// write to each 4 KiB page of them is a page fault. Asking for 2 MiB pages makes that 512 times
// fewer faults: where transparent huge pages are on `madvise`, as is common, only a region that
// asked gets them.
constexpr uintptr_t kHuge = uintptr_t{2} << 20;

inline void PreferHugePages(void* data, int64_t bytes) {
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

// A call's temporaries, from buffers that outlive the call. A fresh buffer of tens of MB comes
// from mmap, and its pages are faulted in and zeroed by the kernel again at every call (measured:
// a third of a B=128, H=512 GRU forward). Calls run one at a time on the worker thread, which
// keeps up to kKeptBytes of buffers between them and frees the rest when a call ends.
//
// Each buffer is mapped fresh, on a 2 MiB boundary, and asks for huge pages before its first
// write. Left to malloc, where a buffer landed depended on what the process had freed before
// (once something frees a large block, as a 2048² matmul in XLA does, glibc raises its mmap
// threshold and serves MBs from the heap), and so did the speed of products that read it (see
// Runner::Weights).
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    int64_t kept = 0;
    for (Block& block : Kept()) {
      kept += static_cast<int64_t>(block.bytes);  // what is mapped, whole huge pages
      if (kept > kKeptBytes) block = Block{};
    }
  }

  // n floats, uninitialised, valid until this Scratch ends.
  float* Take(int64_t n) {
    auto& kept = Kept();
    if (taken_ == kept.size()) kept.emplace_back();
    Block& block = kept[taken_++];
    if (block.size < n) block = Block(n);
    return block.mapping.get();
  }
  float* Zeros(int64_t n) {
    float* data = Take(n);
    std::memset(data, 0, n * sizeof(float));
    return data;
  }
  float* Copy(const float* src, int64_t n) {
    float* data = Take(n);
    std::memcpy(data, src, n * sizeof(float));
    return data;
  }

 private:
  static constexpr int64_t kKeptBytes = int64_t{256} << 20;
  // n floats in a mapping of whole huge pages.
  struct Block {
    struct Unmap {
      size_t bytes;
      void operator()(float* p) const { munmap(p, bytes); }
    };
    Block() = default;
    explicit Block(int64_t n)
        : size(n), bytes((n * sizeof(float) + kHuge - 1) & ~(kHuge - 1)) {
      // Map a huge page more than needed, keep the aligned middle.
      char* raw = static_cast<char*>(
          mmap(nullptr, bytes + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      if (raw == MAP_FAILED) throw std::bad_alloc();
      char* start = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + kHuge - 1) &
                                            ~(kHuge - 1));
      if (start > raw) munmap(raw, start - raw);
      if (raw + kHuge > start) munmap(start + bytes, raw + kHuge - start);
      PreferHugePages(start, bytes);
      mapping.reset(reinterpret_cast<float*>(start));
      mapping.get_deleter().bytes = bytes;
    }
    std::unique_ptr<float[], Unmap> mapping;
    int64_t size = 0;
    size_t bytes = 0;
  };
  static std::vector<Block>& Kept() {
    static thread_local std::vector<Block> kept;
    return kept;
  }
  size_t taken_ = 0;
};

struct Runner {
  dnnl::stream stream{Engine()};
  Scratch scratch;

  // B in the layout `product` reads it, copied once per call even where that layout is the
  // user's, into a buffer that starts 16 bytes past a cache line. Where oneDNN multiplies by the
  // weights in the user's layout (its AVX2 products), weights that start on a cache line were
  // slower on a 2-core AVX2 EPYC: the LSTM's B=128, H=512 forward pass took 250 ms instead of
  // 150, the c1 LSTM's training step 76 ms instead of 68.
  memory Weights(const Product& product, const View& b, const float* data) {
    memory user(b.desc(), Engine(), const_cast<float*>(data));
    memory packed(product.weights, Engine(),
                  scratch.Take(product.weights.get_size() / sizeof(float) + 4) + 4);
    dnnl::reorder(user, packed).execute(stream, user, packed);
    return packed;
  }

  // C = A B for a one-off product (B read as it is, or packed first if oneDNN would rather).
  void Once(const View& a, const float* a_data, const View& b, const float* b_data,
            float* c_data, int64_t c_stride, const float* bias = nullptr);
};

// exp(x) for float32 by range reduction and a degree-7 polynomial (Cephes' expf), written so that
// the compiler vectorises the loops that call it: std::exp is a scalar call per element, and the
// gates of a step are B x 4H of them.
__attribute__((always_inline)) inline float Exp(float x) {
  x = x < -87.3f ? -87.3f : x;  // a NaN passes through both
  x = x > 88.3f ? 88.3f : x;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

__attribute__((always_inline)) inline float Sigmoid(float v) { return 1.0f / (1.0f + Exp(-v)); }

// tanh(v) = 1 − 2 / (exp(2v) + 1), exact at ±∞ and within 1e-7 of std::tanh elsewhere.
__attribute__((always_inline)) inline float Tanh(float v) { return 1.0f - 2.0f / (Exp(2.0f * v) + 1.0f); }

// The same product at every step: memory objects and scratchpad made once per call, pointed at
// each step's rows.
class Repeated {
 public:
  Repeated(Runner& runner, const Product& product, const View& a, const memory& weights,
           int64_t c_stride, const float* bias = nullptr)
      : runner_(runner), product_(product) {
    memory::desc dst({a.rows, weights.get_desc().get_dims()[1]}, dt::f32, Dims{c_stride, 1});
    src_ = memory(product.src, Engine(), DNNL_MEMORY_NONE);
    dst_ = memory(dst, Engine(), DNNL_MEMORY_NONE);
    args_ = {{DNNL_ARG_SRC, src_},
             {DNNL_ARG_WEIGHTS, weights},
             {DNNL_ARG_DST, dst_},
             {DNNL_ARG_SCRATCHPAD,
              memory(product.scratchpad, Engine(),
                     runner.scratch.Take(product.scratchpad.get_size() / sizeof(float) + 1))}};
    if (bias != nullptr) {
      memory::desc bias_desc({1, dst.get_dims()[1]}, dt::f32, memory::format_tag::ab);
      args_.insert({DNNL_ARG_BIAS, memory(bias_desc, Engine(), const_cast<float*>(bias))});
    }
  }
  // a: in the layout of product.src
  void operator()(const void* a, float* c) {
    src_.set_data_handle(const_cast<void*>(a));
    dst_.set_data_handle(c);
    product_.primitive.execute(runner_.stream, args_);
    runner_.stream.wait();
  }

 private:
  Runner& runner_;
  const Product& product_;
  memory src_, dst_;
  std::unordered_map<int, memory> args_;
};

// With AVX-512, oneDNN's product (brgemm) reads B faster in a layout of its own: the LSTM's
// weight gradient of 768 units, (832, 2048) x (2048, 3072), took 84 ms from B as it lies and
// 31 ms packed first (1.9 ms of that). Its AVX2 product reads the user's layout either way.
inline bool OncePacksSecondFactor() {
  static const bool pack = __builtin_cpu_supports("avx512f");
  return pack;
}

inline void Runner::Once(const View& a, const float* a_data, const View& b, const float* b_data,
                         float* c_data, int64_t c_stride, const float* bias) {
  auto product = ProductFor(a, b, c_stride, OncePacksSecondFactor(), bias != nullptr);
  const void* src = a_data;
  if (product->src.get_data_type() == dt::bf16) {  // ConvertsFactors: A in bfloat16 first
    memory user(a.desc(), Engine(), const_cast<float*>(a_data));
    memory converted(product->src, Engine(),
                     scratch.Take(product->src.get_size() / sizeof(float) + 1));
    dnnl::reorder(user, converted).execute(stream, user, converted);
    src = converted.get_data_handle();
  }
  Repeated(*this, *product, a, Weights(*product, b, b_data), c_stride, bias)(src, c_data);
}

// ---------------------------------------------------------------------- a few sequences at once
//
// With one or two sequences a step's product is a few microseconds of arithmetic, and a call of
// oneDNN's costs about as much again. Up to kFewRows sequences, the steps run inside one parallel
// region instead: each thread owns a range of hidden units (its columns of every gate), computes
// its part of the step's product and gates, and waits for the others once per step.

constexpr int64_t kFewRows = 4;

// Vectors of floats for the products below: 16 lanes fill an AVX-512 register, 8 an AVX2 one.
typedef float Lanes16 __attribute__((vector_size(64), aligned(4), __may_alias__));
typedef float Lanes8 __attribute__((vector_size(32), aligned(4), __may_alias__));
constexpr int64_t kLanes = 16;  // threads split the units in multiples of this

// Columns [j, j + V vectors) of y (R, ·) = y0 + x (R, K) w (K, ·) for R rows; rows of x, w, y0
// and y are x_stride, ldw, y0_stride (0: one row for all) and y_stride apart; y0 null for zeros.
// The R x V accumulators stay in registers while the rows of w stream past.
template <typename L, int R, int V>
__attribute__((always_inline)) inline void FewRowsBlock(int64_t j, int64_t K, const float* x,
                                                        int64_t x_stride, const float* w,
                                                        int64_t ldw, const float* y0,
                                                        int64_t y0_stride, float* y,
                                                        int64_t y_stride) {
  constexpr int64_t lanes = sizeof(L) / sizeof(float);
  // memcpy, not a cast: a template argument loses the typedef's alignment of 4, and the cast's
  // aligned loads would fault on rows that start mid-vector.
  auto load = [](const float* p) {
    L v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  L acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < V; ++i) acc[r][i] = y0 ? load(y0 + r * y0_stride + j + i * lanes) : L{};
  for (int64_t k = 0; k < K; ++k) {
    L wk[V];
    for (int i = 0; i < V; ++i) wk[i] = load(w + k * ldw + j + i * lanes);
    for (int r = 0; r < R; ++r) {
      const float xk = x[r * x_stride + k];
      for (int i = 0; i < V; ++i) acc[r][i] += xk * wk[i];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < V; ++i)
      std::memcpy(y + r * y_stride + j + i * lanes, &acc[r][i], sizeof(L));
}

// y (R, n) = y0 + x (R, K) w (K, n), as FewRowsBlock says, in blocks of as many accumulators as
// keep both of a core's FMA units busy and still fit its registers beside the row of w they
// multiply: 8 vectors for one row, then 4 a row on AVX-512 (32 registers); 8, 4 or 2 a row for
// one, two or more rows on AVX2 (16 registers, where blocks of AVX-512's sizes spill and a step
// of one sequence at H = 128 took 25 µs instead of 3). Then single vectors and single columns for
// what is left.
template <typename L, int R>
__attribute__((always_inline)) inline void FewRows(int64_t K, int64_t n, const float* x,
                                                   int64_t x_stride, const float* w, int64_t ldw,
                                                   const float* y0, int64_t y0_stride, float* y,
                                                   int64_t y_stride) {
  constexpr int64_t lanes = sizeof(L) / sizeof(float);
  constexpr int V = R == 1 ? 8 : (lanes == 16 || R == 2) ? 4 : 2;
  int64_t j = 0;
  for (; j + V * lanes <= n; j += V * lanes)
    FewRowsBlock<L, R, V>(j, K, x, x_stride, w, ldw, y0, y0_stride, y, y_stride);
  if (R == 1 && lanes == 16)
    for (; j + 4 * lanes <= n; j += 4 * lanes)
      FewRowsBlock<L, R, 4>(j, K, x, x_stride, w, ldw, y0, y0_stride, y, y_stride);
  for (; j + lanes <= n; j += lanes)
    FewRowsBlock<L, R, 1>(j, K, x, x_stride, w, ldw, y0, y0_stride, y, y_stride);
  for (; j < n; ++j)
    for (int r = 0; r < R; ++r) {
      float acc = y0 ? y0[r * y0_stride + j] : 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += x[r * x_stride + k] * w[k * ldw + j];
      y[r * y_stride + j] = acc;
    }
}

template <typename L>
__attribute__((always_inline)) inline void FewRowsProductOf(int64_t rows, int64_t K, int64_t n,
                                                            const float* x, int64_t x_stride,
                                                            const float* w, int64_t ldw,
                                                            const float* y0, int64_t y0_stride,
                                                            float* y, int64_t y_stride) {
  for (int64_t r = 0; r < rows; r += 4) {
    const float* y0r = y0 ? y0 + r * y0_stride : nullptr;
    const float* xr = x + r * x_stride;
    float* yr = y + r * y_stride;
    switch (std::min<int64_t>(4, rows - r)) {
      case 1: FewRows<L, 1>(K, n, xr, x_stride, w, ldw, y0r, y0_stride, yr, y_stride); break;
      case 2: FewRows<L, 2>(K, n, xr, x_stride, w, ldw, y0r, y0_stride, yr, y_stride); break;
      case 3: FewRows<L, 3>(K, n, xr, x_stride, w, ldw, y0r, y0_stride, yr, y_stride); break;
      default: FewRows<L, 4>(K, n, xr, x_stride, w, ldw, y0r, y0_stride, yr, y_stride); break;
    }
  }
}

// Every clone holds both widths; the CPU picks one (an AVX2 clone's 16-lane vectors are pairs of
// registers, which is what made the AVX-512 blocks spill there).
JAXRNN_VECTOR static void FewRowsProduct(int64_t rows, int64_t K, int64_t n, const float* x,
                                         int64_t x_stride, const float* w, int64_t ldw,
                                         const float* y0, int64_t y0_stride, float* y,
                                         int64_t y_stride) {
  static const bool wide = __builtin_cpu_supports("avx512f");
  if (wide)
    FewRowsProductOf<Lanes16>(rows, K, n, x, x_stride, w, ldw, y0, y0_stride, y, y_stride);
  else
    FewRowsProductOf<Lanes8>(rows, K, n, x, x_stride, w, ldw, y0, y0_stride, y, y_stride);
}

// How many threads share the units of a few sequences' steps: a thread per 64 units, at most
// one per core the team has, one when the units are fewer than 128.
inline int FewRowsTeam(int64_t H) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), H / 64)));
}

// The units [first, last) of thread `thread` of `team`, in whole vectors where H allows.
inline std::pair<int64_t, int64_t> UnitsOf(int thread, int team, int64_t H) {
  const int64_t vectors = (H + kLanes - 1) / kLanes;
  const int64_t first = std::min(H, vectors * thread / team * kLanes);
  const int64_t last = thread + 1 == team ? H : std::min(H, vectors * (thread + 1) / team * kLanes);
  return {first, last};
}

// Copies the block w[:, first:first + n] of a (K, ld) matrix to `panel`, (K, n): the rows a
// thread's product streams through are then contiguous, where w's are ld apart (a stride of a
// few KiB that maps every row to the same few cache sets).
inline const float* Panel(float* panel, int64_t K, int64_t n, const float* w, int64_t ld,
                          int64_t first) {
  for (int64_t k = 0; k < K; ++k) std::memcpy(panel + k * n, w + k * ld + first, n * sizeof(float));
  return panel;
}

// ------------------------------------------- a team's products, over weights packed per call
//
// oneDNN 3.2 multiplies by weights in the caller's layout where the CPU lacks AVX-512 (gemm:jit)
// and packs them again inside every call: on one thread of a 2-core AVX2 EPYC a c1 LSTM step's
// (32, 320) x (320, 512) took 166 µs (63 GFLOP/s), and 116 µs (91 GFLOP/s) as BlockProduct over
// weights packed once per call. Where AVX-512 is present oneDNN packs them itself (brgemm).

constexpr int64_t kBlockColumns = 16;  // two AVX2 vectors

// Which of its two choices the environment variable `name` holds, read at each call: -1 where
// it is unset or empty, 0 for `first`, 1 for `second`. Another value is an error (Guarded makes
// it the call's).
inline int EnvChoice(const char* name, const char* first, const char* second) {
  const char* choice = std::getenv(name);
  if (choice == nullptr || *choice == '\0') return -1;
  if (std::strcmp(choice, first) == 0) return 0;
  if (std::strcmp(choice, second) == 0) return 1;
  throw std::invalid_argument(std::string("expected the environment variable ") + name + " '" +
                              first + "', '" + second + "' or unset, got '" + choice + "'");
}

// Whether a team multiplies with BlockProduct rather than oneDNN: where the CPU lacks AVX-512,
// or as JAXRNN_STEP_PRODUCTS says ("own" or "onednn"), so that either path can be tested and
// timed on any CPU.
inline bool OwnStepProducts() {
  const int choice = EnvChoice("JAXRNN_STEP_PRODUCTS", "own", "onednn");
  return choice < 0 ? !__builtin_cpu_supports("avx512f") : choice == 0;
}

// The floats of a (K, N) matrix packed as PackBlocks packs it.
inline int64_t PackedSize(int64_t K, int64_t N) {
  return (N + kBlockColumns - 1) / kBlockColumns * kBlockColumns * K;
}

// Writes w (K, N), element (k, j) at(k, j), to `packed` as ceil(N / kBlockColumns) blocks of
// (K, kBlockColumns), each contiguous, so that a block's rows stream from L1 or L2 while every
// row of x passes over it; the columns past N are zero.
template <typename At>
void PackBlocks(float* packed, int64_t K, int64_t N, At at) {
  for (int64_t j = 0; j < N; j += kBlockColumns) {
    float* block = packed + j * K;
    const int64_t cols = std::min(kBlockColumns, N - j);
    for (int64_t k = 0; k < K; ++k) {
      float* row = block + k * kBlockColumns;
      for (int64_t c = 0; c < cols; ++c) row[c] = at(k, j + c);
      for (int64_t c = cols; c < kBlockColumns; ++c) row[c] = 0.0f;
    }
  }
}

// R rows of y (·, kBlockColumns) = bias + x (R, K) times one packed block (K, kBlockColumns).
// Six rows keep 12 accumulators, the block's two vectors of row k and a broadcast in AVX2's 16
// registers.
template <int R>
__attribute__((always_inline)) inline void BlockRows(int64_t K, const float* x, int64_t x_stride,
                                                     const float* block, const float* bias,
                                                     float* y, int64_t y_stride) {
  auto load = [](const float* p) {
    Lanes8 v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  Lanes8 acc[R][2];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < 2; ++i) acc[r][i] = bias ? load(bias + 8 * i) : Lanes8{};
  for (int64_t k = 0; k < K; ++k) {
    const Lanes8 w0 = load(block + k * kBlockColumns), w1 = load(block + k * kBlockColumns + 8);
    for (int r = 0; r < R; ++r) {
      const float xk = x[r * x_stride + k];
      acc[r][0] += xk * w0;
      acc[r][1] += xk * w1;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < 2; ++i) std::memcpy(y + r * y_stride + 8 * i, &acc[r][i], sizeof(Lanes8));
}

// y (M, N) = x (M, K) w (+ bias, padded as the blocks are, where not null), w as PackBlocks
// packs it; rows of x and y x_stride and y_stride apart.
JAXRNN_VECTOR static void BlockProduct(int64_t M, int64_t K, int64_t N, const float* x,
                                       int64_t x_stride, const float* packed, const float* bias,
                                       float* y, int64_t y_stride) {
  float partial[6 * kBlockColumns];
  for (int64_t j = 0; j < N; j += kBlockColumns) {
    const float* block = packed + j * K;
    const float* block_bias = bias ? bias + j : nullptr;
    const int64_t cols = std::min(kBlockColumns, N - j);
    for (int64_t r = 0; r < M; r += 6) {
      const int64_t rows = std::min<int64_t>(6, M - r);
      // A block wider than what is left of y goes through `partial`.
      float* out = cols == kBlockColumns ? y + r * y_stride + j : partial;
      const int64_t out_stride = cols == kBlockColumns ? y_stride : kBlockColumns;
      const float* xr = x + r * x_stride;
      switch (rows) {
        case 1: BlockRows<1>(K, xr, x_stride, block, block_bias, out, out_stride); break;
        case 2: BlockRows<2>(K, xr, x_stride, block, block_bias, out, out_stride); break;
        case 3: BlockRows<3>(K, xr, x_stride, block, block_bias, out, out_stride); break;
        case 4: BlockRows<4>(K, xr, x_stride, block, block_bias, out, out_stride); break;
        case 5: BlockRows<5>(K, xr, x_stride, block, block_bias, out, out_stride); break;
        default: BlockRows<6>(K, xr, x_stride, block, block_bias, out, out_stride); break;
      }
      if (out == partial)
        for (int64_t i = 0; i < rows; ++i)
          std::memcpy(y + (r + i) * y_stride + j, partial + i * kBlockColumns,
                      cols * sizeof(float));
    }
  }
}

// While it lives, the calling thread plans and runs for one thread (oneDNN plans a product for
// the threads it may use then); the count comes back however the scope ends (an error included).
struct OneThread {
  int threads = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(threads); }
};

// Runs `member` on each thread of a team of `team` (omp_get_thread_num() tells which), each
// multiplying on its own thread (OneThread). OpenMP counts a team of one thread inactive, so
// oneDNN, asked for a product inside one, opened a nested team of its own, with a new thread
// each time, which queued behind the spinning threads of the last team until the next tick:
// an LSTM training step of 8·32·16·64 (a team of one at H = 64) took 4.0 ms, 0.53 with it.
template <typename Member>
void InTeam(int team, Member member) {
#pragma omp parallel num_threads(team)
  {
    OneThread one;
    member();
  }
}

// How far each member of a team has run its steps, a group of rows at a time: a member that
// needs the others' rows of a group waits for them alone (Await), where a barrier would wait for
// every member to end the whole step. Each count on a cache line of its own.
class TeamProgress {
 public:
  TeamProgress(int team, int64_t groups) : groups_(groups), steps_(team * groups) {}
  // Member `member` has run `steps` steps of group `group`.
  void Done(int member, int64_t group, int64_t steps) {
    steps_[member * groups_ + group].count.store(steps, std::memory_order_release);
  }
  // Until every member but `member` has run `steps` steps of group `group`: spinning, then
  // yielding the core, which a member waited for may need where the team outnumbers the free
  // cores (as libgomp's barrier then stops spinning early).
  void Await(int member, int64_t group, int64_t steps) const {
    for (size_t other = group; other < steps_.size(); other += groups_) {
      if (static_cast<int64_t>(other) == member * groups_ + group) continue;
      for (int spins = 0; steps_[other].count.load(std::memory_order_acquire) < steps; ++spins)
        if (spins < kSpins)
          __builtin_ia32_pause();
        else
          sched_yield();
    }
  }

 private:
  static constexpr int kSpins = 4000;
  struct alignas(64) Count {
    std::atomic<int64_t> count{0};
  };
  int64_t groups_;
  std::vector<Count> steps_;
};

// How many groups of rows a team's forward steps run one after the other, each member
// signalling a group's rows done (TeamProgress) before it multiplies the next group's: two where
// each group has 16 to 31 rows and a member's share of the weights, K x gates n floats, is at
// most 1 MiB, else one. Then a member that runs late holds the other back only until it ends a
// group, and the other multiplies the group it has while it waits. The LSTM's forward pass, in
// one process alternating both ways on the 2-core AMX Xeon, medians of 80 calls: c1 (B = 32,
// a member's weights 0.63 MiB) 10.20-10.76 ms in one group, 9.62-10.22 in two; B = 48 10.50 and
// 10.15; the c1 training step 31.4-34.4 and 30.7-33.6. Where it does not pay: groups of 8 rows
// (B = 16: 5.28 and 5.60 ms; oneDNN's product of 8 rows runs at 179 GFLOP/s against 206 for 16),
// B = 64 (9.41-9.61 and 9.59-9.80: two products of 32 rows wait less than their second pass over
// the weights costs), and weights beyond the L2 cache (c3, 2.5 MiB a member: 72.6 and 74.4 ms).
// JAXRNN_ROW_GROUPS=1 or 2 chooses where a team runs (two or more cores), read at each call, so
// that both ways can be timed in one process and tested; another value is an error.
inline int64_t RowGroups(int64_t B, int team, int64_t member_weight_floats) {
  const int choice = EnvChoice("JAXRNN_ROW_GROUPS", "1", "2");
  if (choice >= 0) return team > 1 && B >= 2 ? choice + 1 : 1;
  const bool fits = member_weight_floats * static_cast<int64_t>(sizeof(float)) <= (1 << 20);
  return team > 1 && B >= 32 && B < 64 && fits ? 2 : 1;
}

// Whether a team's forward steps take x_t w_x + b from one product over every step run before
// the loop (InputSide) and multiply only h_{t-1} by w_h at each step, rather than multiplying the
// rows [x_t, h_{t-1}] by [w_x; w_h]: where the inputs are at least twice as wide as the carry
// (a bidirectional stack's upper layers), the units at least 256 and the rows at most 32, so
// that two thirds of the products run as one of B T rows, not T of B. On the 2-core AMX Xeon,
// the LSTM's forward pass / training step with dL/dxs, one process alternating both ways (6
// rounds of 8 calls, medians): B, D, H = 32, 512, 256: 27.3 / 82.8 ms in the steps, 25.3 / 79.6
// before; (16, 512, 256) 15.9 / 46.4 and 14.3 / 44.4; (32, 768, 256) 39.7 / 117.0 and 35.6 /
// 110.8; (32, 1024, 512) 115.9 / 341.3 and 109.4 / 337.5. Where it does not pay: D = H (32, 256,
// 256: 18.5 and 19.3 forward), D = 64 (12.7 and 14.3), more rows (64, 512, 256: 53.2 and 54.2;
// 128, 512, 512: 133.9 and 135.7), fewer units (32, 256, 128: 7.8 and 8.4).
// JAXRNN_INPUT_SIDE=steps or before chooses, read at each call; another value is an error.
inline bool InputSideBefore(int64_t B, int64_t D, int64_t H) {
  const int choice = EnvChoice("JAXRNN_INPUT_SIDE", "steps", "before");
  if (choice >= 0) return choice == 1;
  return B <= 32 && H >= 256 && D >= 2 * H;
}

// z[q n + j] += zx[q H + j] for `gates` gates and n units: a member's columns of a step's input
// side added to its product of the step's carries.
JAXRNN_VECTOR static void AddInputSide(int64_t gates, int64_t n, int64_t H,
                                       const float* __restrict zx, float* __restrict z) {
  for (int64_t q = 0; q < gates; ++q)
    for (int64_t j = 0; j < n; ++j) z[q * n + j] += zx[q * H + j];
}

// The step products of a team that runs every step of more than kFewRows sequences in one
// parallel region: thread i owns the units UnitsOf(i, team, H) and multiplies the step's (B, K)
// rows by its columns of every gate plus their bias, (K, gates n) packed once per call, into its
// block of z, (B, gates n) from z + B * gates * first. BlockProduct or oneDNN (OwnStepProducts),
// which plans each product for the one thread that runs it. (A product and a gate pass per step,
// each split across the threads, cost two wake-ups of the team and oneDNN's dispatch per step.)
class TeamProducts {
 public:
  // row_of(k): the start of row k of the (K, gates * H) weights, gate q at q * H.
  template <typename RowOf>
  TeamProducts(Runner& run, int64_t B, int64_t K, int64_t H, int64_t gates, int team,
               RowOf row_of, const float* bias)
      : B_(B), K_(K), H_(H), gates_(gates), team_(team), rows_stride_(K), bias_(true),
        own_(OwnStepProducts()), columns_(nullptr), products_(team), packed_(team), pads_(team),
        blocks_(team), block_bias_(team) {
    if (own_) {
      TakeBlocks(run, gates, /*with_bias=*/true);
      // Each thread packs its own columns (at H = 768, 3 ms a call on one thread).
#pragma omp parallel num_threads(team)
      {
        const int i = omp_get_thread_num();
        const auto [first, n] = Units(i);
        // column j of the thread's (K, gates n) in the (K, gates H) weights
        std::vector<int64_t> column;
        for (int64_t q = 0; q < gates; ++q)
          for (int64_t j = 0; j < n; ++j) column.push_back(q * H + first + j);
        PackBlocks(blocks_[i], K, gates * n,
                   [&](int64_t k, int64_t j) { return row_of(k)[column[j]]; });
        PackBlocks(block_bias_[i], 1, gates * n,
                   [&](int64_t, int64_t j) { return bias[column[j]]; });
      }
      return;
    }
    columns_ = run.scratch.Take((K + 1) * gates * H);
    {
      OneThread one_thread;
      for (int i = 0; i < team; ++i) {
        const auto [first, n] = Units(i);
        float* w = Columns(first);
        for (int64_t k = 0; k <= K; ++k)  // row K: the bias
          for (int64_t q = 0; q < gates; ++q)
            std::memcpy(w + (k * gates + q) * n, (k < K ? row_of(k) : bias) + q * H + first,
                        n * sizeof(float));
        products_[i] = ProductFor({B, K, K}, {K, gates * n, gates * n}, gates * n,
                                  /*packed=*/true, /*bias=*/true);
      }
    }
    for (int i = 0; i < team; ++i) {
      const auto [first, n] = Units(i);
      packed_[i] = run.Weights(*products_[i], {K, gates * n, gates * n}, Columns(first));
      Pad(run, i);
    }
  }

  // The products by the transpose of w (H, K), without a bias: z_i (B, n) = rows (B, K) times
  // its units' columns of wᵀ (rows first .. first + n of w, which oneDNN reads transposed into
  // its own layout), the step's rows rows_stride apart.
  TeamProducts(Runner& run, int64_t B, int64_t K, int64_t H, int team, const float* w,
               int64_t rows_stride)
      : B_(B), K_(K), H_(H), gates_(1), team_(team), rows_stride_(rows_stride), bias_(false),
        own_(OwnStepProducts()), columns_(nullptr), products_(team), packed_(team), pads_(team),
        blocks_(team), block_bias_(team) {
    if (own_) {
      TakeBlocks(run, 1, /*with_bias=*/false);
#pragma omp parallel num_threads(team)
      {
        const int i = omp_get_thread_num();
        const auto [first, n] = Units(i);
        PackBlocks(blocks_[i], K, n, [&, first = first](int64_t k, int64_t j) {
          return w[(first + j) * K + k];
        });
      }
      return;
    }
    {
      OneThread one_thread;
      for (int i = 0; i < team; ++i) {
        const int64_t n = Units(i).second;
        products_[i] = ProductFor({B, K, rows_stride}, {K, n, n}, n, /*packed=*/true,
                                  /*bias=*/false);
      }
    }
    for (int i = 0; i < team; ++i) {
      const auto [first, n] = Units(i);
      packed_[i] = run.Weights(*products_[i], {K, n, K, /*transposed=*/true}, w + first * K);
      Pad(run, i);
    }
  }

  // Thread i's product, made inside the parallel region: z_i (B, gates n) = rows (B, K) times
  // its columns, plus their bias.
  class Member {
   public:
    // z_i holds z_rows rows, the rows of every group the member multiplies (RowGroups), or
    // those of one product where z_rows is 0.
    Member(const TeamProducts& team, int i, float* z, int64_t z_rows = 0)
        : team_(team), product_(team.products_[i].get()), blocks_(team.blocks_[i]),
          block_bias_(team.block_bias_[i]) {
      std::tie(first, n) = team.Units(i);
      z_i = z + (z_rows ? z_rows : team.B_) * team.gates_ * first;
      const int64_t width = team.gates_ * n;
      if (team.own_) return;
      src_ = memory(product_->src, Engine(), DNNL_MEMORY_NONE);
      if (product_->src.get_data_type() == dt::bf16) converted_.resize(team.B_ * team.K_);
      args_ = {
          {DNNL_ARG_SRC, src_},
          {DNNL_ARG_WEIGHTS, team.packed_[i]},
          {DNNL_ARG_DST, memory(memory::desc({team.B_, width}, dt::f32, Dims{width, 1}),
                                Engine(), z_i)},
          {DNNL_ARG_SCRATCHPAD, memory(product_->scratchpad, Engine(), team.pads_[i])}};
      if (team.bias_)
        args_.insert({DNNL_ARG_BIAS,
                      memory(memory::desc({1, width}, dt::f32, memory::format_tag::ab), Engine(),
                             team.Columns(first) + team.K_ * width)});
    }
    // The `count` rows of z_i from row `at` on, from as many rows; oneDNN's product, planned
    // for all B rows, computes the rest too.
    void operator()(const float* rows, int64_t count, int64_t at = 0) {
      float* out = z_i + at * team_.gates_ * n;
      if (team_.own_) {
        const int64_t width = team_.gates_ * n;
        BlockProduct(count, team_.K_, width, rows, team_.rows_stride_, blocks_, block_bias_, out,
                     width);
        return;
      }
      args_[DNNL_ARG_DST].set_data_handle(out);
      if (!converted_.empty()) {  // ConvertsFactors: every thread the whole step's rows
        for (int64_t r = 0; r < count; ++r)
          ToBfloat16(rows + r * team_.rows_stride_, converted_.data() + r * team_.K_, team_.K_);
        src_.set_data_handle(converted_.data());
      } else {
        src_.set_data_handle(const_cast<float*>(rows));
      }
      product_->primitive.execute(stream_, args_);
    }
    int64_t first, n;
    float* z_i;

   private:
    const TeamProducts& team_;
    const Product* product_;
    const float* blocks_;
    const float* block_bias_;
    dnnl::stream stream_{Engine()};
    memory src_;
    std::vector<uint16_t> converted_;  // the step's rows in bfloat16, where ConvertsFactors
    std::unordered_map<int, memory> args_;
  };

 private:
  void TakeBlocks(Runner& run, int64_t gates, bool with_bias) {
    for (int i = 0; i < team_; ++i) {
      const int64_t width = gates * Units(i).second;
      blocks_[i] = run.scratch.Take(PackedSize(K_, width));
      block_bias_[i] = with_bias ? run.scratch.Take(PackedSize(1, width)) : nullptr;
    }
  }
  void Pad(Runner& run, int i) {
    pads_[i] = run.scratch.Take(products_[i]->scratchpad.get_size() / sizeof(float) + 1);
  }
  std::pair<int64_t, int64_t> Units(int i) const {
    const auto [first, last] = UnitsOf(i, team_, H_);
    return {first, last - first};
  }
  float* Columns(int64_t first) const { return columns_ + (K_ + 1) * gates_ * first; }

  int64_t B_, K_, H_, gates_;
  int team_;
  int64_t rows_stride_;
  bool bias_;
  bool own_;
  float* columns_;
  std::vector<std::shared_ptr<Product>> products_;  // oneDNN's products ...
  std::vector<memory> packed_;
  std::vector<float*> pads_;
  std::vector<float*> blocks_;  // ... or BlockProduct's weights
  std::vector<float*> block_bias_;
};

// t (cols, rows) = the transpose of w (rows, cols), in tiles of 16 x 16 copied whole into a
// local block, row by row, and written out whole, column by column: each line of t is then
// written once. Written from w straight into t, a tile's 16 writes per row of w went to 16 lines
// of t, and where t's rows lie a multiple of 4 KiB apart (rows = 1024 or 2048 floats) those
// lines share one set of the L1 cache and evicted each other. Timed alone on the AMX Xeon: c1
// LSTM's weight gradient, 1024 x 320 floats, 0.68 ms before, 0.05 now; c3's, 2048 x 640, 2.7
// and 0.36; the 640-unit language model's, 2560 x 704, 0.83 and 0.64. The tiles' columns are
// split across the threads. Rows of t are t_stride apart where it is given.
JAXRNN_VECTOR static void Transpose(const float* w, int64_t rows, int64_t cols, float* t,
                                    int64_t t_stride = 0) {
  constexpr int64_t kTile = 16;
  t_stride = t_stride ? t_stride : rows;
#pragma omp parallel for schedule(static) if (rows * cols >= (int64_t{1} << 16))
  for (int64_t j0 = 0; j0 < cols; j0 += kTile) {
    const int64_t nj = std::min(kTile, cols - j0);
    for (int64_t i0 = 0; i0 < rows; i0 += kTile) {
      const int64_t ni = std::min(kTile, rows - i0);
      if (ni < kTile || nj < kTile) {  // the edges: a few tiles, element by element
        for (int64_t i = i0; i < i0 + ni; ++i)
          for (int64_t j = j0; j < j0 + nj; ++j) t[j * t_stride + i] = w[i * cols + j];
        continue;
      }
      float tile[kTile][kTile];
      for (int64_t i = 0; i < kTile; ++i)
        for (int64_t j = 0; j < kTile; ++j) tile[i][j] = w[(i0 + i) * cols + j0 + j];
      for (int64_t j = 0; j < kTile; ++j)
        for (int64_t i = 0; i < kTile; ++i) t[(j0 + j) * t_stride + i0 + i] = tile[i][j];
    }
  }
}

// A transposed copy of w (rows, cols): (cols, rows).
inline float* Transposed(Scratch& scratch, int64_t rows, int64_t cols, const float* w) {
  float* t = scratch.Take(rows * cols);
  Transpose(w, rows, cols, t);
  return t;
}

// A call's sizes, xs (B, T, D) and the carry (B, H), the examples' lengths (B,), each in
// [0, T]: an example's steps from its length on are not run (carry kept, output zero), and where
// segments start (B, T), in the order the steps are read: such a step reads the restart carry
// instead of the carry before it.
//
// The steps' loops go over slots, not examples: slot r holds example order[r], and a batch of
// more than kFewRows runs its longest examples first, so that the slots that run step t are the
// first through[t] and its product multiplies those rows alone (a right-padded batch of lengths
// uniform in T/4 .. T then multiplies 62% of the rows). A few sequences keep their order. What the
// call reads and writes stays in the examples' order; a kernel's own temporaries are in the
// slots', and the products over every step run read their rows slot after slot (`start`).
struct Shape {
  int64_t B, T, D, H;
  std::vector<int64_t> length;   // slot -> its example's length, clamped to [0, T]
  std::vector<int64_t> order;    // slot -> example
  std::vector<int64_t> through;  // step t -> 1 + the last slot that runs it (0: none does)
  std::vector<int64_t> start;    // slot -> its first row among the steps run, slot after slot
  int64_t steps_run = 0;         // rows of the steps run: the sum of the lengths
  const uint8_t* starts = nullptr;  // (B, T) in the examples' order: 1 where a segment starts
  const int32_t* given = nullptr;   // (B,) the lengths as given, in the examples' order
  bool Runs(int64_t r, int64_t t) const { return t < length[r]; }
  // Whether slot r runs step t (any t) and reads the restart carry there.
  bool Starts(int64_t r, int64_t t) const {
    return t >= 0 && t < length[r] && starts[Row(r, t)] != 0;
  }
  // The step slot r reads first: 0, or its last step when read backwards.
  int64_t FirstRead(int64_t r, bool reverse) const { return reverse ? length[r] - 1 : 0; }
  // Slot r's row at step t of an array in the examples' order, (B, T, ·).
  int64_t Row(int64_t r, int64_t t) const { return order[r] * T + t; }
  // Whether every step of every example runs: the slots are then the examples in order (a stable
  // sort of equal lengths), and the slots' temporaries are laid out as the call's arrays are.
  bool Plain() const { return steps_run == B * T; }
};

// The Shape of B examples from their lengths (B,) and segment starts (B, T).
inline Shape MakeShape(int64_t B, int64_t T, int64_t D, int64_t H, const int32_t* given,
                       const uint8_t* starts) {
  Shape s{B, T, D, H};
  s.starts = starts;
  s.given = given;
  s.order.resize(s.B);
  for (int64_t b = 0; b < s.B; ++b) s.order[b] = b;
  auto length_of = [&](int64_t b) { return std::clamp<int64_t>(given[b], 0, s.T); };
  if (s.B > kFewRows)
    std::stable_sort(s.order.begin(), s.order.end(),
                     [&](int64_t a, int64_t b) { return length_of(a) > length_of(b); });
  s.length.resize(s.B);
  s.start.resize(s.B);
  s.through.assign(s.T, 0);
  for (int64_t r = 0; r < s.B; ++r) {
    s.length[r] = length_of(s.order[r]);
    s.start[r] = s.steps_run;
    s.steps_run += s.length[r];
    for (int64_t t = 0; t < s.length[r]; ++t) s.through[t] = r + 1;
  }
  return s;
}

inline Shape ShapeOf(ffi::Buffer<ffi::F32>& xs, ffi::Buffer<ffi::F32>& h0,
                     ffi::Buffer<ffi::S32>& lengths, ffi::Buffer<ffi::U8>& starts) {
  auto d = xs.dimensions();
  return MakeShape(d[0], d[1], d[2], h0.dimensions()[1], lengths.typed_data(),
                   starts.typed_data());
}

// The Shape of the examples [first, first + n) of s alone, as a call of their own has it.
inline Shape PartShape(const Shape& s, int64_t first, int64_t n) {
  return MakeShape(n, s.T, s.D, s.H, s.given + first, s.starts + first * s.T);
}

// How a call's threads share its steps: "units", a team that splits each step's units and meets
// after every step (TeamProducts), or "examples", each thread running the steps of its own
// examples alone, as a call of its own. Unset, examples where the cell gains from it, each
// thread gets at least kPartRows examples, and the recurrent weights, which each thread then
// reads whole at every step, are at most kPartWeightBytes. On a 2-core Xeon (2 MiB of L2 a core)
// the GRUs', the basic RNN's and the simplified GRU's steps at H = 256 (GRU w_h 0.75 MiB) ran
// 13-25% faster by examples; at H = 512 (3 MiB) the GRU's training step was as fast at the median
// and slower at its worst, at H = 640 (4.7 MiB) 12-20% slower. The LSTM's ran as fast by examples
// at H = 256 and 512 and slower at 640, so it keeps its team. JAXRNN_THREADS_SHARE chooses on
// any CPU, read at each call, so that both can be tested and timed; another value is an error.
constexpr int64_t kPartRows = 8;
constexpr int64_t kPartWeightBytes = int64_t{2} << 20;

inline bool SharesExamples(int64_t B, int64_t weight_floats, bool gains) {
  const int choice = EnvChoice("JAXRNN_THREADS_SHARE", "units", "examples");
  if (choice < 0)
    return gains && B >= 2 * kPartRows &&
           weight_floats * static_cast<int64_t>(sizeof(float)) <= kPartWeightBytes;
  return choice == 1;
}

// Where the examples [bounds[p], bounds[p + 1]) of each thread's part begin and end: contiguous
// blocks with as equal a share of the steps run as the lengths allow, at least one example each;
// {0, B} for a call whose threads share each step's units (SharesExamples, for a cell with
// recurrent weights of `weight_floats` that `gains` or not from sharing examples).
inline std::vector<int64_t> ExampleParts(const Shape& s, int64_t weight_floats, bool gains) {
  const int64_t parts = std::min<int64_t>(omp_get_max_threads(), s.B);
  if (parts < 2 || !SharesExamples(s.B, weight_floats, gains)) return {0, s.B};
  std::vector<int64_t> run(s.B + 1, 0);  // the work of the examples before b: steps run, + 1
  for (int64_t b = 0; b < s.B; ++b)
    run[b + 1] = run[b] + std::clamp<int64_t>(s.given[b], 0, s.T) + 1;
  std::vector<int64_t> bounds{0};
  for (int64_t p = 1; p < parts; ++p) {
    const int64_t goal = run[s.B] * p / parts;
    const int64_t b = std::lower_bound(run.begin(), run.end(), goal) - run.begin();
    bounds.push_back(std::clamp<int64_t>(b, bounds.back() + 1, s.B - (parts - p)));
  }
  bounds.push_back(s.B);
  return bounds;
}

// Runs part(p, first, n) for each part of ExampleParts' bounds at once, a thread each of a
// team (InTeam: each planning its products for the one thread that runs it), multiplying as
// the calling thread does; rethrows the first part's error once all have ended.
template <typename Part>
void InParts(const std::vector<int64_t>& bounds, Part part) {
  const int parts = static_cast<int>(bounds.size()) - 1;
  std::vector<std::exception_ptr> errors(parts);
  const bool bf16 = tl_bf16_products;
  InTeam(parts, [&] {
    const int p = omp_get_thread_num();
    try {
      tl_bf16_products = bf16;
      part(p, bounds[p], bounds[p + 1] - bounds[p]);
    } catch (...) {
      errors[p] = std::current_exception();
    }
  });
  for (auto& error : errors)
    if (error) std::rethrow_exception(error);
}

// Whether a bidirectional layer's two directions run at once, one thread each and each alone
// as a call of its own (BothWays), rather than in turn, each with the whole team: at once where
// there are two threads and the weights a step reads (w_h, and w_x where the steps multiply x_t:
// InputSideBefore) fit in a core's share of L2 (kPartWeightBytes), as for a thread running its
// own examples. A team splits each step into halves that meet after every step; a thread alone
// never waits. On the 2-core AMX Xeon, one direction alone on each core at once took about what
// one direction with the team took (B, T, H = 32, 128, 256; D = 64: 24.1-24.4 ms against 13.1;
// D = 512: 53.4-53.6 against 27.9), where two in turn take twice as long.
// JAXRNN_BOTH_WAYS=in_turn or at_once chooses, read at each call; another value is an error.
inline bool BothWaysAtOnce(int64_t B, int64_t D, int64_t H, int64_t gates) {
  const int choice = EnvChoice("JAXRNN_BOTH_WAYS", "in_turn", "at_once");
  if (omp_get_max_threads() < 2) return false;
  if (choice >= 0) return choice == 1;
  const int64_t step_rows = (InputSideBefore(B, D, H) ? 0 : D) + H;
  return step_rows * gates * H * static_cast<int64_t>(sizeof(float)) <= kPartWeightBytes;
}

// Runs direction(0) (the forward one) and direction(1) (the backward one) of a bidirectional
// layer: at once, a thread each (InParts), where BothWaysAtOnce says so, else one after the
// other.
template <typename Direction>
void BothWays(const Shape& s, int64_t gates, Direction direction) {
  if (BothWaysAtOnce(s.B, s.D, s.H, gates)) {
    InParts({0, 1, 2}, [&](int d, int64_t, int64_t) { direction(d); });
    return;
  }
  direction(0);
  direction(1);
}

// A part's view of a call's buffer: the examples [first, first + n) of one whose leading axis
// runs over them (an empty buffer stays empty), or `data` in the shape of `like` (a part's own
// sums); what *view gives lives as long as the view.
template <ffi::DataType dt>
class PartOfBuffer {
 public:
  PartOfBuffer(ffi::Buffer<dt> whole, int64_t first, int64_t n) : PartOfBuffer(whole, nullptr) {
    if (whole.element_count() == 0) return;
    raw_.data = whole.typed_data() + first * (whole.element_count() / dims_[0]);
    dims_[0] = n;
  }
  PartOfBuffer(ffi::Buffer<dt> like, ffi::NativeType<dt>* data) {
    const auto d = like.dimensions();
    std::copy(d.begin(), d.end(), dims_);
    raw_ = XLA_FFI_Buffer{XLA_FFI_Buffer_STRUCT_SIZE, nullptr, static_cast<XLA_FFI_DataType>(dt),
                          data ? data : like.typed_data(), static_cast<int64_t>(d.size()), dims_};
  }
  PartOfBuffer(const PartOfBuffer&) = delete;
  PartOfBuffer& operator=(const PartOfBuffer&) = delete;
  ffi::Buffer<dt> operator*() const { return ffi::Buffer<dt>(&raw_); }

 private:
  int64_t dims_[8];
  XLA_FFI_Buffer raw_;
};

// The sums over a call's examples (weight, bias and peephole gradients) of the parts after the
// first, which add theirs into the first's at the end: `floats` for each, kept by the calling
// thread between calls.
inline float* PartSums(int64_t parts, int64_t floats) {
  static thread_local std::vector<float> sums;
  if (static_cast<int64_t>(sums.size()) < parts * floats) sums.resize(parts * floats);
  return sums.data();
}

JAXRNN_VECTOR static void AddInto(float* __restrict to, const float* __restrict from, int64_t n) {
  for (int64_t i = 0; i < n; ++i) to[i] += from[i];
}

// The rows of the steps run, slot after slot, of an array in the examples' order, (B, T, width):
// m itself where Shape::Plain, else a copy.
inline const float* StepsRun(Scratch& scratch, const Shape& s, int64_t width, const float* m) {
  if (s.Plain()) return m;
  float* rows = scratch.Take(std::max<int64_t>(1, s.steps_run) * width);
  for (int64_t r = 0; r < s.B; ++r)
    std::memcpy(rows + s.start[r] * width, m + s.Row(r, 0) * width,
                s.length[r] * width * sizeof(float));
  return rows;
}

// Zeros at the steps not run of each example of out, (B, T, width) in the examples' order.
inline void ZeroStepsNotRun(const Shape& s, int64_t width, float* out) {
  for (int64_t r = 0; r < s.B; ++r)
    std::memset(out + (s.Row(r, 0) + s.length[r]) * width, 0,
                (s.T - s.length[r]) * width * sizeof(float));
}

// The carry (B, width) each slot holds before its first step, in the slots' order: the restart
// carry where that step starts a segment, else the initial one (both in the examples' order).
inline float* FirstCarries(Scratch& scratch, const Shape& s, int64_t width, const float* initial,
                           const float* restart, bool reverse) {
  float* first = scratch.Take(s.B * width);
  for (int64_t r = 0; r < s.B; ++r)
    std::memcpy(first + r * width,
                (s.Starts(r, s.FirstRead(r, reverse)) ? restart : initial) + s.order[r] * width,
                width * sizeof(float));
  return first;
}

// Units [first, first + n) of slot r's carry in `carry` (slots' order, rows `stride` apart)
// replaced by the restart carry's (examples' order) where the step read after t starts a segment.
inline void RestartAfter(const Shape& s, int64_t r, int64_t t, bool reverse, int64_t first,
                         int64_t n, const float* restart, float* carry, int64_t stride = 0) {
  if (s.Starts(r, reverse ? t - 1 : t + 1))
    std::memcpy(carry + r * (stride ? stride : s.H) + first, restart + s.order[r] * s.H + first,
                n * sizeof(float));
}

// The carry (H wide) that slot r's step t read: the restart carry where a segment starts there,
// the initial carry at its first step read, else the one the step read before it left in
// `carries` (B, T, H); the first two in the examples' order.
inline const float* CarryRead(const Shape& s, int64_t r, int64_t t, bool reverse,
                              const float* initial, const float* restart, const float* carries) {
  if (s.Starts(r, t)) return restart + s.order[r] * s.H;
  if (t == s.FirstRead(r, reverse)) return initial + s.order[r] * s.H;
  return carries + s.Row(r, reverse ? t + 1 : t - 1) * s.H;
}

// Where slot r's step t starts a segment, moves the units [first, first + n) of the cotangent of
// the carry it read, `d` (slots' order), into the restart carry's, `d_restart`.
inline void MoveToRestart(const Shape& s, int64_t r, int64_t t, int64_t first, int64_t n,
                          float* d, float* d_restart) {
  if (!s.Starts(r, t)) return;
  for (int64_t j = r * s.H + first; j < r * s.H + first + n; ++j) d_restart[j] += d[j], d[j] = 0;
}

// Copies the rows (B, width) of `from` into `to`: from the examples' order into the slots'
// (ToSlots), or back.
template <bool ToSlots>
inline void Reorder(const Shape& s, int64_t width, const float* from, float* to) {
  for (int64_t r = 0; r < s.B; ++r) {
    const int64_t e = s.order[r];
    std::memcpy(to + (ToSlots ? r : e) * width, from + (ToSlots ? e : r) * width,
                width * sizeof(float));
  }
}

// w_x (D, G·H) and w_h (H, G·H) for a cell of `gates` gates, or an error that says which.
inline ffi::Error CheckWeights(const char* cell, const Shape& s, int64_t gates,
                               ffi::Buffer<ffi::F32>& w_x, ffi::Buffer<ffi::F32>& w_h) {
  auto wx = w_x.dimensions(), wh = w_h.dimensions();
  if (wx.size() != 2 || wx[0] != s.D || wx[1] != gates * s.H || wh.size() != 2 ||
      wh[0] != s.H || wh[1] != gates * s.H)
    return ffi::Error::InvalidArgument(std::string(cell) +
                                       " kernel: weights do not match xs and the carry");
  return ffi::Error::Success();
}

// Where each member of a team moves, from the cores the members run on (`where`, -1 where
// unknown) and the cores the process may use: a member on the core of an earlier member moves to
// the next allowed core that no member is on; -1 stays (no clash, or no core left).
inline std::vector<int> SpreadTargets(const std::vector<int>& where,
                                      const std::vector<int>& allowed) {
  std::vector<int> free;
  for (int cpu : allowed)
    if (std::find(where.begin(), where.end(), cpu) == where.end()) free.push_back(cpu);
  std::vector<int> target(where.size(), -1);
  size_t next = 0;
  for (size_t i = 0; i < where.size(); ++i) {
    const auto earlier = where.begin() + i;
    if (where[i] >= 0 && std::find(where.begin(), earlier, where[i]) != earlier &&
        next < free.size())
      target[i] = free[next++];
  }
  return target;
}

// OpenMP's threads sleep after some milliseconds without work, and the one that wakes them can
// find a woken thread queued on its own core while another core idles. A team whose members
// wait for each other at every step then shares one core until the scheduler moves a thread at
// a later tick: after a pause of 20 ms or more, a c1 LSTM forward pass took 17.0 ms (median;
// 25.7 at the 90th percentile) against 14.3 back to back, and calls of 0.05 ms took 4-11 ms.
// So before the first call after a pause (kTeamRested), one parallel region has each member
// note its core and yield until all have run (a member queued behind another then runs), and
// a member on the core of an earlier one moves to a free core (SpreadTargets), its allowed
// cores given back at once: no thread stays bound. JAXRNN_SPREAD_TEAM=off or on chooses, read
// at each call (on by default). Where given, `before` and `after` receive each member's core
// and `allowed` the number of cores each may run on afterwards.
constexpr auto kTeamRested = std::chrono::milliseconds(1);

inline void SpreadTeam(std::vector<int>* before = nullptr, std::vector<int>* after = nullptr,
                       std::vector<int>* allowed = nullptr) {
  const int team = omp_get_max_threads();
  cpu_set_t process;
  if (team < 2 || sched_getaffinity(0, sizeof(process), &process) != 0) return;
  std::vector<int> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &process)) cores.push_back(cpu);
  std::vector<std::atomic<int>> where(team);
  std::atomic<int> arrived{0};
  if (before) before->assign(team, -1);
  if (after) after->assign(team, -1);
  if (allowed) allowed->assign(team, 0);
#pragma omp parallel num_threads(team)
  {
    const int me = omp_get_thread_num(), n = omp_get_num_threads();
    where[me].store(sched_getcpu(), std::memory_order_relaxed);
    arrived.fetch_add(1, std::memory_order_acq_rel);
    while (arrived.load(std::memory_order_acquire) < n) sched_yield();
    std::vector<int> seen(n);
    for (int i = 0; i < n; ++i) seen[i] = where[i].load(std::memory_order_relaxed);
    const int target = SpreadTargets(seen, cores)[me];
    if (target >= 0) {
      cpu_set_t mine, one;
      CPU_ZERO(&one);
      CPU_SET(target, &one);
      if (sched_getaffinity(0, sizeof(mine), &mine) == 0 &&
          sched_setaffinity(0, sizeof(one), &one) == 0)  // moves this thread there now
        sched_setaffinity(0, sizeof(mine), &mine);
    }
    if (before) (*before)[me] = seen[me];
    if (after) (*after)[me] = sched_getcpu();
    cpu_set_t now;
    if (allowed && sched_getaffinity(0, sizeof(now), &now) == 0) (*allowed)[me] = CPU_COUNT(&now);
  }
}

// A call whose products take fewer floating-point operations than this (forward: 2·B·T·(D+H)
// times the gates' width) runs alone on the thread that makes it. At some 100 GFLOP/s a core that
// is under 40 µs of products, less than what handing the call to the worker thread and starting
// its team costs: tens of µs back to back, 1–2 ms once the team's threads sleep after a pause.
constexpr double kCallerThreadFlops = 4e6;

// Whether a call of shape s whose cell has `gates` gates runs on the calling thread: below
// kCallerThreadFlops, unless JAXRNN_SMALL_CALLS=team asks for the worker's team as larger calls
// have ("caller", or unset, takes the rule), so that either path can be tested on any size.
inline bool RunsOnCaller(const Shape& s, int64_t gates) {
  const double flops = 2.0 * s.B * s.T * (s.D + s.H) * gates * s.H;
  return EnvChoice("JAXRNN_SMALL_CALLS", "caller", "team") != 1 && flops < kCallerThreadFlops;
}

// Whether the last call's work ran on the worker thread (JaxrnnLastCallOnWorker, for the tests).
inline std::atomic<bool> last_call_on_worker{false};

// Runs `work` for a call of shape s whose cell has `gates` gates, its oneDNN products in bfloat16
// where `bf16_products` allows it: a small call alone on the calling thread (RunsOnCaller), any
// other on the worker thread, its team spread over the cores first after a pause (SpreadTeam).
// oneDNN's errors become the call's error.
inline ffi::Error Guarded(const char* cell, const Shape& s, int64_t gates, bool bf16_products,
                          std::function<void()> work) {
  try {
    if (RunsOnCaller(s, gates)) {
      OneThread one_thread;
      tl_bf16_products = bf16_products;
      work();
      last_call_on_worker.store(false, std::memory_order_relaxed);
      return ffi::Error::Success();
    }
    Worker::Get().Run([&] {
      static std::chrono::steady_clock::time_point last_end;  // only the worker thread runs this
      const bool spread = EnvChoice("JAXRNN_SPREAD_TEAM", "off", "on") != 0;
      if (spread && std::chrono::steady_clock::now() - last_end > kTeamRested) SpreadTeam();
      tl_bf16_products = bf16_products;
      work();
      last_end = std::chrono::steady_clock::now();
      last_call_on_worker.store(true, std::memory_order_relaxed);
    });
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string(cell) + " kernel (oneDNN): " + e.what());
  } catch (const std::invalid_argument& e) {
    return ffi::Error::InvalidArgument(std::string(cell) + " kernel: " + e.what());
  }
  return ffi::Error::Success();
}

// A result the caller does not differentiate comes as an empty buffer (the Python side's
// `_Wanted`): null, so that nothing is computed for it.
inline float* WantedOut(ffi::ResultBuffer<ffi::F32>& out) {
  return out->element_count() == 0 ? nullptr : out->typed_data();
}

// The input side x_t w_x + b_x (G wide) of every step run, one product over their rows, slot
// after slot: step t of slot r at row s.start[r] + t.
inline float* InputSide(Runner& run, const Shape& s, int64_t G, const float* xs, const float* w_x,
                        const float* b_x) {
  float* zx = run.scratch.Take(std::max<int64_t>(1, s.steps_run) * G);
  if (s.steps_run > 0)
    run.Once({s.steps_run, s.D, s.D}, StepsRun(run.scratch, s, s.D, xs), {s.D, G, G}, w_x, zx, G,
             b_x);
  return zx;
}

// The carries h_{t-1} each step run reads, (steps_run, H) slot after slot: the restart carry
// where a segment starts, h0 at the first step read, else the output of the step read before it.
inline float* StepCarriesRead(Scratch& scratch, const Shape& s, const float* h0,
                              const float* h_restart, const float* ys, bool reverse) {
  const int64_t H = s.H;
  float* read = scratch.Take(std::max<int64_t>(1, s.steps_run) * H);
  for (int64_t r = 0; r < s.B; ++r)
    for (int64_t t = 0; t < s.length[r]; ++t)
      std::memcpy(read + (s.start[r] + t) * H, CarryRead(s, r, t, reverse, h0, h_restart, ys),
                  H * sizeof(float));
  return read;
}

// sums[q H + j] += row[q H + j] for `gates` gates H apart and n units: a thread adds its units of
// the row of dL/dz it has just written to the bias gradient, while the row is still in L1. (A
// pass over the whole dL/dz after the steps read it back from memory: 50 MB twice for c3's GRU.)
JAXRNN_VECTOR static void AddToColumnSums(int64_t gates, int64_t n, int64_t H,
                                          const float* __restrict row, float* __restrict sums) {
  for (int64_t q = 0; q < gates; ++q)
    for (int64_t j = 0; j < n; ++j) sums[q * H + j] += row[q * H + j];
}

// Where the backward steps write dL/dz (G wide) step after step, in the order the backward pass
// reads them, a step's rows together: the rows of the slots that run it (all B up to kFewRows,
// whose slots keep their order and write zeros for a step not run). The steps come in chunks of
// about kChunkRows rows, which a product adds to the weight gradients while they are still in
// cache (ChunkedWeightGradient); unless every row is kept (`keep_all`, for dL/dxs), two chunks'
// rows are kept in turn, since a thread may start the next chunk while the other still reads
// this one. One step's rows are G floats apart.
class DzBySteps {
 public:
  static constexpr int64_t kChunkRows = 512;
  DzBySteps(Scratch& scratch, const Shape& s, int64_t G, bool reverse, bool keep_all)
      : G_(G), reverse_(reverse), T_(s.T), offset_(s.T), chunk_rows_(), few_(s.B <= kFewRows) {
    chunk_steps_ = std::clamp<int64_t>((kChunkRows + s.B - 1) / s.B, 1, std::max<int64_t>(1, s.T));
    const int64_t half = chunk_steps_ * s.B;
    int64_t at = 0, rows = 0;
    for (int64_t step = 0; step < s.T; ++step) {
      const int64_t t = TOf(step);
      if (step % chunk_steps_ == 0) {
        if (step > 0) chunk_rows_.push_back(rows);
        rows = 0;
        if (!keep_all) at = (step / chunk_steps_ % 2) * half;
      }
      offset_[t] = at;
      at += RowsAt(s, t);
      rows += RowsAt(s, t);
    }
    chunk_rows_.push_back(rows);
    const int64_t total = keep_all ? at : std::min<int64_t>(2, chunk_rows_.size()) * half;
    // and the rows past the last step's that a team's product planned for B rows, or for a
    // group's padded to B + 1 (RowGroups), reads with them
    dz_ = scratch.Take((total + s.B + 1) * G);
  }
  // The rows step t writes: every slot's where the slots keep their order, else the first
  // through[t], the slots that run it.
  int64_t RowsAt(const Shape& s, int64_t t) const { return few_ ? s.B : s.through[t]; }
  int64_t TOf(int64_t step) const { return reverse_ ? step : T_ - 1 - step; }
  float* Row(int64_t t, int64_t r) const { return dz_ + (offset_[t] + r) * G_; }
  const float* Step(int64_t t) const { return dz_ + offset_[t] * G_; }
  int64_t ChunkSteps() const { return chunk_steps_; }
  // Whether `step` (counted in the order the steps are read) ends its chunk, whose rows are then
  // whole.
  bool EndsChunk(int64_t step) const { return (step + 1) % chunk_steps_ == 0 || step + 1 == T_; }
  int64_t Chunks() const { return chunk_rows_.size(); }
  // Chunk c's rows, chunk_steps steps from the step read c * chunk_steps on.
  int64_t ChunkRows(int64_t c) const { return chunk_rows_[c]; }
  const float* Chunk(int64_t c) const { return Step(TOf(c * chunk_steps_)); }

 private:
  int64_t G_;
  bool reverse_;
  int64_t T_;
  std::vector<int64_t> offset_;  // by t: the row of its first slot
  std::vector<int64_t> chunk_rows_;
  bool few_;
  int64_t chunk_steps_;
  float* dz_;
};

// d_w (K, G) = Σ rowsᵀ dz over the steps run, added chunk by chunk (DzBySteps) inside the
// backward steps' parallel region while a chunk's rows of dz are in cache: each thread of the
// team (FewRowsTeam, as StepsBackward's) adds the product for its share of the K columns of the
// rows, which it copies itself (`row_of(t, r, k0, k1, out)` writes columns [k0, k1) of slot r's
// row at step t, a step it runs; a step not run has zeros in dz, and here). One product
// over all the steps after them read dL/dz back from memory (c1's LSTM: 16 MB): on the AMX Xeon,
// three alternating pairs of processes, c1's GRU (reset after) took 30.4-32.1 ms a training step
// that way and 27.1-28.4 in chunks of 512 rows, the LSTM 36.9-38.4 and 35.3-37.2; chunks of 128,
// 256, 1024 and 4096 rows were slower. Given `first_column` and `columns`, d_w (K, columns) takes
// only those columns of dz (G wide), a block of gates (the course's GRU multiplies r and u by
// h_{t-1}, c~ by r * h_{t-1}). Where Runner::Once packs its second factor (AVX-512) the products
// compute d_wᵀ and transpose it at the end: with rows the narrower factor, packing them costs
// less than packing dz (c3's LSTM packed dL/dz (8192, 2048) in 6.7 ms and multiplied in 29.9
// with bfloat16 products, 6.6 and 74.6 in float32; it packed the rows (8192, 640) in 2.2 and
// multiplied in 25.2, 70.8 in float32).
class ChunkedWeightGradient {
 public:
  ChunkedWeightGradient(Runner& run, const Shape& s, const DzBySteps& dz, int64_t K, int64_t G,
                        int64_t first_column = 0, int64_t columns = 0)
      : dz_(dz), K_(K), ld_(G), first_(first_column), G_(columns ? columns : G),
        transposed_(OncePacksSecondFactor()), members_(FewRowsTeam(s.H)) {
    const int team = members_.size();
    d_w_ = run.scratch.Zeros(K * G_);
    int64_t most = 0;  // the rows of the largest chunk
    for (int64_t c = 0; c < dz.Chunks(); ++c) most = std::max(most, dz.ChunkRows(c));
    OneThread one_thread;  // each product runs on the one thread that calls it
    for (int i = 0; i < team; ++i) {
      Member& m = members_[i];
      std::tie(m.k0, m.k1) = UnitsOf(i, team, K);
      const int64_t width = m.k1 - m.k0;
      size_t pad = 0, packed = 0, converted = 0;
      for (int64_t c = 0; c < dz.Chunks(); ++c) {
        const int64_t M = dz.ChunkRows(c);
        if (M == 0 || width == 0 || m.products.count(M)) continue;
        auto product = transposed_
            ? ProductFor({G_, M, ld_, true}, {M, width, width}, K, true, false, true)
            : ProductFor({width, M, width, true}, {M, G_, ld_}, G_, false, false, true);
        pad = std::max(pad, product->scratchpad.get_size());
        packed = std::max(packed, product->weights.get_size());
        if (product->src.get_data_type() == dt::bf16)
          converted = std::max(converted, product->src.get_size());
        m.products[M] = product;
      }
      m.rows = run.scratch.Take(std::max<int64_t>(1, most * width));
      m.pad = run.scratch.Take(pad / sizeof(float) + 1);
      m.packed = run.scratch.Take(packed / sizeof(float) + 8) + 4;  // see Runner::Weights
      m.converted = converted ? run.scratch.Take(converted / sizeof(float) + 1) : nullptr;
    }
  }

  // Thread i adds chunk c's product over its columns of the rows.
  template <typename RowOf>
  void Add(int i, int64_t c, const Shape& s, RowOf row_of) {
    Member& m = members_[i];
    const int64_t M = dz_.ChunkRows(c), width = m.k1 - m.k0;
    if (M == 0 || width == 0) return;
    const int64_t first_step = c * dz_.ChunkSteps();
    const int64_t end_step = std::min(s.T, first_step + dz_.ChunkSteps());
    float* row = m.rows;
    for (int64_t step = first_step; step < end_step; ++step) {
      const int64_t t = dz_.TOf(step);
      for (int64_t r = 0; r < dz_.RowsAt(s, t); ++r, row += width) {
        if (s.Runs(r, t))
          row_of(t, r, m.k0, m.k1, row);
        else
          std::memset(row, 0, width * sizeof(float));
      }
    }
    const Product& product = *m.products.at(M);
    const float* dz = dz_.Chunk(c) + first_;
    const View a = transposed_ ? View{G_, M, ld_, true} : View{width, M, width, true};
    const View b = transposed_ ? View{M, width, width} : View{M, G_, ld_};
    const float* a_data = transposed_ ? dz : m.rows;
    const float* b_data = transposed_ ? m.rows : dz;
    float* c_data = transposed_ ? d_w_ + m.k0 : d_w_ + m.k0 * G_;
    memory src(product.src, Engine(), const_cast<float*>(a_data));
    if (m.converted) {
      memory user(a.desc(), Engine(), const_cast<float*>(a_data));
      memory converted(product.src, Engine(), m.converted);
      dnnl::reorder(user, converted).execute(m.stream, user, converted);
      src = converted;
    }
    memory weights(b.desc(), Engine(), const_cast<float*>(b_data));
    if (product.weights != b.desc()) {
      memory packed(product.weights, Engine(), m.packed);
      dnnl::reorder(weights, packed).execute(m.stream, weights, packed);
      weights = packed;
    }
    const int64_t cols = transposed_ ? width : G_;
    memory dst(memory::desc({a.rows, cols}, dt::f32, Dims{transposed_ ? K_ : G_, 1}), Engine(),
               c_data);
    product.primitive.execute(m.stream, {{DNNL_ARG_SRC, src},
                                         {DNNL_ARG_WEIGHTS, weights},
                                         {DNNL_ARG_DST, dst},
                                         {DNNL_ARG_SCRATCHPAD,
                                          memory(product.scratchpad, Engine(), m.pad)}});
    m.stream.wait();
  }

  // d_w_x (D, G) and d_w_h (K - D, G), after every chunk has been added, their rows ld floats
  // apart (G where ld is 0); d_w_h null where D = K.
  void Finish(Scratch& scratch, int64_t D, float* d_w_x, float* d_w_h, int64_t ld = 0) const {
    ld = ld ? ld : G_;
    const float* d_w = d_w_;
    if (transposed_) {
      float* t = scratch.Take(K_ * G_);
      Transpose(d_w_, G_, K_, t);
      d_w = t;
    }
    for (int64_t k = 0; k < (d_w_h ? K_ : D); ++k)
      std::memcpy(k < D ? d_w_x + k * ld : d_w_h + (k - D) * ld, d_w + k * G_,
                  G_ * sizeof(float));
  }

 private:
  struct Member {
    int64_t k0 = 0, k1 = 0;
    std::map<int64_t, std::shared_ptr<Product>> products;  // by the chunk's rows
    float *rows = nullptr, *pad = nullptr, *packed = nullptr, *converted = nullptr;
    dnnl::stream stream{Engine()};
  };
  const DzBySteps& dz_;
  int64_t K_, ld_, first_, G_;  // dz's rows ld_ apart, G_ of their columns from first_ on
  bool transposed_;
  float* d_w_;  // (K, G_), or its transpose (G_, K)
  std::vector<Member> members_;
};

// dL/dxs (B, T, D) = dz w_xᵀ from every row of DzBySteps (kept whole), and zeros at the steps
// not run; nothing where d_xs is null.
inline void InputGradientsBySteps(Runner& run, const Shape& s, const DzBySteps& dz, int64_t G,
                                  const float* w_x, float* d_xs) {
  if (d_xs == nullptr) return;
  const int64_t D = s.D, T = s.T;
  PreferHugePages(d_xs, s.B * T * D * sizeof(float));
  int64_t rows = 0;
  for (int64_t t = 0; t < T; ++t) rows += dz.RowsAt(s, t);
  if (rows < s.B * T) std::memset(d_xs, 0, s.B * T * D * sizeof(float));
  if (rows == 0) return;
  float* by_steps = run.scratch.Take(rows * D);
  run.Once({rows, G, G}, dz.Chunk(0), {G, D, G, true}, w_x, by_steps, D);
  for (int64_t t = 0; t < T; ++t) {
    const float* from = by_steps + (dz.Step(t) - dz.Chunk(0)) / G * D;
    for (int64_t r = 0; r < dz.RowsAt(s, t); ++r)
      std::memcpy(d_xs + s.Row(r, t) * D, from + r * D, D * sizeof(float));
  }
}

// The forward steps of up to kFewRows sequences, a cell of G / H gates. Each thread copies its
// units' columns of every gate of w_h (H, G) into a panel; at each step, read forwards or
// backwards, it computes its units of z = y0 + h_{t-1} w_h into `z` (B, G), where
// `y0(t, &stride)` gives the rows added to the products (stride 0: one row for all), and calls
// `gates(step, t, b, first, n, h_read, h_next)` for every example, which writes the units
// [first, first + n) of example b's next carry into h_next (B, H). The carries of two steps are
// kept in turn, since a thread reads all of one while the others write their units of the next.
// Returns the last carry (B, H), valid until the Scratch ends.
template <typename Y0, typename StepGates>
const float* FewRowsForward(Scratch& scratch, const Shape& s, int64_t G, const float* h0,
                            const float* w_h, bool reverse, float* z, Y0 y0, StepGates gates) {
  const int64_t B = s.B, T = s.T, H = s.H, n_gates = G / H;
  float* h[2] = {scratch.Copy(h0, B * H), scratch.Take(B * H)};
  float* panels = scratch.Take(H * G);
  const int team = FewRowsTeam(H);
  InTeam(team, [&] {
    const auto [first, last] = UnitsOf(omp_get_thread_num(), team, H);
    const int64_t n = last - first;
    std::vector<const float*> w(n_gates);  // this thread's columns of each gate
    for (int64_t q = 0; q < n_gates; ++q)
      w[q] = Panel(panels + H * (q * H + first), H, n, w_h, G, q * H + first);
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? T - 1 - step : step;
      const float* h_read = h[step % 2];
      float* h_next = h[1 - step % 2];
      int64_t stride = 0;
      const float* rows = y0(t, &stride);
      for (int64_t q = 0; q < n_gates; ++q)
        FewRowsProduct(B, H, n, h_read, H, w[q], n, rows + q * H + first, stride,
                       z + q * H + first, G);
      for (int64_t b = 0; b < B; ++b) gates(step, t, b, first, n, h_read, h_next);
#pragma omp barrier
    }
  });
  return h[T % 2];
}

// The backward steps of up to kFewRows sequences. At each step, read backwards,
// `gates_backward(t, b, first, n)` writes example b's dL/dz for the units [first, first + n) (its
// row of `dz`, DzBySteps); after the threads meet, each computes its units of
// dL/dh_{t-1} = dz_t w_hᵀ into `dh` (B, H) and calls `after(t, b, first, n)` on them, and after
// the last step of each chunk of dz, `chunk_done(c, thread)`.
template <typename GatesBackward, typename After, typename ChunkDone>
void FewRowsBackward(Scratch& scratch, const Shape& s, int64_t G, const float* w_h, bool reverse,
                     const DzBySteps& dz, float* dh, GatesBackward gates_backward, After after,
                     ChunkDone chunk_done) {
  const int64_t B = s.B, T = s.T, H = s.H;
  const float* w_h_t = Transposed(scratch, H, G, w_h);
  float* panels = scratch.Take(G * H);
  const int team = FewRowsTeam(H);
  InTeam(team, [&] {
    const auto [first, last] = UnitsOf(omp_get_thread_num(), team, H);
    const int64_t n = last - first;
    const float* w = Panel(panels + G * first, G, n, w_h_t, H, first);
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? step : T - 1 - step;
      for (int64_t b = 0; b < B; ++b) gates_backward(t, b, first, n);
#pragma omp barrier
      FewRowsProduct(B, G, n, dz.Step(t), G, w, n, nullptr, 0, dh + first, H);
      for (int64_t b = 0; b < B; ++b) after(t, b, first, n);
      if (dz.EndsChunk(step)) chunk_done(step / dz.ChunkSteps(), omp_get_thread_num());
    }
  });
}

// The backward steps of any batch: FewRowsBackward up to kFewRows sequences, else in one
// parallel region as the forward team runs its steps (TeamProducts): at each step each thread
// computes its units' dL/dz, then multiplies the whole dz_t by its units' columns of w_hᵀ into
// its units of dL/dh_{t-1}, the only part of dL/dh its next step reads, a group of rows at a time
// (RowGroups) once the others have written their units of that group's rows (TeamProgress).
// `dz` and `dh` are in the slots' order (Shape), and the callbacks take slots; a step visits only
// the slots up to the last that runs it: the dL/dh of the others passes it unchanged, and their
// rows of dz are left unwritten. After the last step of each chunk of dz (DzBySteps), each
// thread calls `chunk_done(c, thread)`: it has then waited for every row of the chunk, and no
// thread writes the chunk kept in turn with it before every other has ended the chunk between.
template <typename GatesBackward, typename After, typename ChunkDone>
void StepsBackward(Runner& run, const Shape& s, int64_t G, const float* w_h, bool reverse,
                   const DzBySteps& dz, float* dh, GatesBackward gates_backward, After after,
                   ChunkDone chunk_done) {
  const int64_t B = s.B, T = s.T, H = s.H;
  if (B <= kFewRows)
    return FewRowsBackward(run.scratch, s, G, w_h, reverse, dz, dh, gates_backward, after,
                           chunk_done);
  const int team = FewRowsTeam(H);
  const int64_t groups = RowGroups(B, team, G * UnitsOf(0, team, H).second);
  const int64_t per_group = (B + groups - 1) / groups;
  // A step's rows of dz lie together (G floats apart): oneDNN 3.2 multiplies float32 in bfloat16
  // (AMX) only then; T·G floats apart, it took its float32 kernel (c3 LSTM backward steps,
  // summed over both threads: 110 ms either way; 34 ms from a copy of the step's rows).
  const TeamProducts products(run, per_group, G, H, team, w_h, G);
  float* dh_blocks = run.scratch.Take(per_group * groups * H);
  TeamProgress progress(team, groups);
  InTeam(team, [&] {
    const int i = omp_get_thread_num();
    TeamProducts::Member product(products, i, dh_blocks, per_group * groups);
    const int64_t first = product.first, n = product.n;
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? step : T - 1 - step;  // backwards through the reading order
      const int64_t slots = s.through[t];
      for (int64_t group = 0; group < groups; ++group) {
        for (int64_t r = group * per_group; r < std::min(slots, (group + 1) * per_group); ++r)
          gates_backward(t, r, first, n);
        progress.Done(i, group, step + 1);
      }
      for (int64_t group = 0; group < groups; ++group) {
        const int64_t r0 = group * per_group, r1 = std::min(slots, r0 + per_group);
        progress.Await(i, group, step + 1);
        if (r1 <= r0) continue;
        product(dz.Step(t) + r0 * G, r1 - r0, r0);
        for (int64_t r = r0; r < r1; ++r) {
          std::memcpy(dh + r * H + first, product.z_i + r * n, n * sizeof(float));
          after(t, r, first, n);
        }
      }
      if (dz.EndsChunk(step)) chunk_done(step / dz.ChunkSteps(), i);
    }
  });
}

// The start of both GRU kernels' forward parts: the last h is h0 until a step writes it, and
// where T = 0 nothing more (null is returned); else the outputs asked for in 2 MiB pages, and the
// input side of every step run, G = 3H wide (InputSide), which is returned. `candidates` (B, T, H)
// is the kernel's second saved array.
inline const float* GruForwardStart(Runner& run, const Shape& s, ffi::Buffer<ffi::F32> xs,
                                    ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> w_x,
                                    ffi::Buffer<ffi::F32> b_x, ffi::ResultBuffer<ffi::F32>& ys,
                                    ffi::ResultBuffer<ffi::F32>& h_last,
                                    ffi::ResultBuffer<ffi::F32>& gates,
                                    ffi::ResultBuffer<ffi::F32>& candidates, bool save) {
  const int64_t B = s.B, T = s.T, H = s.H, G = 3 * H;
  std::memcpy(h_last->typed_data(), h0.typed_data(), B * H * sizeof(float));
  if (T == 0) return nullptr;
  PreferHugePages(ys->typed_data(), B * T * H * sizeof(float));
  if (save) {
    PreferHugePages(gates->typed_data(), B * T * G * sizeof(float));
    PreferHugePages(candidates->typed_data(), B * T * H * sizeof(float));
  }
  return InputSide(run, s, G, xs.typed_data(), w_x.typed_data(), b_x.typed_data());
}

// Both GRU kernels' backward parts where no step runs: dL/dh passes through to h0, and the
// weights and biases (where wanted), the inputs and the restart carry get zeros.
inline void GruNoStepsBackward(const Shape& s, ffi::Buffer<ffi::F32> d_h_last,
                               ffi::ResultBuffer<ffi::F32>& d_xs,
                               ffi::ResultBuffer<ffi::F32>& d_h0,
                               ffi::ResultBuffer<ffi::F32>& d_w_x,
                               ffi::ResultBuffer<ffi::F32>& d_w_h,
                               ffi::ResultBuffer<ffi::F32>& d_b_x,
                               ffi::ResultBuffer<ffi::F32>& d_b_h,
                               ffi::ResultBuffer<ffi::F32>& d_h_restart) {
  const int64_t B = s.B, H = s.H, G = 3 * H;
  std::memcpy(d_h0->typed_data(), d_h_last.typed_data(), B * H * sizeof(float));
  if (WantedOut(d_w_h)) {
    std::memset(d_w_x->typed_data(), 0, s.D * G * sizeof(float));
    std::memset(d_w_h->typed_data(), 0, H * G * sizeof(float));
    std::memset(d_b_x->typed_data(), 0, G * sizeof(float));
    std::memset(d_b_h->typed_data(), 0, G * sizeof(float));
  }
  if (float* d = WantedOut(d_xs)) std::memset(d, 0, B * s.T * s.D * sizeof(float));
  std::memset(d_h_restart->typed_data(), 0, B * H * sizeof(float));
}

// The calls of both GRU kernels, from `Part`, a kernel's work on the examples of Shape s that its
// buffers hold: ys (B, T, H) and the last h (B, H), and with `save` the activations r, u, c~
// (B, T, 3H) and the candidates' recurrent side (B, T, H) that the backward pass reads; run on
// all the examples, or on each thread's part of them (ExampleParts).
template <auto Part>
ffi::Error GruForward(ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0,
                      ffi::Buffer<ffi::F32> w_x, ffi::Buffer<ffi::F32> w_h,
                      ffi::Buffer<ffi::F32> b_x, ffi::Buffer<ffi::F32> b_h,
                      ffi::Buffer<ffi::S32> lengths, ffi::Buffer<ffi::U8> starts,
                      ffi::Buffer<ffi::F32> h_restart, ffi::ResultBuffer<ffi::F32> ys,
                      ffi::ResultBuffer<ffi::F32> h_last, ffi::ResultBuffer<ffi::F32> gates,
                      ffi::ResultBuffer<ffi::F32> candidates, bool reverse, bool save,
                      bool bf16_products) {
  const Shape s = ShapeOf(xs, h0, lengths, starts);
  if (auto e = CheckWeights("gru", s, 3, w_x, w_h); e.failure()) return e;
  return Guarded("gru", s, 3, bf16_products, [&] {
    const auto bounds = ExampleParts(s, s.H * 3 * s.H, true);
    if (bounds.size() == 2)
      return Part(s, xs, h0, w_x, w_h, b_x, b_h, h_restart, ys, h_last, gates, candidates,
                  reverse, save);
    InParts(bounds, [&](int, int64_t first, int64_t n) {
      const PartOfBuffer<ffi::F32> part_xs(xs, first, n), part_h0(h0, first, n),
          part_restart(h_restart, first, n), part_ys(*ys, first, n),
          part_h_last(*h_last, first, n), part_gates(*gates, first, n),
          part_candidates(*candidates, first, n);
      Part(PartShape(s, first, n), *part_xs, *part_h0, w_x, w_h, b_x, b_h, *part_restart,
           *part_ys, *part_h_last, *part_gates, *part_candidates, reverse, save);
    });
  });
}

// The gradients of a sum of <cotangent, output> over ys and the last h, from what the forward
// call saved: `Part` on all the examples, or on each thread's part of them, the parts after the
// first adding their weight and bias gradients into the first's at the end.
template <auto Part>
ffi::Error GruBackward(ffi::Buffer<ffi::F32> xs, ffi::Buffer<ffi::F32> h0,
                       ffi::Buffer<ffi::F32> w_x, ffi::Buffer<ffi::F32> w_h,
                       ffi::Buffer<ffi::F32> ys, ffi::Buffer<ffi::F32> gates,
                       ffi::Buffer<ffi::F32> candidates, ffi::Buffer<ffi::F32> d_ys,
                       ffi::Buffer<ffi::F32> d_h_last, ffi::Buffer<ffi::S32> lengths,
                       ffi::Buffer<ffi::U8> starts, ffi::Buffer<ffi::F32> h_restart,
                       ffi::ResultBuffer<ffi::F32> d_xs, ffi::ResultBuffer<ffi::F32> d_h0,
                       ffi::ResultBuffer<ffi::F32> d_w_x, ffi::ResultBuffer<ffi::F32> d_w_h,
                       ffi::ResultBuffer<ffi::F32> d_b_x, ffi::ResultBuffer<ffi::F32> d_b_h,
                       ffi::ResultBuffer<ffi::F32> d_h_restart, bool reverse,
                       bool bf16_products) {
  const Shape s = ShapeOf(xs, h0, lengths, starts);
  if (auto e = CheckWeights("gru", s, 3, w_x, w_h); e.failure()) return e;
  return Guarded("gru", s, 3, bf16_products, [&] {
    const auto bounds = ExampleParts(s, s.H * 3 * s.H, true);
    if (bounds.size() == 2)
      return Part(s, xs, h0, w_x, w_h, ys, gates, candidates, d_ys, d_h_last, h_restart, d_xs,
                  d_h0, d_w_x, d_w_h, d_b_x, d_b_h, d_h_restart, reverse);
    // A later part's sums, in turn: d_w_x (D, G), d_w_h (H, G), d_b_x and d_b_h (G,).
    const int64_t D = s.D, H = s.H, G = 3 * H;
    const int64_t at[4] = {0, D * G, (D + H) * G, (D + H + 1) * G}, floats = (D + H + 2) * G;
    const int64_t parts = static_cast<int64_t>(bounds.size()) - 1;
    float* sums = PartSums(parts - 1, floats);
    ffi::ResultBuffer<ffi::F32>* summed[4] = {&d_w_x, &d_w_h, &d_b_x, &d_b_h};
    InParts(bounds, [&](int p, int64_t first, int64_t n) {
      const PartOfBuffer<ffi::F32> part_xs(xs, first, n), part_h0(h0, first, n),
          part_ys(ys, first, n), part_gates(gates, first, n),
          part_candidates(candidates, first, n), part_d_ys(d_ys, first, n),
          part_d_h_last(d_h_last, first, n), part_restart(h_restart, first, n),
          part_d_xs(*d_xs, first, n), part_d_h0(*d_h0, first, n),
          part_d_restart(*d_h_restart, first, n);
      float* own = p ? sums + (p - 1) * floats : nullptr;  // the first part writes the call's
      const PartOfBuffer<ffi::F32> part_d_w_x(*d_w_x, own ? own + at[0] : own),
          part_d_w_h(*d_w_h, own ? own + at[1] : own),
          part_d_b_x(*d_b_x, own ? own + at[2] : own),
          part_d_b_h(*d_b_h, own ? own + at[3] : own);
      Part(PartShape(s, first, n), *part_xs, *part_h0, w_x, w_h, *part_ys, *part_gates,
           *part_candidates, *part_d_ys, *part_d_h_last, *part_restart, *part_d_xs, *part_d_h0,
           *part_d_w_x, *part_d_w_h, *part_d_b_x, *part_d_b_h, *part_d_restart, reverse);
    });
    if (WantedOut(d_w_h) == nullptr) return;
    for (int64_t p = 1; p < parts; ++p)
      for (int q = 0; q < 4; ++q)
        AddInto((*summed[q])->typed_data(), sums + (p - 1) * floats + at[q],
                (*summed[q])->element_count());
  });
}

// The FFI signatures of both GRU kernels (gru.cc, reset after; gru_before.cc, reset before),
// which take the same arguments.
inline auto GruForwardSignature() {
  return ffi::Ffi::Bind()
      .Arg<ffi::Buffer<ffi::F32>>()  // xs
      .Arg<ffi::Buffer<ffi::F32>>()  // h0
      .Arg<ffi::Buffer<ffi::F32>>()  // w_x
      .Arg<ffi::Buffer<ffi::F32>>()  // w_h
      .Arg<ffi::Buffer<ffi::F32>>()  // b_x
      .Arg<ffi::Buffer<ffi::F32>>()  // b_h
      .Arg<ffi::Buffer<ffi::S32>>()  // lengths
      .Arg<ffi::Buffer<ffi::U8>>()   // starts
      .Arg<ffi::Buffer<ffi::F32>>()  // h_restart
      .Ret<ffi::Buffer<ffi::F32>>()  // ys
      .Ret<ffi::Buffer<ffi::F32>>()  // h_last
      .Ret<ffi::Buffer<ffi::F32>>()  // activations r, u, c~
      .Ret<ffi::Buffer<ffi::F32>>()  // h_c (reset after) or r * h_{t-1} (before)
      .Attr<bool>("reverse")
      .Attr<bool>("save")
      .Attr<bool>("bf16_products");
}

inline auto GruBackwardSignature() {
  return ffi::Ffi::Bind()
      .Arg<ffi::Buffer<ffi::F32>>()  // xs
      .Arg<ffi::Buffer<ffi::F32>>()  // h0
      .Arg<ffi::Buffer<ffi::F32>>()  // w_x
      .Arg<ffi::Buffer<ffi::F32>>()  // w_h
      .Arg<ffi::Buffer<ffi::F32>>()  // ys
      .Arg<ffi::Buffer<ffi::F32>>()  // activations
      .Arg<ffi::Buffer<ffi::F32>>()  // h_c or r * h_{t-1}
      .Arg<ffi::Buffer<ffi::F32>>()  // dL/dys
      .Arg<ffi::Buffer<ffi::F32>>()  // dL/dh_last
      .Arg<ffi::Buffer<ffi::S32>>()  // lengths
      .Arg<ffi::Buffer<ffi::U8>>()   // starts
      .Arg<ffi::Buffer<ffi::F32>>()  // h_restart
      .Ret<ffi::Buffer<ffi::F32>>()  // dL/dxs
      .Ret<ffi::Buffer<ffi::F32>>()  // dL/dh0
      .Ret<ffi::Buffer<ffi::F32>>()  // dL/dw_x
      .Ret<ffi::Buffer<ffi::F32>>()  // dL/dw_h
      .Ret<ffi::Buffer<ffi::F32>>()  // dL/db_x
      .Ret<ffi::Buffer<ffi::F32>>()  // dL/db_h
      .Ret<ffi::Buffer<ffi::F32>>()  // dL/dh_restart
      .Attr<bool>("reverse")
      .Attr<bool>("bf16_products");
}

}  // namespace jaxrnn_native
