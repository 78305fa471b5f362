from __future__ import annotations

import importlib
from pathlib import Path

from ray.serve.deployment import Application
from ray.serve.schema import ServeDeploySchema

from strata.cluster._serve import serve_config
from strata.cluster._tls import TlsFiles
from strata.schemas import Settings
from strata.serve_apps._entry import SERVICE_DEPLOYMENTS


def test_the_gateway_address_comes_from_the_settings() -> None:
    config = serve_config(Settings(_env_file=None, ingress="python", gateway_host="127.0.0.2", gateway_port=8123))
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
        deployments = [application._bound_deployment]
        deployments += [
            arg._bound_deployment for arg in application._bound_deployment.init_args if isinstance(arg, Application)
        ]
        for deployment in deployments:
            assert deployment._deployment_config.health_check_period_s == 5, deployment.name
            assert callable(getattr(deployment.func_or_class, "check_health", None)), deployment.name
            assert deployment.ray_actor_options.get("num_cpus") == 0, deployment.name
        names = {deployment.name for deployment in deployments}
        if app["name"] != "gateway":
            assert SERVICE_DEPLOYMENTS[app["name"]] in names


def test_service_apps_enter_through_an_entry_so_their_deployment_keeps_strata_s_router() -> None:
    from strata.serve_apps.users import app as users_app

    assert users_app._bound_deployment.name == "UsersServiceEntry"
    (service,) = [arg for arg in users_app._bound_deployment.init_args if isinstance(arg, Application)]
    assert service._bound_deployment.name == "UsersService"
    methods = next(arg for arg in users_app._bound_deployment.init_args if isinstance(arg, list))
    assert "get_profile" in methods and "check_health" not in methods and "__init__" not in methods


def test_min_replicas_raise_the_floor_and_the_ceiling_if_needed() -> None:
    config = serve_config(Settings(_env_file=None, min_replicas={"gateway": 3, "audit": 2}))
    apps = {app["name"]: app["deployments"][0] for app in config["applications"]}
    assert apps["gateway"]["autoscaling_config"]["min_replicas"] == 3
    assert apps["gateway"]["autoscaling_config"]["max_replicas"] == 3
    assert apps["audit"]["num_replicas"] == 2
    assert apps["users"]["autoscaling_config"]["min_replicas"] == 1


def test_haproxy_mode_serves_on_loopback_behind_the_front_and_python_mode_terminates_tls(tmp_path: Path) -> None:
    haproxy = serve_config(Settings(_env_file=None, gateway_port=8443, serve_port=8123))
    assert haproxy["http_options"]["host"] == "127.0.0.1" and haproxy["http_options"]["port"] == 8123
    assert "ssl_certfile" not in haproxy["http_options"]
    gateway = next(app for app in haproxy["applications"] if app["name"] == "gateway")
    assert all("request_router_config" not in d for d in gateway["deployments"])  # HAProxy's leastconn decides
    tls = TlsFiles(certfile=tmp_path / "c.pem", keyfile=tmp_path / "k.pem", bundle=tmp_path / "b.pem")
    python = serve_config(Settings(_env_file=None, ingress="python", gateway_port=8443), tls=tls)
    assert python["http_options"]["port"] == 8443
    assert python["http_options"]["ssl_certfile"] == str(tmp_path / "c.pem")
    assert python["http_options"]["ssl_keyfile"] == str(tmp_path / "k.pem")
    ServeDeploySchema.model_validate(python)
