"""A locked-down local Apache Kafka: SCRAM over TLS for clients, mutual TLS between nodes.

`memstream broker --kind kafka --secure` and the security tests need a broker that refuses
strangers, without anyone running `keytool` or `openssl`: `make_secure_setup` generates a
CA and one node certificate (with the `cryptography` package, valid for 127.0.0.1 and
localhost) and a password per principal. Clients reach the brokers on a SASL_SSL listener
(SCRAM-SHA-256 and -512, the credentials written into the metadata log at format time);
the controller listener takes only mutual TLS with the node certificate. The standard
authorizer is on: `admin` and the nodes are super users, every other principal may do only
what an ACL allows (`memstream.broker.kafka.acls`, example set in deploy/kafka/).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from memstream.broker.security import KafkaSecurity

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
PRINCIPALS = ("admin", "worker", "api", "agent")
"""SCRAM users created with the cluster: `admin` is a super user; `worker`, `api` and
`agent` get what deploy/kafka/acls.json grants them."""
NODE_CN = "memstream-kafka-node"
_SETUP_FILE = "secure.json"


@dataclass(frozen=True)
class SecureSetup:
    """Where a secure cluster's certificates live, and its principals' passwords."""

    directory: Path
    passwords: dict[str, str]

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def node_pem(self) -> Path:
        """The nodes' private key and certificate chain in one PEM (Kafka's PEM keystore)."""
        return self.directory / "node.pem"

    def client(self, principal: str = "admin", *, password: str | None = None) -> KafkaSecurity:
        """Client security for `principal` (SCRAM-SHA-512 over TLS, trusting the run's CA).
        `password` overrides the real one (to show a wrong one is refused)."""
        if principal not in self.passwords and password is None:
            raise KeyError(f"no principal {principal!r}: choose one of {sorted(self.passwords)}")
        return KafkaSecurity(
            protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            username=principal,
            password=password if password is not None else self.passwords[principal],
            ca_file=self.ca_file,
        )

    def write_env_files(self, bootstrap: str) -> dict[str, Path]:
        """`<principal>.env` per principal (MEMSTREAM_KAFKA_* lines), readable by owner only."""
        files = {}
        for principal in PRINCIPALS:
            env = {"MEMSTREAM_KAFKA_BOOTSTRAP": bootstrap, **self.client(principal).env()}
            path = self.directory / f"{principal}.env"
            path.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
            path.chmod(0o600)
            files[principal] = path
        return files

    def format_args(self) -> list[str]:
        """`kafka-storage format` arguments that create every principal's SCRAM credentials."""
        args = []
        for name, password in self.passwords.items():
            for mechanism in SCRAM_MECHANISMS:
                args += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        return args

    def server_properties(self, host: str, port: int, controller_port: int) -> dict[str, object]:
        """What a node's server.properties needs on top of the plain settings."""
        node_password = self.passwords["node"]
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="node" password="{node_password}";'
        )
        settings: dict[str, object] = {
            "listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"SASL_SSL://{host}:{port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": self.node_pem,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": self.ca_file,
            "ssl.endpoint.identification.algorithm": "https",
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:admin;User:node;User:CN={NODE_CN}",
        }
        for mechanism in SCRAM_MECHANISMS:
            settings[f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config"] = jaas
        return settings


def load_or_make_secure_setup(directory: Path) -> SecureSetup:
    """The setup kept in `directory` (a restarted cluster keeps its certificates and
    passwords), else a new one written there."""
    directory.mkdir(parents=True, exist_ok=True)
    saved = directory / _SETUP_FILE
    if saved.is_file():
        setup = SecureSetup(directory, json.loads(saved.read_text())["passwords"])
        if setup.ca_file.is_file() and setup.node_pem.is_file():
            return setup
    passwords = {name: secrets.token_urlsafe(18) for name in ("node", *PRINCIPALS)}
    _write_certificates(directory)
    saved.write_text(json.dumps({"passwords": passwords}, indent=2) + "\n")
    saved.chmod(0o600)
    return SecureSetup(directory, passwords)


def _write_certificates(directory: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    valid = (now - dt.timedelta(minutes=5), now + dt.timedelta(days=365))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "memstream local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    node_key = ec.generate_private_key(ec.SECP256R1())
    node_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NODE_CN)]))
        .issuer_name(ca_name)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    node_pem = directory / "node.pem"
    node_pem.write_bytes(
        node_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + node_cert.public_bytes(pem)
        + ca_cert.public_bytes(pem)
    )
    node_pem.chmod(0o600)
