"""Notebook 5. Language model and sampling"""

from cells import code, md, setup

CELLS = [
    md("""
# 5. Language model and sampling

A language model gives the probability of a sentence, P(y⟨1⟩, y⟨2⟩, …, y⟨T_y⟩). The course
builds one from an RNN: a⟨0⟩ = 0, x⟨1⟩ = 0, and from then on x⟨t⟩ = y⟨t−1⟩, the previous token.
At every step the softmax output is a distribution over the vocabulary,

ŷ⟨t⟩ = P(y⟨t⟩ | y⟨1⟩, …, y⟨t−1⟩),

and the probability of the sentence is the product of those factors. Here the sentences are the
first names shipped with jaxrnn and the tokens are characters. We train the model, score names
with it, sample new names from it, and set it beside the traditional n-gram language model.
"""),
    code(setup()),
    md("""
## The training set

`jaxrnn.lm_train.make_corpus` shuffles the names, keeps 10% of them aside for validation, builds
the vocabulary on the training names, and encodes each name followed by ⟨EOS⟩ (right-padded, its
length kept beside it). The targets y are the characters of a name; the inputs are the same
sequence shifted right by one, with the zero vector (id −1) as x⟨1⟩.
"""),
    code("""
from importlib import resources

from jaxrnn.lm import LMConfig, sample, teacher_forcing_inputs, token_log_probs
from jaxrnn.lm_train import make_corpus, perplexity

text = resources.files("jaxrnn").joinpath("data/names.txt").read_text()
corpus = make_corpus(text, level="char", mode="lines", seed=0)
vocab = corpus.vocab
targets, lengths = corpus.train
train_names = {vocab.decode(row[: n - 1]) for row, n in zip(targets, lengths, strict=True)}
print(f"{len(targets)} names to train on, {len(corpus.valid[0])} held out; n_x = {vocab.size}")

y = targets[0, : lengths[0]]
x = teacher_forcing_inputs(y)


def show(ids):  # id −1 is the zero vector; the newline is ⟨EOS⟩
    ids = np.asarray(ids).tolist()
    return ["0" if i < 0 else "⟨EOS⟩" if i == vocab.eos_id else vocab.tokens[i] for i in ids]


print("x⟨t⟩:", show(x))
print("y⟨t⟩:", show(y))
"""),
    md("""
## Training

An LSTM with n_a = 128. Two things differ from the plain course model: each character enters as a
learned 32-dimensional vector rather than a one-hot vector (the embeddings of week 2), and 20% of
the inputs to the LSTM and to the softmax are dropped during training; both are there to limit
overfitting on so few names. The loss at step t is the cross-entropy L⟨t⟩ = −log ŷ⟨t⟩[y⟨t⟩];
`lm_loss` averages it over the characters of each name and over the batch. Adam minimises it,
with every gradient entry clipped to [−5, 5] as in the course and a learning rate that decays
from 5·10⁻³ to 2·10⁻⁴. Every 250 steps we measure the loss on the held-out names (`evaluate_lm`).
"""),
    code("""
import optax

from jaxrnn.lm import init_lm, lm_loss
from jaxrnn.lm_train import evaluate_lm

if SMALL:
    model = LMConfig(vocab.size, cell_name="lstm", hidden_size=32, embedding_size=16)
    steps, eval_every = 40, 20
else:
    model = LMConfig(
        vocab.size, cell_name="lstm", hidden_size=128, embedding_size=32, dropout_rate=0.2
    )
    steps, eval_every = 2000, 250
learning_rate = optax.cosine_decay_schedule(5e-3, steps, alpha=0.04)
optimizer = jaxrnn.make_optimizer(learning_rate, name="adam", clip_value=5.0)


def loss_fn(params, y, lengths, dropout_key):  # nats per character, averaged over the batch
    x = teacher_forcing_inputs(y)
    return lm_loss(params, model, x, y, lengths=lengths, dropout_key=dropout_key)[0]


train_step = jaxrnn.make_train_step(loss_fn, optimizer)
params = init_lm(jax.random.key(0), model)
opt_state = optimizer.init(params)
losses, valid = [], []
for step in range(steps):
    rows = jaxrnn.text.batch_indices(len(targets), 64, seed=0, step=step)  # 64 names
    key = jax.random.fold_in(jax.random.key(1), step)
    params, opt_state, metrics = train_step(params, opt_state, targets[rows], lengths[rows], key)
    losses.append(float(metrics.loss))
    if (step + 1) % eval_every == 0:
        valid.append((step + 1, evaluate_lm(params, model, corpus)))
        print(f"step {step + 1:4d}: held-out names {valid[-1][1]:.3f} nats per character")
rnn_nats = valid[-1][1]
"""),
    code("""
losses, valid = np.array(losses), np.array(valid)
window = 5 if SMALL else 50
smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.plot(np.arange(1, steps + 1), losses, color="tab:blue", alpha=0.25, lw=0.8)
ax.plot(np.arange(window, steps + 1), smooth, color="tab:blue", label="training names (batch)")
ax.plot(valid[:, 0], valid[:, 1], "o-", color="tab:orange", label="held-out names")
ax.set_xlabel("training step")
ax.set_ylabel("cross-entropy (nats per character)")
ax.set_title("Character-level LSTM on first names")
ax.legend()
fig.tight_layout()
plt.show()
"""),
    md("""
## The probability of a sentence

The course's product, one factor per step and the last factor for ⟨EOS⟩:

P(y⟨1⟩, …, y⟨T_y⟩) = P(y⟨1⟩) · P(y⟨2⟩ | y⟨1⟩) · … · P(⟨EOS⟩ | y⟨1⟩, …, y⟨T_y⟩)

`token_log_probs` returns the log of every factor (natural log, in nats); their sum is
log P(sentence), which `sentence_log_prob` returns directly. Logs, because a product of many
probabilities soon underflows. We score a padded batch of names at once (the padded steps get
log-probability 0) and look first at two of them: a plausible name, and the same letters in an
implausible order.
"""),
    code("""
names = ["marina", "rmnaia", "anna", "maria", "jonathan", "christopher", "xqzzy"]
ids, lens = jaxrnn.text.pad_batch(vocab.encode_lines(names), pad_id=vocab.eos_id)  # + ⟨EOS⟩
log_p = np.asarray(token_log_probs(params, model, ids, lens))  # (names, T): log of each factor
for name, row in zip(names[:2], log_p[:2], strict=True):
    print(f"{name!r}")
    for t in range(len(name) + 1):
        token = name[t] if t < len(name) else "⟨EOS⟩"
        print(f"  P({token:5} | {name[:t] or '·':6}) = {np.exp(row[t]):.4f}   log = {row[t]:6.2f}")
    print(f"  log P = Σ log = {row.sum():.2f} nats,  P = Π = {np.prod(np.exp(row)):.3g}")
"""),
    code("""
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
for ax, name, row, color in zip(axes, names[:2], log_p[:2], ["tab:green", "tab:red"], strict=True):
    ax.bar(range(len(name) + 1), row[: len(name) + 1], color=color)
    ax.set_xticks(range(len(name) + 1), [*name, "⟨EOS⟩"])
    ax.axhline(np.log(1 / vocab.size), color="grey", ls="--", lw=1)
    ax.set_title(f"{name!r}: log P = {row.sum():.1f} nats")
axes[0].set_ylabel("log P(y⟨t⟩ | y⟨1⟩ … y⟨t−1⟩)")
axes[0].annotate("uniform guess, log(1/n_x)", (-0.4, np.log(1 / vocab.size) - 0.1), va="top")
fig.tight_layout()
plt.show()
"""),
    md("""
The whole batch, most likely first. Every factor is below 1, so among plausible names the longer
ones tend to come last even when each of their characters is well predicted; log P divided by the
number of factors compares names of different lengths.
"""),
    code("""
order = np.argsort(-log_p.sum(axis=1))
for name, n, row in zip(np.array(names)[order], lens[order], log_p[order], strict=True):
    print(f"{name:12} log P = {row.sum():7.2f}   per character {row.sum() / n:6.2f}")
"""),
    md("""
## Sampling novel names

To sample, the course feeds the model its own output: a⟨0⟩ = 0, x⟨1⟩ = 0, draw y⟨1⟩ from ŷ⟨1⟩,
feed it in as x⟨2⟩, draw y⟨2⟩, and so on until ⟨EOS⟩ is drawn. `jaxrnn.lm.sample` does that
for many names at once. A temperature τ divides the logits before the softmax,
ŷ⟨t⟩ = softmax(z⟨t⟩ / τ): τ < 1 sharpens the distribution towards the most likely characters,
τ > 1 flattens it, and τ = 1 is the model itself. Here is ŷ⟨1⟩, the distribution of the first
letter, at three temperatures (its six most likely letters):
"""),
    code("""
from jaxrnn.lm import next_token_log_probs

first = next_token_log_probs(params, model, jnp.zeros(0, jnp.int32))  # log ŷ⟨1⟩, prefix empty
top = np.argsort(-np.asarray(first))[:6]
for temperature in [0.5, 1.0, 1.5]:
    p = jax.nn.softmax(first / temperature)
    print(f"ŷ⟨1⟩ at τ = {temperature}:", "  ".join(f"{vocab.tokens[i]} {p[i]:.3f}" for i in top))
"""),
    md("""
Now whole names. We count how many of the sampled names are new, that is, not among the training
names, and how many are distinct.
"""),
    code("""
n_samples = 200 if SMALL else 2000


def rnn_samples(temperature, seed=0):
    drawn = sample(
        params,
        model,
        jax.random.key(seed),
        num_samples=n_samples,
        max_len=30,
        eos_id=vocab.eos_id,
        temperature=temperature,
        exclude_ids=[vocab.unk_id],
    )
    return [vocab.decode(ids, stop_at_eos=True) for ids in np.asarray(drawn.ids)]


def describe(names):
    new = np.mean([name not in train_names for name in names])
    distinct = len(set(names)) / len(names)
    length = np.mean([len(name) for name in names])
    return f"{new:4.0%} new, {distinct:4.0%} distinct, mean length {length:.1f}"


rnn_names = {}
for temperature in [1.0] if SMALL else [0.5, 1.0, 1.5]:
    rnn_names[temperature] = sampled = rnn_samples(temperature)
    print(f"τ = {temperature}: {describe(sampled)}")
    print("   ", ", ".join(sampled[:10]))
"""),
    md("""
## The traditional language model: n-grams

Before RNNs, a language model counted. An n-gram model keeps only the last n − 1 tokens of the
history, P(y⟨t⟩ | y⟨1⟩ … y⟨t−1⟩) ≈ P(y⟨t⟩ | y⟨t−n+1⟩ … y⟨t−1⟩), and estimates it from counts in
the training text, smoothed so that unseen combinations keep some probability (`jaxrnn.ngram`
uses interpolated Kneser–Ney). We fit it on the same training names and measure it on the same
held-out names, in the same units. **Perplexity** is exp(mean nats per character): the number of
equally likely characters the model is, on average, choosing between (n_x for a uniform guess).
"""),
    code("""
from jaxrnn import ngram

train_seqs = [row[:n] for row, n in zip(*corpus.train, strict=True)]
valid_seqs = [row[:n] for row, n in zip(*corpus.valid, strict=True)]
orders = list(range(1, 6 if SMALL else 8))
ngrams = {n: ngram.fit_ngram(train_seqs, vocab.size, order=n) for n in orders}
ngram_ppl = {n: ngram.evaluate(lm, valid_seqs).perplexity for n, lm in ngrams.items()}

print("validation perplexity (per character, ⟨EOS⟩ included)")
for n, ppl in ngram_ppl.items():
    print(f"  {n}-gram  {ppl:5.2f}")
print(f"  LSTM    {perplexity(rnn_nats):5.2f}")

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(orders, list(ngram_ppl.values()), "o-", label="n-gram (Kneser–Ney)")
ax.axhline(perplexity(rnn_nats), color="tab:orange", label=f"LSTM, n_a = {model.hidden_size}")
ax.set_xlabel("n-gram order n (context of n − 1 characters)")
ax.set_ylabel("validation perplexity")
ax.set_title("Held-out names: counts against the RNN")
ax.legend()
fig.tight_layout()
plt.show()
"""),
    md("""
Samples from the n-gram models beside the LSTM's (τ = 1): a short context gives unpronounceable
strings, a long one mostly copies training names, since most 6-character contexts were seen in one
name only.
"""),
    code("""
rng = np.random.default_rng(0)
shown_orders = [2, 3, 5] if SMALL else [2, 3, 5, 7]
for n in shown_orders:
    lm = ngrams[n]
    drawn = [ngram.sample(lm, rng, eos_id=vocab.eos_id, max_len=30) for _ in range(n_samples)]
    sampled = [vocab.decode(ids, stop_at_eos=True) for ids in drawn]
    print(f"{n}-gram: {describe(sampled)}")
    print("   ", ", ".join(sampled[:10]))
print(f"LSTM:   {describe(rnn_names[1.0])}")
print("   ", ", ".join(rnn_names[1.0][:10]))
"""),
    md("""
## Takeaways

- An RNN language model reads x⟨t⟩ = y⟨t−1⟩ (x⟨1⟩ = 0) and outputs ŷ⟨t⟩ = P(y⟨t⟩ | y⟨1⟩ … y⟨t−1⟩).
  On the names, one LSTM layer (n_a = 128, 32-dimensional character embeddings, dropout 0.2)
  trained for 2,000 Adam steps of 64 names reaches 1.86 nats per character on held-out names, a
  perplexity of 6.4.
- The probability of a name is the product of its factors, ⟨EOS⟩ included, or in logs a sum
  (`token_log_probs`, `sentence_log_prob`). "marina" scores −8.3 nats, the same letters as
  "rmnaia" −29.6: the model scores the order of the characters, not only which ones they are.
- Sampling feeds each drawn character back in. The temperature trades novelty for plausibility:
  of 2,000 names sampled at τ = 0.5, 1 and 1.5, 28%, 70% and 90% are not in the training set,
  and the hotter samples include more unpronounceable strings.
- The traditional n-gram model (Kneser–Ney) is best at n = 5, with a perplexity of 6.70; longer
  contexts are seen too rarely and do worse (7.54 at n = 7). The LSTM, whose context is not cut
  at n − 1 characters, beats every order. Low-order n-grams produce unpronounceable strings and
  high-order ones mostly copy training names (only 38% new at n = 7, against 70% for the LSTM at
  τ = 1).
"""),
]
