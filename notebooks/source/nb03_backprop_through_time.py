"""Notebook 3. Backpropagation through time"""

from cells import code, md, setup

X64 = 'jax.config.update("jax_enable_x64", True)  # compare to ~1e-15, not ~1e-6\n'

CELLS = [
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
