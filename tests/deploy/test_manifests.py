"""The Kubernetes manifests: both overlays render, every built-in object validates against
the Kubernetes schema, operator resources carry what their CRDs require, and the settings
the pods get match what the services read."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from pydantic import AliasChoices

from services.ingest.registration import REGISTRAR_GROUP
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from services.scorer.settings import ScorerSettings
from shared.console_links import CONSOLE_PREFIX
from shared.settings import ENV_PREFIX, ServiceSettings
from shared.topics import AMAZON_STATE, AMAZON_VTR, DEADLETTER, SCORES, SHIPMENTS, TRACKING_EVENTS, deadletter_spec
from tests.deploy.conftest import OVERLAYS, ROOT

Object = dict[str, Any]
Rendered = dict[str, list[Object]]

KUBERNETES_VERSION = kubernetes_validate.latest_version()
#: API groups served by the Kubernetes API server itself ("" is the core group).
BUILTIN_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io"}
#: API groups of the operators vtrwatch relies on (their CRDs are not in the schema).
OPERATOR_GROUPS = {"kafka.strimzi.io", "postgresql.cnpg.io", "monitoring.coreos.com", "keda.sh"}
#: A JSON schema of the KEDA fields the manifests use (KEDA's CRDs are not in kubernetes-validate).
KEDA_SCHEMA = json.loads((ROOT / "tests" / "deploy" / "schemas" / "keda.json").read_text())
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
SERVICES: dict[str, type[ServiceSettings]] = {
    "ingest": IngestSettings,
    "scorer": ScorerSettings,
    "notifier": NotifierSettings,
}
#: The ingest's background workers (ingest-workers.yaml): component -> its subcommand of
#: ``python -m services.ingest``, its KafkaUser, the topic it writes, its consumer group.
WORKERS: dict[str, tuple[str, str, str, str | None]] = {
    "ingest-registrar": ("registrar", "vtrwatch-ingest-registrar", DEADLETTER, REGISTRAR_GROUP),
    "ingest-yanwen-poller": ("poll-yanwen", "vtrwatch-ingest-yanwen-poller", TRACKING_EVENTS, None),
    "ingest-amazon": ("amazon worker", "vtrwatch-ingest-amazon", SHIPMENTS, None),
}
#: Every long-running pod and the settings class it reads (the workers read the ingest's).
PODS: dict[str, type[ServiceSettings]] = {**SERVICES, **dict.fromkeys(WORKERS, IngestSettings)}
DAY_MS = 24 * 3600 * 1000
DEFAULT_SETTINGS = ServiceSettings()
#: The operator CLI's Kafka principal: the only one that writes API keys.
ADMIN_USER = "vtrwatch-admin"

#: Fields each operator's CRD marks required (or that the operator cannot work without),
#: as dotted paths; a trailing [] means a non-empty list.
OPERATOR_REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("kafka.strimzi.io", "Kafka"): ("spec.kafka.listeners[]", "spec.entityOperator.topicOperator"),
    ("kafka.strimzi.io", "KafkaNodePool"): ("spec.replicas", "spec.roles[]", "spec.storage.type"),
    ("kafka.strimzi.io", "KafkaTopic"): ("spec.topicName", "spec.partitions", "spec.replicas"),
    ("kafka.strimzi.io", "KafkaUser"): ("spec.authentication.type",),
    ("postgresql.cnpg.io", "Cluster"): ("spec.instances", "spec.storage.size"),
    ("postgresql.cnpg.io", "Database"): ("spec.name", "spec.owner", "spec.cluster.name"),
    ("postgresql.cnpg.io", "ScheduledBackup"): ("spec.schedule", "spec.cluster.name"),
    ("monitoring.coreos.com", "ServiceMonitor"): ("spec.selector.matchLabels", "spec.endpoints[]"),
    ("monitoring.coreos.com", "PrometheusRule"): ("spec.groups[]",),
    ("keda.sh", "ScaledObject"): ("spec.scaleTargetRef.name", "spec.triggers[]"),
    ("keda.sh", "TriggerAuthentication"): ("spec.secretTargetRef[]",),
}


def group_of(obj: Object) -> str:
    api_version: str = obj["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


def of_kind(objects: list[Object], kind: str) -> list[Object]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[Object], kind: str, name: str) -> Object:
    matches = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name}, found {len(matches)}"
    return matches[0]


def lookup(obj: Any, path: str) -> Any:
    for part in path.split("."):
        assert isinstance(obj, dict) and part in obj, f"missing {path!r}"
        obj = obj[part]
    return obj


def pod_spec(workload: Object) -> Object:
    spec: Object = workload["spec"]["template"]["spec"]
    return spec


def all_containers(workload: Object) -> Iterator[Object]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: Object) -> dict[str, Object]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def topic_by_name(objects: list[Object], topic: str) -> Object:
    matches = [obj for obj in of_kind(objects, "KafkaTopic") if obj["spec"]["topicName"] == topic]
    assert len(matches) == 1, f"expected one KafkaTopic for {topic}"
    return matches[0]


def config_map(objects: list[Object], name: str = "vtrwatch-config") -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap", name)["data"]
    return data


def env_from_config_maps(objects: list[Object], container: Object) -> dict[str, str]:
    """What the container's ``envFrom`` ConfigMaps set, later ones winning as in Kubernetes."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environment.update(config_map(objects, source["configMapRef"]["name"]))
    return environment


def env_names(settings_class: type[ServiceSettings]) -> dict[str, str]:
    """field name -> the environment variable that sets it."""
    names = {}
    for field_name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names[field_name] = next(str(choice) for choice in alias.choices if str(choice).startswith(ENV_PREFIX))
        else:
            names[field_name] = f"{ENV_PREFIX}{field_name.upper()}"
    return names


def secret_env_names(settings_class: type[ServiceSettings]) -> set[str]:
    names = env_names(settings_class)
    return {
        names[field_name]
        for field_name, field in settings_class.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("secret")
    }


def nginx_size_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


def workload_of(objects: list[Object], component: str) -> Object:
    matches = [
        obj
        for obj in objects
        if obj["kind"] in ("Deployment", "StatefulSet")
        and obj["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(matches) == 1, f"expected one workload for {component}"
    return matches[0]


# --- Rendering and schemas --------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_part(rendered: Rendered, overlay: str) -> None:
    kinds = {obj["kind"] for obj in rendered[overlay]}
    expected = {
        "ConfigMap", "Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "NetworkPolicy", "Ingress", "Job", "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Cluster",
        "Database", "ServiceMonitor", "PrometheusRule",
    }  # fmt: skip
    assert expected <= kinds
    namespaces = {obj["metadata"].get("namespace") for obj in rendered[overlay]}
    assert namespaces == {"vtrwatch" if overlay == "prod" else "vtrwatch-dev"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_a_builtin_or_operator_kind(rendered: Rendered, overlay: str) -> None:
    unknown = [
        f"{obj['apiVersion']} {obj['kind']}"
        for obj in rendered[overlay]
        if group_of(obj) not in BUILTIN_GROUPS | OPERATOR_GROUPS
    ]
    assert unknown == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_validate_against_the_kubernetes_schema(rendered: Rendered, overlay: str) -> None:
    builtin = [obj for obj in rendered[overlay] if group_of(obj) in BUILTIN_GROUPS]
    assert len(builtin) > 20
    for obj in builtin:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {error.message} at {list(error.path)}")


def test_schema_validation_catches_a_wrong_field() -> None:
    """Guards the guard: a misspelt field in strict mode is an error."""
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"selectr": {"a": "b"}, "ports": [{"port": 80}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_resources_carry_their_required_fields(rendered: Rendered, overlay: str) -> None:
    objects = rendered[overlay]
    kafka_clusters = {obj["metadata"]["name"] for obj in of_kind(objects, "Kafka")}
    checked = 0
    for obj in objects:
        required = OPERATOR_REQUIRED.get((group_of(obj), obj["kind"]))
        if group_of(obj) in OPERATOR_GROUPS:
            assert required is not None, f"no required-field table for {obj['kind']}"
        if required is None:
            continue
        for path in required:
            value = lookup(obj, path.removesuffix("[]"))
            if path.endswith("[]"):
                assert isinstance(value, list) and value, f"{obj['kind']}: {path} must be a non-empty list"
        if group_of(obj) == "kafka.strimzi.io" and obj["kind"] != "Kafka":
            assert obj["metadata"]["labels"]["strimzi.io/cluster"] in kafka_clusters
        checked += 1
    assert checked >= 15


# --- Kafka and PostgreSQL ---------------------------------------------------------------


def test_prod_kafka_is_kraft_with_three_brokers_and_durable_topics(rendered: Rendered) -> None:
    objects = rendered["prod"]
    (kafka,) = of_kind(objects, "Kafka")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2
    assert config["auto.create.topics.enable"] is False
    pools = of_kind(objects, "KafkaNodePool")
    brokers = sum(pool["spec"]["replicas"] for pool in pools if "broker" in pool["spec"]["roles"])
    controllers = sum(pool["spec"]["replicas"] for pool in pools if "controller" in pool["spec"]["roles"])
    assert brokers == 3
    assert controllers == 3
    for topic in of_kind(objects, "KafkaTopic"):
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == 2
    assert config_map(objects)["VTR_KAFKA_REPLICATION_FACTOR"] == "3"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_match_the_contract_and_the_scorer_fits_the_partitions(rendered: Rendered, overlay: str) -> None:
    objects = rendered[overlay]
    assert {topic["spec"]["topicName"] for topic in of_kind(objects, "KafkaTopic")} == {
        TRACKING_EVENTS,
        SHIPMENTS,
        SCORES,
        DEADLETTER,
        DEFAULT_SETTINGS.credentials_topic,
        DEFAULT_SETTINGS.credential_usage_topic,
        AMAZON_VTR,
        AMAZON_STATE,
    }
    assert topic_by_name(objects, AMAZON_STATE)["spec"]["config"]["cleanup.policy"] == "compact"
    tracking = topic_by_name(objects, TRACKING_EVENTS)
    shipments = topic_by_name(objects, SHIPMENTS)
    # Replay rebuilds the scorer's state: at least 35 days of events must still be there.
    assert int(tracking["spec"]["config"]["retention.ms"]) >= 35 * DAY_MS
    assert int(shipments["spec"]["config"]["retention.ms"]) >= int(tracking["spec"]["config"]["retention.ms"])
    partitions = tracking["spec"]["partitions"]
    assert shipments["spec"]["partitions"] == partitions, "both inputs must be co-partitioned"
    assert config_map(objects)["VTR_KAFKA_TOPIC_PARTITIONS"] == str(partitions)
    scorer = one(objects, "StatefulSet", "scorer")
    assert 1 <= scorer["spec"]["replicas"] <= partitions
    expected = deadletter_spec(IngestSettings().largest_body_bytes()).config["max.message.bytes"]
    assert str(topic_by_name(objects, DEADLETTER)["spec"]["config"]["max.message.bytes"]) == expected


def test_kafka_users_may_use_the_services_consumer_groups(rendered: Rendered) -> None:
    groups = {
        "vtrwatch-scorer": ScorerSettings().consumer_group_id,
        "vtrwatch-notifier": NotifierSettings().consumer_group,
    }
    for user, group in groups.items():
        acls = one(rendered["prod"], "KafkaUser", user)["spec"]["authorization"]["acls"]
        group_acls = [acl["resource"] for acl in acls if acl["resource"]["type"] == "group"]
        assert any(
            group.startswith(resource["name"]) if resource.get("patternType") == "prefix" else group == resource["name"]
            for resource in group_acls
        ), f"{user} has no ACL for consumer group {group}"


def test_prod_postgres_has_three_instances_and_backups(rendered: Rendered) -> None:
    objects = rendered["prod"]
    (cluster,) = of_kind(objects, "Cluster")
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://")
    assert cluster["spec"]["backup"]["retentionPolicy"]
    (scheduled,) = of_kind(objects, "ScheduledBackup")
    assert scheduled["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    databases = {db["spec"]["name"]: db["spec"]["owner"] for db in of_kind(objects, "Database")}
    assert databases == {"scorer": "scorer", "notifier": "notifier"}
    roles = {role["name"] for role in cluster["spec"]["managed"]["roles"]}
    assert roles == {"scorer", "notifier"}


# --- Workloads ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_unprivileged_on_a_read_only_root(rendered: Rendered, overlay: str) -> None:
    workloads = [obj for obj in rendered[overlay] if obj["kind"] in WORKLOAD_KINDS]
    assert len(workloads) == 4 + len(WORKERS)
    for workload in workloads:
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        tmp_volumes = {volume["name"] for volume in spec["volumes"] if "emptyDir" in volume}
        for container in all_containers(workload):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: {bound}"
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}: /tmp must be an emptyDir"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("component", SERVICES)
def test_services_have_probes_graceful_termination_and_spread(rendered: Rendered, overlay: str, component: str) -> None:
    objects = rendered[overlay]
    workload = workload_of(objects, component)
    spec = pod_spec(workload)
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", f"services.{component}"]
    port = SERVICES[component]().http_port
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert env_of(container)["VTR_HTTP_PORT"]["value"] == str(port)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    drain = float(config_map(objects)["VTR_DRAIN_SECONDS"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > drain + pre_stop
    keys = {constraint["topologyKey"] for constraint in spec["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert container["image"].startswith("registry.example.com/vtrwatch/vtrwatch:")


def test_scorer_uses_static_membership_from_its_stable_pod_name(rendered: Rendered) -> None:
    scorer = one(rendered["prod"], "StatefulSet", "scorer")
    (container,) = pod_spec(scorer)["containers"]
    instance_id = env_of(container)["VTR_SCORER_INSTANCE_ID"]
    assert instance_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # Away for a restart (grace period + start-up) is shorter than the session timeout.
    session_timeout_seconds = int(env_of(container)["VTR_KAFKA_SESSION_TIMEOUT_MS"]["value"]) / 1000
    assert session_timeout_seconds > pod_spec(scorer)["terminationGracePeriodSeconds"] + 30
    assert "scorer_instance_id" in ScorerSettings.model_fields


def selects(selector: Object, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and In/NotIn/Exists expressions) matches."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("worker", WORKERS)
def test_ingest_workers_run_one_pod_each_and_never_two_at_once(rendered: Rendered, overlay: str, worker: str) -> None:
    """Two registrars would double the calls against an aggregator's rate limit (one limiter
    per process); two pollers would both poll every open Yanwen parcel (no consumer group)."""
    objects = rendered[overlay]
    subcommand = WORKERS[worker][0]
    workload = workload_of(objects, worker)
    assert workload["kind"] == "Deployment"
    assert workload["spec"]["replicas"] == 1
    assert workload["spec"]["strategy"] == {"type": "Recreate"}
    assert workload["metadata"]["name"] not in {
        scaler["spec"]["scaleTargetRef"]["name"]
        for scaler in objects
        if scaler["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    }
    spec = pod_spec(workload)
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "services.ingest", *subcommand.split()]
    assert f'sys.argv[1:2] == ["{subcommand.split()[0]}"]' in (ROOT / "services" / "ingest" / "__main__.py").read_text()
    assert container["image"].startswith("registry.example.com/vtrwatch/vtrwatch:")
    assert spec["terminationGracePeriodSeconds"] >= 30


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("worker", WORKERS)
def test_ingest_workers_serve_metrics_and_probes_on_their_metrics_port(
    rendered: Rendered, overlay: str, worker: str
) -> None:
    """No API, but /metrics for Prometheus (through a Service of the workload's name, the
    job label) and /healthz, /readyz for the kubelet, all on the port the worker listens on."""
    objects = rendered[overlay]
    workload = workload_of(objects, worker)
    (container,) = pod_spec(workload)["containers"]
    port = IngestSettings().worker_metrics_port
    assert container["ports"] == [{"name": "metrics", "containerPort": port}]
    assert env_of(container)["VTR_WORKER_METRICS_PORT"]["value"] == str(port)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # The stall itself is the worker's to judge (VTR_WORKER_STALL_SECONDS): the probe only
    # gives up after several answers in a row, never on one slow scrape.
    assert container["livenessProbe"]["failureThreshold"] >= 3
    labels = workload["spec"]["template"]["metadata"]["labels"]
    (service,) = [
        service for service in of_kind(objects, "Service") if service["spec"]["selector"].items() <= labels.items()
    ]
    assert service["metadata"]["name"] == workload["metadata"]["name"] == worker
    assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics"}]
    (monitor,) = [monitor for monitor in of_kind(objects, "ServiceMonitor") if monitor["metadata"]["name"] == worker]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize("worker", WORKERS)
def test_ingest_workers_kafka_users_allow_what_they_do_and_no_more(rendered: Rendered, worker: str) -> None:
    objects = rendered["prod"]
    _, username, writes, group = WORKERS[worker]
    (container,) = pod_spec(workload_of(objects, worker))["containers"]
    env = env_of(container)
    assert env["VTR_KAFKA_SASL_USERNAME"]["value"] == username
    # Strimzi writes the user's password into a Secret of the same name.
    assert env["VTR_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": username, "key": "password"}
    user = one(objects, "KafkaUser", username)
    assert acl_allows(user, "topic", SHIPMENTS, "Read")
    assert acl_allows(user, "topic", writes, "Write")
    for topic in (SHIPMENTS, TRACKING_EVENTS, DEADLETTER, SCORES):
        assert acl_allows(user, "topic", topic, "Describe")
        if topic != writes:
            assert not acl_allows(user, "topic", topic, "Write"), f"{username} may write {topic}"
        if topic != SHIPMENTS:
            assert not acl_allows(user, "topic", topic, "Read"), f"{username} may read {topic}"
    if group is None:
        assert not [acl for acl in user["spec"]["authorization"]["acls"] if acl["resource"]["type"] == "group"]
    else:
        assert acl_allows(user, "group", group, "Read")


def test_ingest_workers_are_fenced_in_kafka_and_https_out_nothing_in(rendered: Rendered) -> None:
    objects = rendered["prod"]
    for worker in WORKERS:
        labels = workload_of(objects, worker)["spec"]["template"]["metadata"]["labels"]
        policies = {
            policy["metadata"]["name"]
            for policy in of_kind(objects, "NetworkPolicy")
            if selects(policy["spec"]["podSelector"], labels)
        }
        fenced = {"vtrwatch-default-deny", "vtrwatch-allow-dns", "vtrwatch-allow-prometheus", "ingest-workers"}
        assert policies == fenced, worker
    # Guards the selector check: the ingest API's pods are not fenced as a worker.
    ingest_labels = workload_of(objects, "ingest")["spec"]["template"]["metadata"]["labels"]
    assert not selects(one(objects, "NetworkPolicy", "ingest-workers")["spec"]["podSelector"], ingest_labels)


def test_registration_routes_are_configured_in_one_config_map(rendered: Rendered) -> None:
    objects = rendered["prod"]
    (registrar,) = pod_spec(workload_of(objects, "ingest-registrar"))["containers"]
    routes = env_from_config_maps(objects, registrar)
    names = env_names(IngestSettings)
    route_settings = {
        names[field]
        for field in (
            "register_17track_carriers",
            "register_17track_sellers",
            "register_aftership_carriers",
            "register_aftership_sellers",
        )
    }
    assert route_settings <= set(config_map(objects, "ingest-registration"))
    assert route_settings <= set(routes)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_is_a_reference_and_none_is_committed(rendered: Rendered, overlay: str) -> None:
    objects = rendered[overlay]
    assert of_kind(objects, "Secret") == []
    for component, settings_class in PODS.items():
        secrets = secret_env_names(settings_class) | {"VTR_KAFKA_SASL_PASSWORD"}
        (container,) = pod_spec(workload_of(objects, component))["containers"]
        assert not secrets & set(env_from_config_maps(objects, container)), f"{component}: secret in a ConfigMap"
        env = env_of(container)
        for name in secrets:
            assert name in env, f"{component} gets no {name}"
            assert "secretKeyRef" in env[name].get("valueFrom", {}), f"{component}: {name} is not a Secret reference"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configured_variables_are_settings_the_services_read(rendered: Rendered, overlay: str) -> None:
    known = set().union(*(env_names(settings_class).values() for settings_class in SERVICES.values()))
    objects = rendered[overlay]
    configured = set(config_map(objects))
    for component in PODS:
        (container,) = pod_spec(workload_of(objects, component))["containers"]
        configured |= set(env_from_config_maps(objects, container))
        configured |= {name for name in env_of(container) if name.startswith(ENV_PREFIX)}
    assert configured - known == set()


def test_migration_job_migrates_both_databases(rendered: Rendered) -> None:
    job = one(rendered["prod"], "Job", "vtrwatch-migrate")
    commands = [container["command"] for container in all_containers(job)]
    assert commands == [
        ["python", "-m", "services.scorer", "migrate"],
        ["python", "-m", "services.notifier", "migrate"],
    ]
    for container in all_containers(job):
        url = env_of(container)["VTR_DATABASE_URL"]["value"]
        assert url.startswith("postgresql+asyncpg://$(DB_USER):$(DB_PASSWORD)@vtrwatch-pg-rw:5432/")


# --- Traffic ------------------------------------------------------------------------------


#: What the scorer serves besides the console; none of it may be reachable from outside.
SCORER_INTERNAL_PATHS = (
    "/v1/sellers",
    "/v1/sellers/A1SELLER/vtr",
    "/metrics",
    "/readyz",
    "/healthz",
    "/docs",
    "/redoc",
    "/openapi.json",
)
#: Annotations that would make nginx route or rewrite beyond the Ingress' plain prefixes.
ROUTING_ANNOTATIONS = ("use-regex", "rewrite-target", "app-root", "server-snippet", "configuration-snippet")


def ingress_paths(objects: list[Object]) -> list[tuple[Object, Object, Object]]:
    """(Ingress, rule, path) for every path of every Ingress."""
    return [
        (ingress, rule, path)
        for ingress in of_kind(objects, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]


def prefix_matches(prefix: str, request_path: str) -> bool:
    """Kubernetes' pathType Prefix: element-wise, so /console matches /console/x, not /consoles."""
    prefix = prefix.rstrip("/")
    return prefix == "" or request_path == prefix or request_path.startswith(prefix + "/")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_reaches_ingest_with_its_body_limits_and_the_scorer_only_at_the_console(
    rendered: Rendered, overlay: str
) -> None:
    objects = rendered[overlay]
    limits = {}
    scorer_paths = []
    for ingress, rule, path in ingress_paths(objects):
        annotations = ingress["metadata"]["annotations"]
        assert "defaultBackend" not in ingress["spec"], ingress["metadata"]["name"]
        assert path["pathType"] == "Prefix", ingress["metadata"]["name"]
        assert not any(f"nginx.ingress.kubernetes.io/{name}" in annotations for name in ROUTING_ANNOTATIONS)
        assert annotations["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
        assert any(rule["host"] in tls["hosts"] and tls["secretName"] for tls in ingress["spec"]["tls"])
        backend = path["backend"]["service"]
        assert backend["name"] in ("ingest", "scorer"), f"{ingress['metadata']['name']} routes to {backend['name']}"
        assert backend["port"] == {"name": "http"}
        size = nginx_size_bytes(annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
        if backend["name"] == "ingest":
            limits[path["path"]] = size
        else:
            scorer_paths.append(path["path"])
            # Read-only GET pages: no request body worth more than a few KiB.
            assert size <= 64 * 1024
    settings = IngestSettings()
    # Connecting Amazon (GET authorize and callback, docs/amazon.md): no body worth more than a few KiB.
    assert limits.pop("/v1/amazon") <= 64 * 1024
    assert limits == {"/v1/webhooks": settings.max_body_bytes, "/v1/shipments": settings.max_shipments_body_bytes}
    # The scorer: the console's prefix and nothing else (not its API, metrics, probes or docs).
    assert scorer_paths == [CONSOLE_PREFIX] == ["/console"]
    for internal in SCORER_INTERNAL_PATHS:
        assert not any(prefix_matches(prefix, internal) for prefix in scorer_paths), internal
    assert prefix_matches("/console", "/console/A1SELLER/category")
    assert not prefix_matches("/console", "/consoles")
    (service,) = [obj for obj in of_kind(objects, "Service") if obj["metadata"]["name"] == "scorer"]
    assert [port["name"] for port in service["spec"]["ports"]] == ["http"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_console_links_in_messages_point_at_the_console_ingress(rendered: Rendered, overlay: str) -> None:
    objects = rendered[overlay]
    (console,) = [obj for obj in of_kind(objects, "Ingress") if obj["metadata"]["name"] == "scorer-console"]
    (rule,) = console["spec"]["rules"]
    hosts = {rule["host"] for ingress in of_kind(objects, "Ingress") for rule in ingress["spec"]["rules"]}
    assert len(hosts) == 2, "the console has a host of its own, apart from the webhooks'"
    # The notifier reads VTR_CONSOLE_URL from the ConfigMap (not overridden in its pod).
    (container,) = pod_spec(workload_of(objects, "notifier"))["containers"]
    assert "VTR_CONSOLE_URL" not in env_of(container)
    assert {"configMapRef": {"name": "vtrwatch-config"}} in container["envFrom"]
    assert config_map(objects)["VTR_CONSOLE_URL"] == f"https://{rule['host']}"
    # Behind the TLS Ingress the scorer sees https (X-Forwarded-Proto): Secure cookies.
    (scorer,) = pod_spec(workload_of(objects, "scorer"))["containers"]
    assert env_of(scorer)["FORWARDED_ALLOW_IPS"]["value"] == "*"


def test_network_policies_let_in_from_outside_only_ingest_and_the_scorer_http_port(rendered: Rendered) -> None:
    policies = of_kind(rendered["prod"], "NetworkPolicy")
    default_deny = one(rendered["prod"], "NetworkPolicy", "vtrwatch-default-deny")
    assert default_deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in default_deny["spec"] and "egress" not in default_deny["spec"]
    from_other_namespaces: dict[tuple[str, str], set[Any]] = {}
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                if "namespaceSelector" in peer or "ipBlock" in peer:
                    assert namespace is not None, f"{policy['metadata']['name']}: a peer beyond one named namespace"
                if namespace is not None and namespace != "monitoring":
                    component = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                    assert rule.get("ports"), f"{policy['metadata']['name']}: every port open to {namespace}"
                    ports = from_other_namespaces.setdefault((component, namespace), set())
                    ports |= {port["port"] for port in rule["ports"]}
    # The ingress controller reaches each backend of the Ingresses on its http port only.
    assert from_other_namespaces == {
        ("ingest", "ingress-nginx"): {IngestSettings().http_port},
        ("scorer", "ingress-nginx"): {ScorerSettings().http_port},
    }
    egress_ports = {
        policy["metadata"]["name"]: {
            port["port"] for rule in policy["spec"].get("egress", []) for port in rule["ports"]
        }
        for policy in policies
    }
    # 443: the Amazon connect callback exchanges the consent code at Login with Amazon.
    assert egress_ports["ingest"] == {9092, 443}
    # The workers: Kafka and the vendors' HTTPS APIs out; in, only Prometheus to the metrics port.
    assert egress_ports["ingest-workers"] == {9092, 443}
    assert one(rendered["prod"], "NetworkPolicy", "ingest-workers")["spec"]["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"protocol": "TCP", "port": IngestSettings().worker_metrics_port}],
        }
    ]
    # 8002: the console's page of notifications reads the notifier's API.
    assert egress_ports["scorer"] == {9092, 5432, 8002}
    assert egress_ports["notifier"] >= {9092, 5432, 8001, 465, 587, 443}


def test_ingest_scales_on_cpu_and_every_service_has_a_disruption_budget(rendered: Rendered) -> None:
    objects = rendered["prod"]
    (hpa,) = of_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ingest"}
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    budgets = {
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for pdb in of_kind(objects, "PodDisruptionBudget")
    }
    assert budgets == set(SERVICES)


def keda_errors(obj: Object) -> list[str]:
    schema = {**KEDA_SCHEMA, "$ref": f"#/$defs/{obj['kind']}"}
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(obj)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_objects_validate_against_their_schema(rendered: Rendered, overlay: str) -> None:
    keda = [obj for obj in rendered[overlay] if group_of(obj) == "keda.sh"]
    assert {obj["kind"] for obj in keda} <= set(KEDA_SCHEMA["$defs"])
    for obj in keda:
        assert keda_errors(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"
        spec = obj["spec"]
        if obj["kind"] == "ScaledObject":  # the CRD's own cross-field rule
            assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)
    assert len(keda) == (3 if overlay == "prod" else 0)


def test_keda_schema_catches_a_misspelt_field(rendered: Rendered) -> None:
    """Guards the guard: KEDA would ignore a misspelt trigger parameter and use its default."""
    scaled = one(rendered["prod"], "ScaledObject", "scorer")
    assert keda_errors(scaled) == []
    misspelt = copy.deepcopy(scaled)
    metadata = misspelt["spec"]["triggers"][0]["metadata"]
    metadata["lagTreshold"] = metadata.pop("lagThreshold")
    assert keda_errors(misspelt)
    misplaced = copy.deepcopy(scaled)
    misplaced["spec"]["maxReplicas"] = misplaced["spec"].pop("maxReplicaCount")
    assert keda_errors(misplaced)


def acl_allows(user: Object, resource_type: str, name: str, operation: str) -> bool:
    """As Kafka decides: a matching deny rule wins over any allow rule."""
    allowed = False
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        if resource["type"] != resource_type or operation not in acl["operations"]:
            continue
        if name.startswith(resource["name"]) if resource.get("patternType") == "prefix" else name == resource["name"]:
            if acl.get("type", "allow") == "deny":
                return False
            allowed = True
    return allowed


def test_acl_allows_applies_deny_before_allow() -> None:
    user = {
        "spec": {
            "authorization": {
                "acls": [
                    {"resource": {"type": "topic", "name": "vtr.", "patternType": "prefix"}, "operations": ["Write"]},
                    {
                        "resource": {"type": "topic", "name": "vtr.x", "patternType": "literal"},
                        "type": "deny",
                        "operations": ["Write"],
                    },
                ]
            }
        }
    }
    assert acl_allows(user, "topic", "vtr.y", "Write")
    assert not acl_allows(user, "topic", "vtr.x", "Write")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_admin_principal_writes_api_keys_and_every_service_follows_them(
    rendered: Rendered, overlay: str
) -> None:
    objects = rendered[overlay]
    credentials = DEFAULT_SETTINGS.credentials_topic
    usage = DEFAULT_SETTINGS.credential_usage_topic
    users = {user["metadata"]["name"]: user for user in of_kind(objects, "KafkaUser")}
    writers = sorted(name for name, user in users.items() if acl_allows(user, "topic", credentials, "Write"))
    assert writers == [ADMIN_USER]
    admin = users[ADMIN_USER]
    assert acl_allows(admin, "topic", credentials, "Read") and acl_allows(admin, "topic", usage, "Read")
    for service in SERVICES:
        user = users[f"vtrwatch-{service}"]
        assert acl_allows(user, "topic", credentials, "Read"), f"{service} cannot follow the API keys"
        assert acl_allows(user, "topic", credentials, "Describe")
        assert acl_allows(user, "topic", usage, "Write"), f"{service} cannot report key usage"
    for topic in (credentials, usage):
        config = topic_by_name(objects, topic)["spec"]["config"]
        assert config["cleanup.policy"] == "compact" and int(config["retention.ms"]) == -1


def test_scorer_and_notifier_scale_on_their_group_lag_up_to_the_partition_count(rendered: Rendered) -> None:
    objects = rendered["prod"]
    config = config_map(objects)
    consumers = {
        # component: (workload kind, the group setting, topics it consumes)
        "scorer": ("StatefulSet", "consumer_group_id", (SHIPMENTS, TRACKING_EVENTS)),
        "notifier": ("Deployment", "consumer_group", (NotifierSettings().scores_topic,)),
    }
    for component, (kind, group_field, topics) in consumers.items():
        workload = workload_of(objects, component)
        (container,) = pod_spec(workload)["containers"]
        variable = env_names(SERVICES[component])[group_field]
        assert variable not in env_of(container), "the pod's group comes from the ConfigMap or the default"
        group = config.get(variable, SERVICES[component].model_fields[group_field].default)
        scaled = one(objects, "ScaledObject", component)
        spec = scaled["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": kind, "name": workload["metadata"]["name"]}
        partitions = {topic_by_name(objects, topic)["spec"]["partitions"] for topic in topics}
        assert partitions == {spec["maxReplicaCount"]}, "max replicas = the partition count"
        assert 2 <= spec["minReplicaCount"] <= workload["spec"]["replicas"] <= spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        metadata = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert metadata["consumerGroup"] == group
        assert metadata["bootstrapServers"] == config["VTR_KAFKA_BOOTSTRAP"]
        assert (
            metadata["sasl"]
            == {"SCRAM-SHA-512": "scram_sha512", "SCRAM-SHA-256": "scram_sha256"}[config["VTR_KAFKA_SASL_MECHANISM"]]
        )
        assert metadata["tls"] == ("enable" if config["VTR_KAFKA_SECURITY_PROTOCOL"].endswith("SSL") else "disable")
        assert metadata["allowIdleConsumers"] == "false"
        # The scorer's lag is over both inputs (no topic: every topic the group commits).
        assert metadata.get("topic") == (topics[0] if len(topics) == 1 else None)
        assert int(metadata["activationLagThreshold"]) < int(metadata["lagThreshold"])
        # KEDA's credentials: a user that may describe the group and its topics, nothing more.
        authentication = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
        (username_ref,) = [ref for ref in authentication["configMapTargetRef"] if ref["parameter"] == "username"]
        (password_ref,) = [ref for ref in authentication["secretTargetRef"] if ref["parameter"] == "password"]
        username = one(objects, "ConfigMap", username_ref["name"])["data"][username_ref["key"]]
        user = one(objects, "KafkaUser", username)
        assert password_ref == {"parameter": "password", "name": username, "key": "password"}  # Strimzi's Secret
        assert acl_allows(user, "group", group, "Describe")
        assert all(acl_allows(user, "topic", topic, "Describe") for topic in topics)
        assert not any(acl_allows(user, "topic", topic, "Read") for topic in topics)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_never_block_a_node_drain(rendered: Rendered, overlay: str) -> None:
    objects = rendered[overlay]
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        component = pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        replicas = workload_of(objects, component)["spec"]["replicas"]
        allowed = pdb["spec"].get("maxUnavailable", replicas - pdb["spec"].get("minAvailable", 0))
        assert allowed >= 1, f"{overlay}: the {component} budget allows no disruption with {replicas} replicas"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_and_monitors_select_real_pods_and_ports(rendered: Rendered, overlay: str) -> None:
    objects = rendered[overlay]
    pod_labels = [
        obj["spec"]["template"]["metadata"]["labels"] for obj in objects if obj["kind"] in ("Deployment", "StatefulSet")
    ]
    services = of_kind(objects, "Service")
    for service in services:
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), service["metadata"]["name"]
    monitors = of_kind(objects, "ServiceMonitor")
    assert {monitor["metadata"]["name"] for monitor in monitors} == set(SERVICES) | set(WORKERS)
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        matching = [service for service in services if selector.items() <= service["metadata"]["labels"].items()]
        assert len(matching) == 1, monitor["metadata"]["name"]
        ports = {port["name"] for port in matching[0]["spec"]["ports"]}
        assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports
        # The alert rules and dashboards select job="<Service name>".
        assert matching[0]["metadata"]["name"] == monitor["metadata"]["name"]


# --- Image --------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_slim_and_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\w+)", dockerfile, re.MULTILINE)
    assert [name for _, name in stages] == ["build", "runtime"]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", dockerfile, re.MULTILINE)
    assert re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)[-1] == "${UID}:${UID}"
    assert int(re.findall(r"^ARG UID=(\d+)", dockerfile, re.MULTILINE)[-1]) >= 1000
    assert 'CMD ["python", "-m", "services.' in dockerfile
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignored[0] == "*" and {"!shared/", "!services/", "!requirements.txt"} <= set(ignored)


#: Secrets whose settings check their form: a made-up value of that form.
SECRETS_WITH_A_FORM = {
    "chinapost-sm4-key": "00112233445566778899aabbccddeeff",
    "amazon-token-key": "prod-2026:" + base64.b64encode(b"k" * 32).decode(),
}


def pod_environment(objects: list[Object], container: Object) -> dict[str, str]:
    """The environment a container gets, with made-up (non-dev) values for Secret keys."""
    environment = env_from_config_maps(objects, container)
    for entry in container.get("env", []):
        source = entry.get("valueFrom", {})
        if "value" in entry:
            value = re.sub(r"\$\((\w+)\)", lambda match: environment[match.group(1)], entry["value"])
        elif "secretKeyRef" in source:
            key = source["secretKeyRef"]["key"]
            value = SECRETS_WITH_A_FORM.get(key, f"prod-{key}")
        else:
            value = "scorer-0"  # fieldRef metadata.name
        environment[entry["name"]] = value
    return environment


@pytest.mark.parametrize("component", PODS)
def test_prod_pods_get_settings_their_service_accepts(
    rendered: Rendered, component: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prod environment passes the service's own prod checks (every secret set, no
    SQLite, valid Kafka options), as the pod would at start-up."""
    objects = rendered["prod"]
    (container,) = pod_spec(workload_of(objects, component))["containers"]
    environment = pod_environment(objects, container)
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = PODS[component]()
    assert settings.env == "prod"
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - a pod must listen beyond loopback
    if component == "scorer":
        # The console's public host: staff bearer tokens do not open it in prod, said explicitly.
        assert environment["VTR_CONSOLE_STAFF_TOKENS"] == "false"
        assert isinstance(settings, ScorerSettings) and not settings.console_accepts_staff_tokens()
    if PODS[component] is not IngestSettings:  # the ingest and its workers keep no database
        assert settings.database_url == (
            f"postgresql+asyncpg://prod-username:prod-password@vtrwatch-pg-rw:5432/{component}"
        )
