"""Regenerate memstream/broker/kafka/jars.lock from the pom, with Maven (a developer tool
only: users fetch the locked jars over HTTP, without Maven).

    python scripts/lock_kafka_jars.py

Maven resolves the pom's runtime dependencies (checking Maven Central's own checksums)
into the local repository; each jar's path there is its path on Maven Central.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

KAFKA = Path(__file__).resolve().parents[1] / "memstream" / "broker" / "kafka"
HEADER = """\
# The jars of Apache Kafka {version} (KRaft broker + storage tool) and log4j, as Maven
# resolved them from pom.xml: sha256 and path under Maven Central. Regenerate with
# `python scripts/lock_kafka_jars.py` after changing the pom.
"""


def main() -> int:
    sys.path.insert(0, str(KAFKA.parents[2]))
    from memstream.broker.kafka.launcher import KAFKA_VERSION

    repo = Path.home() / ".m2" / "repository"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(KAFKA / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ],
            check=True,
        )
        rows = []
        for jar in sorted(Path(tmp).glob("*.jar")):
            matches = list(repo.rglob(jar.name))
            if len(matches) != 1:
                print(f"cannot place {jar.name} in {repo}: {matches}", file=sys.stderr)
                return 1
            digest = hashlib.sha256(jar.read_bytes()).hexdigest()
            rows.append(f"{digest}  {matches[0].relative_to(repo)}")
    (KAFKA / "jars.lock").write_text(HEADER.format(version=KAFKA_VERSION) + "\n".join(rows) + "\n")
    print(f"{len(rows)} jars locked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
