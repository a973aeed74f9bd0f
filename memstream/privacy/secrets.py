"""Secrets are never stored: API keys, tokens, private keys, passwords in connection strings
and assignments are replaced by a typed placeholder (`<SECRET_GITHUB_TOKEN>`) before
anything is published, embedded, indexed, archived or delivered, for every reader.

The patterns are `detect-secrets`' own (Yelp's scanner; its plugins' deny-lists, one per
provider: AWS, GitHub, GitLab, Slack, Stripe, JWT, private keys, basic-auth URLs, npm,
PyPI, SendGrid, Twilio, ...), applied to find *where* each secret is. A few forms it
reports only through its entropy and keyword heuristics, which give values but no
positions, are added here: `password=...`-style assignments, `Bearer` tokens, whole
private key blocks, Google and Anthropic/OpenAI-style keys.
"""

from __future__ import annotations

import re
import threading

from memstream.privacy.detect import PiiSpan

SECRET_PREFIX = "SECRET_"
_LOCK = threading.Lock()
_RULES: list[tuple[str, re.Pattern[str]]] | None = None

# detect-secrets plugins with precise patterns (the entropy and keyword plugins have none;
# the public-IP one reports addresses, which the PII detector owns)
_PLUGINS = {
    "AWSKeyDetector": "aws_key",
    "ArtifactoryDetector": "artifactory_token",
    "AzureStorageKeyDetector": "azure_storage_key",
    "BasicAuthDetector": "password",
    "CloudantDetector": "cloudant_key",
    "DiscordBotTokenDetector": "discord_token",
    "GitHubTokenDetector": "github_token",
    "GitLabTokenDetector": "gitlab_token",
    "IbmCloudIamDetector": "ibm_cloud_key",
    "IbmCosHmacDetector": "ibm_cos_key",
    "JwtTokenDetector": "jwt",
    "MailchimpDetector": "mailchimp_key",
    "NpmDetector": "npm_token",
    "OpenAIDetector": "openai_key",
    "PypiTokenDetector": "pypi_token",
    "SendGridDetector": "sendgrid_key",
    "SlackDetector": "slack_token",
    "SoftlayerDetector": "softlayer_key",
    "SquareOAuthDetector": "square_secret",
    "StripeDetector": "stripe_key",
    "TelegramBotTokenDetector": "telegram_token",
    "TwilioKeyDetector": "twilio_key",
}

_OWN = [
    # an assignment of a secret: password=..., "api_key": "...", client_secret: ...
    (
        "password",
        r"(?i)(?<![A-Za-z0-9])(?:password|passwd|passphrase|pwd|secret|client[_-]?secret|api[_-]?key|apikey|"
        r"access[_-]?key(?:[_-]?id)?|secret[_-]?(?:access[_-]?)?key|auth[_-]?token|access[_-]?token|"
        r"refresh[_-]?token|private[_-]?key|token)[\"']?[ \t]*(?:[:=]|=>)[ \t]*[\"']?"
        r"([^\s\"',;]{6,})",
    ),
    ("bearer_token", r"(?i)\bbearer[ \t]+([A-Za-z0-9._~+/=-]{16,})"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
    ("api_key", r"\bsk-(?:ant-|proj-|live-)?[A-Za-z0-9_-]{20,}"),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("github_token", r"\bgithub_pat_[A-Za-z0-9_]{22,}"),
    (
        "aws_secret_key",
        r"(?i)aws.{0,20}?secret.{0,20}?[:=][ \t]*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
    ),
    (
        "private_key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY"
        r"(?: BLOCK)?-----|\Z)",
    ),
]


def _rules() -> list[tuple[str, re.Pattern[str]]]:
    global _RULES
    with _LOCK:
        if _RULES is None:
            from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

            rules: list[tuple[str, re.Pattern[str]]] = []
            for cls in get_mapping_from_secret_type_to_class().values():
                kind = _PLUGINS.get(cls.__name__)
                if kind is None or cls.__name__ == "PrivateKeyDetector":
                    continue  # private keys: the whole block, below
                rules += [(kind, rx) for rx in getattr(cls, "denylist", ())]
            rules += [(kind, re.compile(pattern)) for kind, pattern in _OWN]
            _RULES = rules
        return _RULES


def find_secrets(text: str) -> list[PiiSpan]:
    """Spans of secrets in `text`, typed `SECRET_<KIND>`: the secret itself (the password
    of `postgres://user:pw@host`, the value of `api_key=...`), not what names it."""
    if not text:
        return []
    found: list[PiiSpan] = []
    for kind, rx in _rules():
        for m in rx.finditer(text):
            a, b = m.span()
            if m.lastindex and m.group(m.lastindex):
                ga, gb = m.span(m.lastindex)
                # a group that ends the match is the secret the rest names ("://user:PW@",
                # "api_key=VALUE"); a group at the front is a prefix ("ghp" of a GitHub token)
                if gb - ga >= 6 and gb >= b - 1:
                    a, b = ga, gb
            if kind == "password" and _reference(text[a:b]):
                continue  # `token = request.headers[...]`: code naming a secret, not one
            if (a, b) == m.span() and b < len(text) and text[b - 1 : b + 1].isalnum():
                # a key longer than the provider's pattern spells out (Stripe's keys grew):
                # the secret is the whole token
                while b < len(text) and (text[b].isalnum() or text[b] in "_-"):
                    b += 1
            if b > a:
                found.append(PiiSpan(a, b, SECRET_PREFIX + kind.upper(), 1.0))
    return _merged(found)


_REFERENCE = re.compile(
    r"[(\[{<]|\$\{|^\$[A-Za-z_]|%\(|^%[sd]$|^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$"
    r"|^(?:x+|\*+|changeme|none|null)$",
    re.I,
)


def _reference(value: str) -> bool:
    """A value that names where a secret is (a variable, a lookup, a template) or hides it
    (`***`), rather than being one."""
    return bool(_REFERENCE.search(value))


def _merged(spans: list[PiiSpan]) -> list[PiiSpan]:
    out: list[PiiSpan] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and s.start < out[-1].end:
            last = out[-1]
            out[-1] = PiiSpan(last.start, max(last.end, s.end), last.entity_type, 1.0)
        else:
            out.append(s)
    return out


def scrub_secrets(text: str) -> str:
    """`text` with every secret replaced by its typed placeholder."""
    spans = find_secrets(text)
    if not spans:
        return text
    parts, pos = [], 0
    for s in spans:
        parts.append(text[pos : s.start])
        parts.append(f"<{s.entity_type}>")
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts)


def scrub_value(value: object) -> object:
    """A JSON value (metadata, tags) with the secrets in its strings, keys included,
    replaced."""
    if isinstance(value, str):
        return scrub_secrets(value)
    if isinstance(value, dict):
        return {scrub_secrets(k): scrub_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v) for v in value]
    return value


def scrub_bytes(raw: bytes | None) -> bytes | None:
    """Raw bytes (an event on a topic, a dead letter's original) with secrets replaced,
    whatever they hold: undecodable bytes pass through unchanged around the secrets."""
    if not raw:
        return raw
    text = raw.decode("utf-8", errors="surrogateescape")
    scrubbed = scrub_secrets(text)
    return raw if scrubbed == text else scrubbed.encode("utf-8", errors="surrogateescape")
