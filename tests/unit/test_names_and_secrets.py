"""Issue 13 without a broker: names on evidence, technology never a person, secrets found
whole, the categories a policy seals, and the commands' output."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from memstream.cli import app
from memstream.eval.secret_samples import KINDS, secret_samples
from memstream.privacy.categories import DIRECT, QUASI, category_of, sealed_types
from memstream.privacy.detect import PiiDetector
from memstream.privacy.policy import PrivacyPolicy
from memstream.privacy.secrets import find_secrets, scrub_secrets


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector("full")


def _persons(detector: PiiDetector, text: str) -> list[str]:
    return [text[s.start : s.end] for s in detector.detect(text) if s.entity_type == "PERSON"]


@pytest.mark.parametrize(
    "text",
    [
        "Kafka and Redis run behind the React app with GraphQL",
        "the staging DB moved to eu-west-2",
        "Deploy the Flask app with Werkzeug and Jinja on Postgres",
        "Fix JSON encoding in json.dumps for the Config object",
        "upgrade mypy and ruff in the CI config",
        "Sunday deploys are frozen; Kubernetes rolls back on failure",
        "backups go to S3 nightly from the EC2 hosts with H100 cards",
    ],
)
def test_technology_and_ordinary_words_are_not_people(detector: PiiDetector, text: str) -> None:
    assert _persons(detector, text) == []
    assert [s for s in detector.detect(text) if s.entity_type in DIRECT] == []


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Call Jane Roe about the renewal.", "Jane Roe"),
        ("My name is Rubija", "Rubija"),
        ("I want to add Miki C Kristiansen as a beneficiary", "Miki C Kristiansen"),
        ('"That is settled," says Hartvigsson.', "Hartvigsson"),
        ("They had 3: Efimiya, Mary and Jodi.", "Mary"),
        ("Mrs. Kathrine Filemonsen DDS will call back", "Mrs. Kathrine Filemonsen DDS"),
    ],
)
def test_names_on_evidence(detector: PiiDetector, text: str, name: str) -> None:
    assert any(name in found for found in _persons(detector, text)), _persons(detector, text)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        # a descriptor between the cue and the name
        ("This song by ex-Zombie Kastner is a perfect example.", "Kastner"),
        # a work called after its author
        ("Unlike the Dratchev novel, it's not about that.", "Dratchev"),
        ("Have you been to a Calquín Cazares concert before?", "Calquín Cazares"),
        ("the frank freud version recorded for the label sold a million", "frank freud"),
        # a pronoun that picks up the subject
        ("Shovda is very reliable. You can always depend on him.", "Shovda"),
        # introduced as a person, though also a dictionary word
        ("I would like to remove my kid Mali from the will.", "Mali"),
        ('"That is the direction," says Du Cane.', "Du Cane"),
        # the model's person on both words keeps a dictionary word in the name
        ("The award went to Panjiva's Riku Andou, Impi Nummelin of Consumer Reports", "Impi"),
        # lower-case given names that are also dictionary words
        ("follow up with benjamin a seiler in a couple of months.", "benjamin"),
    ],
)
def test_names_on_context_cues(detector: PiiDetector, text: str, name: str) -> None:
    """Issue 13 point 2: each of these was missed (direct recall 0.965 on the dev set)."""
    assert any(name in found for found in _persons(detector, text)), _persons(detector, text)


@pytest.mark.parametrize(
    "text",
    [
        "Jenkins is flaky. You can always depend on him.",
        "Celery is fast. He said so.",
        "the Flask version in CI is pinned",
        "the Kafka book is good",
        "my friend lives in harburg",
    ],
)
def test_context_cues_do_not_make_technology_a_person(detector: PiiDetector, text: str) -> None:
    assert _persons(detector, text) == []


def test_a_firm_of_surnames_is_not_a_person(detector: PiiDetector) -> None:
    text = "The Davis, Reynolds and Williamson Orchestra was founded in 1977."
    assert _persons(detector, text) == []


def test_every_generated_secret_is_found_whole_and_the_rest_kept() -> None:
    samples = secret_samples(len(KINDS) * 4, seed=5)
    for sample in samples:
        out = scrub_secrets(sample.text)
        body = sample.secret.splitlines()[1] if sample.kind == "private_key" else sample.secret
        assert body[:8] not in out and body[-8:] not in out, (sample.kind, out)
        assert all(word in out for word in sample.rest), (sample.kind, out)
        assert all(category_of(s.entity_type) == "secret" for s in find_secrets(sample.text))


@pytest.mark.parametrize(
    "text",
    [
        "token = request.headers['Authorization']",
        "api_key=os.environ['KEY']",
        "password: ${DB_PASSWORD}",
        "the access token was refreshed",
        "set SECRET_KEY in the config before you deploy",
    ],
)
def test_code_that_names_a_secret_is_left_alone(text: str) -> None:
    assert scrub_secrets(text) == text


def test_policies_seal_direct_identifiers_and_what_a_tenant_or_topic_adds() -> None:
    policy = PrivacyPolicy(tenant_sealed={"hospital": ["quasi"]}, topic_sealed={"hr": ["LOCATION"]})
    assert policy.sealed_types() == DIRECT
    assert policy.sealed_types("hospital") == DIRECT | QUASI
    assert policy.sealed_types("acme", "hr") == DIRECT | {"LOCATION"}
    assert sealed_types(["direct", "quasi"]) >= {"PERSON", "ORGANIZATION"}


runner = CliRunner()


def test_privacy_preview_prints_json_lines_only() -> None:
    texts = "the staging DB moved to eu-west-2\nCall Jane Roe on +1 415 555 0142\n"
    result = runner.invoke(app, ["privacy", "preview", "--json"], input=texts)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["visible"] == "the staging DB moved to eu-west-2"
    assert rows[1]["visible"] == "Call <PERSON> on <PHONE_NUMBER>"
    sealed = {(s["type"], s["action"]) for s in rows[1]["spans"] if s["action"] != "keep"}
    assert sealed == {("PERSON", "seal"), ("PHONE_NUMBER", "seal")}
