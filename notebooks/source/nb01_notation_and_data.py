"""Notebook 1. Notation and data"""

from cells import code, md, setup

CELLS = [
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
