"""Notebook 7. Bidirectional and deep RNNs"""

from cells import code, md, setup

CELLS = [
    md("""
# 7. Bidirectional and deep RNNs

The course's motivating pair of sentences for named-entity recognition:

- He said, "Teddy Roosevelt was a great President."
- He said, "Teddy bears are on sale!"

Is "Teddy" part of a person's name? The first three words of both sentences are the same, so a
unidirectional RNN, whose ŷ⟨t⟩ depends only on x⟨1⟩ … x⟨t⟩, must give "Teddy" the same answer in
both. The answer is in the word *after* it. A **bidirectional RNN** (BRNN) adds a second RNN that
reads the sentence from the end, and predicts from both:

ŷ⟨t⟩ = g(W_y [a→⟨t⟩, a←⟨t⟩] + b_y)

A **deep RNN** stacks recurrent layers, a^[l]⟨t⟩ for layer l, each reading the outputs of the
layer below.
"""),
    code(setup()),
    md("""
## A tagging task only the future can solve

Sentences of T_x = 8 words drawn at random from a small vocabulary, each with one "teddy" placed
at random and followed by "roosevelt" or "bears", with probability ½ each. Every word is tagged
(many-to-many, T_y = T_x): y⟨t⟩ = 1 if it is part of a person's name ("sarah", "james",
"roosevelt", and "teddy" when "roosevelt" follows), 0 otherwise. Inputs are one-hot vectors of
the vocabulary's size, n_x = 20.
"""),
    code("""
vocab = (
    "he said that was a great president are on sale today the shop we like sarah james "
    "teddy roosevelt bears"
).split()
ID = {word: i for i, word in enumerate(vocab)}
n_x, T_x = len(vocab), 8
NAMES = [ID["sarah"], ID["james"], ID["roosevelt"]]
TEDDY = ID["teddy"]


def make_batch(rng, m):
    ids = rng.integers(0, TEDDY, (m, T_x))  # any word before "teddy" in the vocabulary
    where = rng.integers(0, T_x - 1, m)  # "teddy" at t, the deciding word at t + 1
    after = np.where(rng.random(m) < 0.5, ID["roosevelt"], ID["bears"])
    ids[np.arange(m), where] = TEDDY
    ids[np.arange(m), where + 1] = after
    tags = np.isin(ids, NAMES)
    tags[np.arange(m), where] = after == ID["roosevelt"]
    return ids, tags.astype(np.int32)


ids, tags = make_batch(np.random.default_rng(0), 3)
for sentence, y in zip(ids, tags, strict=True):
    print("  ".join(f"{vocab[i]}/{t}" for i, t in zip(sentence, y, strict=True)))
"""),
    md("""
## A unidirectional and a bidirectional tagger

Both use basic RNN cells with n_a = 32 (for the BRNN, 32 in each direction) and a sigmoid output
per word, trained with the binary cross-entropy of the course's NER example.
`jaxrnn.models.tagger_apply` is the unidirectional tagger; the bidirectional one is
`jaxrnn.bidirectional`, which returns [a→⟨t⟩, a←⟨t⟩] for every t, followed by the same dense head.
We train the two models side by side in one jitted step, on the same batches. Their parameters are
separate, so the gradient of the summed loss with respect to one model's parameters is that model's
own gradient, and Adam updates every parameter on its own: the same as two separate training runs,
compiled once. Each batch is 64 new random sentences and the step reports its predictions before it
learns from them, so the accuracies below are measured on unseen sentences.
"""),
    code("""
def train_side_by_side(losses, params, next_batch, steps, learning_rate):
    \"\"\"losses: name -> loss(params, *batch) returning (loss, metrics). Returns the trained
    params and, for every model, each metric at every step.\"\"\"

    def total(params, *batch):
        out = {name: loss(params[name], *batch) for name, loss in losses.items()}
        return sum(value for value, _ in out.values()), {n: m for n, (_, m) in out.items()}

    optimizer = jaxrnn.make_optimizer(learning_rate)
    step = jaxrnn.make_train_step(total, optimizer, has_aux=True)
    opt_state = optimizer.init(params)
    history = []
    for _ in range(steps):
        params, opt_state, _, metrics = step(params, opt_state, *next_batch())
        history.append(metrics)
    history = jax.tree.map(lambda *steps: np.stack(steps), *jax.device_get(history))
    return params, {name: history[name] for name in losses}  # in the order given


cell, n_a = jaxrnn.rnn(), 32
logits_fns = {
    "unidirectional": lambda p, ids: jaxrnn.models.tagger_apply(cell, p, jax.nn.one_hot(ids, n_x)),
    "bidirectional": lambda p, ids: jaxrnn.dense(
        p[1], jaxrnn.bidirectional(cell, p[0], jax.nn.one_hot(ids, n_x))[1]
    ),
}


def tagging_loss(logits_fn):
    def loss(params, ids, tags):
        logits = logits_fn(params, ids)  # (m, T_x, 1)
        correct = (logits[..., 0] > 0) == tags
        is_teddy = ids == TEDDY
        teddy = (correct & is_teddy).sum() / is_teddy.sum()
        metrics = {"all words": correct.mean(), "teddy": teddy}
        return jaxrnn.sigmoid_cross_entropy(logits, tags[..., None]).mean(), metrics

    return loss


key_uni, key_bi, key_head = jax.random.split(jax.random.key(0), 3)
params = {
    "unidirectional": jaxrnn.models.tagger_init(cell, key_uni, n_x, n_a, num_classes=1),
    "bidirectional": (
        jaxrnn.bidirectional_init(cell, key_bi, n_x, n_a),
        jaxrnn.dense_init(key_head, 2 * n_a, 1),
    ),
}
rng = np.random.default_rng(1)
steps = 60 if SMALL else 600
params, history = train_side_by_side(
    {name: tagging_loss(fn) for name, fn in logits_fns.items()},
    params,
    lambda: make_batch(rng, 64),
    steps,
    learning_rate=1e-2,
)
last = slice(-50, None)  # the last 50 batches: 3,200 unseen sentences
print("accuracy over the last 50 batches:")
for name, metrics in history.items():
    all_words, teddy = metrics["all words"][last].mean(), metrics["teddy"][last].mean()
    print(f"  {name:15} all words {all_words:6.1%}   'teddy' {teddy:6.1%}")
"""),
    code("""
def smooth(values, width=20):  # moving average: (last step of each window, mean over the window)
    return np.arange(width, len(values) + 1), np.convolve(values, np.ones(width) / width, "valid")


fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for ax, metric in zip(axes, ["all words", "teddy"], strict=True):
    for name, metrics in history.items():
        ax.plot(*smooth(metrics[metric]), label=name)
    ax.axhline(0.5, color="gray", ls=":", lw=1)
    ax.set_title(f"accuracy on {'every word' if metric == 'all words' else 'the word teddy'}")
    ax.set_xlabel("training step (each on 64 new sentences)")
axes[0].set_ylabel("accuracy (moving average of 20 steps)")
axes[1].text(steps, 0.48, "chance", color="gray", ha="right", va="top")
axes[1].legend()
fig.tight_layout()
plt.show()
"""),
    md("""
Per word, P(name) = σ(z⟨t⟩) on the course's two sentences (with "today" added to make the second
one T_x = 8 words long):
"""),
    code("""
sentences = [
    "he said teddy roosevelt was a great president",
    "he said teddy bears are on sale today",
]
ids = np.array([[ID[word] for word in s.split()] for s in sentences])


@jax.jit
def p_name(params, ids):  # P(name) = σ(z⟨t⟩) for every word, from each model
    return {name: jax.nn.sigmoid(fn(params[name], ids)[..., 0]) for name, fn in logits_fns.items()}


p = jax.device_get(p_name(params, ids))
for i, sentence in enumerate(sentences):
    print(f"{'':15}" + "".join(f"{word:>10}" for word in sentence.split()))
    for name in logits_fns:
        print(f"{name:15}" + "".join(f"{v:10.2f}" for v in p[name][i]))
    print()
"""),
    md("""
The unidirectional tagger has read the same three words, "he said teddy", when it must answer at
"teddy", so its P(name) there is the same in both sentences, whatever its size or training. The
price of the BRNN is that it needs the **whole sequence** before it can output anything: a→ runs
forward to the end and a← starts from the last word. That suits tagging a finished sentence, but
not real-time speech recognition, where the answer is wanted while the person is still talking.

## Deep RNNs: a^[l]⟨t⟩

The course's deep RNN stacks L recurrent layers. Layer l has its own weights W_a^[l], b_a^[l],
shared over time, and its input at step t is the output of the layer below at the same step:

a^[l]⟨t⟩ = g(W_a^[l] [a^[l]⟨t−1⟩, a^[l−1]⟨t⟩] + b_a^[l]),  with a^[0]⟨t⟩ = x⟨t⟩

```
  ŷ⟨1⟩         ŷ⟨2⟩         ŷ⟨3⟩
   ↑            ↑            ↑
a^[3]⟨1⟩  →  a^[3]⟨2⟩  →  a^[3]⟨3⟩  →
   ↑            ↑            ↑
a^[2]⟨1⟩  →  a^[2]⟨2⟩  →  a^[2]⟨3⟩  →
   ↑            ↑            ↑
a^[1]⟨1⟩  →  a^[1]⟨2⟩  →  a^[1]⟨3⟩  →
   ↑            ↑            ↑
  x⟨1⟩         x⟨2⟩         x⟨3⟩
```

Each of the L × T_x blocks is one cell step, which is why three layers are already a lot for an
RNN. `jaxrnn.stacked_init(cell, key, n_x, n_a, num_layers)` and `jaxrnn.stacked` build the grid.

A task: the inputs are digits 0–4, and at every step the target is the sum of the last three
digits modulo 5, y⟨t⟩ = (x⟨t⟩ + x⟨t−1⟩ + x⟨t−2⟩) mod 5 (T_x = T_y = 20). The network has to keep
the last two digits and combine them with the new one through addition modulo 5, which is far
from linear. We train basic RNNs of 1, 2 and 3 layers of n_a = 32 each, side by side on the same
batches and, since a deeper network also has more weights, one layer of n_a = 64 too, which has
more weights than two layers of 32.
"""),
    code("""
K, T_deep = 5, 20


def sum_batch(rng, m=64):
    xs = rng.integers(0, K, (m, T_deep))
    padded = np.pad(xs, ((0, 0), (2, 0)))  # x⟨t⟩ = 0 before the start
    return xs, (padded[:, 2:] + padded[:, 1:-1] + padded[:, :-2]) % K


def deep_loss(params, xs, ys):
    rnn_params, head = params
    _, a_top = jaxrnn.stacked(cell, rnn_params, jax.nn.one_hot(xs, K))  # a^[L]⟨t⟩, every t
    logits = jaxrnn.dense(head, a_top)
    accuracy = (jnp.argmax(logits, axis=-1) == ys).mean()
    loss = jaxrnn.softmax_cross_entropy(logits, ys).mean()
    return loss, {"loss": loss, "accuracy": accuracy}


def deep_model(key, num_layers, n_a):
    key_rnn, key_head = jax.random.split(key)
    rnn_params = jaxrnn.stacked_init(cell, key_rnn, K, n_a, num_layers)
    return rnn_params, jaxrnn.dense_init(key_head, n_a, K)


configs = {
    "1 layer × 32": (1, 32),
    "2 layers × 32": (2, 32),
    "3 layers × 32": (3, 32),
    "1 layer × 64": (1, 64),
}
keys = jax.random.split(jax.random.key(2), len(configs))
deep_params = {name: deep_model(k, *c) for k, (name, c) in zip(keys, configs.items(), strict=True)}
for name, model in deep_params.items():
    print(f"{name:16} {sum(w.size for w in jax.tree.leaves(model)):6,} weights")
"""),
    code("""
rng = np.random.default_rng(3)
deep_steps = 60 if SMALL else 1000
_, deep_history = train_side_by_side(
    dict.fromkeys(configs, deep_loss), deep_params, lambda: sum_batch(rng), deep_steps, 3e-3
)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for name, metrics in deep_history.items():
    axes[0].plot(*smooth(metrics["loss"]), label=name)
    at, accuracy = smooth(metrics["accuracy"])
    axes[1].plot(at, accuracy, label=name)
    final = metrics["accuracy"][-50:].mean()
    reached = f"step {at[accuracy > 0.99][0]}" if (accuracy > 0.99).any() else "never"
    print(f"{name:14} accuracy over the last 50 steps {final:6.1%}; above 99% from: {reached}")
axes[0].set_ylabel("cross-entropy (nats)")
axes[1].set_ylabel("per-step accuracy")
axes[1].axhline(1 / K, color="gray", ls=":", lw=1)
for ax in axes:
    ax.set_xlabel("training step (moving average of 20)")
axes[1].legend()
fig.suptitle("y⟨t⟩ = (x⟨t⟩ + x⟨t−1⟩ + x⟨t−2⟩) mod 5, basic RNN cells")
fig.tight_layout()
plt.show()
"""),
    md("""
## Takeaways

- Whether "teddy" is part of a name is decided by the word after it. Over the last 3,200 unseen
  sentences the unidirectional tagger was right on 49.4% of the "teddy" tokens, chance, and gave
  "teddy" the same P(name), 0.39, in both of the course's sentences. It got every other word right:
  93.7% of all words, 1 − 1/16 with one word in eight a "teddy". The bidirectional tagger, which
  predicts from [a→⟨t⟩, a←⟨t⟩], was right on 100% of the words, "teddy" included.
- A BRNN needs the whole sequence before its first output: good for tagging finished text, not for
  answering in real time. `jaxrnn.bidirectional` returns [a→⟨t⟩, a←⟨t⟩] for every t; a dense head
  on top makes the tagger.
- `jaxrnn.stacked` builds the deep RNN's grid of a^[l]⟨t⟩. On y⟨t⟩ = (x⟨t⟩ + x⟨t−1⟩ + x⟨t−2⟩) mod
  5, one seeded run of 1,000 steps: one layer of 32 reached only 53.5%; two and three layers of
  32 stayed above 99% from step 472 and step 355; one layer of 64, with more weights than two
  layers of 32, from step 802. Here depth helped more than width did (one task, one seed).
- Models whose params are separate can be trained side by side in one jitted step: the gradient
  of the summed loss gives each model its own update, and the step compiles once.
"""),
]
