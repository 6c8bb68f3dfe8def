"""Writes the notebooks from the cells below; with --execute, also runs them and keeps the outputs.

    .venv/bin/python notebooks/build.py             # write notebooks/*.ipynb without outputs
    .venv/bin/python notebooks/build.py --execute   # write, run at full size, save with outputs

Each notebook reads JAXRNN_NOTEBOOK_SIZE; "small" (as the tests set it) shrinks every experiment.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
{numpy}
import jaxrnn

%matplotlib inline
plt.rcParams["figure.dpi"] = 80
SMALL = os.environ.get("JAXRNN_NOTEBOOK_SIZE") == "small"  # the tests run every notebook small
"""


def setup(numpy: bool = True, extra: str = "") -> str:
    return SETUP.format(numpy="import numpy as np\n" if numpy else "") + extra


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


NOTATION = [
    md("""
# 1. Notation and data

The course writes a sequence as x⟨1⟩, x⟨2⟩, …, x⟨T_x⟩: **x⟨t⟩** is the element at time step t
and **T_x** the length. For the i-th training example it writes x^(i)⟨t⟩ and T_x^(i), since
examples have different lengths. The outputs are y⟨1⟩ … y⟨T_y⟩.

This notebook sets up that notation with the names shipped with jaxrnn: a vocabulary, one-hot
vectors, and the two ways of laying a batch out in memory.
"""),
    code(setup()),
    md("""
## The data: first names

`jaxrnn/data/names.txt` holds 5,163 first names, one per line. A name is a sequence of characters:
for "emma", x⟨1⟩ = "e", x⟨2⟩ = "m", …, and T_x = 4.
"""),
    code("""
from importlib import resources

names = resources.files("jaxrnn").joinpath("data/names.txt").read_text().split()
if SMALL:
    names = names[:500]
lengths = np.array([len(name) for name in names])
print(f"{len(names)} names, e.g. {names[:6]}")
print(f"T_x ranges from {lengths.min()} to {lengths.max()}, mean {lengths.mean():.2f}")
"""),
    md("""
## The vocabulary

A vocabulary numbers the tokens. `jaxrnn.text.build_vocab` always adds two special tokens:

- **⟨EOS⟩**, the end of a sentence. At character level it is the newline `"\\n"` itself, so a name
  is its letters followed by ⟨EOS⟩; a model that predicts ⟨EOS⟩ has decided the name is over.
- **⟨UNK⟩** (`"<unk>"`), which stands for every token the vocabulary does not hold.

With `order="alphabetical"`, 26 lower-case letters get the course's indices: `"\\n"` = 0,
`"a"` = 1 … `"z"` = 26, and ⟨UNK⟩ comes last.
"""),
    code("""
vocab = jaxrnn.text.build_vocab(names, order="alphabetical")
print("size n_x =", vocab.size)
print("tokens:", vocab.tokens)
print("eos_id =", vocab.eos_id, " unk_id =", vocab.unk_id)

ids = vocab.encode("emma", add_eos=True)
print("'emma' ->", ids.tolist(), "->", repr(vocab.decode(ids)))
print("'zoë'  ->", vocab.encode("zoë").tolist(), "(ë is not in the vocabulary: ⟨UNK⟩)")
"""),
    md("""
## One-hot vectors

Each x⟨t⟩ is a one-hot vector of size n_x = |vocabulary|: all zeros except a 1 at the token's
index. A name of T_x characters becomes a T_x × n_x matrix. The language models in jaxrnn feed
x⟨1⟩ = 0 (the zero vector) and use input id −1 for it: `jax.nn.one_hot` of −1 is all zeros.
"""),
    code("""
name = "christopher"
ids = vocab.encode(name, add_eos=True)
one_hot = jax.nn.one_hot(ids, vocab.size)  # (T_x, n_x)
print(one_hot.shape, "row sums:", one_hot.sum(axis=1).tolist())
print("one_hot(-1) is the zero vector:", jax.nn.one_hot(-1, vocab.size).sum() == 0)
"""),
    md("""
## Batches: (n_x, m, T_x) against (m, T_x, n_x)

The course stacks m examples features first, **x of shape (n_x, m, T_x)**: x[:, i, t] is
x^(i)⟨t⟩, a column vector, and the weights multiply from the left (W_ax x⟨t⟩). jaxrnn puts one
example per row, **xs of shape (m, T_x, n_x)**: xs[i, t] is x^(i)⟨t⟩ as a row vector, and the
weights multiply from the right (x⟨t⟩ W_axᵀ). One transpose converts between them.

Names have different lengths, so a batch is right-padded to the longest (`pad_batch`) and the
true lengths travel beside it; `jaxrnn.unroll` and the losses never read the padded steps.
"""),
    code("""
batch = names[:4]
ids, lengths_b = jaxrnn.text.pad_batch(vocab.encode_lines(batch), pad_id=vocab.eos_id)
xs = jax.nn.one_hot(ids, vocab.size)  # jaxrnn: (m, T_x, n_x)
x_course = jnp.transpose(xs, (2, 0, 1))  # course: (n_x, m, T_x)
print("names:", batch, "lengths (with ⟨EOS⟩):", lengths_b.tolist())
print("jaxrnn xs:", xs.shape, "  course x:", x_course.shape)
print("same x^(2)⟨3⟩:", bool(jnp.all(xs[2, 3] == x_course[:, 2, 3])))
"""),
    code("""
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1.4, 1]})
ax1.imshow(one_hot.T, cmap="Greys", aspect="auto", interpolation="nearest")
ax1.set_yticks(range(vocab.size), [repr(t)[1:-1] for t in vocab.tokens], fontsize=6)
ax1.set_xticks(range(len(name) + 1), [f"⟨{t}⟩" for t in range(1, len(name) + 2)], fontsize=7)
ax1.set_xlabel(f"time step t ({name!r} + ⟨EOS⟩)")
ax1.set_title("one-hot x⟨t⟩, one column per step")
ax2.hist(lengths, bins=np.arange(lengths.min(), lengths.max() + 2) - 0.5, color="tab:blue")
ax2.set_xlabel("T_x (letters)")
ax2.set_ylabel("names")
ax2.set_title("lengths of the names")
fig.tight_layout()
plt.show()
"""),
    md("""
## Takeaways

- x⟨t⟩ is the t-th element of a sequence, T_x its length; each example has its own T_x^(i), so
  a batch is padded and its lengths are kept beside it.
- The course lays a batch out as (n_x, m, T_x) with column vectors; jaxrnn as (m, T_x, n_x) with
  row vectors. They hold the same numbers: `jnp.transpose(xs, (2, 0, 1))`.
- A vocabulary maps tokens to indices; ⟨EOS⟩ (the newline, at character level) ends every name
  and ⟨UNK⟩ stands for anything unseen. A token enters the network as a one-hot vector of size
  n_x = |vocabulary|, and the zero vector (id −1) stands for "no input yet".
"""),
]

FORWARD = [
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

X64 = 'jax.config.update("jax_enable_x64", True)  # compare to ~1e-15, not ~1e-6\n'

BPTT = [
    md("""
# 3. Backpropagation through time

The course derives the RNN's backward pass by hand, one step at a time, from the last step back
to the first. With JAX the backward pass is `jax.grad` through the scan of the forward pass. Here
we check that the two give the same numbers, on the course's shapes (n_x, m, T_x), in float64.
"""),
    code(setup(extra=X64)),
    md("""
## The forward pass and a loss

`jaxrnn.course.rnn_forward` takes the course's arguments and returns the course's caches. As in
the assignment, the gradient from above is a given da = ∂L/∂a⟨t⟩ for every t; the loss with that
gradient is L = Σ_t Σ da⟨t⟩ ⊙ a⟨t⟩.
"""),
    code("""
from jaxrnn import course

rng = np.random.default_rng(0)
n_x, n_a, n_y, m, T_x = 3, 5, 2, 10, (4 if SMALL else 12)
shapes = {"Wax": (n_a, n_x), "Waa": (n_a, n_a), "Wya": (n_y, n_a), "ba": (n_a, 1), "by": (n_y, 1)}
parameters = {key: 0.5 * rng.normal(size=shape) for key, shape in shapes.items()}
x, a0 = rng.normal(size=(n_x, m, T_x)), rng.normal(size=(n_a, m))
da = rng.normal(size=(n_a, m, T_x))

a, y_pred, caches = course.rnn_forward(x, a0, parameters)
print("a:", a.shape, " y_pred:", y_pred.shape, " caches:", len(caches[0]), "steps")
"""),
    md("""
## The hand-derived backward pass, in numpy

For one step, with a⟨t⟩ = tanh(z) and z = W_ax x⟨t⟩ + W_aa a⟨t−1⟩ + b_a, and ∂L/∂a⟨t⟩ the total
gradient reaching a⟨t⟩:

- dz = (1 − a⟨t⟩²) ⊙ ∂L/∂a⟨t⟩  (tanh′ = 1 − tanh²)
- ∂L/∂x⟨t⟩ = W_axᵀ dz,  ∂L/∂a⟨t−1⟩ = W_aaᵀ dz
- ∂L/∂W_ax += dz x⟨t⟩ᵀ,  ∂L/∂W_aa += dz a⟨t−1⟩ᵀ,  ∂L/∂b_a += Σ_examples dz

Through time, the gradient reaching a⟨t⟩ is the one from above, da⟨t⟩, plus the one coming back
from step t + 1. The loop runs from t = T_x down to 1.
"""),
    code("""
def hand_rnn_backward(da, x, a, a0, p):
    n_x, m, T_x = x.shape
    g = {"dx": np.zeros_like(x), "dWax": 0.0, "dWaa": 0.0, "dba": 0.0}
    da_next = np.zeros_like(a0)  # gradient arriving from step t + 1
    for t in reversed(range(T_x)):
        a_prev = a[:, :, t - 1] if t > 0 else a0
        dz = (1 - a[:, :, t] ** 2) * (da[:, :, t] + da_next)
        g["dx"][:, :, t] = p["Wax"].T @ dz
        g["dWax"] = g["dWax"] + dz @ x[:, :, t].T
        g["dWaa"] = g["dWaa"] + dz @ a_prev.T
        g["dba"] = g["dba"] + dz.sum(axis=1, keepdims=True)
        da_next = p["Waa"].T @ dz
    g["da0"] = da_next
    return g


hand = hand_rnn_backward(da, x, a, a0, parameters)
"""),
    md("""
## The same gradients from `jax.grad`

`course.rnn_backward` is the pullback of `jax.vjp` through jaxrnn's forward pass. We also call
`jax.grad` ourselves, on `jaxrnn.unroll` with jaxrnn's layout: xs = x transposed to
(m, T_x, n_x), w_x = W_axᵀ, w_h = W_aaᵀ.
"""),
    code("""
via_course = course.rnn_backward(da, caches)

cell = jaxrnn.rnn()
rnn_params = jaxrnn.RNNParams(
    w_x=parameters["Wax"].T,
    w_h=parameters["Waa"].T,
    b_x=parameters["ba"][:, 0],
    b_h=np.zeros(n_a),
)
to_rows = (1, 2, 0)  # (n_x, m, T_x) -> (m, T_x, n_x)


def loss(params, xs, a0_rows):
    _, a_rows = jaxrnn.unroll(cell, params, xs, a0_rows)  # (m, T_x, n_a)
    return jnp.sum(a_rows * da.transpose(to_rows))


g_params, g_xs, g_a0 = jax.grad(loss, argnums=(0, 1, 2))(rnn_params, x.transpose(to_rows), a0.T)
via_grad = {
    "dx": np.asarray(g_xs).transpose(2, 0, 1),
    "da0": np.asarray(g_a0).T,
    "dWax": np.asarray(g_params.w_x).T,
    "dWaa": np.asarray(g_params.w_h).T,
    "dba": np.asarray(g_params.b_x)[:, None],
}
print(f"{'':6}{'|hand − course|':>18}{'|hand − jax.grad|':>20}{'max |hand|':>12}")
for key in ["dx", "da0", "dWax", "dWaa", "dba"]:
    d_course = np.abs(hand[key] - via_course[key]).max()
    d_grad = np.abs(hand[key] - via_grad[key]).max()
    print(f"{key:6}{d_course:18.2e}{d_grad:20.2e}{np.abs(hand[key]).max():12.3f}")
"""),
    md("""
## The LSTM too

The course's LSTM backward pass has many more equations (one per gate). `course.lstm_backward`
gets all of them from `jax.vjp`; we check it against `jax.grad` of `jaxrnn.unroll` with an LSTM
cell, whose gate blocks are in the order (Γ_u, Γ_f, c̃, Γ_o) and act on [a⟨t−1⟩; x⟨t⟩].
"""),
    code("""
gates = ["Wi", "Wf", "Wc", "Wo"]  # Γ_u, Γ_f, c̃, Γ_o: jaxrnn's order
lstm_parameters = {k: 0.5 * rng.normal(size=(n_a, n_a + n_x)) for k in gates}
lstm_parameters |= {"b" + k[1]: 0.5 * rng.normal(size=(n_a, 1)) for k in gates}
lstm_parameters |= {"Wy": rng.normal(size=(n_y, n_a)), "by": rng.normal(size=(n_y, 1))}
a_l, y_l, c_l, lstm_caches = course.lstm_forward(x, a0, lstm_parameters)
via_course = course.lstm_backward(da, lstm_caches)

lstm_cell = jaxrnn.lstm(forget_bias=0.0)
lstm_params = jaxrnn.LSTMParams(
    w_x=np.concatenate([lstm_parameters[k][:, n_a:].T for k in gates], axis=1),
    w_h=np.concatenate([lstm_parameters[k][:, :n_a].T for k in gates], axis=1),
    b_x=np.concatenate([lstm_parameters["b" + k[1]][:, 0] for k in gates]),
    b_h=np.zeros(4 * n_a),
)


def lstm_loss(params, xs):
    carry0 = jaxrnn.LSTMState(h=jnp.asarray(a0.T), c=jnp.zeros((m, n_a)))
    _, a_rows = jaxrnn.unroll(lstm_cell, params, xs, carry0)
    return jnp.sum(a_rows * da.transpose(to_rows))


g_params, g_xs = jax.grad(lstm_loss, argnums=(0, 1))(lstm_params, x.transpose(to_rows))
print("dx:", np.abs(via_course["dx"] - np.asarray(g_xs).transpose(2, 0, 1)).max())
for i, k in enumerate(gates):
    block = slice(i * n_a, (i + 1) * n_a)
    dW = np.concatenate([g_params.w_h[:, block].T, g_params.w_x[:, block].T], axis=1)
    print(f"d{k}:", np.abs(via_course["d" + k] - dW).max())
"""),
    md("""
## How far back does the gradient reach?

If the loss reads only the last step (da⟨t⟩ = 0 for t < T_x), everything the earlier steps
receive has travelled back through the recurrence, multiplied at each step by W_aaᵀ and tanh′.
"""),
    code("""
T_long = 20 if SMALL else 60
x_long = rng.normal(size=(n_x, m, T_long))
a_long, _, _ = course.rnn_forward(x_long, a0, parameters)
da_last = np.zeros((n_a, m, T_long))
da_last[:, :, -1] = 1.0
g_last = hand_rnn_backward(da_last, x_long, a_long, a0, parameters)
g_all = hand_rnn_backward(np.ones((n_a, m, T_long)), x_long, a_long, a0, parameters)

steps = np.arange(1, T_long + 1)
fig, ax = plt.subplots(figsize=(6.5, 3.6))
ax.semilogy(steps, np.linalg.norm(g_last["dx"], axis=(0, 1)), "o-", label="loss at T_x only")
ax.semilogy(steps, np.linalg.norm(g_all["dx"], axis=(0, 1)), "s-", label="loss at every step")
ax.set_xlabel("time step t")
ax.set_ylabel("‖∂L/∂x⟨t⟩‖")
ax.set_title("Gradient reaching each input (basic RNN)")
ax.legend()
fig.tight_layout()
plt.show()
"""),
    md("""
## Takeaways

- Backpropagation through time is the chain rule run backwards along the scan: at each step the
  gradient from above, da⟨t⟩, is added to the one coming back from step t + 1, then pushed through
  tanh′ and the shared weights, whose gradients are summed over all steps.
- `jax.grad` through `jaxrnn.unroll` gives the hand-derived RNN gradients to rounding (~1e-16 in
  float64), and `jaxrnn.course.rnn_backward`/`lstm_backward` return them in the course's layout and
  dict keys, with no backward equations written by hand.
- A gradient reaching step t from a loss at step T_x has been multiplied T_x − t times by the
  recurrent Jacobian: it shrinks (or grows) geometrically with distance, the subject of the next
  notebook.
"""),
]

VANISHING = [
    md("""
# 4. Vanishing and exploding gradients

From a loss at the last step, ∂L/∂x⟨t⟩ is a product of T_x − t recurrent Jacobians
∂a⟨k⟩/∂a⟨k−1⟩. If they shrink vectors, the gradient **vanishes** geometrically with distance and
the network cannot learn long-range dependencies; if they stretch them, it **explodes**. Gated
cells (GRU, LSTM) were designed so that the memory c⟨t⟩ can pass through many steps almost
unchanged; gradient clipping is the cure the course gives for exploding gradients.
"""),
    code(setup()),
    md("""
## ∂L/∂x⟨t⟩ against distance from the loss

One loss at the last step, L = Σ a⟨T_x⟩, on random inputs; `jax.grad` with respect to the whole
input sequence gives ∂L/∂x⟨t⟩ for every t at once. Default initialisation for each cell: orthogonal
recurrent weights, zero biases except the LSTM's forget gate (+1).
"""),
    code("""
n_x, n_a, m = 16, 64, 32
T = 40 if SMALL else 100
xs = jax.random.normal(jax.random.key(1), (m, T, n_x))
cells = {"RNN (tanh)": jaxrnn.rnn(), "GRU": jaxrnn.gru(), "LSTM": jaxrnn.lstm()}


def input_gradient_norms(cell, key):
    params = cell.init(key, input_size=n_x, hidden_size=n_a)

    def loss(xs):
        _, a = jaxrnn.unroll(cell, params, xs)
        return jnp.sum(a[:, -1])

    g = jax.grad(loss)(xs)  # (m, T, n_x)
    return jnp.linalg.norm(g, axis=-1).mean(axis=0)  # mean over examples of ‖∂L/∂x⟨t⟩‖


distance = T - 1 - np.arange(T)  # steps between x⟨t⟩ and the loss
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for name, cell in cells.items():
    norms = input_gradient_norms(cell, jax.random.key(0))
    ax.semilogy(distance, norms, label=name)
    print(f"{name:10} ‖∂L/∂x⟨t⟩‖ at distance 0: {norms[-1]:.1e}, at {T - 1}: {norms[0]:.1e}")
ax.set_xlabel("distance from the loss, T_x − t")
ax.set_ylabel("‖∂L/∂x⟨t⟩‖ (mean over examples)")
ax.set_title("How far back the gradient reaches")
ax.legend()
fig.tight_layout()
plt.show()
"""),
    md("""
## Exploding gradients, and clipping

Now a basic RNN whose recurrent weights are scaled up, trained by plain SGD with a large learning
rate on a toy regression (predict the sum of the inputs from a⟨T_x⟩). One oversized gradient step
throws the weights far away, the next gradients are larger still, and within a few steps the loss
overflows to ∞/NaN.

`jaxrnn.make_optimizer` puts optax clipping before the optimizer: `clip_value` is the course's
element-wise `clip` (every entry into [−v, v]), `clip_norm` rescales the whole gradient when its
global L2 norm exceeds the threshold (keeping its direction). `jaxrnn.make_train_step` reports a
non-finite loss or gradient in `metrics.finite` and does not apply that update.
"""),
    code("""
n_x, n_a, m = 4, 32, 64
T, steps = (20, 40) if SMALL else (40, 150)
cell = jaxrnn.rnn()
init = cell.init(jax.random.key(0), input_size=n_x, hidden_size=n_a)
init = init._replace(w_h=3.0 * init.w_h)  # recurrent weights far too large
head = jaxrnn.dense_init(jax.random.key(2), n_a, 1)
xs = jax.random.normal(jax.random.key(3), (m, T, n_x))
ys = xs.sum(axis=(1, 2))[:, None] / np.sqrt(T * n_x)


def loss_fn(params, xs, ys):
    rnn_params, head = params
    last, _ = jaxrnn.unroll(cell, rnn_params, xs)
    return jnp.mean((jaxrnn.dense(head, last) - ys) ** 2)


def train(optimizer):
    step = jaxrnn.make_train_step(loss_fn, optimizer)
    params = (init, head)
    opt_state = optimizer.init(params)
    losses, finite = [], []
    for _ in range(steps):
        params, opt_state, metrics = step(params, opt_state, xs, ys)
        losses.append(float(metrics.loss))
        finite.append(bool(metrics.finite))
    return np.array(losses), np.array(finite)


lr = 2.0
runs = {
    "no clipping": train(jaxrnn.make_optimizer(lr, name="sgd")),
    "element-wise, clip_value=0.1": train(jaxrnn.make_optimizer(lr, name="sgd", clip_value=0.1)),
    "global norm, clip_norm=0.5": train(jaxrnn.make_optimizer(lr, name="sgd", clip_norm=0.5)),
}
for name, (losses, finite) in runs.items():
    first_bad = "never" if finite.all() else f"at step {np.argmin(finite)}"
    print(f"{name:30} final loss {losses[-1]:.3g}; non-finite: {first_bad}")
"""),
    code("""
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for name, (losses, finite) in runs.items():
    shown = np.where(np.isfinite(losses), losses, np.nan)
    (line,) = ax.semilogy(shown, label=name)
    if not finite.all():
        bad = np.argmin(finite)
        ax.axvline(bad, color=line.get_color(), ls="--", lw=1)
        ax.annotate("loss → NaN", (bad, ax.get_ylim()[1]), color=line.get_color(), va="top")
ax.set_xlabel("SGD step")
ax.set_ylabel("training loss (MSE)")
ax.set_title(f"Basic RNN, W_aa × 3, learning rate {lr}")
ax.legend()
fig.tight_layout()
plt.show()
"""),
    md("""
## Takeaways

- The gradient from a loss at step T_x reaches x⟨t⟩ through T_x − t recurrent Jacobians, so its
  size changes geometrically with distance: a straight line on a log scale. Gates alone do not
  fix it: at its default initialisation the GRU's update gate is about ½, which halves the path
  through the memory at every step. The LSTM, whose forget gate starts near 1 (`forget_bias=1`),
  carries the gradient orders of magnitude further back.
- Vanishing gradients make long-range dependencies hard to learn; exploding ones are more
  visible: a few huge steps, then ∞ and NaN.
- Clipping does not make this badly scaled network learn well (the clipped losses stay near
  where they started), but it bounds every step, so training stays finite and can go on.
- Clipping (optax, via `jaxrnn.make_optimizer(clip_value=…)` for the course's element-wise clip
  or `clip_norm=…` for the global norm) bounds every step and keeps training finite; global-norm
  clipping also keeps the gradient's direction. `make_train_step` refuses non-finite updates.
"""),
]

NOTEBOOKS = {
    "01_notation_and_data.ipynb": NOTATION,
    "02_rnn_forward_pass.ipynb": FORWARD,
    "03_backprop_through_time.ipynb": BPTT,
    "04_vanishing_exploding_gradients.ipynb": VANISHING,
}

KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=NOTEBOOKS[name])
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"  # stable ids: rebuilds diff cleanly
    return nb


def execute(nb: nbformat.NotebookNode, env: dict | None = None, timeout: int = 600):
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        resources={"metadata": {"path": str(HERE)}},
    )
    saved = os.environ.copy()
    os.environ.update(env or {})
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run at full size, keep outputs")
    parser.add_argument("names", nargs="*", help="only these notebooks (default: all)")
    args = parser.parse_args()
    for name in args.names or NOTEBOOKS:
        nb = build(name)
        if args.execute:
            start = time.perf_counter()
            os.environ.pop("JAXRNN_NOTEBOOK_SIZE", None)  # full size
            execute(nb)
            for cell in nb.cells:
                cell.metadata.pop("execution", None)  # timestamps: noise in diffs
            print(f"{name}: executed in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    main()
