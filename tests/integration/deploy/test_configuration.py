"""The environment each Deployment gives its service is one the service's Settings accept: nothing required
is missing, no variable is misspelled, and the development secrets are well-formed."""

import pytest

from services.keys.crypto import parse_ring
from tests.integration.deploy.conftest import OVERLAYS
from tests.integration.deploy.manifests import (
    SERVICES,
    env_names,
    environment,
    main_container,
    of_kind,
    one,
    resolve,
    secret_names,
    settings_class,
    workloads,
)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_the_deployment_gives_its_service_settings_it_accepts(rendered, overlay, service, monkeypatch):
    docs = rendered[overlay]
    env = resolve(docs, main_container(docs, service))
    for name in settings_class(service).model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = settings_class(service)()
    assert settings.keyward_env == ("dev" if overlay == "dev" else "prod")
    assert settings.http_host == "0.0.0.0", "a pod must listen beyond its loopback"
    assert settings.kafka_topic == "apikeys.lifecycle"
    if service == "keys":
        assert settings.serves == "admin"
        assert settings.key_encryption_keys is not None
        parse_ring(settings.key_encryption_keys, name="KEY_ENCRYPTION_KEYS", exact_bytes=32)
        parse_ring(settings.key_hmac_secrets, name="KEY_HMAC_SECRETS")
    if service == "keys-verify":
        assert settings.serves == "verify"
        assert settings.key_encryption_keys is None and settings.acting_admin_secret is None
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
    """Each service's own Secret (`keyward-<service>`) is generated in dev, created by operators in production; a
    KafkaUser's is the User Operator's in both (test_kafka_access.py checks who reads which)."""
    assert of_kind(rendered["prod"], "Secret") == []
    dev = rendered["dev"]
    generated = {s["metadata"]["name"]: s for s in of_kind(dev, "Secret")}
    assert sorted(secret_names(dev).values()) == sorted(f"keyward-{s}" for s in SERVICES)
    kafka_users = {u["metadata"]["name"] for u in of_kind(dev, "KafkaUser")}
    for where, _, template in workloads(dev):
        for container in [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]:
            for var, (name, key, optional) in environment(dev, container)[1].items():
                if name in kafka_users:
                    continue
                assert name in generated, f"{where}: {var} reads {name}, which dev does not generate"
                assert optional or key in generated[name]["data"], f"{where}: {key} missing"


def test_development_secrets_are_placeholders_the_services_refuse_in_production(rendered, monkeypatch):
    docs = rendered["dev"]
    env = resolve(docs, main_container(docs, "keys")) | {"KEYWARD_ENV": "prod"}
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
