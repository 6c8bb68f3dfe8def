"""Notebook 2. The RNN forward pass"""

from cells import code, md, setup

CELLS = [
    md("""
# 2. The RNN forward pass

One step of the basic RNN, in the course's notation:

a⟨t⟩ = tanh(W_aa a⟨t−1⟩ + W_ax x⟨t⟩ + b_a),  ŷ⟨t⟩ = softmax(W_ya a⟨t⟩ + b_y)

The same function is applied at every step with the same weights. Here we write it as a step
function, lift it over time with `jax.lax.scan`, compare it with `jaxrnn.unroll`, and time it.
"""),
    code(setup(numpy=False)),
    md("""
## One step: `cell.step(params, carry, x)`

`jaxrnn.rnn()` is a cell: pure functions `init`, `init_carry` and `step`. The weights are row
vectors' weights: `w_x` = W_axᵀ (n_x, n_a), `w_h` = W_aaᵀ (n_a, n_a), and two biases whose sum
is the course's b_a.
"""),
    code("""
n_x, n_a, m, T_x = 3, 5, 4, 6
cell = jaxrnn.rnn()
params = cell.init(jax.random.key(0), input_size=n_x, hidden_size=n_a)
print({name: value.shape for name, value in params._asdict().items()})

xs = jax.random.normal(jax.random.key(1), (m, T_x, n_x))  # (m, T_x, n_x)
a0 = cell.init_carry(params)  # a⟨0⟩ = 0, shape (n_a,)
a1, y1 = cell.step(params, a0, xs[0, 0])
by_hand = jnp.tanh(params.w_h.T @ a0 + params.w_x.T @ xs[0, 0] + params.b_x + params.b_h)
print("a⟨1⟩ =", a1, " equals tanh(W_aa a⟨0⟩ + W_ax x⟨1⟩ + b_a):", jnp.allclose(a1, by_hand))
"""),
    md("""
## Over time: `tf.scan` becomes `jax.lax.scan`

The slides loop with `tf.scan(fn, elems, initializer)`: `fn(previous, x)` returns the next
accumulated value. `jax.lax.scan(f, init, xs)` is the same idea with one difference: `f(carry, x)`
returns a pair `(next carry, output for this step)`, and scan stacks the outputs. It scans over
the leading axis, so we move time to the front.
"""),
    code("""
def rnn_step(a_prev, x_t):
    a_t = jnp.tanh(a_prev @ params.w_h + x_t @ params.w_x + params.b_x + params.b_h)
    return a_t, a_t  # (carry for the next step, output of this step)


def rnn_forward(xs_one):  # xs_one: (T_x, n_x), one example
    a_last, a_all = jax.lax.scan(rnn_step, jnp.zeros(n_a), xs_one)
    return a_all


a_scan = rnn_forward(xs[0])
a_loop, a_prev = [], jnp.zeros(n_a)
for t in range(T_x):  # the course's explicit loop
    a_prev, _ = rnn_step(a_prev, xs[0, t])
    a_loop.append(a_prev)
print("scan == Python loop:", jnp.allclose(a_scan, jnp.stack(a_loop), atol=1e-6))
"""),
    md("""
`jaxrnn.unroll(cell, params, xs)` is that scan for a whole batch (m, T_x, n_x); it returns the
last carry and every a⟨t⟩. `jax.vmap` turns the one-example function into a batched one, and gives
the same numbers.
"""),
    code("""
a_last, a_all = jaxrnn.unroll(cell, params, xs)
print("unroll:", a_all.shape, " last carry:", a_last.shape)
print("vmap(scan) == unroll:", jnp.allclose(jax.vmap(rnn_forward)(xs), a_all, atol=1e-6))
print("last carry == a⟨T_x⟩:", jnp.allclose(a_last, a_all[:, -1]))
"""),
    md("""
## The stacked form W_a = [W_aa | W_ax]

The course also writes the step with one matrix: W_a = [W_aa | W_ax] of shape (n_a, n_a + n_x),
acting on the stacked vector [a⟨t−1⟩; x⟨t⟩], so a⟨t⟩ = tanh(W_a [a⟨t−1⟩; x⟨t⟩] + b_a).
"""),
    code("""
W_aa, W_ax = params.w_h.T, params.w_x.T  # column-vector (course) weights
W_a = jnp.concatenate([W_aa, W_ax], axis=1)  # (n_a, n_a + n_x)
b_a = params.b_x + params.b_h
a_prev, x_t = a_all[0, 2], xs[0, 3]
stacked = jnp.tanh(W_a @ jnp.concatenate([a_prev, x_t]) + b_a)
print("W_a:", W_a.shape, " stacked form == a⟨4⟩:", jnp.allclose(stacked, a_all[0, 3], atol=1e-6))
"""),
    md("""
## jit, and what it costs to compile

`jax.jit` compiles the whole forward pass into one XLA program. A Python loop run eagerly
dispatches every step separately; the jitted scan runs the loop inside XLA. (The times below are
from this machine; the ratios matter, not the numbers.)
"""),
    code("""
import time

n_x, n_a, m = 8, 64, 16
T = 50 if SMALL else 200
params = cell.init(jax.random.key(0), input_size=n_x, hidden_size=n_a)
xs = jax.random.normal(jax.random.key(1), (m, T, n_x))


def eager_loop(params, xs):
    a = jnp.zeros((xs.shape[0], n_a))
    for t in range(xs.shape[1]):
        a, _ = cell.step(params, a, xs[:, t])
    return a


def timed(fn, repeat=3):
    fn()  # warm up (and compile)
    start = time.perf_counter()
    for _ in range(repeat):
        jax.block_until_ready(fn())
    return (time.perf_counter() - start) / repeat


scan_jit = jax.jit(lambda p, x: jaxrnn.unroll(cell, p, x)[0])
t_loop = timed(lambda: eager_loop(params, xs))
t_scan = timed(lambda: scan_jit(params, xs), repeat=20)
print(f"T={T}: eager Python loop {1e3 * t_loop:.1f} ms, jitted scan {1e3 * t_scan:.3f} ms")
print("same result:", jnp.allclose(eager_loop(params, xs), scan_jit(params, xs), atol=1e-5))
"""),
    md("""
A Python loop *inside* `jax.jit` is unrolled while tracing: the program holds T copies of the
step, so compiling takes longer as T grows. `lax.scan` compiles the step once, whatever T is.
"""),
    code("""
Ts = [5, 10, 20, 40] if SMALL else [10, 25, 50, 100, 200, 400]


def compile_seconds(fn, T):
    x = jnp.zeros((m, T, n_x))
    start = time.perf_counter()
    jax.jit(fn).lower(params, x).compile()
    return time.perf_counter() - start


scan_times = [compile_seconds(lambda p, x: jaxrnn.unroll(cell, p, x)[0], T) for T in Ts]
loop_times = [compile_seconds(eager_loop, T) for T in Ts]
for T, s, u in zip(Ts, scan_times, loop_times, strict=True):
    print(f"T={T:4d}  scan {1e3 * s:7.1f} ms   unrolled loop {1e3 * u:8.1f} ms")

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(Ts, scan_times, "o-", label="lax.scan (jaxrnn.unroll)")
ax.plot(Ts, loop_times, "s-", label="Python loop under jit (unrolled)")
ax.set_xlabel("sequence length T")
ax.set_ylabel("compile time (s)")
ax.set_title("Compile time against T")
ax.legend()
fig.tight_layout()
plt.show()
"""),
    md("""
## Takeaways

- An RNN is one step function a⟨t⟩ = tanh(W_aa a⟨t−1⟩ + W_ax x⟨t⟩ + b_a) applied at every step
  with shared weights; in jaxrnn it is `cell.step(params, carry, x) -> (carry, y)`.
- `jax.lax.scan(f, init, xs)` is the slides' `tf.scan`, with `f` returning (carry, output);
  `jaxrnn.unroll` is that scan over a batch, and `jax.vmap` of the one-example scan agrees with it.
- W_aa a + W_ax x equals W_a [a; x] with W_a = [W_aa | W_ax]: the two forms are one computation.
- Under `jax.jit`, a scan compiles in the same time for any T and runs far faster than an eager
  Python loop; a Python loop inside `jit` is unrolled and its compile time grows with T.
"""),
]
