"""The word lists the person-name rules consult: given names and surnames from `faker`'s
locales (the gazetteer), and names of technologies that are never people."""

from __future__ import annotations

import importlib
import threading

_LOCK = threading.Lock()
_GAZETTEER: tuple[frozenset[str], frozenset[str]] | None = None
_TECH: frozenset[str] | None = None

# Infrastructure software and formats that spaCy takes for people or places, which neither
# pygments nor the trove classifiers list (those cover languages and frameworks).
_INFRASTRUCTURE = """
kafka redis postgres postgresql mysql mariadb mongodb mongo sqlite cassandra couchdb dynamodb
elasticsearch opensearch kibana logstash grafana prometheus loki tempo jaeger zipkin datadog
sentry splunk newrelic pagerduty opsgenie docker podman kubernetes k8s helm kustomize istio
envoy linkerd consul vault nomad terraform pulumi ansible chef puppet jenkins circleci travis
github gitlab bitbucket gitea jira confluence trello asana notion slack discord zoom webex
aws azure gcp lambda s3 ec2 ecs eks gke aks cloudfront cloudflare heroku vercel netlify
fly render nginx apache httpd tomcat jetty caddy traefik haproxy varnish memcached rabbitmq
activemq pulsar nats zookeeper etcd celery airflow dagster prefect luigi spark hadoop hdfs
hive presto trino flink storm beam snowflake databricks bigquery redshift athena dbt looker
tableau metabase superset pandas numpy scipy sklearn scikit pytorch torch tensorflow keras
jax onnx onnxruntime cuda triton qdrant pinecone weaviate milvus faiss chroma pgvector
openai anthropic claude chatgpt gpt llama mistral gemini huggingface langchain langgraph
langsmith llamaindex mcp jupyter colab vscode vim neovim emacs git svn mercurial werkzeug
jinja jinja2 sphinx pytest mypy ruff flake8 pylint tox nox pip pipx poetry conda mamba uv
setuptools pypi gunicorn uvicorn starlette fastapi pydantic sqlalchemy alembic typer httpx
aiohttp asyncio tornado twisted gevent eventlet blinker markupsafe itsdangerous okta auth0
oauth oauth2 saml ldap kerberos openid jwt grpc graphql protobuf avro parquet arrow json
yaml toml xml csv html css sass scss less webpack vite rollup esbuild babel eslint prettier
npm yarn pnpm deno bun node nodejs react vue angular svelte nextjs nuxt remix ember jquery
bootstrap tailwind django flask rails laravel symfony express spring quarkus micronaut
dotnet linux ubuntu debian fedora centos rhel alpine arch windows macos ios android chrome
chromium firefox safari webkit gecko electron tauri qt gtk wasm webassembly http https tcp
udp dns cdn api sdk cli gui ssh tls ssl ftp smtp imap ldap vpn wifi bluetooth usb pdf svg
png jpeg gif mp4 utf utf8 ascii unicode regex cron systemd bash zsh fish powershell
stripe twilio sendgrid mailgun shopify salesforce hubspot zendesk intercom segment
mixpanel amplitude supabase firebase firestore appwrite hasura prisma drizzle sequelize
faust aiokafka tansu kraft raft paxos
"""


def gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, last names), case-folded, from every locale of `faker` (about 30k
    each); built once per process (~0.2 s)."""
    global _GAZETTEER
    with _LOCK:
        if _GAZETTEER is None:
            from faker.config import AVAILABLE_LOCALES

            first: set[str] = set()
            last: set[str] = set()
            for locale in AVAILABLE_LOCALES:
                try:
                    provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
                except ImportError:
                    continue
                for attr in dir(provider):
                    if attr.startswith("first_name") and not attr.endswith("formats"):
                        _add_names(first, getattr(provider, attr))
                    elif attr.startswith("last_name") and not attr.endswith("formats"):
                        _add_names(last, getattr(provider, attr))
            _GAZETTEER = (frozenset(first), frozenset(last))
        return _GAZETTEER


def _add_names(into: set[str], names: object) -> None:
    if isinstance(names, dict):
        names = list(names)
    if not isinstance(names, list | tuple):
        return  # a method or property, not a list of names
    for name in names:
        for part in str(name).replace("-", " ").split():
            if len(part) > 1 and part.isalpha():
                into.add(part.casefold())


def technology_terms() -> frozenset[str]:
    """Names of languages, formats, frameworks, platforms and infrastructure software."""
    global _TECH
    with _LOCK:
        if _TECH is None:
            terms = set(_INFRASTRUCTURE.split())
            from pygments.lexers import get_all_lexers

            for name, aliases, _files, _mimes in get_all_lexers():
                terms.update(w.casefold() for w in (name, *aliases) if " " not in w)
            try:
                from trove_classifiers import classifiers

                for classifier in classifiers:
                    parts = [p.strip() for p in classifier.split("::")]
                    if parts[0] in ("Framework", "Programming Language", "Operating System"):
                        terms.update(
                            w.casefold() for p in parts[1:2] for w in p.split() if len(w) > 2
                        )
            except ImportError:  # pragma: no cover - a dependency; the glossary shrinks
                pass
            _TECH = frozenset(terms)
        return _TECH
