"""Generated secrets of many kinds inside ordinary memories, for tests and evaluation.

Each sample is a realistic-looking credential (right prefix, alphabet and length; random,
so it grants nothing) placed in a sentence an agent might write. Seeded: the same seed
gives the same samples.
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass

_ALNUM = string.ascii_letters + string.digits
_UPPER = string.ascii_uppercase + string.digits
_HEX = "0123456789abcdef"
_B64URL = _ALNUM + "-_"


def _r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _jwt(rng: random.Random) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    header = part({"alg": "HS256", "typ": "JWT"})
    body = part({"sub": str(rng.randrange(10**9)), "iat": rng.randrange(10**9)})
    return f"{header}.{body}.{_r(rng, _B64URL, 43)}"


def _private_key(rng: random.Random) -> str:
    lines = [_r(rng, _ALNUM + "+/", 64) for _ in range(4)]
    return (
        "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END RSA PRIVATE KEY-----"
    )


KINDS = {
    "aws_access_key": lambda r: "AKIA" + _r(r, _UPPER, 16),
    "aws_secret_key": lambda r: _r(r, _ALNUM + "/+", 40),
    "github_token": lambda r: "ghp_" + _r(r, _ALNUM, 36),
    "gitlab_token": lambda r: "glpat-" + _r(r, _ALNUM + "-_", 20),
    "slack_token": lambda r: (
        f"xoxb-{r.randrange(10**11)}-{r.randrange(10**11)}-{_r(r, _ALNUM.lower(), 24)}"
    ),
    "stripe_key": lambda r: "sk_live_" + _r(r, _ALNUM, 24),
    "jwt": _jwt,
    "private_key": _private_key,
    "db_password": lambda r: _r(r, _ALNUM, 14),
    "password": lambda r: _r(r, _ALNUM + "!#%", 12),
    "bearer_token": lambda r: _r(r, _ALNUM, 32),
    "google_api_key": lambda r: "AIza" + _r(r, _ALNUM + "-_", 35),
    "sendgrid_key": lambda r: f"SG.{_r(r, _ALNUM, 22)}.{_r(r, _ALNUM, 43)}",
    "twilio_key": lambda r: "SK" + _r(r, _HEX, 32),
    "openai_key": lambda r: "sk-proj-" + _r(r, _ALNUM, 40),
}

_TEMPLATES = {
    "aws_access_key": "rotated the deploy user; new access key id {s} goes into the CI vault",
    "aws_secret_key": "aws_secret_access_key = {s} for the backup bucket",
    "github_token": "use the token {s} to push release tags",
    "gitlab_token": "the runner registers with {s} on the shared GitLab",
    "slack_token": "the alerts bot posts with {s} to #oncall",
    "stripe_key": "billing switched to live mode, key {s}",
    "jwt": "the staging session cookie was {s}",
    "private_key": "deploy key for the build box:\n{s}\nkeep it out of the repo",
    "db_password": "connect with postgres://app:{s}@db.internal:5432/orders",
    "password": "the admin console login is admin, password={s}",
    "bearer_token": "call the export API with Authorization: Bearer {s}",
    "google_api_key": "maps requests need api key {s} in the query string",
    "sendgrid_key": "mail goes out through SendGrid with {s}",
    "twilio_key": "SMS fallback uses the Twilio key {s}",
    "openai_key": "the summariser runs with {s} on the batch tier",
}


@dataclass(frozen=True)
class SecretSample:
    kind: str
    secret: str
    text: str
    rest: list[str]  # the words of the memory around the secret, which must survive


def secret_samples(n: int = 500, seed: int = 13) -> list[SecretSample]:
    rng = random.Random(seed)
    kinds = list(KINDS)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        secret = KINDS[kind](rng)
        template = _TEMPLATES[kind]
        text = template.format(s=secret)
        rest = [w for w in template.replace("{s}", " ").split() if len(w) > 3 and w.isalpha()]
        out.append(SecretSample(kind, secret, text, rest))
    return out
