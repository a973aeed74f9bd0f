"""Read LoCoMo-format conversations: turns to ingest as memories, questions to ask.

Format (snap-research/LoCoMo): a list of samples, each with `conversation` (`speaker_a`,
`speaker_b`, `session_N` lists of `{speaker, dia_id, text}` and `session_N_date_time`) and
`qa` (`question`, `answer`, `evidence` = list of dia ids, `category` 1-5).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

RETRIEVAL_CATEGORIES = (1, 2, 3, 4)
CATEGORY_NAMES = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}
_DIA = re.compile(r"^D:?(\d+):0*(\d+)$")


@dataclass(frozen=True)
class Turn:
    conversation: str
    dia_id: str
    speaker: str
    text: str
    session: int
    date: str
    caption: str | None = None

    @property
    def memory_text(self) -> str:
        """What is stored for this turn: who said it, and what a shared image showed."""
        text = f"{self.speaker}: {self.text}"
        if self.caption:
            text += f" [shared a photo: {self.caption}]"
        return text


@dataclass(frozen=True)
class Question:
    conversation: str
    question: str
    answer: str
    evidence: tuple[str, ...]
    category: int


@dataclass
class LocomoData:
    turns: list[Turn]
    questions: list[Question]
    stats: dict[str, int] = field(default_factory=dict)

    def conversations(self) -> list[str]:
        return sorted({t.conversation for t in self.turns})


def normalise_dia_id(raw: str) -> str | None:
    """`D1:3` -> `D1:3`; `D:11:26` -> `D11:26`; `D30:05` -> `D30:5`; junk -> None."""
    match = _DIA.match(raw.strip())
    return f"D{int(match.group(1))}:{int(match.group(2))}" if match else None


def load_locomo(path: Path, categories: tuple[int, ...] = RETRIEVAL_CATEGORIES) -> LocomoData:
    """Turns of every conversation and the questions of `categories` whose evidence resolves.

    `stats` counts what was repaired or skipped: evidence strings normalised (`D:11:26`),
    split (`D8:6; D9:17`), unparseable, pointing at no turn, and questions left with none.
    """
    samples = json.loads(Path(path).read_text())
    stats = {
        "evidence_normalised": 0,
        "evidence_split": 0,
        "evidence_unparseable": 0,
        "evidence_unknown_turn": 0,
        "questions_without_evidence": 0,
    }
    turns: list[Turn] = []
    questions: list[Question] = []
    for index, sample in enumerate(samples):
        conv_id = str(sample.get("sample_id", f"conv-{index}"))
        conversation = sample["conversation"]
        known: set[str] = set()
        sessions = sorted(
            int(key.split("_")[1]) for key in conversation if re.fullmatch(r"session_\d+", key)
        )
        for number in sessions:
            date = str(conversation.get(f"session_{number}_date_time", ""))
            for turn in conversation[f"session_{number}"]:
                dia_id = normalise_dia_id(turn["dia_id"]) or turn["dia_id"]
                known.add(dia_id)
                turns.append(
                    Turn(
                        conv_id,
                        dia_id,
                        turn["speaker"],
                        turn.get("text", ""),
                        number,
                        date,
                        turn.get("blip_caption"),
                    )
                )
        for qa in sample.get("qa", []):
            if qa.get("category") not in categories:
                continue
            evidence: list[str] = []
            for raw in qa.get("evidence", []):
                parts = [p for p in re.split(r"[;,]\s*", raw) if p.strip()]
                if len(parts) > 1:
                    stats["evidence_split"] += 1
                for part in parts:
                    dia_id = normalise_dia_id(part)
                    if dia_id is None:
                        stats["evidence_unparseable"] += 1
                        continue
                    if dia_id != part.strip():
                        stats["evidence_normalised"] += 1
                    if dia_id not in known:
                        stats["evidence_unknown_turn"] += 1
                        continue
                    if dia_id not in evidence:
                        evidence.append(dia_id)
            if not evidence:
                stats["questions_without_evidence"] += 1
                continue
            questions.append(
                Question(
                    conv_id,
                    str(qa["question"]),
                    str(qa.get("answer", "")),
                    tuple(evidence),
                    int(qa["category"]),
                )
            )
    stats["turns"] = len(turns)
    stats["questions"] = len(questions)
    return LocomoData(turns, questions, stats)


def recall_at_k(ranked: list[str], evidence: tuple[str, ...], k: int) -> float:
    """Share of the evidence turns found among the first k retrieved turn ids."""
    top = set(ranked[:k])
    return sum(1 for e in evidence if e in top) / len(evidence)
