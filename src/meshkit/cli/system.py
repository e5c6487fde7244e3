"""The system definition: which services ``meshkit up`` starts, how many, with what settings.

A system file is YAML::

    services:
      - name: catalog                        # registry name; instance ids are catalog-1, catalog-2...
        module: meshkit.services.catalog.main  # run as `python -m <module>`
        instances: 2
        env: {CATALOG_LOG_LEVEL: info}       # extra settings for every instance
      - name: gateway
        module: meshkit.gateway.main
        port: 8080                           # fixed port: sets GATEWAY_PORT=8080 (one instance)
        public: true                         # its URL leads the `ready` line

:func:`load_system` validates it and raises :class:`ConfigError` with one line that
names the file and every problem found.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from meshkit.basis.errors import ConfigError

#: The system ``meshkit up`` starts when no ``--system`` is given.
DEFAULT_SYSTEM = Path(__file__).with_name("system.yaml")
#: Chooses another default system file (``--system`` still wins).
SYSTEM_SETTING = "MESHKIT_SYSTEM"

#: Set by ``meshkit up`` for every child; a system file may not override them.
PLATFORM_ENV = ("MESHKIT_NATS_URL", "MESHKIT_DATA_DIR", "MESHKIT_INSTANCE_ID")

# Registry keys are ``<service>.<instance_id>``: a name must not contain dots.
_NAME = r"^[a-z][a-z0-9-]{0,39}$"
_MODULE = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ServiceDef(BaseModel):
    """One service of the system and how many instances of it run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    module: str = Field(pattern=_MODULE)
    instances: int = Field(default=1, ge=1, le=32)
    env: dict[str, str] = Field(default_factory=dict)
    #: A fixed port (for services users reach directly, like the gateway).
    port: int | None = Field(default=None, ge=1, le=65535)
    #: Prefix of the service's settings; ``port`` is passed as ``<prefix>PORT``.
    env_prefix: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*_$")
    #: Its URL is the one users open: shown first on the ``ready`` line.
    public: bool = False

    @field_validator("env", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # YAML reads `8080` and `true` as numbers and booleans; the environment only has strings.
        if not isinstance(value, dict):
            return value
        out = {}
        for key, val in value.items():
            if isinstance(val, bool):
                val = "true" if val else "false"
            elif isinstance(val, int | float):
                val = str(val)
            elif val is None:
                val = ""
            out[key] = val
        return out

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.match(_ENV_NAME, key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key in PLATFORM_ENV:
                raise ValueError(f"{key} is set by meshkit up for every instance; remove it from env")
        return value

    @model_validator(mode="after")
    def _one_instance_per_fixed_port(self) -> ServiceDef:
        if self.port is not None and self.instances != 1:
            raise ValueError(
                f"port {self.port} is fixed, so only one instance can bind it: "
                "set instances: 1 or remove port"
            )
        return self

    @property
    def prefix(self) -> str:
        """The settings prefix, ``CATALOG_`` for ``catalog`` unless ``env_prefix`` says otherwise."""
        return self.env_prefix or self.name.upper().replace("-", "_") + "_"

    def instance_ids(self) -> list[str]:
        """``<name>-1`` … ``<name>-<instances>``: stable across restarts."""
        return [f"{self.name}-{n}" for n in range(1, self.instances + 1)]

    def service_env(self) -> dict[str, str]:
        """The variables this file sets for each instance (``env`` plus the fixed port)."""
        env = dict(self.env)
        if self.port is not None:
            env[f"{self.prefix}PORT"] = str(self.port)
        return env


class SystemDef(BaseModel):
    """The whole system: its services, started in this order and stopped in reverse."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    services: list[ServiceDef] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> SystemDef:
        names = [s.name for s in self.services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"service names must be unique; repeated: {', '.join(dupes)}")
        ports = [s.port for s in self.services if s.port is not None]
        dupes_p = sorted({p for p in ports if ports.count(p) > 1})
        if dupes_p:
            raise ValueError(f"two services cannot share a fixed port; repeated: {', '.join(map(str, dupes_p))}")
        return self

    def get(self, name: str) -> ServiceDef | None:
        """The service called ``name``, if the system has one."""
        return next((s for s in self.services if s.name == name), None)


def system_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The file to load: ``path``, else ``$MESHKIT_SYSTEM``, else the packaged default."""
    chosen = path or os.environ.get(SYSTEM_SETTING) or DEFAULT_SYSTEM
    return Path(chosen)


def load_system(path: str | os.PathLike[str] | None = None) -> SystemDef:
    """Read and validate a system file; :class:`ConfigError` names the file and the problem."""
    file = system_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"system file {file} not found: pass --system FILE with an existing file") from None
    except OSError as exc:
        raise ConfigError(f"system file {file} cannot be read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"system file {file} is not valid YAML{where}: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"system file {file} must be a mapping with a 'services' list, got {type(data).__name__}"
        )
    try:
        return SystemDef.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"system file {file} is invalid: {describe(exc, data)}") from exc


def describe(exc: ValidationError, data: Any) -> str:
    """Pydantic's errors as one line: ``services[0] (catalog).instances: must be ≥ 1; …``."""
    problems = []
    for err in exc.errors():
        loc = err["loc"]
        parts: list[str] = []
        node = data
        for item in loc:
            if isinstance(item, int):
                label = f"[{item}]"
                try:
                    node = node[item]
                    if isinstance(node, dict) and isinstance(node.get("name"), str):
                        label += f" ({node['name']})"
                except (TypeError, IndexError, KeyError):
                    node = None
                parts.append(label)
            else:
                parts.append(("." if parts else "") + str(item))
                node = node.get(item) if isinstance(node, dict) else None
        where = "".join(parts) or "file"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (allowed: name, module, instances, env, port, env_prefix, public)"
            if len(loc) == 1:
                msg = "unknown key (allowed: services)"
        problems.append(f"{where}: {msg}")
    return "; ".join(problems)
