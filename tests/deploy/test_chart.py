"""The Helm chart k8s/openchatkit, rendered and linted by the Helm engine (helm-python-sdk),
every built-in kind validated with kubernetes-validate (strict), and the content that matters
asserted in the style of helm-unittest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.deploy.support import (
    CHART,
    RELEASE,
    container,
    deep_merge,
    env_of,
    find,
    load_values,
    one,
    render_chart,
    render_notes,
)

KUBERNETES_VERSION = "1.33.0"
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}
SECRETS = {
    "apiKeys": ["sk-chart-secret-client-key"],
    "vllmApiKey": "vllm-chart-secret",
    "internalToken": "internal-chart-secret",
    "masterKey": "master-chart-secret",
    "hfToken": "hf_chart_secret",
    "qdrantApiKey": "qdrant-chart-secret",
}
EXTERNAL = {
    "secrets": SECRETS,
    "redis": {"external": {"url": "redis://:redis-chart-secret@redis.example.internal:6379/0"}},
    "postgresql": {"external": {"url": "postgresql+asyncpg://app:pg-chart-secret@db.example.internal:5432/app"}},
    "qdrant": {"external": {"url": "https://qdrant.example.internal:6333"}},
}
ALL_OPTIONS = {
    "ingress": {"enabled": True, "tls": {"secretName": "chat-tls"}},
    "httpRoute": {"enabled": True},
    "serviceMonitor": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
    "chatModel": {
        "keda": {"enabled": True},
        "lora": {"existingClaim": "adapters", "modules": {"support-v3": "support-v3"}},
    },
}
SCENARIOS = {
    "default": {},
    "cpu": load_values("values-cpu.yaml"),
    "gpu": load_values("values-gpu.yaml"),
    "external": EXTERNAL,
    "three-chat-replicas": {"chatModel": {"replicaCount": 3}},
    "all-options": ALL_OPTIONS,
    "cpu-all-options": deep_merge(load_values("values-cpu.yaml"), ALL_OPTIONS),
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render_chart(values) for name, values in SCENARIOS.items()}


def pod_specs(documents: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in documents:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield doc["metadata"]["name"], doc["spec"]


# ---------------------------------------------------------------- lint, schema, kubernetes-validate


@pytest.mark.parametrize("values_file", [None, "values-cpu.yaml", "values-gpu.yaml"])
def test_chart_lints_strict(values_file: str | None) -> None:
    report = helm.lint(CHART, load_values(values_file), strict=True, kube_version="v" + KUBERNETES_VERSION)
    assert report["errors"] == []
    problems = [message for message in report["messages"] if message["severity"] >= 2]
    assert problems == []


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_built_in_kind_is_valid_kubernetes(rendered: dict[str, list[dict[str, Any]]], scenario: str) -> None:
    kinds = set()
    for doc in rendered[scenario]:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        kinds.add(doc["kind"])
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert {"Deployment", "Service", "Secret", "NetworkPolicy", "PodDisruptionBudget", "Pod"} <= kinds | {"Secret"}


BAD_VALUES = [
    {"chatModel": {"gpus": -1}},
    {"chatModel": {"tensorParallelSize": 0}},
    {"chatModel": {"launcher": "docker"}},
    {"chatModel": {"gpuMemoryUtilization": 1.5}},
    {"chatModel": {"startupProbe": {"failureThreshold": 0}}},
    {"moderation": {"backend": "keywords"}},
    {"gateway": {"autoscaling": {"enabled": "yes"}}},
    {"redis": {"enabled": "true"}},
    {"image": {"pullPolicy": "Sometimes"}},
    {"logLevel": "LOUD"},
    {"chatmodel": {"replicaCount": 2}},  # a typo of a top-level key
    {"secrets": {"apiKeys": ["short"]}},
]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=[json.dumps(bad) for bad in BAD_VALUES])
def test_schema_rejects_bad_values(bad: dict[str, Any]) -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(SCENARIOS["default"])  # the defaults pass...
        with pytest.raises(helm.HelmError):
            chart.validate_schema(bad)  # ...these do not
    with pytest.raises(helm.HelmError):
        render_chart(bad)  # and an install with them fails before anything is applied


# ---------------------------------------------------------------- model servers


def test_gpu_requests_scheduling_and_tensor_parallel_per_component(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["gpu"]
    chat = one(docs, "Deployment", "chat-model")
    moderation = one(docs, "Deployment", "moderation-model")
    chat_spec, moderation_spec = chat["spec"]["template"]["spec"], moderation["spec"]["template"]["spec"]
    assert container(chat)["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container(chat)["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert container(moderation)["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = container(chat)["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert chat_spec["runtimeClassName"] == "nvidia"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in chat_spec["tolerations"]
    # Each model server has its own node pool.
    assert chat_spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L40S"}
    assert moderation_spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A10G"}
    assert "podAntiAffinity" in chat_spec["affinity"] and "affinity" not in moderation_spec
    # Our services stay off the GPU nodes.
    for name in ("gateway", "retrieval", "feedback", "moderation"):
        spec = one(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert "tolerations" not in spec and "nvidia.com/gpu" not in json.dumps(spec)


def test_cpu_values_request_no_gpu(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["cpu"]
    assert "nvidia.com/gpu" not in json.dumps(docs)
    chat = container(one(docs, "Deployment", "chat-model"))
    assert chat["image"] == "openchatkit-chat-cpu:0.1.0"
    assert "args" not in chat and "command" not in chat  # the image runs python -m chat_server
    env = env_of(chat)
    assert env["CHAT_PROFILE"]["value"] == "smollm2-135m-instruct"
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "vllm-api-key"
    assert find(docs, "Deployment", "moderation-model") == []
    assert env_of(container(one(docs, "Deployment", "moderation")))["MODERATION_BACKEND"]["value"] == "classifier"


def test_model_server_probes_allow_a_long_load(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for scenario, name, minimum in (("default", "chat-model", 3600), ("default", "moderation-model", 1800)):
        spec = container(one(rendered[scenario], "Deployment", name))
        startup = spec["startupProbe"]
        assert startup["httpGet"] == {"path": "/health", "port": "http"}
        assert startup["periodSeconds"] * startup["failureThreshold"] >= minimum
        assert spec["readinessProbe"]["httpGet"]["path"] == "/health"
        assert spec["livenessProbe"]["httpGet"]["path"] == "/health"


def test_model_server_volumes_shm_cache_templates_and_adapters(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["all-options"]
    deployment = one(docs, "Deployment", "chat-model")
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == f"{RELEASE}-openchatkit-chat-model-cache"
    assert one(docs, "PersistentVolumeClaim", "chat-model-cache")["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert volumes["adapters"]["persistentVolumeClaim"] == {"claimName": "adapters", "readOnly": True}
    assert volumes["templates"]["configMap"]["name"] == f"{RELEASE}-openchatkit-chat-templates"
    args = container(deployment)["args"]
    assert args[args.index("--lora-modules") + 1] == "support-v3=/adapters/support-v3"
    assert args[args.index("--chat-template") + 1] == "/templates/openchatkit.jinja"
    template = one(docs, "ConfigMap", "chat-templates")["data"]["openchatkit.jinja"]
    assert template == (CHART.parents[1] / "chat_server" / "templates" / "openchatkit.jinja").read_text()
    existing = render_chart({"chatModel": {"modelCache": {"existingClaim": "weights"}}})
    assert find(existing, "PersistentVolumeClaim", "chat-model-cache") == []
    spec = one(existing, "Deployment", "chat-model")["spec"]["template"]["spec"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "weights"}} in spec["volumes"]


def test_replicas_and_keda(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert one(rendered["three-chat-replicas"], "Deployment", "chat-model")["spec"]["replicas"] == 3
    assert one(rendered["default"], "Deployment", "chat-model")["spec"]["replicas"] == 1
    # Routed by one ClusterIP Service across every replica.
    service = one(rendered["three-chat-replicas"], "Service", "chat-model")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "chat-model"
    keda = rendered["all-options"]
    assert "replicas" not in one(keda, "Deployment", "chat-model")["spec"]  # KEDA owns it
    (scaled,) = find(keda, "ScaledObject")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == 'sum(vllm:num_requests_waiting{model_name="gpt-neoxt-chat-base-20b"})'


# ---------------------------------------------------------------- our services


@pytest.mark.parametrize("name", ["gateway", "moderation", "retrieval", "feedback", "feedback-worker"])
def test_our_deployments_are_hardened_with_probes_and_resources(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    deployment = one(rendered["default"], "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    spec = container(deployment)
    assert spec["image"] == "openchatkit-stack:0.1.0"
    assert spec["args"] == [name]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["automountServiceAccountToken"] is False
    assert spec["resources"]["requests"] and spec["resources"]["limits"]["memory"]
    if name == "feedback-worker":
        assert spec["livenessProbe"]["exec"]["command"][-1] == "/usr/local/bin/healthcheck.py"
    else:
        assert spec["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert spec["livenessProbe"]["httpGet"]["path"] == "/health"
        assert spec["startupProbe"]["httpGet"]["path"] == "/health"
    assert one(rendered["default"], "PodDisruptionBudget", name)["spec"]["maxUnavailable"] == 1


def test_hpas_target_gateway_retrieval_and_workers(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]
    hpas = {hpa["spec"]["scaleTargetRef"]["name"]: hpa for hpa in find(docs, "HorizontalPodAutoscaler")}
    assert set(hpas) == {f"{RELEASE}-openchatkit-{name}" for name in ("gateway", "retrieval", "feedback-worker")}
    gateway = hpas[f"{RELEASE}-openchatkit-gateway"]["spec"]
    assert gateway["scaleTargetRef"]["kind"] == "Deployment"
    assert (gateway["minReplicas"], gateway["maxReplicas"]) == (2, 10)
    assert gateway["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert "replicas" not in one(docs, "Deployment", "gateway")["spec"]  # the HPA owns it
    assert one(rendered["cpu"], "Deployment", "gateway")["spec"]["replicas"] == 1


def test_chat_model_replicas_have_a_headless_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    service = one(rendered["default"], "Service", "chat-model-replicas")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == one(rendered["default"], "Service", "chat-model")["spec"]["selector"]


def test_gateway_wiring(rendered: dict[str, list[dict[str, Any]]]) -> None:
    env = env_of(container(one(rendered["default"], "Deployment", "gateway")))
    upstreams = json.loads(env["GATEWAY_UPSTREAMS"]["value"])
    assert upstreams == [
        {
            # the headless Service: every chat-model pod is a replica the gateway routes across
            "url": f"http://{RELEASE}-openchatkit-chat-model-replicas:8001/v1",
            "discover": "dns",
            "api_key": "$(VLLM_API_KEY)",  # expanded by the kubelet from the Secret
            "stop": ["<human>"],
            "default_max_tokens": 128,
        }
    ]
    names = list(env)
    assert names.index("VLLM_API_KEY") < names.index("GATEWAY_UPSTREAMS")  # $(VAR) needs it defined first
    assert env["GATEWAY_MODERATION__URL"]["value"] == f"http://{RELEASE}-openchatkit-moderation:8002"
    assert env["GATEWAY_RETRIEVAL__URL"]["value"] == f"http://{RELEASE}-openchatkit-retrieval:8003"
    assert env["GATEWAY_FEEDBACK__SERVICE_URL"]["value"] == f"http://{RELEASE}-openchatkit-feedback:8004"


# ---------------------------------------------------------------- stores


def test_stores_are_external_by_default_and_official_images_when_enabled(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    assert find(rendered["default"], "StatefulSet") == []
    sets = {doc["metadata"]["name"]: doc for doc in find(rendered["cpu"], "StatefulSet")}
    images = {name.rsplit("-", 1)[-1]: container(doc)["image"] for name, doc in sets.items()}
    assert images == {
        "redis": "redis:7.4.2-bookworm",
        "postgresql": "postgres:17.6-bookworm",
        "qdrant": "qdrant/qdrant:v1.20.0",
    }
    assert "bitnami" not in json.dumps(rendered).lower()
    redis = container(sets[f"{RELEASE}-openchatkit-redis"])
    assert "--appendfsync always" in " ".join(redis["command"])
    for doc in sets.values():
        assert doc["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    retrieval = env_of(container(one(rendered["cpu"], "Deployment", "retrieval")))
    assert retrieval["RETRIEVAL_QDRANT_URL"]["value"] == f"http://{RELEASE}-openchatkit-qdrant:6333"


# ---------------------------------------------------------------- secrets


def _env_values_and_config(documents: list[dict[str, Any]]) -> str:
    """Everything a secret must never appear in: env values, args, ConfigMaps, annotations."""
    parts = []
    for _, pod in pod_specs(documents):
        for spec in pod["containers"]:
            parts += [item.get("value", "") for item in spec.get("env", [])]
            parts += spec.get("args", []) + spec.get("command", [])
    for doc in documents:
        if doc["kind"] == "ConfigMap":
            parts.append(json.dumps(doc.get("data", {})))
        if doc["kind"] != "Secret":
            parts.append(json.dumps(doc["metadata"].get("annotations", {})))
    return "\n".join(parts)


def test_secrets_given_as_values_go_only_into_the_secret(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["external"]
    (secret,) = find(docs, "Secret")
    data = secret["stringData"]
    assert json.loads(data["api-keys"]) == SECRETS["apiKeys"]
    assert data["redis-url"] == EXTERNAL["redis"]["external"]["url"]
    assert data["database-url"] == EXTERNAL["postgresql"]["external"]["url"]
    elsewhere = _env_values_and_config(docs)
    for value in [*SECRETS["apiKeys"], "vllm-chart-secret", "internal-chart-secret", "master-chart-secret",
                  "hf_chart_secret", "qdrant-chart-secret", "redis-chart-secret", "pg-chart-secret"]:  # fmt: skip
        assert value in json.dumps(data)
        assert value not in elsewhere, f"{value} leaked out of the Secret"


def test_existing_secret_is_referenced_and_nothing_is_generated() -> None:
    docs = render_chart(deep_merge(load_values("values-cpu.yaml"), {"secrets": {"existingSecret": "prod-secrets"}}))
    assert find(docs, "Secret") == []
    refs = set()
    for _, pod in pod_specs(docs):
        for spec in pod["containers"]:
            for item in spec.get("env", []):
                if "valueFrom" in item:
                    refs.add(item["valueFrom"]["secretKeyRef"]["name"])
    assert refs == {"prod-secrets"}


def test_generated_secrets_for_in_chart_stores(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (secret,) = find(rendered["cpu"], "Secret")
    data = secret["stringData"]
    password = data["redis-password"]
    assert len(password) >= 32 and data["redis-url"] == f"redis://:{password}@{RELEASE}-openchatkit-redis:6379/0"
    assert data["database-url"].startswith("postgresql+asyncpg://openchatkit:") and len(data["postgres-password"]) >= 32
    assert json.loads(data["api-keys"])[0].startswith("sk-")
    assert _env_values_and_config(rendered["cpu"]).count(password) == 0


# ---------------------------------------------------------------- network


def test_network_policy_default_deny_and_who_may_call_whom(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["cpu"]
    policies = {
        doc["metadata"]["name"].removeprefix(f"{RELEASE}-openchatkit-"): doc["spec"]
        for doc in find(docs, "NetworkPolicy")
    }
    deny = policies["default-deny"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    assert deny["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "openchatkit",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert policies["gateway"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]  # from anywhere

    def callers(component: str) -> set[str]:
        rule = policies[component]["ingress"][0]
        return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rule["from"]}

    assert callers("chat-model") == {"gateway"}
    assert callers("moderation") == {"gateway"}
    assert callers("retrieval") == {"gateway"}
    assert callers("feedback") == {"gateway"}
    assert callers("redis") == {"gateway", "feedback", "feedback-worker"}
    assert callers("postgresql") == {"gateway", "feedback", "feedback-worker"}  # key store
    assert callers("qdrant") == {"retrieval"}
    prometheus = policies["chat-model"]["ingress"][1]["from"][0]
    assert prometheus["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert len(policies["redis"]["ingress"]) == 1  # stores: no one else, not even Prometheus
    assert "feedback-worker" not in policies  # no port: the default deny covers it
    gpu = {doc["metadata"]["name"] for doc in find(rendered["default"], "NetworkPolicy")}
    assert f"{RELEASE}-openchatkit-moderation-model" in gpu and f"{RELEASE}-openchatkit-redis" not in gpu


def test_ingress_and_httproute_keep_streams_open(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["all-options"]
    (ingress,) = find(docs, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == f"{RELEASE}-openchatkit-gateway"
    (route,) = find(docs, "HTTPRoute")
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "3600s", "backendRequest": "3600s"}
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == f"{RELEASE}-openchatkit-gateway"


def test_service_monitor_and_dashboard(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["all-options"]
    (monitor,) = find(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0] == {"port": "http", "path": "/metrics", "interval": "15s"}
    (dashboard,) = [doc for doc in find(docs, "ConfigMap") if doc["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (CHART / "files" / "grafana" / "openchatkit.json").read_text()
    assert dashboard["data"]["openchatkit.json"] == shipped
    assert not find(rendered["default"], "ServiceMonitor") and not find(rendered["default"], "Ingress")


# ---------------------------------------------------------------- helm test and NOTES


def test_helm_test_hook_calls_the_gateway(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (pod,) = find(rendered["default"], "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]["containers"][0]
    env = env_of(spec)
    assert env["GATEWAY_URL"]["value"] == f"http://{RELEASE}-openchatkit-gateway:8000"
    assert env["API_KEYS"]["valueFrom"]["secretKeyRef"]["key"] == "api-keys"
    assert "/v1/chat/completions" in spec["args"][0] and "/v1/models" in spec["args"][0]
    compile(spec["args"][0], "helm-test", "exec")  # the script is valid Python


def test_notes_tell_how_to_reach_and_check_the_release() -> None:
    notes = render_notes()
    assert f"helm test {RELEASE}" in notes
    assert "port-forward svc/ock-openchatkit-gateway" in notes
    assert "jsonpath='{.data.api-keys}'" in notes
    assert "https://chat.example.com/v1" in render_notes({"ingress": {"enabled": True}})


def test_each_service_gets_the_internal_token_under_its_own_prefix(rendered: dict[str, list[dict[str, Any]]]) -> None:
    from feedback_server.config import FeedbackSettings
    from gateway.config import GatewaySettings
    from moderation_server.config import ModerationSettings
    from retrieval_server.config import RetrievalSettings

    settings_of = {
        "gateway": GatewaySettings,
        "moderation": ModerationSettings,
        "retrieval": RetrievalSettings,
        "feedback": FeedbackSettings,
        "feedback-worker": FeedbackSettings,
    }
    for component, cls in settings_of.items():
        env = env_of(container(one(rendered["default"], "Deployment", component)))
        name = f"{cls.model_config['env_prefix']}INTERNAL_TOKEN"
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == "internal-token", component
    gateway = env_of(container(one(rendered["default"], "Deployment", "gateway")))
    assert gateway["GATEWAY_MASTER_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "master-key"
    assert gateway["GATEWAY_KEYS__DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
    assert gateway["GATEWAY_LIMITS__REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "redis-url"
    assert gateway["GATEWAY_KEYS__ENABLED"]["value"] == "true"


def test_chat_model_loads_adapters_at_run_time_and_the_moderation_llm_does_not() -> None:
    """`openchatkit adapters load` needs vLLM's runtime LoRA API: --enable-lora with its limits and
    VLLM_ALLOW_RUNTIME_LORA_UPDATING on the chat model (as `python -m chat_server` does on GPUs),
    none of it on the moderation LLM."""
    docs = render_chart({"moderationModel": {"enabled": True}})
    chat = container(one(docs, "Deployment", "chat-model"))
    args, env = chat["args"], {e["name"]: e.get("value") for e in chat["env"]}
    assert "--enable-lora" in args
    assert args[args.index("--max-loras") + 1] == "4" and args[args.index("--max-lora-rank") + 1] == "16"
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    moderation = container(one(docs, "Deployment", "moderation-model"))
    assert "--enable-lora" not in (moderation.get("args") or [])
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in {e["name"] for e in moderation["env"]}
    off = container(one(render_chart({"chatModel": {"lora": {"runtime": False}}}), "Deployment", "chat-model"))
    assert "--enable-lora" not in off["args"]
    cpu = container(one(render_chart(load_values("values-cpu.yaml")), "Deployment", "chat-model"))
    cpu_env = {e["name"]: e.get("value") for e in cpu["env"]}
    assert cpu_env["CHAT_ENABLE_LORA"] == "false" and "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in cpu_env
    opted_in = deep_merge(load_values("values-cpu.yaml"), {"chatModel": {"lora": {"runtime": True}}})
    cpu_lora = container(one(render_chart(opted_in), "Deployment", "chat-model"))
    assert {e["name"]: e.get("value") for e in cpu_lora["env"]}["CHAT_ENABLE_LORA"] == "true"
