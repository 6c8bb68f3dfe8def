"""Notebook 8. Types of RNNs: many-to-one, one-to-many, many-to-many with T_x ≠ T_y"""

from cells import code, md, setup

CELLS = [
    md("""
# 8. Types of RNNs

The course's slide of RNN architectures, by how many inputs x⟨t⟩ and outputs ŷ⟨t⟩ they have:

| type | example in the course | jaxrnn |
|---|---|---|
| many-to-many, T_x = T_y | named-entity recognition | `tagger_init`, `tagger_apply` (notebook 7) |
| many-to-one | sentiment classification | `classifier_init`, `classifier_apply` |
| one-to-many | music generation | `generator_init`, `generator_apply`, `generate` |
| many-to-many, T_x ≠ T_y | machine translation | `seq2seq_init`, `seq2seq_loss`, `seq2seq_decode` |

Here one small example of each of the last three, each with GRU cells of n_a = 64 and trained
with Adam through `jaxrnn.make_train_step`.
"""),
    code(setup()),
    code("""
from sklearn.datasets import load_digits


def train(loss_fn, params, next_batch, steps, learning_rate=1e-2):
    \"\"\"Adam on loss_fn(params, *next_batch()), steps times; returns params and losses.\"\"\"
    optimizer = jaxrnn.make_optimizer(learning_rate)
    step = jaxrnn.make_train_step(loss_fn, optimizer)
    opt_state = optimizer.init(params)
    losses = []
    for _ in range(steps):
        params, opt_state, metrics = step(params, opt_state, *next_batch())
        losses.append(metrics.loss)
    return params, np.array(jax.device_get(losses))


cell, n_a = jaxrnn.gru(), 64
rng = np.random.default_rng(0)
"""),
    md("""
## Many-to-one: reading a digit row by row

scikit-learn's digits are 1,797 handwritten digits of 8 × 8 pixels (values 0–16). Read an image
from top to bottom, one row per step: x⟨t⟩ is row t, so T_x = 8 and n_x = 8. The classifier reads
all eight rows and predicts the digit from the last state, ŷ = softmax(W_ya a⟨T_x⟩ + b_y): many
inputs, one output. 360 images are held out for testing.
"""),
    code("""
digits = load_digits()
images = (digits.images / 16).astype(np.float32)  # (m, T_x, n_x) = (1797, 8, 8), in [0, 1]
labels = digits.target
order = rng.permutation(len(images))
test, train_idx = order[:360], order[360:]
print("x:", images.shape, " train:", len(train_idx), " test:", len(test))


def classifier_loss(params, xs, ys):
    logits = jaxrnn.models.classifier_apply(cell, params, xs)  # (m, 10): one output per sequence
    return jaxrnn.softmax_cross_entropy(logits[:, None], ys[:, None]).mean()  # T_y = 1


def digit_batch(m=128):
    batch = rng.choice(train_idx, m, replace=False)
    return images[batch], labels[batch]


classifier = jaxrnn.models.classifier_init(cell, jax.random.key(0), 8, n_a, num_classes=10)
classifier, losses = train(classifier_loss, classifier, digit_batch, 30 if SMALL else 400)
print(f"training loss: first step {losses[0]:.2f}, last 20 steps {losses[-20:].mean():.3f}")
"""),
    md("""
A many-to-one RNN still computes a⟨t⟩ at every step; it only puts its head on the last one. The
same params in `jaxrnn.models.tagger_apply` put the head on every a⟨t⟩, which tells us what the
classifier would answer after reading only the first t rows; at t = 8 it is the answer of
`classifier_apply` (whose default `pool="last"` takes a⟨T_x⟩).
"""),
    code("""
@jax.jit
def read(params, xs):  # the digit the head would answer after each row: (m, T_x)
    return jnp.argmax(jaxrnn.models.tagger_apply(cell, params, xs), axis=-1)


guesses = np.asarray(read(classifier, images[test]))
accuracy = (guesses == labels[test, None]).mean(axis=0)
print(f"test accuracy after all 8 rows: {accuracy[-1]:.1%}")
print("after t rows:", "  ".join(f"{t}: {a:.0%}" for t, a in enumerate(accuracy, start=1)))

ok = guesses[:, -1] == labels[test]
wrong = np.flatnonzero(~ok)
rows = [np.arange(8), wrong[:8]]  # the first eight held-out digits; up to eight it gets wrong
fig, (ax_digits, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6), width_ratios=[3, 2])
tiles = [[np.pad(images[test[j]], ((1, 5), (1, 1))) for j in row] for row in rows]  # 14 × 10
ax_digits.imshow(np.block([t + [np.zeros((14, 10))] * (8 - len(t)) for t in tiles]), cmap="gray_r")
for r, row in enumerate(rows):
    for c, j in enumerate(row):
        x, y, color = 10 * c + 4.5, 14 * r + 11.5, "k" if ok[j] else "r"
        ax_digits.text(x, y, guesses[j, -1], ha="center", va="center", color=color)
ax_digits.set_title(f"answers on held-out digits; below, {len(rows[1])} of {len(wrong)} mistakes")
ax_digits.axis("off")
ax_acc.plot(range(1, 9), accuracy, "o-")
ax_acc.axhline(0.1, color="gray", ls=":", lw=1)
ax_acc.set_xlabel("rows read, t")
ax_acc.set_ylabel("test accuracy of the head on a⟨t⟩")
ax_acc.set_ylim(0, 1.02)
fig.tight_layout()
plt.show()
"""),
    md("""
The head was trained only on a⟨8⟩, so on earlier states its answers are close to chance (10%)
until the last rows: the state a⟨t⟩ holds what the network has read, but nothing asked it to be
a guess before the end.

## One-to-many: drawing a digit from its label

A generator gets one input, x⟨1⟩, and then feeds each output back as the next input:
x⟨t+1⟩ = y⟨t⟩, as in the course's music generator. To make the rows discrete, each pixel is
thresholded at 8 and each row of 8 bits becomes one of 256 row ids. The vocabulary has these
256 rows and 10 more ids for the digit labels, which are only ever inputs: x⟨1⟩ = "draw a 3", and
the network answers with eight rows. Trained by teacher forcing: the inputs are [label, row 1, …,
row 7] and the targets [row 1, …, row 8].
"""),
    code("""
bits = (digits.images >= 8).astype(np.int32)
row_ids = (bits * 2 ** np.arange(8)).sum(axis=-1)  # (1797, 8) ids in [0, 256)
LABEL = 256  # the label d is the id 256 + d
inputs = np.concatenate([LABEL + labels[:, None], row_ids[:, :-1]], axis=1)
print("distinct rows in the data:", len(np.unique(row_ids)))


def generator_loss(params, input_ids, target_ids):
    logits = jaxrnn.models.generator_apply(cell, params, input_ids)  # (m, 8, 266)
    return jaxrnn.softmax_cross_entropy(logits, target_ids).mean()


def row_batch(m=128):
    batch = rng.choice(train_idx, m, replace=False)
    return inputs[batch], row_ids[batch]


generator = jaxrnn.models.generator_init(
    cell, jax.random.key(1), LABEL + 10, n_a, embedding_size=16
)
generator, losses = train(generator_loss, generator, row_batch, 30 if SMALL else 400)
print(f"cross-entropy per row: first step {losses[0]:.2f}, last 20 steps {losses[-20:].mean():.2f}")
"""),
    md("""
`jaxrnn.models.generate` draws y⟨t⟩ from ŷ⟨t⟩ and feeds it back; `jax.vmap` runs it for many keys
and first inputs at once. 36 drawings of each digit, with the classifier above as the judge: how
many does it read as the digit that was asked for? (On the thresholded held-out digits it is
right for the fraction printed first.)
"""),
    code("""
asked = np.repeat(np.arange(10), 36)  # 360 drawings, as many as the test images
draw = jax.jit(
    jax.vmap(lambda key, first: jaxrnn.models.generate(cell, generator, key, first, steps=8))
)
drawn = np.asarray(draw(jax.random.split(jax.random.key(2), len(asked)), LABEL + asked))
drawn_bits = (drawn[..., None] >> np.arange(8)) & 1  # back to pixels: (360, 8 rows, 8)

as_test = np.asarray(read(classifier, bits[test].astype(np.float32)))[:, -1]
as_drawn = np.asarray(read(classifier, drawn_bits.astype(np.float32)))[:, -1]
training_images = {tuple(r) for r in row_ids[train_idx]}
copied = np.mean([tuple(d) in training_images for d in drawn])
print(f"classifier on thresholded held-out digits: {(as_test == labels[test]).mean():.1%} right")
print(f"drawings it reads as the digit asked for:   {(as_drawn == asked).mean():.1%}")
print(f"drawings that copy a training image:        {copied:.1%}")

grid = np.block([[np.pad(drawn_bits[36 * d + j], 1) for j in range(12)] for d in range(10)])
fig, ax = plt.subplots(figsize=(6, 5))
ax.imshow(grid, cmap="gray_r")
ax.set_yticks(10 * np.arange(10) + 4.5, [f"x⟨1⟩ = {d}" for d in range(10)])
ax.set_xticks([])
ax.set_title("12 drawings of each digit (sampled, temperature 1)")
plt.show()
"""),
    md("""
## Many-to-many with T_x ≠ T_y: an encoder–decoder

Numbers written in words, to digits: "three hundred twelve" (T_x = 3) → "3 1 2 ⟨EOS⟩"
(T_y = 4), "one hundred" (T_x = 2) → "1 0 0 ⟨EOS⟩". The **encoder** reads the words; its last state
e⟨T_x⟩ is the decoder's first state d⟨0⟩. The **decoder** is a generator: it starts from ⟨BOS⟩ and
writes one digit per step, feeding each back, until it writes ⟨EOS⟩. Training uses teacher
forcing (`seq2seq_loss`); decoding is greedy, the most likely digit at each step
(`seq2seq_decode`; the course's beam search would keep several candidates). Of the numbers
0–999, 200 are held out: the network never sees them, only their words in other numbers.
"""),
    code("""
ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
WORD_ID = {word: i for i, word in enumerate([*ONES, *TENS, "hundred"])}
EOS, BOS = 10, 11  # target ids: the digits 0-9, ⟨EOS⟩, ⟨BOS⟩


def in_words(n):
    hundreds, rest = divmod(n, 100)
    words = [ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        words += [TENS[rest // 10 - 2]] + ([ONES[rest % 10]] if rest % 10 else [])
    elif rest or not hundreds:
        words += [ONES[rest]]
    return words


numbers = np.arange(1000)
src = np.zeros((1000, 4), np.int32)  # word ids, right-padded: T_x ≤ 4
tgt = np.full((1000, 4), EOS, np.int32)  # digits then ⟨EOS⟩: T_y ≤ 4
src_len, tgt_len = np.zeros(1000, np.int32), np.zeros(1000, np.int32)
for n in numbers:
    words, digits_n = in_words(n), [int(c) for c in str(n)]
    src[n, : len(words)] = [WORD_ID[w] for w in words]
    tgt[n, : len(digits_n)] = digits_n
    src_len[n], tgt_len[n] = len(words), len(digits_n) + 1


def as_text(ids, length):
    return " ".join("⟨EOS⟩" if i == EOS else str(i) for i in ids[:length])


for n in [312, 100, 47, 7]:
    target = as_text(tgt[n], tgt_len[n])
    print(f"{' '.join(in_words(n)):21} T_x = {src_len[n]}  →  {target:14} T_y = {tgt_len[n]}")
"""),
    code("""
held_out = np.random.default_rng(4).permutation(1000)[:200]
seen = np.setdiff1d(numbers, held_out)


def number_batch(m=64):
    n = rng.choice(seen, m, replace=False)
    return src[n], src_len[n], tgt[n], tgt_len[n]


def translation_loss(params, *batch):
    return jaxrnn.models.seq2seq_loss(cell, params, *batch, bos_id=BOS)


seq2seq = jaxrnn.models.seq2seq_init(
    cell, jax.random.key(3), len(WORD_ID), 12, n_a, embedding_size=16
)
seq2seq, losses = train(translation_loss, seq2seq, number_batch, 60 if SMALL else 1500)
decode = jax.jit(
    lambda params, src, src_len: jaxrnn.models.seq2seq_decode(
        cell, params, src, src_len, max_len=4, bos_id=BOS, eos_id=EOS
    )
)
out, out_len = decode(seq2seq, src[held_out], src_len[held_out])
exact = (np.asarray(out) == tgt[held_out]).all(axis=1)  # every digit, and ⟨EOS⟩ at the right place
print(f"exact match on the 200 held-out numbers: {exact.mean():.1%}")

for j in [*np.flatnonzero(exact)[:5], *np.flatnonzero(~exact)[:6]]:
    n = held_out[j]
    mark = "" if exact[j] else "   ✗"
    print(f"{' '.join(in_words(n)):28} → {as_text(np.asarray(out[j]), int(out_len[j]))}{mark}")
"""),
    md("""
## Takeaways

- Many-to-one: a GRU reading a digit row by row (T_x = 8, n_x = 8) classified 98.9% of 360
  held-out digits right. The same params with the head on every a⟨t⟩ (`tagger_apply`) show that
  it answers only at the end: at most 11% right after 1 to 5 rows, 34% after 6, 85% after 7. The
  head was trained on a⟨8⟩ alone.
- One-to-many: given only the label as x⟨1⟩, and fed its own rows back, the generator drew digits
  that the classifier read as the digit asked for in 86.9% of 360 drawings (it reads 94.4% of the
  real thresholded held-out digits right); 4.2% of the drawings copy a training image.
- Many-to-many with T_x ≠ T_y: an encoder–decoder trained with teacher forcing and decoded
  greedily wrote 98.5% of 200 held-out numbers exactly right; the 3 mistakes were "twenty" → 2,
  "seventy" → 7 and "eight hundred eleven" → 810.
- The types share one cell and differ in wiring: `classifier_apply` puts the head on the last
  a⟨t⟩, `generate` feeds each output back as the next input, and `seq2seq_*` hands the encoder's
  last state to a decoder that generates.
"""),
]
