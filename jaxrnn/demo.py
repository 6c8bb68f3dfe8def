"""End-to-end demo: a character-level GRU language model on 5,163 real first names.

Run with ``make demo`` or ``python -m jaxrnn.demo``. It trains for a minute or so on a CPU, printing
the loss, then samples novel names the way the course does: a⟨0⟩ = 0, x⟨1⟩ = 0, sample ŷ⟨t⟩ and
feed it back as x⟨t+1⟩ until the end-of-name token.
"""

from __future__ import annotations

import argparse
import time
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

EOS = "\n"


def load_names() -> list[str]:
    """The shipped names, lower case (see jaxrnn/data/README.md)."""
    return resources.files("jaxrnn").joinpath("data/names.txt").read_text().split()


def encode(names: list[str], alphabet: str) -> tuple[np.ndarray, np.ndarray]:
    """Targets y (N, T) with ⟨EOS⟩ after each name, right-padded, and lengths (N,)."""
    index = {ch: i for i, ch in enumerate(alphabet)}
    n_steps = max(map(len, names)) + 1
    labels = np.zeros((len(names), n_steps), np.int32)
    for row, name in enumerate(names):
        labels[row, : len(name) + 1] = [index[ch] for ch in name + EOS]
    return labels, np.array([len(n) + 1 for n in names], np.int32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    names = load_names()
    alphabet = EOS + "".join(sorted(set("".join(names))))
    vocab = len(alphabet)
    labels, lengths = encode(names, alphabet)
    print(f"{len(names)} names, {vocab} symbols (⟨EOS⟩ + a–z), longest {labels.shape[1]} steps")

    cell = jaxrnn.gru()
    key_cell, key_head, key_data, key_sample = jax.random.split(jax.random.key(args.seed), 4)
    params = {
        "cell": cell.init(key_cell, vocab, args.hidden),
        "head": jaxrnn.dense_init(key_head, args.hidden, vocab),
    }

    def logits_for(params, labels):
        # x⟨1⟩ = 0, x⟨t⟩ = y⟨t−1⟩ as one-hot vectors: the course's language-model set-up.
        xs = jax.nn.one_hot(labels[:, :-1], vocab)
        xs = jnp.concatenate([jnp.zeros_like(xs[:, :1]), xs], axis=1)
        _, hs = jaxrnn.unroll(cell, params["cell"], xs)
        return jaxrnn.dense(params["head"], hs)

    def loss_fn(params, labels, lengths):
        logits = logits_for(params, labels)
        return jaxrnn.softmax_cross_entropy(logits, labels, lengths).mean()

    optimizer = jaxrnn.make_optimizer(3e-3, clip_value=5.0)
    train_step = jaxrnn.make_train_step(loss_fn, optimizer)
    opt_state = optimizer.init(params)

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = rng.integers(0, len(names), args.batch)
        params, opt_state, metrics = train_step(params, opt_state, labels[batch], lengths[batch])
        if step % max(args.steps // 10, 1) == 0 or step == 1:
            rate = step * args.batch / (time.perf_counter() - start)
            print(
                f"step {step:5d}  loss {float(metrics.loss):.3f} nats/char  "
                f"grad norm {float(metrics.grad_norm):6.2f}  {rate:7.0f} names/s"
            )

    def sample_one(key):
        def body(state, key_t):
            carry, x = state
            carry, h = cell.step(params["cell"], carry, x)
            token = jax.random.categorical(key_t, jaxrnn.dense(params["head"], h))
            return (carry, jax.nn.one_hot(token, vocab)), token

        init = (cell.init_carry(params["cell"]), jnp.zeros(vocab))
        _, tokens = jax.lax.scan(body, init, jax.random.split(key, labels.shape[1] + 8))
        return tokens

    tokens = jax.jit(jax.vmap(sample_one))(jax.random.split(key_sample, args.samples))
    known = set(names)
    print("\nsampled names (* = not in the training data):")
    for row in np.asarray(tokens):
        text = "".join(alphabet[t] for t in row).split(EOS)[0]
        print(f"  {text}{'' if text in known else ' *'}")


if __name__ == "__main__":
    main()
