"""The environment each Deployment gives its service is one the service's Settings accept: nothing required
is missing, no variable is misspelled, and the development secrets are well-formed."""

import base64
import importlib
import secrets
from typing import Any

import pytest

from services.keys.crypto import parse_ring
from tests.integration.deploy.conftest import OVERLAYS
from tests.integration.deploy.manifests import SERVICES, environment, main_container, of_kind, one, pod_templates


def settings_class(service: str) -> Any:
    if service == "keys-relay":
        return importlib.import_module("services.keys.config").RelaySettings
    return importlib.import_module(f"services.{service}.config").Settings


def env_names(service: str) -> set[str]:
    return {name.upper() for name in settings_class(service).model_fields if name != "secret_fields"}


def production_secret(key: str) -> str:
    """A value of the right shape for each secret an operator creates, with nothing of a placeholder in it."""
    if key in ("KEY_HMAC_SECRETS", "KEY_ENCRYPTION_KEYS"):
        return f"k2026a:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    if key in ("SERVICE_TOKENS", "NOTICES_TOKENS"):
        return ",".join(f"{n}:{secrets.token_urlsafe(24)}" for n in ("gateway", "notifier", "reaper", "voice"))
    if key == "DATABASE_URL":
        return "postgresql://keyward:pw@db.internal:5432/keyward"
    return secrets.token_urlsafe(32)


def resolve(docs: list[dict], overlay: str, container: dict) -> dict[str, str]:
    values, refs = environment(docs, container)
    generated = {s["metadata"]["name"]: s["data"] for s in of_kind(docs, "Secret")}
    for var, (secret, key, optional) in refs.items():
        if overlay == "prod":
            assert secret == "keyward-secrets", "production reads the Secret operators create"
            values[var] = production_secret(key)
        elif key in generated[secret]:
            values[var] = base64.b64decode(generated[secret][key]).decode()
        else:
            assert optional, f"{var}: {secret} has no {key}"
    return values


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_the_deployment_gives_its_service_settings_it_accepts(rendered, overlay, service, monkeypatch):
    docs = rendered[overlay]
    env = resolve(docs, overlay, main_container(docs, service))
    for name in env_names(service):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = settings_class(service)()
    assert settings.keyward_env == ("dev" if overlay == "dev" else "prod")
    assert settings.http_host == "0.0.0.0", "a pod must listen beyond its loopback"
    assert settings.kafka_topic == "apikeys.lifecycle"
    if service == "keys":
        parse_ring(settings.key_encryption_keys, name="KEY_ENCRYPTION_KEYS", exact_bytes=32)
        parse_ring(settings.key_hmac_secrets, name="KEY_HMAC_SECRETS")
    if service in ("notifier", "reaper", "gateway"):
        assert settings.keys_url == "http://keyward-keys:8081"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_set_for_a_service_is_one_it_reads(rendered, overlay):
    docs = rendered[overlay]
    known = set().union(*(env_names(s) for s in SERVICES))
    for cm in of_kind(docs, "ConfigMap"):
        if cm["metadata"]["name"].startswith("keyward-config"):
            assert set(cm["data"]) <= known, set(cm["data"]) - known
    for service in SERVICES:
        _, refs = environment(docs, main_container(docs, service))
        explicit = {v["name"] for v in main_container(docs, service)["env"]}
        assert explicit <= env_names(service), explicit - env_names(service)
        assert set(refs) <= env_names(service)


def test_production_creates_no_secret_and_development_generates_every_key_it_references(rendered):
    assert of_kind(rendered["prod"], "Secret") == []
    dev = rendered["dev"]
    (secret,) = of_kind(dev, "Secret")
    for where, template in pod_templates(dev):
        for container in [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]:
            for var, (name, key, optional) in environment(dev, container)[1].items():
                assert name == secret["metadata"]["name"], f"{where}: {var} reads {name}"
                assert optional or key in secret["data"], f"{where}: {key} missing"


def test_development_secrets_are_placeholders_the_services_refuse_in_production(rendered, monkeypatch):
    docs = rendered["dev"]
    env = resolve(docs, "dev", main_container(docs, "keys")) | {"KEYWARD_ENV": "prod"}
    for name in env_names("keys"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="development placeholder"):
        settings_class("keys")()
    assert (
        one(
            docs,
            "ConfigMap",
            next(
                c["metadata"]["name"]
                for c in of_kind(docs, "ConfigMap")
                if c["metadata"]["name"].startswith("keyward-config")
            ),
        )["data"]["KEYWARD_ENV"]
        == "dev"
    )
