"""How memstream's Kafka clients authenticate and encrypt: one object for every client.

The worker (Faust), the API's consumers, the admin calls, the dead-letter and replay tools
and the SDK producer all take their connection security from `KafkaSecurity`, built from
the `MEMSTREAM_KAFKA_*` settings, so that a locked-down cluster needs one set of settings,
not one per client. PLAINTEXT (the default) adds nothing to a client's arguments.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

ENV_PREFIX = "MEMSTREAM_KAFKA_"


class KafkaSecurity(BaseModel):
    """Security protocol, SASL credentials and TLS files of a Kafka connection."""

    model_config = ConfigDict(frozen=True)

    protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None
    check_hostname: bool = True

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.sasl and (not self.username or self.password is None):
            raise ValueError(
                f"security protocol {self.protocol} needs kafka_sasl_username and "
                "kafka_sasl_password"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("kafka_ssl_certfile and kafka_ssl_keyfile go together")
        if not self.tls and (self.ca_file or self.cert_file):
            raise ValueError(
                f"TLS files are set but security protocol {self.protocol} does not use TLS: "
                "choose SSL or SASL_SSL"
            )
        for path in (self.ca_file, self.cert_file, self.key_file):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"Kafka TLS file {path} does not exist")
        return self

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying client context (the CA file, else the system's), or None without TLS."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.check_hostname = self.check_hostname
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(
                str(self.cert_file),
                str(self.key_file),
                self.key_password.get_secret_value() if self.key_password else None,
            )
        return context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
        if self.protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.sasl:
            assert self.password is not None  # checked in _complete
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password.get_secret_value(),
            }
        return kwargs

    def faust_credentials(self) -> Any:
        """`broker_credentials` for a Faust app (None for PLAINTEXT)."""
        import faust

        if self.protocol == "PLAINTEXT":
            return None
        if self.sasl:
            assert self.password is not None
            credentials = faust.SASLCredentials(
                username=self.username,
                password=self.password.get_secret_value(),
                ssl_context=self.ssl_context(),
                mechanism=self.sasl_mechanism,
            )
            return credentials
        return faust.SSLCredentials(self.ssl_context())

    def env(self) -> dict[str, str]:
        """The `MEMSTREAM_KAFKA_*` variables that give another process this security."""
        values: dict[str, str | None] = {
            "SECURITY_PROTOCOL": self.protocol,
            "SASL_MECHANISM": self.sasl_mechanism if self.sasl else None,
            "SASL_USERNAME": self.username,
            "SASL_PASSWORD": self.password.get_secret_value() if self.password else None,
            "SSL_CAFILE": str(self.ca_file) if self.ca_file else None,
            "SSL_CERTFILE": str(self.cert_file) if self.cert_file else None,
            "SSL_KEYFILE": str(self.key_file) if self.key_file else None,
            "SSL_KEY_PASSWORD": (
                self.key_password.get_secret_value() if self.key_password else None
            ),
        }
        if self.tls and not self.check_hostname:
            values["SSL_CHECK_HOSTNAME"] = "false"
        return {ENV_PREFIX + key: value for key, value in values.items() if value is not None}


def kafka_client_kwargs(settings: Any = None) -> dict[str, Any]:
    """aiokafka security arguments from `settings` (a Settings; default: the environment's).

    Every memstream module that opens a Kafka client spreads this into the client's
    arguments, so the whole package connects the same way.
    """
    if settings is None:
        from memstream.settings import Settings

        settings = Settings()
    return settings.kafka_security().aiokafka_kwargs()
