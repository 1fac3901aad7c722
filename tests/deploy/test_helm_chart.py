"""The Helm chart (helm/tessera) rendered offline by Helm's own Go SDK (helm-python-sdk,
which bundles it: no helm binary, no cluster), for each values file in helm/tessera/ci/:
every object validated by kubernetes-validate in strict mode against Kubernetes
KUBE_VERSION, the output linted by yamllint, and the chart's promises asserted on the
rendered objects. LeaderWorkerSet and ServiceMonitor are custom resources that
kubernetes-validate has no schema for; their fields are asserted here instead."""

import json
import pathlib

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from helm_python import _native
from yamllint import linter
from yamllint.config import YamlLintConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tessera"
KUBE_VERSION = "1.30.0"
LWS_API = "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet"
CUSTOM_KINDS = {"LeaderWorkerSet", "ServiceMonitor"}
# The chart's own YAML files, and (without a line limit: host lists grow with the group)
# what it renders.
YAMLLINT = YamlLintConfig("""
extends: default
rules:
  line-length: {max: 120}
  document-start: disable
  comments: {min-spaces-from-content: 1}
""")
YAMLLINT_RENDERED = YamlLintConfig("""
extends: default
rules:
  line-length: disable
  document-start: disable
  comments: {min-spaces-from-content: 1}
""")


def values_file(name):
    return yaml.safe_load((CHART / "ci" / name).read_text())


def render(values, api_versions=()):
    """{template: text}, rendered as `helm template` would against KUBE_VERSION with the
    given extra API versions (the Python wrapper does not expose them; the SDK's C entry
    point takes them as options)."""
    options = {"name": "demo", "namespace": "serving", "is_install": True,
               "kube_version": "v" + KUBE_VERSION, "api_versions": list(api_versions)}
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        return json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values),
                                              json.dumps(options)))


def objects(rendered):
    out = []
    for path, text in rendered.items():
        if path.endswith(".txt") or not text.strip():  # NOTES, or a template turned off
            continue
        # (A template's leading newline is harmless: helm joins templates after a
        # "# Source:" line.)
        problems = list(linter.run(text.lstrip("\n"), YAMLLINT_RENDERED))
        assert not problems, f"{path}: {problems}"
        out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def pod_specs(objs):
    """(owner name, pod spec) of every workload."""
    specs = []
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet"):
            specs.append((o["metadata"]["name"], o["spec"]["template"]["spec"]))
        elif o["kind"] == "LeaderWorkerSet":
            specs.append((o["metadata"]["name"],
                          o["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]))
    return specs


CASES = {
    "cpu-one-node": (values_file("cpu-one-node.yaml"), ()),
    "gpu-tp2-pp2": (values_file("gpu-tp2-pp2.yaml"), (LWS_API,)),
    "gpu-tp2-pp2-no-lws": (values_file("gpu-tp2-pp2-no-lws.yaml"), ()),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    values, apis = CASES[request.param]
    return request.param, values, objects(render(values, apis))


def test_every_object_is_valid_kubernetes(case):
    _, _, objs = case
    assert objs
    for o in objs:
        assert o["kind"] != "CustomResourceDefinition"  # the LWS CRD is never bundled
        if o["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(o, KUBE_VERSION, strict=True)


def test_probes_are_grpc_on_integer_ports_and_sized_from_load_time(case):
    _, values, objs = case
    model = values["models"][0]
    for name, spec in pod_specs(objs):
        [container] = spec["containers"]
        for probe in ("startupProbe", "readinessProbe"):
            assert isinstance(container[probe]["grpc"]["port"], int), (name, probe)
        startup = container["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        if "coordinator" not in name:
            assert budget >= model.get("loadTimeoutSeconds", 600), name
            assert isinstance(container["livenessProbe"]["grpc"]["port"], int)


def test_shm_gpus_and_grace(case):
    _, values, objs = case
    model = values["models"][0]
    for name, spec in pod_specs(objs):
        [container] = spec["containers"]
        if "coordinator" in name:
            grace = spec["terminationGracePeriodSeconds"]
            drain = next(e["value"] for e in container["env"] if e["name"] == "TESSERA_DRAIN_TIMEOUT")
            assert grace > int(drain)
            assert container["lifecycle"]["preStop"]["exec"]["command"]
            continue
        shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"]
        assert any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"])
        gpus = model.get("gpusPerPod", 0)
        limits = container["resources"].get("limits", {})
        requests = container["resources"].get("requests", {})
        assert limits.get("nvidia.com/gpu", 0) == gpus
        assert requests.get("nvidia.com/gpu", 0) == gpus
        # GPU pods run the cuda backend (opted in), sized from GPU memory when asked.
        args = container["args"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        if gpus:
            assert args[args.index("--backend") + 1] == "cuda"
            assert env["TESSERA_EXPERIMENTAL_CUDA"] == "1"
            utilization = model.get("gpuMemoryUtilization", 0)
            if utilization:
                assert float(args[args.index("--gpu-memory-utilization") + 1]) == utilization
                assert "--kv-cache-mb" not in args
        else:
            assert "--backend" not in args and "TESSERA_EXPERIMENTAL_CUDA" not in env
            assert "--kv-cache-mb" in args
        assert spec["securityContext"]["runAsNonRoot"] is True


def test_worker_groups(case):
    name, values, objs = case
    model = values["models"][0]
    lws = by_kind(objs, "LeaderWorkerSet")
    sets = [o for o in by_kind(objs, "StatefulSet")]
    if name == "gpu-tp2-pp2":
        assert not sets and len(lws) == 1
        spec = lws[0]["spec"]
        assert spec["replicas"] == model["replicas"]
        assert spec["leaderWorkerTemplate"]["size"] == model["podsPerGroup"]
        assert spec["leaderWorkerTemplate"]["restartPolicy"] == "None"
    else:
        assert not lws and len(sets) == model["replicas"]
        [headless] = [s for s in by_kind(objs, "Service") if s["spec"].get("clusterIP") == "None"]
        assert headless["spec"]["publishNotReadyAddresses"] is True
        for s in sets:
            assert s["spec"]["podManagementPolicy"] == "Parallel"
            assert s["spec"]["serviceName"] == headless["metadata"]["name"]
            env = {e["name"]: e["value"] for e in s["spec"]["template"]["spec"]["containers"][0]["env"]}
            hosts = env["TESSERA_GROUP_HOSTS"].split()
            assert hosts == [f"{s['metadata']['name']}-{i}.{headless['metadata']['name']}.serving.svc"
                             for i in range(model["podsPerGroup"])]
    for _, spec in pod_specs(objs):
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        if "TESSERA_TP" in env:
            assert env["TESSERA_COORDINATOR"] == "demo-tessera-coordinator:50051"
            assert int(env["TESSERA_TP"]) * int(env["TESSERA_PP"]) == \
                int(env["TESSERA_SLOTS_PER_HOST"]) * model["podsPerGroup"]


def test_services_budgets_and_extras(case):
    name, values, objs = case
    [coordinator] = [s for s in by_kind(objs, "Service") if s["metadata"]["name"] == "demo-tessera-coordinator"]
    ports = {p["name"]: p["port"] for p in coordinator["spec"]["ports"]}
    assert set(ports) == {"grpc", "http", "metrics"}
    assert len(by_kind(objs, "PodDisruptionBudget")) == 1 + len(values["models"])
    monitors = by_kind(objs, "ServiceMonitor")
    policies = by_kind(objs, "NetworkPolicy")
    if values.get("serviceMonitor", {}).get("enabled"):
        [m] = monitors
        assert m["spec"]["endpoints"][0]["port"] == "metrics"
        assert len(policies) == 2
    else:
        assert not monitors and not policies


def test_chart_metadata_and_lint():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["kubeVersion"].startswith(">=1.27")
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    report = helm.lint(str(CHART), strict=True, kube_version="v" + KUBE_VERSION)
    assert not [m for m in json.dumps(report).split('"') if m.startswith("[ERROR]")], report
    for path in [CHART / "Chart.yaml", CHART / "values.yaml", *sorted((CHART / "ci").glob("*.yaml"))]:
        problems = list(linter.run(path.read_text(), YAMLLINT))
        assert not problems, f"{path}: {problems}"


def test_bad_values_are_refused_with_a_reason():
    base = values_file("cpu-one-node.yaml")
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmError):
            chart.validate_schema({**base, "replica": 2})  # unknown key
        with pytest.raises(helm.HelmError):
            chart.validate_schema({**base, "workers": {"groupKind": "Deployment"}})
        with pytest.raises(helm.HelmError):  # replicas register with one coordinator
            chart.validate_schema({**base, "coordinator": {"replicas": 2}})
    uneven = {**base, "models": [{**base["models"][0], "tp": 3, "podsPerGroup": 2}]}
    with pytest.raises(helm.HelmError, match="do not divide over podsPerGroup"):
        render(uneven)
    no_ssh = {**base, "models": [{**base["models"][0], "tp": 2, "podsPerGroup": 2}]}
    with pytest.raises(helm.HelmError, match="sshSecretName"):
        render(no_ssh)
    wrong_gpus = {**base, "experimentalCuda": True,
                  "models": [{**base["models"][0], "tp": 2, "gpusPerPod": 1}]}
    with pytest.raises(helm.HelmError, match="gpusPerPod"):
        render(wrong_gpus)
    # GPU pods run the cuda backend, which is opt-in until it has passed its GPU tests.
    gpus_unasked = {**base, "models": [{**base["models"][0], "gpusPerPod": 1}]}
    with pytest.raises(helm.HelmError, match="experimentalCuda"):
        render(gpus_unasked)
