from __future__ import annotations

import importlib

from ray.serve.schema import ServeDeploySchema

from strata.cluster._serve import serve_config
from strata.schemas import Settings


def test_the_gateway_address_comes_from_the_settings() -> None:
    config = serve_config(Settings(_env_file=None, gateway_host="127.0.0.2", gateway_port=8123))
    assert config["http_options"]["host"] == "127.0.0.2"
    assert config["http_options"]["port"] == 8123


def test_the_config_is_valid_serve_and_only_the_gateway_has_a_route() -> None:
    config = ServeDeploySchema.model_validate(serve_config(Settings(_env_file=None)))
    routes = {app.name: app.route_prefix for app in config.applications}
    assert routes == {"gateway": "/", "auth": None, "users": None, "data": None, "audit": None}


def test_every_app_imports_and_every_deployment_checks_health_every_5s() -> None:
    config = serve_config(Settings(_env_file=None))
    for app in config["applications"]:
        module_name, attribute = app["import_path"].split(":")
        application = getattr(importlib.import_module(module_name), attribute)
        deployment = application._bound_deployment
        assert deployment._deployment_config.health_check_period_s == 5
        assert callable(getattr(deployment.func_or_class, "check_health", None)), app["name"]
        assert deployment.ray_actor_options.get("num_cpus") == 0
