"""Crypto-shredding (per-subject keys, seal/reveal, erasure) and DP aggregates with budgets."""

from __future__ import annotations

import base64
import math
import statistics
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from memstream.privacy.detect import PiiDetector, PiiSpan
from memstream.privacy.dp import BudgetExceeded, PrivacyBudget, dp_counts, dp_mean
from memstream.privacy.keystore import KeyStore, subject_id
from memstream.privacy.shred import Sealed, redacted, reveal, seal, subjects

MASTER = b"test-master-secret-0123456789abcdef"
NAME = "Margarethe Olofsson"
EMAIL = "j.okafor+legal@northwind-mail.net"
PHONE = "+49 171 2345678"
TEXT = (
    f"Yesterday I had lunch with {NAME}; email {EMAIL} or call {PHONE}. "
    f"{NAME} agreed to the roadmap."
)


@pytest.fixture(scope="module")
def fast() -> PiiDetector:
    return PiiDetector("fast")


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[KeyStore]:
    store = KeyStore(tmp_path / "keys.sqlite")
    yield store
    store.close()


def _seal(text: str, det: PiiDetector, keys: KeyStore, tenant: str = "acme") -> Sealed:
    return seal(text, det.detect(text), tenant=tenant, keystore=keys, master_key=MASTER)


def test_seal_reveal_round_trip(fast: PiiDetector, keys: KeyStore) -> None:
    sealed = _seal(TEXT, fast, keys)
    for value in (NAME, EMAIL, PHONE):
        assert value not in sealed.model_dump_json()
    assert "<PROPER_NOUN#1>" in sealed.text or "<PERSON#1>" in sealed.text
    assert sealed.text.count("#1>") == 2  # the repeated name shares its placeholder
    assert reveal(sealed, tenant="acme", keystore=keys) == TEXT
    # JSON round trip (what goes to Kafka and the store) keeps it revealable
    again = Sealed.model_validate_json(sealed.model_dump_json())
    assert reveal(again, tenant="acme", keystore=keys) == TEXT
    assert len(subjects(sealed)) == 3 == keys.count()


def test_redacted_touches_no_key(fast: PiiDetector, keys: KeyStore, tmp_path: Path) -> None:
    sealed = _seal(TEXT, fast, keys)
    view = redacted(sealed)
    assert "#" not in view and NAME not in view and EMAIL not in view
    assert "<EMAIL_ADDRESS>" in view and "<PHONE_NUMBER>" in view
    empty = KeyStore(tmp_path / "other.sqlite")
    assert redacted(sealed) == reveal(sealed, tenant="acme", keystore=empty)
    empty.close()


def test_wrong_tenant_cannot_reveal(fast: PiiDetector, keys: KeyStore) -> None:
    sealed = _seal(TEXT, fast, keys, tenant="acme")
    _seal(TEXT, fast, keys, tenant="globex")  # globex has keys for the same values too
    out = reveal(sealed, tenant="globex", keystore=keys)
    assert out == redacted(sealed)
    assert NAME not in out and EMAIL not in out and PHONE not in out


def test_subject_ids_stable_per_tenant_distinct_across() -> None:
    a = subject_id("acme", "Anna  Smith", MASTER)
    assert a == subject_id("acme", "anna smith", MASTER) == subject_id("acme", "ANNA SMITH", MASTER)
    assert a != subject_id("globex", "Anna Smith", MASTER)
    assert a != subject_id("acme", "Anna Smith", b"another-master-secret")
    assert a != subject_id("acme", "Anne Smith", MASTER)
    assert len(a) == 32 and int(a, 16) >= 0


def test_erase_makes_values_unrecoverable(fast: PiiDetector, keys: KeyStore) -> None:
    sealed = _seal(TEXT, fast, keys)
    other = _seal(f"we sent the minutes to {NAME} yesterday.", fast, keys)
    sid = subject_id("acme", NAME, MASTER)
    assert sid in subjects(sealed) and sid in subjects(other)
    assert not keys.erased("acme", sid)

    assert keys.erase("acme", sid) is True
    assert keys.erased("acme", sid)
    assert keys.key_for("acme", sid, create=False) is None
    for s in (sealed, other):
        out = reveal(s, tenant="acme", keystore=keys)
        assert NAME not in out
        assert NAME not in s.model_dump_json()
    out = reveal(sealed, tenant="acme", keystore=keys)
    assert EMAIL in out and PHONE in out  # other subjects untouched
    assert out.count("<PROPER_NOUN>") + out.count("<PERSON>") == 2

    # a replay re-processes the raw input: the key is not re-created, the value not stored
    before = keys.count()
    replayed = _seal(TEXT, fast, keys)
    assert keys.count() == before and keys.erased("acme", sid)
    gone = [v for v in replayed.values if v.subject_id == sid]
    assert gone and all(v.ciphertext_b64 is None and v.nonce_b64 is None for v in gone)
    assert NAME not in replayed.model_dump_json()
    assert NAME not in reveal(replayed, tenant="acme", keystore=keys)
    assert EMAIL in reveal(replayed, tenant="acme", keystore=keys)


def test_erasure_is_durable_and_per_tenant(fast: PiiDetector, tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    first = KeyStore(path)
    sealed = _seal(TEXT, fast, first)
    _seal(TEXT, fast, first, tenant="globex")
    sid = subject_id("acme", NAME, MASTER)
    key = first.key_for("acme", sid, create=False)
    assert key is not None and len(key) == 32
    assert first.erase("acme", sid)
    assert first.erase("acme", sid) is False  # nothing left to delete; tombstone stays
    # the key bytes are gone from the files, not just unlinked (secure_delete + checkpoint)
    for f in tmp_path.glob("keys.sqlite*"):
        assert key not in f.read_bytes(), f.name
    first.close()

    second = KeyStore(path)  # another process opening the same file
    assert second.erased("acme", sid)
    assert second.key_for("acme", sid) is None
    assert NAME not in reveal(sealed, tenant="acme", keystore=second)
    gid = subject_id("globex", NAME, MASTER)
    assert not second.erased("globex", gid) and second.key_for("globex", gid, create=False)
    second.close()


def test_erasure_before_data_blocks_sealing(fast: PiiDetector, keys: KeyStore) -> None:
    sid = subject_id("acme", EMAIL, MASTER)
    assert keys.erase("acme", sid) is False  # request arrives before the subject's data
    sealed = _seal(TEXT, fast, keys)
    assert EMAIL not in sealed.model_dump_json()
    assert "<EMAIL_ADDRESS>" in reveal(sealed, tenant="acme", keystore=keys)


def test_new_key_after_erasure_only_when_allowed(fast: PiiDetector, keys: KeyStore) -> None:
    old = _seal(TEXT, fast, keys)
    sid = subject_id("acme", NAME, MASTER)
    old_key = keys.key_for("acme", sid, create=False)
    keys.erase("acme", sid)
    assert keys.key_for("acme", sid) is None
    new_key = keys.key_for("acme", sid, allow_new_after_erasure=True)
    assert new_key is not None and new_key != old_key
    assert not keys.erased("acme", sid)
    # the old ciphertexts stay dead under the new key
    assert NAME not in reveal(old, tenant="acme", keystore=keys)
    assert reveal(_seal(TEXT, fast, keys), tenant="acme", keystore=keys) == TEXT


def _tamper(sealed: Sealed, at: int, /, **change: str | int) -> Sealed:
    values = [v.model_copy(update=change) if v.index == at else v for v in sealed.values]
    return sealed.model_copy(update={"values": values})


def test_tampering_fails_closed(fast: PiiDetector, keys: KeyStore) -> None:
    sealed = _seal(TEXT, fast, keys)
    email = next(v for v in sealed.values if v.entity_type == "EMAIL_ADDRESS")
    ct = bytearray(base64.b64decode(email.ciphertext_b64 or ""))
    ct[0] ^= 1
    flipped = base64.b64encode(bytes(ct)).decode()
    name = next(v for v in sealed.values if v.index == 1)
    cases = [
        _tamper(sealed, email.index, ciphertext_b64=flipped),
        _tamper(sealed, email.index, nonce_b64=base64.b64encode(b"\x00" * 12).decode()),
        _tamper(sealed, email.index, ciphertext_b64="not base64!!"),
        _tamper(sealed, email.index, nonce_b64=""),
        # moving a ciphertext to another subject or slot breaks the associated data
        _tamper(sealed, email.index, subject_id=name.subject_id),
        _tamper(
            sealed,
            email.index,
            ciphertext_b64=name.ciphertext_b64 or "",
            nonce_b64=name.nonce_b64 or "",
        ),
    ]
    for case in cases:
        out = reveal(case, tenant="acme", keystore=keys)
        assert EMAIL not in out and "<EMAIL_ADDRESS>" in out
        assert NAME in out  # the untouched values still open
    # a value re-numbered to a slot that is not in the text opens nowhere
    moved = _tamper(sealed, email.index, index=99)
    out = reveal(moved, tenant="acme", keystore=keys)
    assert EMAIL not in out and NAME in out


def test_overlapping_spans_and_no_spans(keys: KeyStore) -> None:
    text = "Call Anna Maria Lopez now"
    spans = [PiiSpan(5, 15, "PERSON", 0.9), PiiSpan(10, 21, "PERSON", 0.8)]
    sealed = seal(text, spans, tenant="acme", keystore=keys, master_key=MASTER)
    assert sealed.text == "Call <PERSON#1> now"
    assert reveal(sealed, tenant="acme", keystore=keys) == text
    plain = seal("nothing personal", [], tenant="acme", keystore=keys, master_key=MASTER)
    assert plain.text == "nothing personal" and plain.values == [] and subjects(plain) == []


def test_concurrent_key_creation_agrees(tmp_path: Path) -> None:
    """Several connections (as several workers) racing for one subject get one key."""
    path = tmp_path / "keys.sqlite"
    KeyStore(path).close()
    got: list[bytes | None] = []

    def work() -> None:
        store = KeyStore(path)
        got.append(store.key_for("acme", "s1"))
        store.close()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and got[0] is not None and len(set(got)) == 1


# --- differential privacy ------------------------------------------------------------------


def test_budget_enforced_and_persisted(tmp_path: Path) -> None:
    path = tmp_path / "dp.sqlite"
    budget = PrivacyBudget(path, epsilon_per_tenant=1.0)
    for _ in range(10):
        budget.spend("acme", 0.1)  # float sums must not refuse the last tenth
    assert budget.remaining("acme") == pytest.approx(0.0, abs=1e-9)
    assert budget.remaining("globex") == 1.0
    with pytest.raises(BudgetExceeded, match=r"spent 1 of 1, asked for 0\.1"):
        budget.spend("acme", 0.1)
    with pytest.raises(ValueError):
        budget.spend("acme", 0.0)
    budget.close()

    again = PrivacyBudget(path, epsilon_per_tenant=1.5)
    assert again.remaining("acme") == pytest.approx(0.5)
    again.spend("globex", 0.75)
    with pytest.raises(BudgetExceeded):
        dp_counts("globex", {"a": 3}, 1.0, again)
    assert again.remaining("globex") == pytest.approx(0.75)  # a refused release costs nothing
    assert len(again.ledger("acme")) == 10
    again.close()


def test_dp_counts_spend_before_release(tmp_path: Path) -> None:
    budget = PrivacyBudget(tmp_path / "dp.sqlite", epsilon_per_tenant=1.0)
    out = dp_counts("acme", {"billing": 40, "infra": 7}, 0.5, budget)
    assert set(out) == {"billing", "infra"} and all(
        isinstance(v, int) and v >= 0 for v in out.values()
    )
    assert budget.remaining("acme") == pytest.approx(0.5)
    for bad in (-1, 2**70):
        with pytest.raises(ValueError):
            dp_counts("acme", {"billing": bad}, 0.1, budget)
    assert budget.remaining("acme") == pytest.approx(0.5)  # invalid input spent nothing
    cats = dp_counts(
        "acme", {"billing": 40, "secret-tag": 1}, 0.5, budget, categories=["billing", "ops"]
    )
    assert set(cats) == {"billing", "ops"}
    with pytest.raises(BudgetExceeded):
        dp_counts("acme", {"billing": 40}, 0.1, budget)
    budget.close()


@pytest.mark.parametrize(("epsilon", "sensitivity"), [(0.5, 1), (2.0, 1), (1.0, 4)])
def test_dp_counts_noise_scale(tmp_path: Path, epsilon: float, sensitivity: int) -> None:
    """Discrete Laplace with scale b = sensitivity/epsilon: E|noise| = 2p/(1-p^2), p = e^(-1/b)
    (about b for b >= 2)."""
    budget = PrivacyBudget(tmp_path / "dp.sqlite", epsilon_per_tenant=1e9)
    true = {f"tag{i}": 1_000 for i in range(200)}  # far from 0: clipping never kicks in
    errors: list[int] = []
    for _ in range(20):
        out = dp_counts("acme", true, epsilon, budget, sensitivity=sensitivity)
        errors.extend(abs(out[k] - 1_000) for k in true)
    p = math.exp(-epsilon / sensitivity)
    expected = 2 * p / (1 - p * p)
    mae = statistics.fmean(errors)
    # 4000 draws: the mean's relative std is at most ~3%, so +-20% never flakes
    assert 0.8 * expected < mae < 1.2 * expected
    assert budget.spent("acme") == pytest.approx(20 * epsilon)


def test_dp_mean(tmp_path: Path) -> None:
    budget = PrivacyBudget(tmp_path / "dp.sqlite", epsilon_per_tenant=3.0)
    values = [0.2, 0.4, 0.6, 0.8] * 500  # mean 0.5
    got = dp_mean("acme", values, 0.0, 1.0, 1.0, budget)
    assert abs(got - 0.5) < 0.05
    assert budget.remaining("acme") == pytest.approx(2.0)
    # out-of-range values are clamped, the result stays inside the bounds
    assert 0.0 <= dp_mean("acme", [5.0] * 100 + [float("nan")], 0.0, 1.0, 1.0, budget) <= 1.0
    assert 0.0 <= dp_mean("acme", [], 0.0, 1.0, 0.5, budget) <= 1.0
    with pytest.raises(BudgetExceeded):
        dp_mean("acme", values, 0.0, 1.0, 1.0, budget)
    with pytest.raises(ValueError):
        dp_mean("acme", values, 1.0, 0.0, 0.1, budget)
    budget.close()
