"""Notebook 4. Vanishing and exploding gradients"""

from cells import code, md, setup

CELLS = [
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
- Clipping (optax, via `jaxrnn.make_optimizer(clip_value=…)` for the course's element-wise clip
  or `clip_norm=…` for the global norm) bounds every step, so training stays finite and can go
  on; global-norm clipping also keeps the gradient's direction. It does not make this badly
  scaled network learn well: the clipped losses stay near where they started.
  `make_train_step` refuses non-finite updates.
"""),
]
