"""Typed settings: per-service prefix, platform-wide MESHKIT_* values."""

from pydantic_settings import SettingsConfigDict

from meshkit.basis.settings import ServiceSettings


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")
    name: str = "demo"
    page_size: int = 50


def test_service_prefix_and_platform_values(monkeypatch, tmp_path):
    monkeypatch.setenv("DEMO_PORT", "8123")
    monkeypatch.setenv("DEMO_PAGE_SIZE", "7")
    monkeypatch.setenv("MESHKIT_NATS_URL", "nats://127.0.0.1:5999")
    monkeypatch.setenv("MESHKIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MESHKIT_INSTANCE_ID", "demo-2")
    s = DemoSettings()
    assert (s.port, s.page_size, s.instance_id) == (8123, 7, "demo-2")
    assert s.registry == "nats://127.0.0.1:5999"
    assert s.database == f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"


def test_explicit_values_win_and_registry_can_differ(monkeypatch):
    monkeypatch.delenv("MESHKIT_NATS_URL", raising=False)
    s = DemoSettings(registry_url="memory://x", database_url="postgresql+asyncpg://h/db", advertise_host="10.0.0.5")
    assert s.registry == "memory://x"
    assert s.database == "postgresql+asyncpg://h/db"
    assert s.address == "10.0.0.5"
    assert s.nats_url == "nats://127.0.0.1:4223"
