from __future__ import annotations

import importlib
from pathlib import Path

from ray.serve.deployment import Application, Deployment
from ray.serve.schema import ServeDeploySchema

from strata.cluster._scale import Bounds
from strata.cluster._serve import serve_config
from strata.cluster._tls import TlsFiles
from strata.schemas import Settings


def test_the_gateway_address_comes_from_the_settings() -> None:
    config = serve_config(Settings(_env_file=None, ingress="python", gateway_host="127.0.0.2", gateway_port=8123))
    assert config["http_options"]["host"] == "127.0.0.2"
    assert config["http_options"]["port"] == 8123


def test_the_config_is_valid_serve_and_only_the_gateway_has_a_route() -> None:
    config = ServeDeploySchema.model_validate(serve_config(Settings(_env_file=None)))
    routes = {app.name: app.route_prefix for app in config.applications}
    assert routes == {"gateway": "/", "auth": None, "users": None, "data": None, "audit": None}


def _deployments(app: dict[str, object]) -> list[Deployment]:
    module_name, attribute = str(app["import_path"]).split(":")
    application = getattr(importlib.import_module(module_name), attribute)
    deployments = [application._bound_deployment]
    deployments += [
        arg._bound_deployment for arg in application._bound_deployment.init_args if isinstance(arg, Application)
    ]
    return deployments


def test_every_deployment_checks_health_every_5s_and_asks_for_no_cpu() -> None:
    config = serve_config(Settings(_env_file=None))
    for app in config["applications"]:
        listed = {d["name"]: d for d in app["deployments"]}
        for deployment in _deployments(app):
            # What Serve runs: the decorator's options, overridden by the file's.
            options = listed.get(deployment.name, {})
            period = options.get("health_check_period_s", deployment._deployment_config.health_check_period_s)
            cpus = options.get("ray_actor_options", deployment.ray_actor_options or {}).get("num_cpus")
            assert period == 5, deployment.name
            assert cpus == 0, deployment.name
            assert callable(getattr(deployment.func_or_class, "check_health", None)), deployment.name


def test_a_deployment_listed_in_serve_yaml_sets_no_option_in_its_decorator() -> None:
    """One place per fact: an option in both drifts (the gateway once said 256 in code and 128 in the file)."""
    config = serve_config(Settings(_env_file=None))
    for app in config["applications"]:
        listed = {d["name"] for d in app["deployments"]}
        for deployment in _deployments(app):
            if deployment.name not in listed:
                continue  # an entry: its options are its decorator's
            configured = deployment._deployment_config.user_configured_option_names - {"_init_args", "_init_kwargs"}
            assert configured == set(), f"{deployment.name} sets {sorted(configured)} in code; serve.yaml owns them"


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


def _bounds(config: dict[str, object]) -> dict[str, dict[str, object]]:
    return {d["name"]: d for app in config["applications"] for d in app["deployments"]}  # type: ignore[attr-defined]


def test_max_replicas_set_the_ceiling_of_autoscaling_deployments_never_below_the_floor() -> None:
    settings = Settings(_env_file=None, min_replicas={"gateway": 3}, max_replicas={"gateway": 2, "data": 4, "audit": 5})
    deployments = _bounds(serve_config(settings))
    gateway = deployments["Gateway"]["autoscaling_config"]
    assert (gateway["min_replicas"], gateway["max_replicas"]) == (3, 3)
    for name in ("DataService", "DataProcessing"):  # every autoscaling deployment of the app
        assert deployments[name]["autoscaling_config"]["max_replicas"] == 4
        assert deployments[name]["autoscaling_config"]["min_replicas"] == 1
    assert deployments["AuditService"]["num_replicas"] == 1  # fixed size: a ceiling alone leaves it
    assert deployments["UsersService"]["autoscaling_config"]["max_replicas"] == 2
    ServeDeploySchema.model_validate(serve_config(settings))


def test_recorded_bounds_win_over_the_settings_and_the_file() -> None:
    settings = Settings(_env_file=None, min_replicas={"users": 2, "data": 2}, max_replicas={"users": 4, "auth": 3})
    scale = {"users": Bounds(min=1, max=1), "data": Bounds(max=1), "auth": Bounds(min=3), "audit": Bounds(2, 2)}
    deployments = _bounds(serve_config(settings, scale=scale))
    users = deployments["UsersService"]["autoscaling_config"]
    assert (users["min_replicas"], users["max_replicas"]) == (1, 1)
    data = deployments["DataService"]["autoscaling_config"]
    assert (data["min_replicas"], data["max_replicas"]) == (1, 1)  # a ceiling given alone brings the floor down
    auth = deployments["AuthService"]["autoscaling_config"]
    assert (auth["min_replicas"], auth["max_replicas"]) == (3, 3)
    assert deployments["AuditService"]["num_replicas"] == 2
    gateway = deployments["Gateway"]["autoscaling_config"]
    assert (gateway["min_replicas"], gateway["max_replicas"]) == (1, 2)  # no record, no setting: the file's
    ServeDeploySchema.model_validate(serve_config(settings, scale=scale))


def test_every_autoscaled_deployment_reacts_in_seconds_through_a_strata_policy() -> None:
    """Serve's defaults (30 s window, 30 s up, 600 s down, a report every 10 s) kept the gateway at one replica
    through a 16 s burst: every deployment that autoscales reports each second, looks back 5 s and uses strata's
    policies, which publish their decisions for `strata status`."""
    config = ServeDeploySchema.model_validate(serve_config(Settings(_env_file=None)))
    scaled = {
        (app.name, d.name): d.autoscaling_config
        for app in config.applications
        for d in app.deployments
        if isinstance(d.autoscaling_config, dict)
    }
    assert {app for app, _ in scaled} >= {"gateway", "auth", "users", "data"}
    for name, autoscaling in scaled.items():
        assert autoscaling["metrics_interval_s"] <= 1, name
        assert autoscaling["look_back_period_s"] > autoscaling["metrics_interval_s"], name
        assert autoscaling["upscale_delay_s"] <= 3 and autoscaling["downscale_delay_s"] <= 30, name
        policy = autoscaling["policy"]["policy_function"]
        assert policy.split(":")[1] in {"RequestPolicy", "CpuPolicy"}, name
        assert callable(getattr(importlib.import_module(policy.split(":")[0]), policy.split(":")[1])), name


def test_the_cpu_scaling_target_setting_replaces_the_cpu_policys_target_only() -> None:
    deployments = _bounds(serve_config(Settings(_env_file=None, cpu_scaling_target=0.5)))
    processing = deployments["DataProcessing"]["autoscaling_config"]["policy"]["policy_kwargs"]
    assert processing["target"] == 0.5 and processing["down_delay_s"] == 20  # the other knobs stay
    assert "policy_kwargs" not in deployments["Gateway"]["autoscaling_config"]["policy"]
    default = _bounds(serve_config(Settings(_env_file=None)))["DataProcessing"]["autoscaling_config"]["policy"]
    assert default["policy_kwargs"]["target"] == 0.7
