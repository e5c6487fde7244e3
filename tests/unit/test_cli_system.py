"""System file validation: good files load, bad ones are refused with one line naming file and problem."""

import importlib.util

import pytest

from meshkit.basis.errors import ConfigError
from meshkit.cli.system import DEFAULT_SYSTEM, load_system, system_path


def write(tmp_path, text: str):
    path = tmp_path / "system.yaml"
    path.write_text(text)
    return path


def refused(path) -> str:
    with pytest.raises(ConfigError) as info:
        load_system(path)
    message = info.value.message
    assert str(path) in message and "\n" not in message
    return message


def test_default_system_is_valid_runs_two_catalogs_and_every_module_exists():
    system = load_system(DEFAULT_SYSTEM)
    catalog = system.get("catalog")
    assert catalog is not None and catalog.module == "meshkit.services.catalog.main"
    assert catalog.instance_ids() == ["catalog-1", "catalog-2"]
    for svc in system.services:
        assert importlib.util.find_spec(svc.module) is not None, svc.module


def test_env_values_become_strings_and_fixed_port_sets_prefixed_setting(tmp_path):
    path = write(tmp_path, """
services:
  - name: gateway
    module: meshkit.gateway.main
    port: 8080
    public: true
    env: {GATEWAY_CACHE: true, GATEWAY_LIMIT: 100, GATEWAY_EMPTY: null}
  - name: sso
    module: meshkit.sso.main
    port: 8081
    env_prefix: IDENTITY_
""")
    system = load_system(path)
    gateway, sso = system.services
    assert gateway.service_env() == {
        "GATEWAY_CACHE": "true", "GATEWAY_LIMIT": "100", "GATEWAY_EMPTY": "", "GATEWAY_PORT": "8080",
    }
    assert gateway.public and gateway.instance_ids() == ["gateway-1"]
    assert sso.service_env() == {"IDENTITY_PORT": "8081"}


def test_missing_file_says_what_to_pass(tmp_path):
    message = refused(tmp_path / "nope.yaml")
    assert "not found" in message and "--system" in message


def test_yaml_syntax_error_gives_the_line(tmp_path):
    message = refused(write(tmp_path, "services:\n  - name: a\n    module: [unclosed\n"))
    assert "not valid YAML" in message and "line" in message


def test_not_a_mapping(tmp_path):
    assert "must be a mapping" in refused(write(tmp_path, "- just\n- a list\n"))


def test_empty_services(tmp_path):
    assert "services" in refused(write(tmp_path, "services: []\n"))


def test_bad_instances_names_service_and_field(tmp_path):
    message = refused(write(tmp_path, "services:\n  - {name: catalog, module: m.main, instances: 0}\n"))
    assert "services[0] (catalog).instances" in message and "greater than or equal to 1" in message


def test_unknown_key_lists_the_allowed_ones(tmp_path):
    message = refused(write(tmp_path, "services:\n  - {name: catalog, module: m.main, replicas: 2}\n"))
    assert "replicas" in message and "unknown key" in message and "instances" in message


def test_name_with_dot_or_capitals_is_refused(tmp_path):
    for bad in ("cata.log", "Catalog", "9lives"):
        message = refused(write(tmp_path, f"services:\n  - {{name: '{bad}', module: m.main}}\n"))
        assert "services[0]" in message and ".name" in message


def test_bad_module_path(tmp_path):
    assert ".module" in refused(write(tmp_path, "services:\n  - {name: a, module: 'not a module'}\n"))


def test_duplicate_names_and_ports(tmp_path):
    assert "repeated: a" in refused(write(tmp_path, """
services:
  - {name: a, module: m.main}
  - {name: a, module: m.main}
"""))
    assert "repeated: 9000" in refused(write(tmp_path, """
services:
  - {name: a, module: m.main, port: 9000}
  - {name: b, module: m.main, port: 9000}
"""))


def test_fixed_port_allows_one_instance(tmp_path):
    message = refused(write(tmp_path, "services:\n  - {name: gw, module: m.main, port: 8080, instances: 2}\n"))
    assert "port 8080" in message and "instances: 1" in message


def test_platform_settings_cannot_be_overridden(tmp_path):
    message = refused(write(tmp_path, """
services:
  - name: a
    module: m.main
    env: {MESHKIT_INSTANCE_ID: x}
"""))
    assert "MESHKIT_INSTANCE_ID is set by meshkit up" in message


def test_bad_env_name(tmp_path):
    assert "not a valid environment variable name" in refused(write(tmp_path, """
services:
  - name: a
    module: m.main
    env: {"BAD-NAME": x}
"""))


def test_system_path_prefers_argument_then_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MESHKIT_SYSTEM", raising=False)
    assert system_path(None) == DEFAULT_SYSTEM
    monkeypatch.setenv("MESHKIT_SYSTEM", str(tmp_path / "env.yaml"))
    assert system_path(None) == tmp_path / "env.yaml"
    assert system_path(tmp_path / "arg.yaml") == tmp_path / "arg.yaml"
