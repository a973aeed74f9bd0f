"""`memstream eval ...`: quality evaluations on datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from memstream.cli.options import (
    DEV_LOCOMO,
    JsonFlag,
    SaveFlag,
)
from memstream.cli.options import fail as _fail
from memstream.cli.options import load_settings as _settings
from memstream.cli.results import emit, question_bar, save_result

LocomoFile = Annotated[
    Path, typer.Option(help="LoCoMo-format JSON file", exists=True, dir_okay=False)
]
eval_app = typer.Typer(help="Quality evaluations on datasets.", no_args_is_help=True)


@eval_app.command("valuation")
def eval_valuation(
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="LoCoMo-format JSON: train the valuation on simulated feedback from some "
            "conversations, measure the ranking prior and the admission bar on the others; "
            "without it, the synthetic feedback stream (AUC only)"
        ),
    ] = None,
    k: Annotated[int, typer.Option(help="recall@k (with --dataset)")] = 5,
    pii: Annotated[
        str, typer.Option(help="with --dataset: privacy policy as in eval retrieval")
    ] = "worker",
    seed: Annotated[int, typer.Option()] = 0,
    feedback: Annotated[int, typer.Option(help="synthetic: simulated feedback events")] = 20_000,
    noise: Annotated[float, typer.Option(help="synthetic: share of labels flipped")] = 0.2,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Does the valuation pay? With --dataset: recall@k with the learned valuation as a
    ranking prior against without, and what the admission bar keeps out of the pool and
    costs, on conversations the model never saw (progress on stderr). Without: AUC of the
    learned model against the cold-start heuristic on a synthetic feedback stream."""
    _settings()
    if dataset is not None:
        from memstream.eval.pool import run_pool_eval

        if not dataset.is_file():
            raise typer.BadParameter(f"{dataset}: no such file", param_hint="--dataset")
        result = run_pool_eval(dataset, k=k, seed=seed, pii_policy=pii)
        emit("eval-valuation-pool", result, save=save, as_json=as_json)
        return
    from memstream.eval.valuation import run_valuation_eval

    result = run_valuation_eval(seed=seed, n_feedback=feedback, noise=noise)
    emit("eval-valuation", result, save=save, as_json=as_json)


@eval_app.command("cache")
def eval_cache(
    tasks: Annotated[int, typer.Option(help="tasks in the generated stream")] = 2000,
    bar: Annotated[
        float, typer.Option(help="cosine a cached task needs (the headline figure)")
    ] = 0.90,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """The semantic result cache on a generated task stream (exact repeats, paraphrases,
    near-misses with one value changed; memstream/eval/cache.py): share of duplicate work
    avoided and false hits, at --bar and at other bars, and without the value test."""
    from memstream.eval.cache import run_cache_eval

    _settings()
    if not 0.0 < bar <= 1.0:
        raise typer.BadParameter("must be in (0, 1]", param_hint="--bar")
    if tasks < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--tasks")
    result = run_cache_eval(n=tasks, seed=seed, bar=bar)
    emit("eval-cache", result, save=save, as_json=as_json)


@eval_app.command("economy")
def eval_economy(
    dataset: Annotated[
        Path, typer.Option(help="LoCoMo-format JSON: the honest agents' knowledge and questions")
    ] = DEV_LOCOMO,
    rounds: Annotated[int, typer.Option(min=2, help="rounds of asking and rating")] = 4,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Honest, lazy and poisoning agents and a ring of colluding raters share a pool for N
    rounds (memstream/eval/economy.py): reputations, the poisoners' memories against the
    admission bar, what the ring earned, and the honest agents' recall against a run
    without attackers (progress on stderr)."""
    from memstream.eval.economy import run_economy_eval

    _settings()
    if not dataset.is_file():
        raise typer.BadParameter(f"{dataset}: no such file", param_hint="--dataset")
    result = run_economy_eval(dataset, rounds=rounds, seed=seed)
    emit("eval-economy", result, save=save, as_json=as_json)


@eval_app.command("tagging")
def eval_tagging(
    dataset: Annotated[
        Path,
        typer.Option(
            help="JSON: taxonomy (tag -> example texts) and items", exists=True, dir_okay=False
        ),
    ],
    online_every: Annotated[
        int, typer.Option(help="online run: refit after this many self-tagged items")
    ] = 50,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Tag by example (memstream/models/tagging.py): top-1 and top-3 accuracy of the model
    fitted on the taxonomy alone, nearest-example MiniLM as the baseline, and the online
    run that learns from each item's own tag after predicting it."""
    from memstream.eval.tagging import run_tagging_eval

    result = run_tagging_eval(dataset, online_every=online_every)
    emit("eval-tagging", result, save=save, as_json=as_json)


@eval_app.command("linking")
def eval_linking(
    dataset: LocomoFile,
    bar: Annotated[
        float | None, typer.Option(help="the linker's bar in standard deviations (default 3)")
    ] = None,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Links between memories (memstream/models/linking.py): two turns that are evidence
    for the same question are related; precision and recall at the bar, with plain nearest
    neighbours at the same number of links."""
    from memstream.eval.linking import run_linking_eval

    emit("eval-linking", run_linking_eval(dataset, bar=bar), save=save, as_json=as_json)


@eval_app.command("verification")
def eval_verification(
    claims: Annotated[int, typer.Option(help="generated memories, half true, half false")] = 240,
    seed: Annotated[int, typer.Option()] = 0,
    benign: Annotated[
        Path | None,
        typer.Option(
            help="ordinary texts ([{text}]): any verdict on them is a false flag",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """The verifiers (memstream/verification/) on generated true and false arithmetic and
    algebra claims inside memories: accuracy, per family, and false flags on `--benign`."""
    from memstream.eval.verification import run_verification_eval

    result = run_verification_eval(claims, seed=seed, benign=benign)
    emit("eval-verification", result, save=save, as_json=as_json)


@eval_app.command("team-pool")
def eval_team_pool(
    dataset: LocomoFile,
    k: Annotated[int, typer.Option()] = 5,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """What the pooled team state is good for (memstream/models/team_state.py): routing a
    question to the teammate whose memories hold its evidence, against cosine to each
    agent's mean vector and a random order, and recall when only the top agents are
    searched."""
    from memstream.eval.team_pool import run_team_pool_eval

    emit("eval-team-pool", run_team_pool_eval(dataset, k=k), save=save, as_json=as_json)


@eval_app.command("distill")
def eval_distill(
    seeds: Annotated[
        int, typer.Option(min=1, help="seeds to run (0 .. seeds-1 from --first-seed)")
    ] = 5,
    first_seed: Annotated[int, typer.Option(min=0)] = 0,
    teachers: Annotated[int, typer.Option(min=1, help="teachers per seed")] = 3,
    bad_share: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="share of malformed experience mixed in")
    ] = 0.10,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Environment steps a new agent needs to reach CartPole-v1's return threshold, starting
    from the student distilled from teachers' experience against starting from scratch
    (docs/distillation.md). Progress goes to stderr."""
    from memstream.eval.distill import run_distill_eval

    _settings()
    result = run_distill_eval(
        seeds=seeds,
        first_seed=first_seed,
        teachers=teachers,
        bad_share=bad_share,
        progress=lambda line: typer.echo(line, err=True),
    )
    emit("eval-distill", result, save=save, as_json=as_json)


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: LocomoFile,
    k: Annotated[str, typer.Option(help="comma-separated cut-offs")] = "1,5,10",
    pii_policy: Annotated[
        str,
        typer.Option(
            help="worker (the worker's privacy settings, what users get), allow (turns as "
            "spoken, for comparison), or an action: seal, redact, pseudonymize"
        ),
    ] = "worker",
    token_vectors: Annotated[
        str,
        typer.Option(
            help="ingest (the rerank's token vectors kept when a memory is embedded, as the "
            "worker does) or query (computed at search time, the old path)"
        ),
    ] = "ingest",
    mode: Annotated[
        str | None,
        typer.Option(
            help="episodic, knowledge or auto: compare recall modes by provenance (items and "
            "characters returned beside recall; memstream/retrieval/modes.py)"
        ),
    ] = None,
    ablation: Annotated[
        bool,
        typer.Option(
            "--ablation",
            help="each pipeline step on and off, recall@5 pooled and per conversation, with "
            "search time: the table in docs/retrieval.md",
        ),
    ] = False,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Recall@k of evidence turns: hybrid retrieval, with BM25 and dense baselines; with
    --mode, knowledge mode (consolidated facts) against episodic (raw memories); with
    --ablation, the steps of the pipeline one by one."""
    from memstream.eval.retrieval import run_retrieval_eval

    if ablation:
        from memstream.eval.retrieval_ablation import ablation_table, run_retrieval_ablation

        with question_bar(as_json) as progress:
            result = run_retrieval_ablation(dataset, pii_policy=pii_policy, progress=progress)
        result["table"] = ablation_table(result)
        if as_json:
            emit("eval-retrieval-ablation", result, save=save, as_json=True)
            return
        if save:
            typer.echo(f"saved to {save_result('eval-retrieval-ablation', result)}")
        typer.echo(result["table"])
        return

    if mode is not None:
        from memstream.eval.modes import run_modes_eval
        from memstream.retrieval.modes import MODES

        if mode not in MODES:
            raise _fail(f"--mode must be one of {', '.join(MODES)}")
        cut = max(int(x) for x in k.split(",")) if k != "1,5,10" else 5
        result = run_modes_eval(
            dataset, k=cut, weights=_settings().ranking_weights(), pii_policy=pii_policy
        )
        result["mode_asked"] = mode
        emit(f"eval-retrieval-{mode}", result, save=save, as_json=as_json)
        return

    if token_vectors not in ("ingest", "query"):
        raise _fail("--token-vectors must be ingest or query")
    settings = _settings()
    ks = tuple(int(x) for x in k.split(","))
    with question_bar(as_json) as progress:
        result = run_retrieval_eval(
            dataset,
            ks=ks,
            weights=settings.ranking_weights(),
            pii_policy=pii_policy,
            token_vectors=token_vectors,
            progress=progress,
        )
    emit("eval-retrieval", result, save=save, as_json=as_json)


@eval_app.command("recency")
def eval_recency(
    seed: Annotated[int, typer.Option()] = 0,
    entities: Annotated[int, typer.Option(help="people in the synthetic stream (max 26)")] = 20,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Share of questions where the newest version of a changing fact ranks first."""
    from memstream.eval.recency import run_recency_eval

    settings = _settings()
    result = run_recency_eval(seed=seed, entities=entities, weights=settings.ranking_weights())
    emit("eval-recency", result, save=save, as_json=as_json)


@eval_app.command("pii")
def eval_pii(
    dataset: Annotated[
        Path, typer.Option(help="presidio-research format JSON", exists=True, dir_okay=False)
    ],
    tier: Annotated[
        str, typer.Option(help="full (Presidio + spaCy + patterns) or fast (patterns)")
    ] = "full",
    benign: Annotated[
        Path | None,
        typer.Option(
            help="texts with no personal data ([{text}]): share of texts and characters altered",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
    save: SaveFlag = True,
) -> None:
    """Recall, precision and leak rate of the worker's default policy, per category (direct
    and quasi identifiers) and overall, next to Presidio's default analyzer; with --benign,
    how much ordinary text each alters. The report goes to stderr, JSON to stdout."""
    from memstream.eval.pii import run_pii_eval

    _settings()
    result = run_pii_eval(dataset, tier=tier, benign=benign)  # type: ignore[arg-type]
    emit("eval-pii", result, save=save, as_json=as_json)


@eval_app.command("compression")
def eval_compression(
    dataset: LocomoFile,
    k: Annotated[int, typer.Option(help="recall@k")] = 10,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Bytes per stored vector, ratio to fp32, and recall@k relative to fp32 exact search."""
    from memstream.eval.compression import run_compression_eval

    _settings()
    result = run_compression_eval(dataset, k=k)
    emit("eval-compression", result, save=save, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Mount these commands on the main `memstream` app."""
    app.add_typer(eval_app, name="eval")
