"""Notebook 11. A recurrent agent: episodes that end inside a sequence"""

from cells import code, md, setup

CELLS = [
    md("""
# 11. A recurrent agent: episodes that end inside a sequence

A reinforcement-learning agent reads one observation x⟨t⟩ at a time and acts on it, so a
recurrent policy is a cell stepped along the way: a⟨t⟩ from a⟨t−1⟩ and x⟨t⟩, then an action
drawn from π(·|a⟨t⟩). Training collects *rollouts*, T steps of many environments at once. When an
episode ends inside a rollout, the environment starts the next one at the following step, and the
agent's memory a⟨t⟩ should start again too, from a⟨0⟩ = 0: what it remembers of the last episode
says nothing about the new one.

`jaxrnn.unroll(cell, params, xs, resets=...)` takes a bool array, true at each step that starts
a new segment, whose carry begins again at the initial carry. Here we train the same GRU agent on
a memory task twice, with and without resets, and measure what the leaking memory costs.
"""),
    code(setup()),
    md("""
## The task: recall the cue

Each episode starts by showing a cue, one of K = 8 symbols. Then come 1 to 10 distractors, drawn
from the same 8 symbols, and then a query step whose observation says only "answer now": the
action at that step is the agent's answer, with reward 1 if it names the cue and 0 otherwise.
The episode then goes on for 1 to 4 more distractors and ends. Actions at the other steps change
nothing. The delay and the tail are drawn at random for each episode.

As in gym-style environments, the end of an episode is in the `done` flag, not in the
observation: x⟨t⟩ is a one-hot symbol, or the query input (n_x = K + 1). Reading the stream of
observations alone, the first symbol of an episode looks like any distractor. The environment is
written in pure JAX as two functions, `reset(key)` and `step(state, action, key)`, so that
`jax.vmap` runs many of them and `jax.lax.scan` runs them over time; `step` starts a new episode
by itself when one is done.
"""),
    code("""
import functools
import time
from typing import NamedTuple

SYMBOLS = "ABCDEFGH"
K, MAX_DELAY, MAX_TAIL = len(SYMBOLS), 10, 4
n_x = K + 1  # one-hot symbol, and one input that means "answer now"


class EnvState(NamedTuple):
    cue: jax.Array  # () the symbol to recall
    t: jax.Array  # () steps since the episode began: the cue is shown at t = 0
    query: jax.Array  # () the step that asks for the cue, 1 + the number of distractors
    end: jax.Array  # () the episode's last step, query + the tail


def observe(symbol, asking):
    return jnp.append(jax.nn.one_hot(symbol, K) * (1 - asking), asking)


def reset(key):
    k_cue, k_delay, k_tail = jax.random.split(key, 3)
    cue = jax.random.randint(k_cue, (), 0, K)
    query = 1 + jax.random.randint(k_delay, (), 1, MAX_DELAY + 1)
    end = query + jax.random.randint(k_tail, (), 1, MAX_TAIL + 1)
    return EnvState(cue, jnp.zeros((), jnp.int32), query, end), observe(cue, 0.0)


def step(state, action, key):
    \"\"\"(next state, next x, reward, done); after done, the next state is a new episode.\"\"\"
    k_new, k_symbol = jax.random.split(key)
    asked = state.t == state.query
    reward = (asked & (action == state.cue)).astype(jnp.float32)
    done = state.t == state.end
    t = state.t + 1
    distractor = jax.random.randint(k_symbol, (), 0, K)
    same = state._replace(t=t), observe(distractor, (t == state.query).astype(jnp.float32))
    state, x = jax.tree.map(lambda new, old: jnp.where(done, new, old), reset(k_new), same)
    return state, x, reward, done


@functools.partial(jax.jit, static_argnums=1)
def watch(key, steps):  # one environment; its observations do not depend on the actions
    def one(carry, key):
        state, x = carry
        next_state, next_x, _, done = step(state, 0, key)
        return (next_state, next_x), (x, state, done)

    k_reset, k_steps = jax.random.split(key)
    return jax.lax.scan(one, reset(k_reset), jax.random.split(k_steps, steps))[1]


xs, states, dones = jax.device_get(watch(jax.random.key(3), 40))
shown = ["?" if x[K] else SYMBOLS[np.argmax(x)] for x in xs]
print("x⟨t⟩    ", " ".join(shown))
print("done    ", " ".join("d" if d else "." for d in dones))
print("cue     ", " ".join("^" if t == 0 else " " for t in states.t))
answers = [SYMBOLS[c] if s == "?" else " " for c, s in zip(states.cue, shown, strict=True)]
print("answer  ", " ".join(answers))
"""),
    md("""
The agent sees the first line and, from the environment, the `done` flags; the last two lines
are what it has to work out. An agent that starts from a⟨0⟩ = 0 at every new episode knows that
the first symbol it reads is the cue. An agent whose memory runs on from one episode to the next
only knows the symbols since the last query: the cue is the 2nd, 3rd, 4th or 5th of them,
depending on the unknown length of the last episode's tail.

## The agent

A GRU with n_a = 32 and one linear head on a⟨t⟩ that gives both the K logits of the policy
π(·|a⟨t⟩) and a value v(a⟨t⟩), the reward it expects. `rollout` acts for T steps in N
environments at once: `jax.lax.scan` over time of the policy's `cell.step` (which takes a batch
of carries and observations) and the vmapped environments' `step`. Where x⟨t⟩ starts a new
episode (done⟨t−1⟩), the agent with resets first puts its carry back to a⟨0⟩. Each rollout
starts from fresh environments and from a⟨0⟩ = 0, the carry that `unroll` resets to. It records
the log-probability of each action it took.
"""),
    code("""
class AgentParams(NamedTuple):
    gru: jaxrnn.GRUParams
    head: jaxrnn.DenseParams  # a⟨t⟩ → K policy logits and the value v(a⟨t⟩)


class Rollout(NamedTuple):  # each field (T, N, ...): time first, as lax.scan stacks it
    x: jax.Array  # observations x⟨t⟩
    new_episode: jax.Array  # done⟨t−1⟩: x⟨t⟩ is the first observation of an episode
    action: jax.Array
    log_p: jax.Array  # log π(action | a⟨t⟩) while acting
    reward: jax.Array
    state: EnvState  # which steps ask, which episode, for the analysis


cell, n_a = jaxrnn.gru(), 32
if SMALL:
    N, T, updates, seeds = 8, 24, 3, 1
else:
    N, T, updates, seeds = 64, 48, 1500, 3


def init(key):
    k_gru, k_head = jax.random.split(key)
    return AgentParams(cell.init(k_gru, n_x, n_a), jaxrnn.dense_init(k_head, n_a, K + 1))


def heads(params, a):  # log π(·|a⟨t⟩) and v(a⟨t⟩)
    z = jaxrnn.dense(params.head, a)
    return jax.nn.log_softmax(z[..., :K]), z[..., K]


def rollout(params, key, use_resets):
    \"\"\"T steps of N environments; use_resets: () bool.\"\"\"
    k_reset, k_steps = jax.random.split(key)
    state, x = jax.vmap(reset)(jax.random.split(k_reset, N))
    a0 = cell.init_carry(params.gru, (N,))

    def one_step(carry, key):
        state, x, a, new_episode = carry
        k_act, k_env = jax.random.split(key)  # the environments' keys never depend on actions
        a = jnp.where((new_episode & use_resets)[:, None], a0, a)
        a, _ = cell.step(params.gru, a, x)
        log_pi, _ = heads(params, a)
        action = jax.random.categorical(k_act, log_pi)
        log_p = jnp.take_along_axis(log_pi, action[:, None], axis=-1)[:, 0]
        next_state, next_x, reward, done = jax.vmap(step)(state, action, jax.random.split(k_env, N))
        return (next_state, next_x, a, done), Rollout(x, new_episode, action, log_p, reward, state)

    start = (state, x, a0, jnp.zeros(N, bool))
    return jax.lax.scan(one_step, start, jax.random.split(k_steps, T))[1]
"""),
    md("""
## Training: the same a⟨t⟩ again, with `unroll` and `resets`

The gradient needs log π(action⟨t⟩|a⟨t⟩) as a function of the parameters, so the training pass
recomputes every a⟨t⟩ of the rollout in one `jaxrnn.unroll` over its observations (`time_major`,
as the scan stacked them), with `resets=new_episode` for the agent with resets. It must compute
exactly what the agent computed while acting, or the gradient is that of another policy: we check
at each update that the two sets of log-probabilities agree.

The loss is the advantage actor-critic one: REINFORCE with the value as baseline,
−log π(action⟨t⟩|a⟨t⟩) · (r⟨t⟩ − v(a⟨t⟩)), plus the squared error of v and a small entropy bonus
that keeps the agent exploring. The answers do not change what the environment shows next, so each
action is judged by its own reward (a discount γ = 0). The optimizer is optax's Adam after
clipping the global gradient norm to 1 (`jaxrnn.make_optimizer`).

Both kinds of agent, and several seeds of each, train at once: their parameters are stacked along
a leading axis and `jax.vmap` maps the whole update (rollout and gradient step) over them, so one
compiled program serves both; for the agent without resets the flag turns every reset off.
Agents with the same seed start from the same parameters and get the same keys: since the
environments' randomness does not depend on the actions, they see the same observations, step
for step.
"""),
    code("""
def loss_fn(params, roll, use_resets):
    \"\"\"Advantage actor-critic on one rollout; aux: max |log-probs recomputed − recorded|.\"\"\"
    resets = roll.new_episode & use_resets
    _, a = jaxrnn.unroll(cell, params.gru, roll.x, resets=resets, time_major=True)
    log_pi, v = heads(params, a)
    log_p = jnp.take_along_axis(log_pi, roll.action[..., None], axis=-1)[..., 0]
    advantage = roll.reward - v
    entropy = -jnp.sum(jnp.exp(log_pi) * log_pi, axis=-1)
    loss = (
        -jnp.mean(log_p * jax.lax.stop_gradient(advantage))
        + 0.5 * jnp.mean(advantage**2)
        - 0.01 * jnp.mean(entropy)
    )
    return loss, jnp.max(jnp.abs(log_p - roll.log_p))


def success(roll):  # the share of queries answered right
    return roll.reward.sum() / (roll.state.t == roll.state.query).sum()


optimizer = jaxrnn.make_optimizer(3e-3, clip_norm=1.0)
train_step = jaxrnn.make_train_step(loss_fn, optimizer, jit=False, has_aux=True)


@jax.jit
@jax.vmap
def update(params, opt_state, key, use_resets):
    roll = rollout(params, key, use_resets)
    params, opt_state, _, gap = train_step(params, opt_state, roll, use_resets)
    return params, opt_state, success(roll), gap


@jax.jit
@jax.vmap
def start(key):
    params = init(key)
    return params, optimizer.init(params)


use_resets = np.repeat([True, False], seeds)  # the first `seeds` agents reset, the others don't
params, opt_state = start(jnp.tile(jax.random.split(jax.random.key(0), seeds), 2))
history = []
start = time.perf_counter()
for i in range(updates):
    keys = jnp.tile(jax.random.split(jax.random.key(i), seeds), 2)  # same keys for both kinds
    params, opt_state, rate, gap = update(params, opt_state, keys, use_resets)
    history.append((rate, gap))
curves, gaps = (np.array(h) for h in zip(*jax.device_get(history), strict=True))
print(
    f"{updates} updates of {2 * seeds} agents, {N} environments × {T} steps each: "
    f"{time.perf_counter() - start:.0f} s"
)
print(f"largest |log π from unroll − log π while acting|, every update and agent: {gaps.max():.1e}")
assert gaps.max() < 1e-5
last = curves[-min(100, updates) :].mean(axis=0)
for name, use in [("with resets", True), ("without resets", False)]:
    runs = "  ".join(f"{s:.1%}" for s in last[use_resets == use])
    print(f"{name:15} success over the last {min(100, updates)} updates: {runs}")
"""),
    md("""
## What the leak costs

We let the trained agents act on fresh rollouts and sort the queries by the episode's position in
its rollout: the first episode starts at the rollout's start, where both agents begin from
a⟨0⟩ = 0 and so know the first symbol is the cue; every later episode follows another. On the same
rollouts we recompute the log-probabilities with `unroll`, once with the agent's own choice of
resets and once with the other choice, to see what a training pass that disagreed with the acting
pass would compute.

For the agent without resets there is a ceiling we can compute: knowing every symbol since the
last query, how often can the best guess name the cue, when the tail of the last episode is
unknown? The number of steps between two queries, tail + 1 + delay, narrows the cue's position
down to at most four candidates; the best guess takes the symbol most of them show. Over a whole
rollout, the first episode's queries can all be answered, which raises the ceiling of the
learning curves.
"""),
    code("""
@jax.jit
@jax.vmap
def evaluate(params, key, use_resets):
    roll = rollout(params, key, use_resets)
    gaps = [loss_fn(params, roll, flag)[1] for flag in (use_resets, ~use_resets)]
    return roll, jnp.stack(gaps)


positions = 5  # 1, 2, 3, 4 and "5 or later"
hits, asked = np.zeros((2, 2 * seeds, positions))
for i in range(1 if SMALL else 10):
    keys = jnp.tile(jax.random.split(jax.random.key(10_000 + i), seeds), 2)
    roll, eval_gaps = jax.device_get(evaluate(params, keys, use_resets))
    query = roll.state.t == roll.state.query  # (agents, T, N)
    episode = np.minimum(np.cumsum(roll.new_episode, axis=1), positions - 1)
    for j in range(2 * seeds):
        np.add.at(hits[j], episode[j][query[j]], roll.reward[j][query[j]])
        np.add.at(asked[j], episode[j][query[j]], 1)
by_position = hits / np.maximum(asked, 1)
assert np.array_equal(roll.x[:seeds], roll.x[seeds:])  # both kinds saw the same observations
print(
    f"log-prob gap, training pass as acting: {eval_gaps[:, 0].max():.1e}; "
    f"the other choice of resets: {eval_gaps[:, 1].min():.2f} to {eval_gaps[:, 1].max():.2f}"
)


def best_guess_without_start(rng, m=200_000):
    \"\"\"Success of the best guess from the symbols since the last query, by simulation.\"\"\"
    tail = rng.integers(1, MAX_TAIL + 1, m)
    delay = rng.integers(1, MAX_DELAY + 1, m)
    seen = rng.integers(0, K, (m, MAX_TAIL + 1))  # the first symbols after the last query
    cue = seen[np.arange(m), tail]
    between = tail + 1 + delay  # what the agent can count
    votes = np.zeros((m, K))
    for u in range(1, MAX_TAIL + 1):  # every tail that fits the count is equally likely
        fits = (between - 1 - u >= 1) & (between - 1 - u <= MAX_DELAY)
        votes[np.arange(m), seen[:, u]] += fits
    return np.mean(votes.argmax(axis=1) == cue)


ceiling = best_guess_without_start(np.random.default_rng(0))
for name, use in [("with resets", True), ("without resets", False)]:
    rate = by_position[use_resets == use].mean(axis=0)
    print(f"{name:15}", "  ".join(f"episode {p + 1}: {r:.1%}" for p, r in enumerate(rate)))
first = asked[:, 0].sum() / asked.sum()  # the share of queries in a rollout's first episode
ceiling_all = first + (1 - first) * ceiling
print(f"without resets, best possible after the first episode {ceiling:.1%}, chance {1 / K:.1%}")
print(f"without resets, best possible over a rollout {ceiling_all:.1%} ({first:.0%} in episode 1)")
"""),
    code("""
COLORS = {True: "tab:blue", False: "tab:red"}
LABELS = {True: "with resets", False: "without resets"}
window = min(25, updates)
smooth = np.array([np.convolve(c, np.ones(window) / window, "valid") for c in curves.T])
steps_axis = np.arange(window, updates + 1)

fig, (ax_learn, ax_pos) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=[3, 2])
for j, use in enumerate(use_resets):
    label = LABELS[use] if j % seeds == 0 else None
    ax_learn.plot(steps_axis, smooth[j], color=COLORS[use], alpha=0.8, lw=1.2, label=label)
best = "best possible without resets"
ax_learn.axhline(ceiling_all, color="tab:red", ls="--", lw=1, label=best)
ax_learn.axhline(1 / K, color="grey", ls=":", label="chance")
ax_learn.set_xlabel("training updates")
ax_learn.set_ylabel(f"queries answered right ({window}-update mean)")
ax_learn.set_ylim(0, 1.03)
ax_learn.set_title(f"Learning curves, {seeds} seed{'s' * (seeds > 1)} each")
ax_learn.legend(fontsize=8, loc="center right", bbox_to_anchor=(1, 0.75))

where = np.arange(1, positions + 1)
for shift, use in [(-0.2, True), (0.2, False)]:
    rates = by_position[use_resets == use]
    mean = rates.mean(axis=0)
    ax_pos.bar(where + shift, mean, 0.4, color=COLORS[use], alpha=0.7, label=LABELS[use])
    ax_pos.plot(np.tile(where + shift, (seeds, 1)).T, rates.T, "k.", ms=4)
ax_pos.plot([1.5, positions + 0.5], [ceiling, ceiling], color="tab:red", ls="--", lw=1, label=best)
ax_pos.axhline(1 / K, color="grey", ls=":")
ax_pos.set_xticks(where, [*map(str, where[:-1]), f"{positions}+"])
ax_pos.set_xlabel("episode's position in the rollout")
ax_pos.set_ylabel("queries answered right (dots: each seed)")
ax_pos.set_ylim(0, 1.03)
ax_pos.set_title("After training, on fresh rollouts")
ax_pos.legend(fontsize=8, loc="lower left")
fig.tight_layout()
plt.show()
"""),
    md("""
## Takeaways

- With resets (a⟨t⟩ back to a⟨0⟩ = 0 at each new episode, while acting and in the training
  unroll), all 3 GRU agents learned to recall the cue within about 300 updates: 99.4–99.6% of
  the queries answered right over the last 100 of 1,500 updates, and 99–100% at every position
  of an episode in its rollout.
- Without resets, with the same seeds and the same observations, they answered 44.7–51.0%,
  still rising slowly, below the 58% that is the best possible over a whole rollout. In
  the first episode of a rollout, which starts from a⟨0⟩ = 0 anyway, they answered 92%; in every
  later episode 35–37%: above chance (12.5%) but below the 46% that the best guess reaches
  without knowing where the episode began. The memory still holds the symbols; what leaks away
  is the anchor that says which of them was the cue.
- The training pass, `jaxrnn.unroll(..., resets=new_episode, time_major=True)`, gave the
  log-probabilities recorded while acting to within 1e-6 at every update. With the other choice
  of resets it was off by 10 to 23 nats on the trained policies: its gradient would have been
  that of another policy.
- One compiled update, `jax.vmap`ped over both kinds of agent and 3 seeds, ran 1,500 updates of
  64 environments × 48 steps in under two minutes on two CPU cores.
"""),
]
