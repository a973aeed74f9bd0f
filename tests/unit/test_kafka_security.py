"""Kafka connection security as settings, the secure broker's certificates and ACL files."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from pydantic import ValidationError

from memstream.broker.kafka.acls import DEFAULT_ACLS, load_acls
from memstream.broker.kafka.secure import PRINCIPALS, load_or_make_secure_setup
from memstream.broker.security import KafkaSecurity
from memstream.settings import Settings


def test_plaintext_adds_nothing_to_a_client() -> None:
    assert KafkaSecurity().aiokafka_kwargs() == {}
    assert KafkaSecurity().faust_credentials() is None
    assert Settings().kafka_security() == KafkaSecurity()


def test_sasl_without_credentials_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="kafka_sasl_username"):
        KafkaSecurity(protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="does not use TLS"):
        KafkaSecurity(protocol="SASL_PLAINTEXT", username="u", password="p", ca_file="x.pem")
    with pytest.raises(ValidationError, match="go together"):
        KafkaSecurity(protocol="SSL", cert_file=__file__)


def test_missing_tls_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        KafkaSecurity(protocol="SSL", ca_file=tmp_path / "nope.pem")


def test_secure_setup_env_reads_back_through_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = load_or_make_secure_setup(tmp_path)
    security = setup.client("worker")
    for key, value in security.env().items():
        monkeypatch.setenv(key, value)
    assert Settings().kafka_security() == security
    kwargs = security.aiokafka_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "worker"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    credentials = security.faust_credentials()
    assert credentials.username == "worker"
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"


def test_certificates_chain_to_the_run_ca_and_name_localhost(tmp_path: Path) -> None:
    setup = load_or_make_secure_setup(tmp_path)
    ca = x509.load_pem_x509_certificate(setup.ca_file.read_bytes())
    node = x509.load_pem_x509_certificates(setup.node_pem.read_bytes())[0]
    node.verify_directly_issued_by(ca)
    names = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # a server context accepts the node PEM (key + chain), as Kafka's PEM keystore does
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(setup.node_pem)
    assert oct(setup.node_pem.stat().st_mode & 0o777) == "0o600"


def test_a_restarted_setup_keeps_its_certificates_and_passwords(tmp_path: Path) -> None:
    first = load_or_make_secure_setup(tmp_path)
    again = load_or_make_secure_setup(tmp_path)
    assert again.passwords == first.passwords
    assert set(PRINCIPALS) <= set(first.passwords)
    assert len(set(first.passwords.values())) == len(first.passwords)


def test_env_files_per_principal(tmp_path: Path) -> None:
    setup = load_or_make_secure_setup(tmp_path)
    files = setup.write_env_files("127.0.0.1:9093")
    assert set(files) == set(PRINCIPALS)
    text = files["agent"].read_text()
    assert "MEMSTREAM_KAFKA_SASL_USERNAME=agent\n" in text
    assert setup.passwords["admin"] not in text


def test_the_example_acl_set_separates_the_principals() -> None:
    bindings = load_acls(DEFAULT_ACLS)
    by_principal: dict[str, set[tuple[str, str]]] = {}
    for b in bindings:
        by_principal.setdefault(b.principal, set()).add((b.name, b.operation))
    agent = by_principal["User:agent"]
    assert ("memstream.memories", "write") in agent
    assert not any(op == "read" for _, op in agent)  # an agent reads nothing from Kafka
    assert not any(name in ("memstream.subscriptions", "memstream.erasures") for name, _ in agent)
    assert ("memstream.", "read") in by_principal["User:worker"]
    assert ("memstream.deliveries", "read") in by_principal["User:api"]
    deploy = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "acls.json"
    assert deploy.resolve() == DEFAULT_ACLS


def test_a_wrong_acl_entry_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "acls.json"
    bad.write_text(
        json.dumps(
            {
                "acls": [
                    {"principal": "User:x", "resource": "topic", "name": "t", "operations": ["eat"]}
                ]
            }
        )
    )
    with pytest.raises(ValueError, match=r"acls\[0\]: unknown operation 'eat'"):
        load_acls(bad)
