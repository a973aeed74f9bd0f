"""`memstream eval team-pool --dataset F`: does the pooled team state route a question to the
teammates whose memories answer it?

Teams and agents from LoCoMo-format data: each conversation is a team; its sessions are cut
into `buckets` contiguous groups, and each speaker in each group is an agent (2 speakers x 4
buckets = 8 agents a team). Every turn (`memory_text`, embedded by MiniLM) is one memory of
its agent, folded into the agent's state by `TeamStates.update` in dialogue order, exactly
as the stream would. Evidence is read only to score.

Routing: per question, the team's agents are ranked by the query-driven multi-head
attention over their memory tokens (each agent's latest `slots` memories,
`TeamStates.memory_team`; an agent's weight is its tokens' summed attention: the effect),
by the same attention over one recurrent state per agent (`team_attention`), and by the
baselines, in the same run: a uniform random order (expected value, exact), the cosine of
the question to each agent's centroid (the plain mean of its memory vectors), to its state,
and to its best-matching memory token (`best_memory_cosine`: the same tokens as the effect,
without attention). `top1`/`top2`: share of questions whose top 1/2
agents hold at least one evidence turn; `mrr` of the first such agent; `evidence_top_m`:
share of evidence turns held by the top m agents.

Retrieval: the question searches (cosine, top k) only the turns of the top-m agents of a
routing, against all of the conversation's turns: recall@k of the evidence turns and the
share of the turns searched.

Diagnostics, same run: `team_attention_over_centroids` (the attention over the centroids
instead of the states: what the attention itself adds over a cosine on the same vectors)
and `alpha_sweep` (routing at other state factors; 0 makes each state its agent's centroid),
which parts the effect of the recurrent state's recency from that of the attention.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memstream.eval.locomo import CATEGORY_NAMES, LocomoData, Question, load_locomo, recall_at_k
from memstream.models.embedding import Embedder, load_embedder
from memstream.models.providers import Preference
from memstream.models.team_state import (
    ALPHA,
    HEADS,
    SLOTS,
    TEMPERATURE,
    Team,
    TeamPooler,
    TeamStates,
)

BUCKETS = 4
"""Session groups per conversation: with two speakers, 8 agents a team."""
ROUTE_M = (1, 2)
"""Agents searched in the routed retrieval."""
ALPHA_SWEEP = (0.05, 0.02, 0.0)
"""State factors also measured (0: each agent's state is the mean of all its memories)."""
EFFECT = "memory_attention"
BASELINES = ("centroid_cosine", "state_cosine", "best_memory_cosine")
TENANT = "eval"


@dataclass
class _Conversation:
    team: Team  # agents sorted, EMA states
    memory_team: Team  # the same agents as memory tokens (owners set)
    centroids: np.ndarray  # [agents, dim], unit length, rows in team.members order
    turn_ids: list[str]
    turn_agent: np.ndarray  # [turns] index into team.members
    turn_vectors: np.ndarray  # [turns, dim]


def _agents(data: LocomoData, buckets: int) -> dict[tuple[str, str], str]:
    """(conversation, dia_id) -> agent id `speaker/sNN-MM` (speaker x session bucket)."""
    agent_of: dict[tuple[str, str], str] = {}
    for conv in data.conversations():
        turns = [t for t in data.turns if t.conversation == conv]
        sessions = sorted({t.session for t in turns})
        groups = np.array_split(np.array(sessions), min(buckets, len(sessions)))
        bucket_of = {int(s): (int(g[0]), int(g[-1])) for g in groups for s in g}
        for t in turns:
            first, last = bucket_of[t.session]
            agent_of[(conv, t.dia_id)] = f"{t.speaker}/s{first:02d}-{last:02d}"
    return agent_of


def _build(
    data: LocomoData, vectors: np.ndarray, agent_of: dict[tuple[str, str], str], alpha: float
) -> dict[str, _Conversation]:
    states = TeamStates(alpha=alpha)
    for i, t in enumerate(data.turns):  # dialogue order: the order the stream sees them
        states.update(TENANT, t.conversation, agent_of[(t.conversation, t.dia_id)], vectors[i], i)
    out = {}
    for conv in data.conversations():
        team = states.team(TENANT, conv)
        index = {a: j for j, a in enumerate(team.members)}
        rows = [i for i, t in enumerate(data.turns) if t.conversation == conv]
        turn_agent = np.array([index[agent_of[(conv, data.turns[i].dia_id)]] for i in rows])
        centroids = np.stack([vectors[rows][turn_agent == j].mean(axis=0) for j in index.values()])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        out[conv] = _Conversation(
            team,
            states.memory_team(TENANT, conv),
            centroids.astype(np.float32),
            [data.turns[i].dia_id for i in rows],
            turn_agent,
            vectors[rows],
        )
    return out


def _cosine_order(q: np.ndarray, rows: np.ndarray, members: Sequence[str]) -> list[int]:
    scores = (rows @ q).tolist()
    return sorted(range(len(members)), key=lambda j: (-scores[j], members[j]))


def _routing(orders: list[list[int]], holders: list[set[int]], held: list[list[int]]) -> dict:
    """top1/top2/mrr/evidence share of the top m from each question's agent order."""
    top1 = top2 = mrr = 0.0
    share = dict.fromkeys(ROUTE_M, 0.0)
    for order, agents, evidence_agents in zip(orders, holders, held, strict=True):
        top1 += order[0] in agents
        top2 += any(a in agents for a in order[:2])
        mrr += 1.0 / (1 + next(r for r, a in enumerate(order) if a in agents))
        for m in ROUTE_M:
            chosen = set(order[:m])
            share[m] += sum(a in chosen for a in evidence_agents) / len(evidence_agents)
    n = len(orders)
    out = {"top1": top1 / n, "top2": top2 / n, "mrr": mrr / n}
    out |= {f"evidence_top{m}": share[m] / n for m in ROUTE_M}
    return {key: round(value, 4) for key, value in out.items()}


def _random_expected(holders: list[set[int]], held: list[list[int]], n_agents: list[int]) -> dict:
    """The same figures for a uniformly random agent order, exactly (no sampling)."""
    top1 = top2 = mrr = 0.0
    share = dict.fromkeys(ROUTE_M, 0.0)
    for agents, n in zip(holders, n_agents, strict=True):
        e = len(agents)
        top1 += e / n
        top2 += 1 - math.comb(n - e, 2) / math.comb(n, 2) if n >= 2 else 1.0
        # P(first holder at rank r) = C(n-r, e-1) / C(n, e)
        mrr += sum(math.comb(n - r, e - 1) / math.comb(n, e) / r for r in range(1, n - e + 2))
        for m in ROUTE_M:
            share[m] += min(m, n) / n  # each evidence turn's agent is in the top m w.p. m/n
    count = len(holders)
    out = {"top1": top1 / count, "top2": top2 / count, "mrr": mrr / count}
    out |= {f"evidence_top{m}": share[m] / count for m in ROUTE_M}
    return {key: round(value, 4) for key, value in out.items()}


def _retrieval(
    questions: list[Question],
    qvecs: np.ndarray,
    convs: dict[str, _Conversation],
    orders: list[list[int]] | None,
    m: int,
    k: int,
) -> dict:
    """recall@k searching only the top-m agents' turns (all turns when `orders` is None)."""
    recall = searched = 0.0
    for i, q in enumerate(questions):
        c = convs[q.conversation]
        keep = (
            np.ones(len(c.turn_ids), bool)
            if orders is None
            else np.isin(c.turn_agent, orders[i][:m])
        )
        idx = np.flatnonzero(keep)
        scores = c.turn_vectors[idx] @ qvecs[i]
        ranked = [c.turn_ids[j] for j in idx[np.argsort(-scores, kind="stable")[:k]]]
        recall += recall_at_k(ranked, q.evidence, k)
        searched += len(idx) / len(c.turn_ids)
    n = len(questions)
    return {f"recall@{k}": round(recall / n, 4), "turns_searched": round(searched / n, 4)}


def _attention_orders(pooler: TeamPooler, qvecs: np.ndarray, teams: list[Team]) -> list[list[int]]:
    ranked = pooler.rank(qvecs, teams)
    return [
        [team.members.index(t.agent_id) for t in r] for team, r in zip(teams, ranked, strict=True)
    ]


def _best_token_orders(qvecs: np.ndarray, teams: list[Team]) -> list[list[int]]:
    """Agents by the cosine of the question to their best-matching memory token."""
    orders = []
    for q, t in zip(qvecs, teams, strict=True):
        scores = np.full(len(t.members), -np.inf)
        np.maximum.at(scores, t.owners, t.states @ q)
        orders.append(sorted(range(len(t.members)), key=lambda j: (-scores[j], t.members[j])))
    return orders


def _cosine_orders(qvecs: np.ndarray, teams: list[Team]) -> list[list[int]]:
    return [_cosine_order(q, t.states, t.members) for q, t in zip(qvecs, teams, strict=True)]


def run_team_pool_eval(
    dataset: Path,
    k: int = 5,
    *,
    buckets: int = BUCKETS,
    alpha: float = ALPHA,
    temperature: float = TEMPERATURE,
    heads: int = HEADS,
    seed: int = 0,
    prefer: Preference = "auto",
    embedder: Embedder | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Routing accuracy and routed retrieval of the pooled team state against baselines."""
    say = progress or (lambda _msg: None)
    data = load_locomo(Path(dataset))
    if not data.questions:
        raise ValueError(f"{dataset}: no questions with evidence")
    embedder = embedder or load_embedder(prefer=prefer)
    say(f"embedding {len(data.turns)} turns and {len(data.questions)} questions")
    vectors = embedder.embed([t.memory_text for t in data.turns])
    questions = data.questions
    qvecs = embedder.embed([q.question for q in questions])
    agent_of = _agents(data, buckets)
    convs = _build(data, vectors, agent_of, alpha)
    pooler = TeamPooler(prefer, heads=heads, temperature=temperature)

    teams = [convs[q.conversation].team for q in questions]
    centroid_teams = [
        Team(t.members, convs[q.conversation].centroids)
        for q, t in zip(questions, teams, strict=True)
    ]
    held = [
        [t.members.index(agent_of[(q.conversation, e)]) for e in q.evidence]
        for q, t in zip(questions, teams, strict=True)
    ]
    holders = [set(h) for h in held]
    n_agents = [len(t.members) for t in teams]

    say("routing")
    rng = np.random.default_rng(seed)
    memory_teams = [convs[q.conversation].memory_team for q in questions]
    orders: dict[str, list[list[int]]] = {
        EFFECT: _attention_orders(pooler, qvecs, memory_teams),
        "team_attention": _attention_orders(pooler, qvecs, teams),
        "best_memory_cosine": _best_token_orders(qvecs, memory_teams),
        "state_cosine": _cosine_orders(qvecs, teams),
        "centroid_cosine": _cosine_orders(qvecs, centroid_teams),
        "random_seeded": [rng.permutation(n).tolist() for n in n_agents],
        # diagnostic: the same attention over the centroids, parting the attention's effect
        # from that of the recency-weighted states
        "team_attention_over_centroids": _attention_orders(pooler, qvecs, centroid_teams),
    }
    routing = {name: _routing(o, holders, held) for name, o in orders.items()}
    routing["random_expected"] = _random_expected(holders, held, n_agents)

    all_turns = _retrieval(questions, qvecs, convs, None, 0, k)
    retrieval = {
        name: {f"top{m}_agents": _retrieval(questions, qvecs, convs, o, m, k) for m in ROUTE_M}
        for name, o in orders.items()
    }

    alpha_sweep = {}
    for a in dict.fromkeys((alpha, *ALPHA_SWEEP)):
        swept = _build(data, vectors, agent_of, a)
        swept_teams = [swept[q.conversation].team for q in questions]
        alpha_sweep[str(a)] = {
            "team_attention": _routing(
                _attention_orders(pooler, qvecs, swept_teams), holders, held
            ),
            "state_cosine": _routing(_cosine_orders(qvecs, swept_teams), holders, held),
        }

    best = max(BASELINES, key=lambda b: (routing[b]["top1"], routing[b]["top2"]))
    effect, base = routing[EFFECT], routing[best]
    a_orders, b_orders = orders[EFFECT], orders[best]
    paired = {
        "effect_only": sum(
            x[0] in h and y[0] not in h for x, y, h in zip(a_orders, b_orders, holders, strict=True)
        ),
        "baseline_only": sum(
            y[0] in h and x[0] not in h for x, y, h in zip(a_orders, b_orders, holders, strict=True)
        ),
    }
    by_category = {}
    for cat in sorted({q.category for q in questions}):
        sel = [i for i, q in enumerate(questions) if q.category == cat]
        by_category[CATEGORY_NAMES.get(cat, str(cat))] = {
            "questions": len(sel),
            **{
                f"{name}_top1": round(
                    sum(orders[name][i][0] in holders[i] for i in sel) / len(sel), 4
                )
                for name in (EFFECT, best, "random_seeded")
            },
        }
    beats = effect["top1"] > base["top1"]
    verdict = (
        f"attention over the agents' memory tokens routes the evidence agent first for "
        f"{effect['top1']:.3f} of questions "
        f"vs {base['top1']:.3f} for the best baseline ({best}) and "
        f"{routing['random_expected']['top1']:.3f} at random: "
        + ("it beats" if beats else "it does not beat")
        + " the best baseline"
    )
    return {
        "effect": {"method": EFFECT, "routing": effect, "retrieval": retrieval[EFFECT]},
        "baseline": {
            "best": best,
            "routing": base,
            "retrieval": retrieval[best],
            "random_expected_routing": routing["random_expected"],
            "all_turns_retrieval": all_turns,
        },
        "beats_best_baseline": {"top1": beats, "top2": effect["top2"] > base["top2"]},
        "delta_vs_best_baseline": {key: round(effect[key] - base[key], 4) for key in effect},
        "delta_vs_random": {
            key: round(effect[key] - routing["random_expected"][key], 4) for key in effect
        },
        "paired_top1_vs_best_baseline": paired,
        "verdict": verdict,
        "routing": routing,
        "retrieval": {"all_turns": all_turns, **retrieval},
        "alpha_sweep": alpha_sweep,
        "by_category": by_category,
        "dataset": {
            "path": str(dataset),
            "conversations": len(convs),
            "turns": len(data.turns),
            "questions": len(questions),
            "agents_per_team": {c: len(v.team.members) for c, v in convs.items()},
            "questions_with_evidence_in_several_agents": sum(len(h) > 1 for h in holders),
        },
        "config": {
            "k": k,
            "buckets": buckets,
            "alpha": alpha,
            "heads": heads,
            "temperature": temperature,
            "slots": SLOTS,
            "seed": seed,
            "route_m": list(ROUTE_M),
            "embedder": getattr(embedder, "version", type(embedder).__name__),
        },
        "providers": pooler.providers,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run_team_pool_eval(Path(sys.argv[1])), indent=2))
