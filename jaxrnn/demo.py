"""The main demo: a character-level LSTM language model of 5,163 real first names.

Run with ``make demo`` or ``python -m jaxrnn.demo`` (about two minutes on a 2-core CPU). It trains
with a progress bar, compares validation perplexity with an n-gram model on the same split,
samples novel names the way the course does (a⟨0⟩ = 0, x⟨1⟩ = 0, draw ŷ⟨t⟩ and feed it back until
⟨EOS⟩), scores a few names, and writes the checkpoint and the loss plot.
"""

from __future__ import annotations

import argparse
import math
import time
from importlib import resources
from pathlib import Path

import jax
import numpy as np

from jaxrnn.lm import LMConfig, sample, sentence_log_prob
from jaxrnn.lm_train import TrainConfig, make_corpus, ngram_baseline, perplexity, train_lm


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--samples", type=int, default=2000, help="names drawn to count novelty")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    text = resources.files("jaxrnn").joinpath("data/names.txt").read_text()
    corpus = make_corpus(text, level="char", mode="lines", seed=args.seed)
    train_names = {corpus.vocab.decode(row[: n - 1]) for row, n in zip(*corpus.train, strict=True)}
    print(
        f"{len(text.split())} names: {len(corpus.train[0])} to train on, {len(corpus.valid[0])} "
        f"held out; {corpus.vocab.size} symbols (⟨EOS⟩ = newline, a–z, ⟨UNK⟩)"
    )

    model = LMConfig(
        vocab_size=corpus.vocab.size,
        cell_name="lstm",
        hidden_size=256,
        num_layers=2,
        embedding_size=32,
        dropout_rate=0.5,
    )
    config = TrainConfig(
        steps=args.steps,
        batch_size=64,
        learning_rate=3e-3,
        final_learning_rate=1e-4,
        clip_value=5.0,
        seed=args.seed,
        eval_every=500,
        sample_every=1000,
        checkpoint_every=500,
    )
    print(
        f"model: {model}\ntraining: {config.steps} steps of {config.batch_size} rows of names "
        "packed several to a row, Adam"
    )
    if not args.resume and (args.out / "checkpoint.npz").exists():
        print(f"replacing the earlier demo run in {args.out} (--resume continues it instead)")
    result = train_lm(
        corpus, model, config, args.out, resume=args.resume, overwrite=not args.resume
    )
    nats = result.history.valid[-1].nats

    # The traditional baseline on the very same split: n-grams with interpolated Kneser–Ney.
    print("\nvalidation perplexity (exp of mean nats per character, ⟨EOS⟩ included):")
    print(f"  LSTM language model  {perplexity(nats):6.2f}   ({nats:.4f} nats/char)")
    for order in (2, 3, 5):
        baseline = ngram_baseline(corpus, order)
        print(
            f"  {order}-gram (Kneser–Ney) {baseline.perplexity:6.2f}   "
            f"({baseline.nats_per_token:.4f} nats/char)"
        )

    drawn = sample(
        result.params,
        model,
        jax.random.key(args.seed),
        num_samples=args.samples,
        max_len=30,
        eos_id=corpus.vocab.eos_id,
        exclude_ids=[corpus.vocab.unk_id],
    )
    names = [corpus.vocab.decode(ids, stop_at_eos=True) for ids in np.asarray(drawn.ids)]
    novel = [name for name in names if name and name not in train_names]
    print(
        f"\n{len(novel) / len(names):.0%} of {len(names)} sampled names are not in the training "
        "set; the first twelve (* = novel):"
    )
    for name in names[:12]:
        print(f"  {name}{'' if name in train_names else ' *'}")

    print("\nlog P(name + ⟨EOS⟩), most likely first:")
    candidates = ["anna", "maria", "jonathan", "annabelle", "xqzzy"]
    encoded = [corpus.vocab.encode(name, add_eos=True) for name in candidates]
    width = max(map(len, encoded))
    padded = np.stack([np.pad(ids, (0, width - len(ids))) for ids in encoded])
    lengths = np.array([len(ids) for ids in encoded], np.int32)
    scores = np.asarray(sentence_log_prob(result.params, model, padded, lengths))
    for score, name in sorted(zip(scores, candidates, strict=True), reverse=True):
        print(f"  {name:10s} {score:8.2f} nats   P = {math.exp(score):.2e}")

    print(f"\ncheckpoint: {result.checkpoint}\nloss plot:  {args.out / 'loss.png'}")
    print(f"try: .venv/bin/jaxrnn sample {args.out} --num 10 --temperature 0.8")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
