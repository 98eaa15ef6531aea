"""deploy/k8s: every manifest valid for Kubernetes 1.31, KEDA objects checked against KEDA's spec, and the
objects consistent with each other (names, ports, queues, secrets)."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from ._files import (
    K8S,
    QUEUE_OF_WORKER,
    WORKER_TIME_LIMIT,
    K8sDoc,
    k8s_docs,
    k8s_of_kind,
    kustomization,
    pinned_tag,
    pod_spec,
)

#: The oldest Kubernetes still in upstream support when this was written; the package ships its schemas.
K8S_VERSION = "1.31"
#: Custom resources: not in the Kubernetes schemas, checked against KEDA's spec below.
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}

#: The part of KEDA's ScaledObject / TriggerAuthentication spec (keda.sh/v1alpha1) these manifests use;
#: unknown fields are errors, as a typo in a CRD is otherwise silently ignored.
_NAME_REF = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}, "kind": {"type": "string"}},
    "additionalProperties": False,
}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "labels": {"type": "object"}, "annotations": {"type": "object"}},
    "additionalProperties": False,
}
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"const": "Deployment"},
                        "apiVersion": {"const": "apps/v1"},
                    },
                    "additionalProperties": False,
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata", "authenticationRef"],
                        "properties": {
                            "type": {"const": "rabbitmq"},
                            "name": {"type": "string"},
                            "metadata": {
                                "type": "object",
                                "required": ["protocol", "mode", "value", "queueName"],
                                "properties": {
                                    "protocol": {"const": "http"},
                                    "mode": {"const": "QueueLength"},
                                    # KEDA reads every trigger metadata value as a string.
                                    "value": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                                    "activationValue": {"type": "string", "pattern": "^[0-9]+$"},
                                    "queueName": {"enum": sorted(QUEUE_OF_WORKER.values())},
                                    "vhostName": {"type": "string"},
                                },
                                "additionalProperties": False,
                            },
                            "authenticationRef": _NAME_REF,
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
TRIGGER_AUTHENTICATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["secretTargetRef"],
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "properties": {
                            "parameter": {"enum": ["host", "username", "password"]},
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                        "additionalProperties": False,
                    },
                }
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

DOCS = k8s_docs()
DEPLOYMENTS = k8s_of_kind("Deployment")
WORKER_DEPLOYMENTS = ("worker-cache", "worker-thumbnails")
PODS = [*DEPLOYMENTS.values(), *k8s_of_kind("Job").values()]


def doc_ids(docs: tuple[K8sDoc, ...] | list[K8sDoc]) -> list[str]:
    return [doc.id for doc in docs]


def containers(doc: K8sDoc) -> list[dict[str, Any]]:
    return pod_spec(doc)["containers"]  # type: ignore[no-any-return]


def worker_subcommand(doc: K8sDoc) -> str:
    command = containers(doc)[0]["command"]
    assert command[:3] == ["python", "-m", "worker"]
    return str(command[3])


def secret_keys() -> set[str]:
    (secret,) = k8s_of_kind("Secret").values()
    return set(secret.data.get("stringData", {})) | set(secret.data.get("data", {}))


NATIVE = [doc for doc in DOCS if doc.kind not in KEDA_KINDS]


@pytest.mark.parametrize("doc", NATIVE, ids=doc_ids(NATIVE))
def test_manifest_is_valid_kubernetes(doc: K8sDoc) -> None:
    kubernetes_validate.validate(doc.data, K8S_VERSION, strict=True)


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    deployment = DEPLOYMENTS["api"].data
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_the_base_has_every_piece() -> None:
    kinds = {(doc.kind, doc.name) for doc in DOCS}

    assert {("Deployment", name) for name in ("api", "relay", *WORKER_DEPLOYMENTS)} <= kinds
    assert {
        ("Namespace", "stockroom"),
        ("Service", "api"),
        ("HorizontalPodAutoscaler", "api"),
        ("Job", "migrate"),
        ("ScaledObject", "worker-cache"),
        ("ScaledObject", "worker-thumbnails"),
    } <= kinds
    assert len(k8s_of_kind("ConfigMap")) == 1
    assert len(k8s_of_kind("Secret")) == 1


def test_kustomization_lists_every_manifest_and_only_those() -> None:
    resources = kustomization()["resources"]
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}

    assert sorted(resources) == sorted(files)
    assert len(resources) == len(set(resources))
    (namespace,) = k8s_of_kind("Namespace")
    assert kustomization()["namespace"] == namespace
    for doc in DOCS:
        assert "namespace" not in doc.data["metadata"], f"{doc.id}: the kustomization sets the namespace"


def test_images_are_pinned() -> None:
    for doc in DOCS:
        if doc.kind in {"Deployment", "Job"}:
            for container in containers(doc):
                assert pinned_tag(container["image"]), f"{doc.id}: {container['image']}"
    for image in kustomization().get("images", []):
        assert image.get("newTag", "latest") != "latest"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_deployment_has_probes_on_declared_ports(name: str) -> None:
    for container in containers(DEPLOYMENTS[name]):
        port_names = {port["name"] for port in container.get("ports", [])}
        for probe_kind in ("livenessProbe", "readinessProbe"):
            probe = container.get(probe_kind)
            assert probe, f"{name}: no {probe_kind}"
            handler = probe.get("httpGet") or probe.get("tcpSocket")
            assert handler, f"{name}: {probe_kind} checks the HTTP or metrics port"
            assert handler["port"] in port_names


def test_api_probes_use_the_health_endpoints() -> None:
    (container,) = containers(DEPLOYMENTS["api"])

    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_deployment_sets_requests_and_limits(name: str) -> None:
    for container in containers(DEPLOYMENTS[name]):
        resources = container["resources"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[bound]), f"{name}: {bound}"


@pytest.mark.parametrize("doc", PODS, ids=doc_ids(PODS))
def test_pods_run_unprivileged(doc: K8sDoc) -> None:
    spec = pod_spec(doc)

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    # Service links would put e.g. API_PORT=tcp://... (from the Service `api`) into the environment.
    assert spec["enableServiceLinks"] is False
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("doc", PODS, ids=doc_ids(PODS))
def test_pods_mount_what_they_reference(doc: K8sDoc) -> None:
    spec = pod_spec(doc)
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    claims = k8s_of_kind("PersistentVolumeClaim")

    for container in spec["containers"]:
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in k8s_of_kind("ConfigMap")
            if "secretRef" in source:
                assert source["secretRef"]["name"] in k8s_of_kind("Secret")
    for volume in volumes.values():
        if "persistentVolumeClaim" in volume:
            claim = claims[volume["persistentVolumeClaim"]["claimName"]]
            assert "ReadWriteMany" in claim.data["spec"]["accessModes"], "shared by several pods"


def test_the_api_reads_its_cursor_secret_from_the_secret() -> None:
    # Every API pod signs cursors with the one key the Secret holds (CURSOR_SECRET, at least 16 characters).
    (secret,) = k8s_of_kind("Secret").values()
    sources = containers(DEPLOYMENTS["api"])[0]["envFrom"]

    assert len(secret.data["stringData"]["CURSOR_SECRET"]) >= 16
    assert {"secretRef": {"name": secret.data["metadata"]["name"]}} in sources


def test_settings_cover_the_contract() -> None:
    (config,) = k8s_of_kind("ConfigMap").values()

    assert {"DATABASE_URL", "REDIS_URL", "RABBITMQ_URL"} <= secret_keys()
    assert {"MEDIA_ROOT", "MEDIA_URL", "API_HOST", "API_PORT", "LOG_LEVEL", "LOG_FORMAT", "AUTH_DISABLED"} <= set(
        config.data["data"]
    )
    assert config.data["data"]["AUTH_DISABLED"] == "false"


@pytest.mark.parametrize("name", WORKER_DEPLOYMENTS)
def test_workers_outlast_their_time_limit_and_set_processes(name: str) -> None:
    deployment = DEPLOYMENTS[name]

    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > WORKER_TIME_LIMIT
    assert "--processes" in containers(deployment)[0]["command"]


def test_api_is_scaled_on_cpu_by_an_hpa() -> None:
    hpa = k8s_of_kind("HorizontalPodAutoscaler")["api"].data["spec"]

    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    assert hpa["minReplicas"] >= 2
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    for container in containers(DEPLOYMENTS["api"]):
        assert "cpu" in container["resources"]["requests"], "utilisation is measured against the request"


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler() -> None:
    scaled = {doc.data["spec"]["scaleTargetRef"]["name"] for doc in k8s_of_kind("HorizontalPodAutoscaler").values()}
    scaled |= {doc.data["spec"]["scaleTargetRef"]["name"] for doc in k8s_of_kind("ScaledObject").values()}

    assert scaled == {"api", *WORKER_DEPLOYMENTS}
    for name in scaled:
        assert "replicas" not in DEPLOYMENTS[name].data["spec"], f"{name}: replicas would fight the autoscaler"


def test_services_select_pods_and_ports_that_exist() -> None:
    for service in k8s_of_kind("Service").values():
        selector = service.data["spec"]["selector"]
        targets = [
            doc
            for doc in DEPLOYMENTS.values()
            if selector.items() <= doc.data["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert targets, f"{service.id} selects no Deployment"
        port_names = {port["name"] for doc in targets for container in containers(doc) for port in container["ports"]}
        for port in service.data["spec"]["ports"]:
            assert port["targetPort"] in port_names


def test_migration_job_runs_the_migrations() -> None:
    job = k8s_of_kind("Job")["migrate"]
    (container,) = containers(job)

    assert container["command"] == ["python", "-m", "migrations"]
    assert pod_spec(job)["restartPolicy"] in {"Never", "OnFailure"}
    assert job.data["spec"]["backoffLimit"] >= 1


SCALED_OBJECTS = list(k8s_of_kind("ScaledObject").values())


@pytest.mark.parametrize("doc", SCALED_OBJECTS, ids=doc_ids(SCALED_OBJECTS))
def test_scaled_object_matches_kedas_spec(doc: K8sDoc) -> None:
    jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA).validate(doc.data)


@pytest.mark.parametrize("doc", SCALED_OBJECTS, ids=doc_ids(SCALED_OBJECTS))
def test_scaled_object_scales_a_worker_on_its_own_queue(doc: K8sDoc) -> None:
    spec = doc.data["spec"]
    target = DEPLOYMENTS[spec["scaleTargetRef"]["name"]]
    authentications = k8s_of_kind("TriggerAuthentication")

    for trigger in spec["triggers"]:
        assert trigger["metadata"]["queueName"] == QUEUE_OF_WORKER[worker_subcommand(target)]
        assert trigger["authenticationRef"]["name"] in authentications
    # Never to zero: a dramatiq worker also re-enqueues the delayed retries held in `<queue>.DQ`.
    assert spec["minReplicaCount"] >= 1
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]


TRIGGER_AUTHENTICATIONS = list(k8s_of_kind("TriggerAuthentication").values())


@pytest.mark.parametrize("doc", TRIGGER_AUTHENTICATIONS, ids=doc_ids(TRIGGER_AUTHENTICATIONS))
def test_trigger_authentication_reads_the_host_from_the_secret(doc: K8sDoc) -> None:
    jsonschema.Draft202012Validator(TRIGGER_AUTHENTICATION_SCHEMA).validate(doc.data)
    refs = {ref["parameter"]: ref for ref in doc.data["spec"]["secretTargetRef"]}

    assert refs["host"]["name"] in k8s_of_kind("Secret")
    assert refs["host"]["key"] in secret_keys()
    (secret,) = k8s_of_kind("Secret").values()
    assert secret.data["stringData"][refs["host"]["key"]].startswith("http"), "protocol http: the management URL"


def test_keda_schema_rejects_the_amqp_protocol() -> None:
    scaled = SCALED_OBJECTS[0].data
    trigger = {**scaled["spec"]["triggers"][0]}
    trigger["metadata"] = {**trigger["metadata"], "protocol": "amqp"}
    broken = {**scaled, "spec": {**scaled["spec"], "triggers": [trigger]}}

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA).validate(broken)


@pytest.mark.parametrize("name", ["relay", *WORKER_DEPLOYMENTS])
def test_scraped_metrics_ports_listen_beyond_loopback(name: str) -> None:
    # The relay's and workers' metrics ports listen on 127.0.0.1 unless told otherwise; Prometheus and the
    # probes reach them on the pod's address, so the manifests must say so.
    (config,) = k8s_of_kind("ConfigMap").values()
    container = containers(DEPLOYMENTS[name])[0]
    refs = {source["configMapRef"]["name"] for source in container.get("envFrom", []) if "configMapRef" in source}
    env = {**(config.data["data"] if config.name in refs else {})}
    env.update({e["name"]: e.get("value") for e in container.get("env", [])})
    assert env.get("WORKER_METRICS_HOST") == "0.0.0.0"
