"""Settings from `MEMSTREAM_*` environment variables, then `memstream.toml`, then defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from memstream.schemas.topics import MAX_EVENT_BYTES


class Settings(BaseSettings):
    """Everything a memstream process can be told. Field `x` is env var `MEMSTREAM_X`."""

    model_config = SettingsConfigDict(
        env_prefix="MEMSTREAM_", toml_file="memstream.toml", extra="ignore"
    )

    kafka_bootstrap: str | None = Field(
        default=None, description="host:port[,...] of an existing cluster; unset = embedded broker"
    )
    broker_kind: Literal["tansu", "kafka"] = Field(
        default="tansu", description="broker `memstream up` starts when kafka_bootstrap is unset"
    )
    data_dir: Path = Field(default=Path(".memstream"), description="state of the embedded stack")
    partitions: int = Field(default=3, ge=1, description="partitions of topics created at start")
    replication_factor: int = Field(default=1, ge=1)
    max_event_bytes: int = Field(default=MAX_EVENT_BYTES, ge=1024)
    consumer_group: str = Field(default="memstream-worker")
    batch_size: int = Field(default=500, ge=1, description="events per validate batch")
    batch_window_ms: int = Field(default=50, ge=1, description="longest wait to fill a batch")
    producer_linger_ms: int = Field(
        default=5, ge=0, description="how long a worker's producer waits to fill a batch"
    )
    session_timeout_s: float = Field(
        default=10.0, ge=1, description="consumer group session timeout (Tansu always gets 4 s)"
    )
    web_port: int = Field(default=8700, description="HTTP API port of `memstream up`")
    log_level: str = Field(default="INFO")
    log_format: Literal["json", "console"] = Field(default="json")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))
