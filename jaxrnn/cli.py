"""The command line: ``jaxrnn train``, ``jaxrnn sample``, ``jaxrnn score``.

jaxrnn train --corpus names --out runs/names          # or any text file: jaxrnn train FILE
jaxrnn sample runs/names --num 10 --temperature 0.8
jaxrnn score runs/names "anna" "xqzzy"
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from importlib import resources
from pathlib import Path

import jax
import numpy as np

from jaxrnn import text
from jaxrnn._checks import InputError
from jaxrnn.checkpoint import CheckpointError
from jaxrnn.lm import CELL_NAMES, LMConfig, next_token_log_probs, sample, token_log_probs
from jaxrnn.lm_train import (
    CHECKPOINT_NAME,
    TrainConfig,
    load_lm,
    make_corpus,
    ngram_baseline,
    perplexity,
    train_lm,
)

BUILTIN_CORPORA = {
    "names": ("names.txt", "lines"),  # 5,163 US first names, one per line
    "shakespeare": ("shakespeare.txt", "stream"),  # eight plays, ~1 MB
}


def read_corpus_text(path: str | None, corpus: str | None) -> tuple[str, str]:
    """(text, default mode) of a file or of a corpus shipped with jaxrnn."""
    if (path is None) == (corpus is None):
        raise InputError("train: give either a text file or --corpus, not both or neither")
    if corpus is not None:
        name, mode = BUILTIN_CORPORA[corpus]
        return resources.files("jaxrnn").joinpath("data", name).read_text(), mode
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise InputError(f"train: cannot read the text file {path!r} ({error.strerror})") from None
    try:
        body = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"train: expected a UTF-8 text file, {path!r} is not ({error.reason} at byte "
            f"{error.start})"
        ) from None
    if "\x00" in body:
        raise InputError(f"train: expected a text file, {path!r} holds NUL bytes (binary?)")
    if not body.strip():
        raise InputError(f"train: the text file {path!r} is empty")
    return body, "lines"


def _checkpoint_path(path: str) -> Path:
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def cmd_train(args: argparse.Namespace) -> int:
    body, default_mode = read_corpus_text(args.text, args.corpus)
    mode = args.mode or default_mode
    corpus = make_corpus(
        body,
        level=args.level,
        mode=mode,
        valid_fraction=args.valid_fraction,
        max_vocab=args.max_vocab,
        min_count=args.min_count,
        lowercase=args.lowercase,
        max_len=args.max_len,
        seed=args.seed,
    )
    n_train = corpus.train[1].sum() if mode == "lines" else len(corpus.train[0])
    n_valid = corpus.valid[1].sum() if mode == "lines" else len(corpus.valid[0])
    print(
        f"{args.level}-level {mode} corpus: vocabulary {corpus.vocab.size} tokens, "
        f"{n_train:,} training and {n_valid:,} validation tokens"
    )
    model = LMConfig(
        vocab_size=corpus.vocab.size,
        cell=args.cell,
        hidden_size=args.hidden,
        num_layers=args.layers,
        embedding_size=args.embedding or None,
        dropout=args.dropout,
    )
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch,
        seq_len=args.seq_len,
        stateful=args.stateful,
        learning_rate=args.lr,
        final_learning_rate=args.final_lr,
        warmup_steps=args.warmup,
        optimizer=args.optimizer,
        clip_value=args.clip_value or None,
        clip_norm=args.clip_norm or None,
        reduce_time=args.reduce_time,
        seed=args.seed,
        minutes=args.minutes,
        eval_every=args.eval_every,
        sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every,
        devices=args.devices,
    )
    try:
        result = train_lm(
            corpus, model, config, args.out, resume=args.resume, progress=not args.no_progress
        )
    except KeyboardInterrupt:
        print(f"resume with the same command and --resume (checkpoint in {args.out})")
        return 130
    if result.stopped_early:
        print(f"stopped early: {result.stopped_early}")
    nats = result.history["valid"][-1][2] if result.history["valid"] else float("nan")
    print(
        f"validation: {nats:.4f} nats/token, perplexity {perplexity(nats):.2f} "
        f"(after {result.step} steps, {result.history['seconds']:.0f} s of training)"
    )
    if args.ngram:
        baseline = ngram_baseline(corpus, args.ngram)
        print(
            f"{args.ngram}-gram baseline (interpolated Kneser–Ney) on the same split: "
            f"{baseline.nats_per_token:.4f} nats/token, perplexity {baseline.perplexity:.2f}"
        )
    print(f"checkpoint: {result.checkpoint}\nloss plot: {Path(args.out) / 'loss.png'}")
    return 0


def _context(mode: str, vocab: text.Vocab) -> list[int]:
    # A stream model never saw the zero input x⟨1⟩ = 0; it starts where a new line would.
    return [vocab.eos_id] if mode == "stream" else []


def cmd_sample(args: argparse.Namespace) -> int:
    params, model, vocab, metadata = load_lm(_checkpoint_path(args.checkpoint))
    prompt_ids = list(vocab.encode(args.prompt)) if args.prompt else []
    lines_model = metadata["mode"] == "lines"
    drawn = sample(
        params,
        model,
        jax.random.key(args.seed),
        num_samples=args.num,
        max_len=args.max_len,
        eos_id=vocab.eos_id if lines_model else None,
        temperature=0.0 if args.greedy else args.temperature,
        top_k=args.top_k,
        exclude_ids=[] if args.allow_unk else [vocab.unk_id],
        prompt=_context(metadata["mode"], vocab) + prompt_ids,
    )
    separator = "" if vocab.level == "char" else " "
    for ids in np.asarray(drawn.ids):
        continuation = vocab.decode(ids, stop_at_eos=lines_model)
        print(
            (args.prompt + separator if args.prompt and separator else args.prompt) + continuation
        )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    params, model, vocab, metadata = load_lm(_checkpoint_path(args.checkpoint))
    context = _context(metadata["mode"], vocab)
    scored = []
    for sentence in args.sentences:
        ids = list(vocab.encode(sentence, add_eos=metadata["mode"] == "lines"))
        per_token = np.asarray(token_log_probs(params, model, np.asarray(context + ids)))
        per_token = per_token[len(context) :]
        scored.append((float(per_token.sum()), sentence, ids, per_token))
    for total, sentence, ids, per_token in sorted(scored, key=lambda s: -s[0]):
        print(
            f"log P = {total:9.3f} nats   P = {math.exp(total):.3e}   "
            f"{-total / len(ids):.3f} nats/token   {sentence!r}"
        )
        if args.per_token:
            for token_id, lp in zip(ids, per_token, strict=True):
                print(f"    {vocab.tokens[token_id]!r:>12}  {lp:8.3f}")
        if args.top_k:
            prefix = np.asarray(context + [i for i in ids if i != vocab.eos_id], np.int32)
            probs = np.exp(np.asarray(next_token_log_probs(params, model, prefix)))
            best = np.argsort(-probs)[: args.top_k]
            shown = ", ".join(f"{vocab.tokens[i]!r} {probs[i]:.3f}" for i in best)
            print(f"    next token: {shown}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxrnn",
        description="Train recurrent language models on text, sample from them, score sentences.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = argparse.ArgumentDefaultsHelpFormatter

    train = commands.add_parser(
        "train", help="train a language model on a text file", formatter_class=defaults
    )
    train.add_argument("text", nargs="?", help="a UTF-8 text file")
    train.add_argument("--corpus", choices=sorted(BUILTIN_CORPORA), help="a shipped corpus")
    train.add_argument("--out", default="runs/lm", help="folder for checkpoint.npz and loss.png")
    train.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    data = train.add_argument_group("data")
    data.add_argument("--level", choices=["char", "word"], default="char")
    data.add_argument(
        "--mode",
        choices=["lines", "stream"],
        help="lines: each line a sentence ending in ⟨EOS⟩; stream: one long text "
        "(default: lines for files and names, stream for shakespeare)",
    )
    data.add_argument("--valid-fraction", type=float, default=0.1)
    data.add_argument("--max-vocab", type=int, help="keep the most frequent tokens; rest ⟨UNK⟩")
    data.add_argument("--min-count", type=int, default=1, help="rarer tokens become ⟨UNK⟩")
    data.add_argument("--lowercase", action="store_true")
    data.add_argument("--max-len", type=int, help="truncate lines to this many tokens")
    net = train.add_argument_group("model")
    net.add_argument("--cell", choices=sorted(CELL_NAMES), default="lstm")
    net.add_argument("--hidden", type=int, default=256)
    net.add_argument("--layers", type=int, default=1)
    net.add_argument("--embedding", type=int, default=0, help="0: one-hot inputs (the course)")
    net.add_argument("--dropout", type=float, default=0.0)
    opt = train.add_argument_group("training")
    opt.add_argument("--steps", type=int, default=2000)
    opt.add_argument("--minutes", type=float, help="also stop after this much training time")
    opt.add_argument("--batch", type=int, default=32)
    opt.add_argument("--seq-len", type=int, default=128, help="stream mode: tokens per example")
    opt.add_argument("--stateful", action="store_true", help="stream mode: truncated BPTT")
    opt.add_argument("--optimizer", choices=["adam", "adamw", "sgd", "rmsprop"], default="adam")
    opt.add_argument("--lr", type=float, default=2e-3)
    opt.add_argument("--final-lr", type=float, help="cosine decay to this by the last step")
    opt.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    opt.add_argument("--clip-value", type=float, default=5.0, help="0: no element-wise clip")
    opt.add_argument("--clip-norm", type=float, default=0.0, help="0: no global-norm clip")
    opt.add_argument("--reduce-time", choices=["mean", "sum"], default="mean")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument(
        "--devices",
        type=int,
        help="split each batch over this many local devices (data parallelism), --batch a "
        "multiple of it; None: as many of the local devices as divide --batch",
    )
    show = train.add_argument_group("progress")
    show.add_argument("--eval-every", type=int, default=250)
    show.add_argument("--sample-every", type=int, default=500, help="0: no samples")
    show.add_argument("--checkpoint-every", type=int, default=500)
    show.add_argument("--ngram", type=int, default=5, help="n-gram baseline order, 0: none")
    show.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(run=cmd_train)

    samp = commands.add_parser(
        "sample", help="sample novel text from a trained model", formatter_class=defaults
    )
    samp.add_argument("checkpoint", help="a checkpoint file, or the --out folder of a run")
    samp.add_argument("--num", type=int, default=10)
    samp.add_argument("--max-len", type=int, default=100)
    samp.add_argument("--temperature", type=float, default=1.0)
    samp.add_argument("--top-k", type=int)
    samp.add_argument("--greedy", action="store_true", help="always the most likely token")
    samp.add_argument("--prompt", default="", help="text the samples continue")
    samp.add_argument("--allow-unk", action="store_true", help="let samples contain ⟨UNK⟩")
    samp.add_argument("--seed", type=int, default=0)
    samp.set_defaults(run=cmd_sample)

    score = commands.add_parser(
        "score", help="log-probability of sentences under a model", formatter_class=defaults
    )
    score.add_argument("checkpoint", help="a checkpoint file, or the --out folder of a run")
    score.add_argument("sentences", nargs="+", help="sentences, ranked most likely first")
    score.add_argument("--per-token", action="store_true", help="show each token's log P")
    score.add_argument("--top-k", type=int, default=0, help="show the k likeliest next tokens")
    score.set_defaults(run=cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        code = args.run(args)
    except (InputError, CheckpointError) as error:
        print(f"jaxrnn {args.command}: error: {error}", file=sys.stderr)
        return 2
    if args.command == "train":
        print(f"done in {time.perf_counter() - start:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
