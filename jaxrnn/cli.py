"""The command line: ``jaxrnn train``, ``jaxrnn sample``, ``jaxrnn score``.

jaxrnn train --corpus names --out runs/names          # or any text file: jaxrnn train FILE
jaxrnn sample runs/names --num 10 --temperature 0.8
jaxrnn score runs/names "anna" "xqzzy"
jaxrnn score runs/names "anna" --with runs/names_b   # two runs of one model, mixed
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import time
from importlib import resources
from pathlib import Path

from jaxrnn.errors import InputError
from jaxrnn.runs import Interrupted

# Nothing here imports JAX at module level: ``jaxrnn --help`` and argument errors answer at once,
# and the commands import what they need when they run.

CELL_NAMES = (  # jaxrnn.lm.CELL_NAMES, spelt out so that the parser needs no JAX
    "gru",
    "gru_reset_after",
    "lstm",
    "lstm_peephole",
    "min_gru",
    "min_lstm",
    "rnn",
    "rnn_relu",
    "simplified_gru",
)
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")  # jaxrnn.lm_settings.OPTIMIZERS

BUILTIN_CORPORA = {
    "names": ("names.txt", "lines"),  # 5,163 US first names, one per line
    "shakespeare": ("shakespeare.txt", "stream"),  # eight plays, ~1 MB
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, in the option's own words where its help gives them."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _require(ok: bool, flag: str, expected: str, got) -> None:
    if not ok:
        raise InputError(f"expected {flag} to be {expected}, got {got!r}")


def read_corpus_text(path: str | None, corpus: str | None) -> tuple[str, str]:
    """(text, default mode) of a file or of a corpus shipped with jaxrnn."""
    if (path is None) == (corpus is None):
        raise InputError("give either a text file or --corpus, not both or neither")
    if corpus is not None:
        name, mode = BUILTIN_CORPORA[corpus]
        return resources.files("jaxrnn").joinpath("data", name).read_text(), mode
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise InputError(f"cannot read the text file {path!r} ({error.strerror})") from None
    try:
        body = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"expected a UTF-8 text file, {path!r} is not ({error.reason} at byte {error.start})"
        ) from None
    if "\x00" in body:
        raise InputError(f"expected a text file, {path!r} holds NUL bytes (binary?)")
    if not body.strip():
        raise InputError(f"the text file {path!r} is empty")
    return body, "lines"


def _check_train_args(args: argparse.Namespace) -> None:
    """The options that make_corpus reads, named as the user typed them; `check_settings` names
    the rest."""
    fraction = args.valid_fraction
    _require(0 < fraction < 1, "--valid-fraction", "strictly between 0 and 1", fraction)
    _require(
        args.max_vocab is None or args.max_vocab >= 3, "--max-vocab", "an int >= 3", args.max_vocab
    )
    _require(args.min_count >= 1, "--min-count", "an int >= 1", args.min_count)
    _require(args.max_len is None or args.max_len >= 1, "--max-len", "an int >= 1", args.max_len)
    _require(args.embedding >= 0, "--embedding", "an int >= 0 (0: one-hot)", args.embedding)
    _require(0 <= args.ngram <= 20, "--ngram", "an int in [0, 20] (0: none)", args.ngram)
    for flag, value in (("--clip-value", args.clip_value), ("--clip-norm", args.clip_norm)):
        _require(math.isfinite(value) and value >= 0, flag, "a finite number >= 0", value)


def _check_mode_options(args: argparse.Namespace, mode: str) -> None:
    """Refuses an option of the other data mode, which the run would silently ignore."""
    given = {  # option: (the mode it acts in, given on the command line?)
        "--seq-len": ("stream", args.seq_len is not None),
        "--stateful": ("stream", args.stateful),
        "--max-len": ("lines", args.max_len is not None),
        "--pack" if args.pack else "--no-pack": ("lines", args.pack is not None),
    }
    if args.mode:
        got = f"--mode {mode}"
    else:
        source = f"--corpus {args.corpus}" if args.corpus else "a text file"
        got = f"{mode} mode (the default for {source})"
    for flag, (needs, asked) in given.items():
        if asked and mode != needs:
            raise InputError(
                f"{flag} acts in {needs} mode only: expected --mode {needs}, got {got}, where "
                f"{flag} has no effect; drop it or pass --mode {needs}"
            )


def cmd_train(args: argparse.Namespace) -> int:
    from jaxrnn import runs
    from jaxrnn.lm import LMConfig
    from jaxrnn.lm_settings import CLI_NAMES, check_settings
    from jaxrnn.lm_train import (
        TrainConfig,
        check_data,
        make_corpus,
        ngram_baseline,
        perplexity,
        train_lm,
    )

    out = Path(args.out)
    # Before anything is read or trained: a run in --out is never replaced by accident.
    runs.check_run_folder(out, resume=args.resume, overwrite=args.overwrite, how=runs.CLI)
    _check_train_args(args)
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch,
        seq_len=TrainConfig._field_defaults["seq_len"] if args.seq_len is None else args.seq_len,
        stateful=args.stateful,
        pack=args.pack is not False,
        learning_rate=args.lr,
        final_learning_rate=args.final_lr,
        warmup_steps=args.warmup,
        optimizer=args.optimizer,
        clip_value=args.clip_value or None,
        clip_norm=args.clip_norm or None,
        reduce_time=args.reduce_time,
        seed=args.seed,
        minutes=args.minutes,
        decay_over=args.decay_over,
        eval_every=args.eval_every,
        sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every,
        devices=args.devices,
    )
    check_settings(None, config, fn="train", names=CLI_NAMES)  # before the text is read
    body, default_mode = read_corpus_text(args.text, args.corpus)
    mode = args.mode or default_mode
    _check_mode_options(args, mode)
    config = config._replace(pack=config.pack and mode == "lines")
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
    model = LMConfig(
        vocab_size=corpus.vocab.size,
        cell_name=args.cell,
        hidden_size=args.hidden,
        num_layers=args.layers,
        embedding_size=args.embedding or None,
        dropout_rate=args.dropout,
    )
    time_steps = corpus.train[0].shape[1] if mode == "lines" else config.seq_len
    check_settings(model, config, fn="train", names=CLI_NAMES, time_steps=time_steps)
    check_data(corpus, config, fn="train", names=CLI_NAMES)  # before --out is created
    n_train = corpus.train[1].sum() if mode == "lines" else len(corpus.train[0])
    n_valid = corpus.valid[1].sum() if mode == "lines" else len(corpus.valid[0])
    print(
        f"{args.level}-level {mode} corpus: vocabulary {corpus.vocab.size} tokens, "
        f"{n_train:,} training and {n_valid:,} validation tokens"
    )
    try:
        result = train_lm(
            corpus,
            model,
            config,
            out,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            option_names=runs.CLI,
        )
    except runs.Interrupted as interrupted:
        global _stopping
        _stopping = True  # the checkpoint is saved and said so; nothing may interrupt the rest
        print(f"resume with the same command and --resume (checkpoint in {out})")
        return 128 + interrupted.signum
    if result.stopped_early and not result.failed:  # a failure was reported as it happened
        print(f"stopped early: {result.stopped_early}")
    nats = result.history.valid[-1].nats if result.history.valid else float("nan")
    print(
        f"validation: {nats:.4f} nats/token, perplexity {perplexity(nats):.2f} "
        f"(after {result.step} steps, {result.history.seconds:.0f} s of training)"
    )
    if args.ngram and not result.failed:
        baseline = ngram_baseline(corpus, args.ngram)
        print(
            f"{args.ngram}-gram baseline (interpolated Kneser–Ney) on the same split: "
            f"{baseline.nats_per_token:.4f} nats/token, perplexity {baseline.perplexity:.2f}"
        )
    print(f"checkpoint: {result.checkpoint or 'none written'}\nloss plot: {out / 'loss.png'}")
    return 1 if result.failed else 0


def _unknown_note(vocab, tokens: list[str], read_as: str, *, show: bool) -> str | None:
    """The note on ``tokens`` that the vocabulary lacks, "k of n tokens not in the vocabulary,
    {read_as} <unk>" (naming them if ``show``); None where every token is known."""
    unknown = [token for token in tokens if vocab.index(token) == vocab.unk_id]
    if not unknown:
        return None
    return (
        f"{len(unknown)} of {len(tokens)} tokens not in the vocabulary, {read_as} "
        f"{vocab.tokens[vocab.unk_id]}"
        + (f": {', '.join(repr(t) for t in unknown)}" if show else "")
    )


def _context(mode: str, vocab) -> list[int]:
    # A stream model never saw the zero input x⟨1⟩ = 0; it starts where a new line would.
    return [vocab.eos_id] if mode == "stream" else []


def _load_models(args: argparse.Namespace):
    """The checkpoint's (params, model, vocab, metadata); with ``--with``, params are the
    `jaxrnn.lm.Mixture` of it and every run named there, each of the same model, vocabulary and
    mode."""
    from jaxrnn.lm import mixture
    from jaxrnn.lm_train import load_lm

    params, model, vocab, metadata = load_lm(args.checkpoint)
    if not args.mix_with:
        return params, model, vocab, metadata
    members = [params]
    for other in args.mix_with:
        other_params, other_model, other_vocab, other_metadata = load_lm(other)
        differ = [
            what
            for what, same in (
                # dropout acts in training only: runs that differ in it still mix
                ("model", other_model._replace(dropout_rate=model.dropout_rate) == model),
                ("vocabulary", other_vocab == vocab),
                ("mode", other_metadata["mode"] == metadata["mode"]),
            )
            if not same
        ]
        if differ:
            raise InputError(
                f"--with {other}: expected a run with the model, vocabulary and mode of "
                f"{args.checkpoint} to mix with it; its {' and '.join(differ)} differ"
                + (f" ({other_model} against {model})" if "model" in differ else "")
            )
        members.append(other_params)
    return mixture(members), model, vocab, metadata


def cmd_sample(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from jaxrnn.lm import sample

    _require(args.num >= 1, "--num", "an int >= 1", args.num)
    _require(args.max_len >= 1, "--max-len", "an int >= 1", args.max_len)
    temperature = args.temperature
    _require(
        math.isfinite(temperature) and temperature >= 0,
        "--temperature",
        "a finite number >= 0",
        temperature,
    )
    _require(args.top_k is None or args.top_k >= 1, "--top-k", "an int >= 1", args.top_k)
    _require(0 <= args.seed < 2**63, "--seed", "an int in [0, 2**63)", args.seed)
    params, model, vocab, metadata = _load_models(args)
    top_k, size = args.top_k, model.vocab_size
    _require(
        top_k is None or top_k <= size, "--top-k", f"an int in [1, {size}] (the vocabulary)", top_k
    )
    from jaxrnn._checks import MEMORY_LIMIT_BYTES, gib

    # ids, and per step and sample every member's logits and every layer's carry, in 4 bytes
    members = 1 + len(args.mix_with)
    carries = 4 * model.hidden_size * model.num_layers
    per_sample = args.max_len * 3 + members * (args.max_len * model.vocab_size + carries)
    need = 4 * args.num * per_sample
    if need > MEMORY_LIMIT_BYTES:
        raise InputError(
            f"{args.num:,} samples of up to {args.max_len:,} tokens would need about {gib(need)}, "
            f"more than the {gib(MEMORY_LIMIT_BYTES)} this machine can give; use a smaller --num "
            "or --max-len"
        )
    prompt_ids = list(vocab.encode(args.prompt)) if args.prompt else []
    unknown = _unknown_note(vocab, vocab.tokenize(args.prompt), "read as", show=True)
    if unknown:
        print(f"jaxrnn sample: warning: --prompt: {unknown}", file=sys.stderr)
    lines_model = metadata["mode"] == "lines"
    drawn = sample(
        params,
        model,
        jax.random.key(args.seed),
        num_samples=args.num,
        max_len=args.max_len,
        eos_id=vocab.eos_id if lines_model else None,
        temperature=0.0 if args.greedy else temperature,
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
    import numpy as np

    from jaxrnn.lm import next_token_log_probs, token_log_probs

    _require(args.top_k >= 0, "--top-k", "an int >= 0", args.top_k)
    for i, sentence in enumerate(args.sentences):
        if not sentence.strip():
            raise InputError(
                f"expected sentences with at least one token, got {sentence!r} (sentence {i + 1})"
            )
    params, model, vocab, metadata = _load_models(args)
    context = _context(metadata["mode"], vocab)
    scored = []
    for sentence in args.sentences:
        tokens = vocab.tokenize(sentence)
        if not tokens:
            raise InputError(f"expected a sentence with at least one token, got {sentence!r}")
        unknown = _unknown_note(vocab, tokens, "scored as", show=args.per_token)
        ids = list(vocab.encode(sentence, add_eos=metadata["mode"] == "lines"))
        per_token = np.asarray(token_log_probs(params, model, np.asarray(context + ids)))
        per_token = per_token[len(context) :]
        scored.append((float(per_token.sum()), sentence, ids, per_token, tokens, unknown))
    for total, sentence, ids, per_token, tokens, unknown in sorted(scored, key=lambda s: -s[0]):
        print(
            f"log P = {total:9.3f} nats   P = {math.exp(total):.3e}   "
            f"{-total / len(ids):.3f} nats/token   {sentence!r}"
        )
        if unknown:
            print(f"    {unknown}")
        if args.per_token:
            shown = [*tokens, vocab.tokens[vocab.eos_id]] if len(ids) > len(tokens) else tokens
            for token, token_id, lp in zip(shown, ids, per_token, strict=True):
                mark = f" (as {vocab.tokens[token_id]})" if token_id == vocab.unk_id else ""
                print(f"    {token!r:>12}  {lp:8.3f}{mark}")
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
    defaults = _HelpFormatter

    train = commands.add_parser(
        "train", help="train a language model on a text file", formatter_class=defaults
    )
    train.add_argument(
        "text", nargs="?", help="a UTF-8 text file, one sentence per line (or --corpus)"
    )
    train.add_argument(
        "--corpus",
        choices=sorted(BUILTIN_CORPORA),
        help="a shipped corpus, instead of a text file (default: none)",
    )
    train.add_argument("--out", default="runs/lm", help="folder for checkpoint.npz and loss.png")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out with a new one"
    )
    data = train.add_argument_group("data")
    data.add_argument(
        "--level", choices=["char", "word"], default="char", help="tokens are characters or words"
    )
    data.add_argument(
        "--mode",
        choices=["lines", "stream"],
        help="lines: each line a sentence ending in ⟨EOS⟩; stream: one long text "
        "(default: lines for files and names, stream for shakespeare)",
    )
    data.add_argument(
        "--valid-fraction", type=float, default=0.1, help="share of the text held out"
    )
    data.add_argument(
        "--max-vocab", type=int, help="keep the most frequent tokens, the rest ⟨UNK⟩ (default: all)"
    )
    data.add_argument("--min-count", type=int, default=1, help="rarer tokens become ⟨UNK⟩")
    data.add_argument("--lowercase", action="store_true", help="lower-case the text first")
    data.add_argument(
        "--max-len",
        type=int,
        help="lines mode: truncate lines to this many tokens (default: no limit)",
    )
    net = train.add_argument_group("model")
    net.add_argument("--cell", choices=CELL_NAMES, default="lstm", help="the recurrent cell")
    net.add_argument("--hidden", type=int, default=256, help="hidden size n_a of each layer")
    net.add_argument("--layers", type=int, default=1, help="recurrent layers (a deep RNN if > 1)")
    net.add_argument(
        "--embedding", type=int, default=0, help="embedding size; 0: one-hot inputs (the course)"
    )
    net.add_argument(
        "--dropout", type=float, default=0.0, help="dropout on each layer's input, in [0, 1)"
    )
    opt = train.add_argument_group("training")
    opt.add_argument("--steps", type=int, default=2000, help="training steps in all")
    opt.add_argument(
        "--minutes", type=float, help="also stop after this much training time (default: no limit)"
    )
    opt.add_argument(
        "--decay-over",
        choices=("steps", "minutes"),
        default="steps",
        help="what the decay to --final-lr ends with: --steps, or --minutes of training time "
        "(whatever the step rate turns out to be)",
    )
    opt.add_argument("--batch", type=int, default=32, help="sequences per step")
    opt.add_argument("--seq-len", type=int, help="stream mode: tokens per example (default: 128)")
    opt.add_argument("--stateful", action="store_true", help="stream mode: truncated BPTT")
    opt.add_argument(
        "--pack",
        action=argparse.BooleanOptionalAction,
        help="lines mode: several whole lines to a row, each from a reset state, not one line "
        "padded to the longest (default: --pack)",
    )
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="the update rule")
    opt.add_argument("--lr", type=float, default=2e-3, help="learning rate (peak, with --warmup)")
    opt.add_argument(
        "--final-lr",
        type=float,
        help="cosine decay to this by the last step (default: constant --lr)",
    )
    opt.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    opt.add_argument("--clip-value", type=float, default=5.0, help="0: no element-wise clip")
    opt.add_argument("--clip-norm", type=float, default=0.0, help="0: no global-norm clip")
    opt.add_argument(
        "--reduce-time",
        choices=["mean", "sum"],
        default="mean",
        help="loss per sequence: mean or sum over its steps",
    )
    opt.add_argument("--seed", type=int, default=0, help="seed of init, batches and dropout")
    opt.add_argument(
        "--devices",
        type=int,
        help="split each batch over this many local devices (data parallelism), --batch a "
        "multiple of it (default: as many of the local devices as divide --batch)",
    )
    show = train.add_argument_group("progress")
    show.add_argument("--eval-every", type=int, default=250, help="steps between evaluations")
    show.add_argument("--sample-every", type=int, default=500, help="0: no samples")
    show.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    show.add_argument("--ngram", type=int, default=5, help="n-gram baseline order, 0: none")
    show.add_argument(
        "--no-progress", action="store_true", help="no progress bar or progress lines"
    )
    train.set_defaults(run=cmd_train)

    samp = commands.add_parser(
        "sample", help="sample novel text from a trained model", formatter_class=defaults
    )
    samp.add_argument("checkpoint", help="a checkpoint file, or the --out folder of a run")
    samp.add_argument("--num", type=int, default=10, help="how many samples")
    samp.add_argument("--max-len", type=int, default=100, help="tokens per sample at most")
    samp.add_argument(
        "--temperature", type=float, default=1.0, help="< 1 sharper, > 1 flatter; 0: greedy"
    )
    samp.add_argument("--top-k", type=int, help="draw from the k likeliest tokens (default: all)")
    samp.add_argument("--greedy", action="store_true", help="always the most likely token")
    samp.add_argument("--prompt", default="", help="text the samples continue (default: none)")
    samp.add_argument("--allow-unk", action="store_true", help="let samples contain ⟨UNK⟩")
    samp.add_argument("--seed", type=int, default=0, help="seed of the draws")
    samp.set_defaults(run=cmd_sample)

    score = commands.add_parser(
        "score", help="log-probability of sentences under a model", formatter_class=defaults
    )
    score.add_argument("checkpoint", help="a checkpoint file, or the --out folder of a run")
    score.add_argument("sentences", nargs="+", help="sentences, ranked most likely first")
    score.add_argument(
        "--per-token", action="store_true", help="show each token's log P and the unknown ones"
    )
    score.add_argument("--top-k", type=int, default=0, help="show the k likeliest next tokens")
    score.set_defaults(run=cmd_score)
    for command in (samp, score):
        command.add_argument(
            "--with",
            dest="mix_with",
            action="append",
            default=[],
            metavar="RUN",
            help="also read this run (a checkpoint or --out folder of the same model and "
            "vocabulary), each token's distribution the mean of the runs'; repeatable "
            "(default: the one run)",
        )
    return parser


_stopping = False  # the run was interrupted and saved: the command ends, further signals ignored


def _exit_at_once(signum, frame):
    """SIGINT or SIGTERM outside training (which handles its own): nothing is being written that
    an exit could leave half done (checkpoints and plots are renamed into place whole), so the
    process ends at once with exit code 128 + signal. Raising instead would be lost where the
    signal lands inside a callback that ignores exceptions, such as XLA's garbage collection."""
    if _stopping:
        return
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        print(f"jaxrnn: {signal.Signals(signum).name}, exiting", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    global _stopping
    _stopping = False
    previous = {}
    if __name__ == "__main__" or argv is None:  # a process of its own: a signal ends it at once
        with contextlib.suppress(ValueError):
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, _exit_at_once)
    try:
        code = args.run(args)
        if args.command == "train":
            print(f"done in {time.perf_counter() - start:.0f} s")
        sys.stdout.flush()  # a reader that has gone (`| head`) shows here, not at Python's exit
    except Interrupted as interrupted:  # training stopped by a signal, its checkpoint saved
        return 128 + interrupted.signum
    except BrokenPipeError:  # the reader of the output has gone: end quietly, as SIGPIPE would
        from jaxrnn.progress import mute_closed_streams

        mute_closed_streams()
        return 128 + signal.SIGPIPE
    except Exception as error:
        from jaxrnn.checkpoint import CheckpointError

        if not isinstance(error, InputError | CheckpointError):
            raise
        message = str(error).removeprefix(f"{args.command}: ")
        print(f"jaxrnn {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        if not _stopping:  # an ending process keeps ignoring signals until it has ended
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return code


if __name__ == "__main__":
    sys.exit(main())
