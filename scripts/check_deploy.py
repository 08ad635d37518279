#!/usr/bin/env python3
"""Offline checks of the deployment material under deploy/ (run by scripts/check-deploy.sh,
which provides the tools). Exits non-zero, naming every problem, if any check fails."""

import argparse
import ast
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"

# The oldest Kubernetes the manifests support (PVC retention on by default, kustomize v5
# in kubectl) and the newest the pinned kubernetes-validate knows.
K8S_VERSIONS = ("1.27", kv.latest_version())

# Metric names belfry exports; histograms also as _bucket, _sum and _count.
METRICS = {
    "belfry_is_leader",
    "belfry_raft_term",
    "belfry_leader_changes_total",
    "belfry_raft_commit_index",
    "belfry_raft_applied_index",
    "belfry_raft_follower_lag_entries",
    "belfry_raft_log_entries",
    "belfry_raft_snapshot_index",
    "belfry_schedules",
    "belfry_dispatches_total",
    "belfry_skipped_occurrences_total",
    "belfry_outbox_depth",
    "belfry_outbox_oldest_age_seconds",
    "belfry_redis_errors_total",
    "belfry_api_requests_total",
    "belfry_dispatcher_restarts_total",
    "belfry_planning_paused",
    "belfry_redis_master",
    "belfry_redis_master_changes_total",
    "belfry_redis_replica_wait_timeouts_total",
    "belfry_clock_offset_seconds",
    "belfry_clock_offset_from_quorum_seconds",
    "belfry_clock_quorum_known",
    "belfry_clock_steps_total",
    "belfry_task_outcomes_total",
    "belfry_outcome_reads_total",
    "belfry_outcomes_followed",
}
HISTOGRAMS = {
    "belfry_redis_replica_ack_seconds",
    "belfry_dispatch_lateness_seconds",
    "belfry_redis_push_duration_seconds",
    "belfry_api_request_duration_seconds",
}
SERIES = METRICS | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
# Made by Prometheus itself for every target: only the alerts may use it, for a node that
# cannot be scraped has no metrics of its own.
SCRAPE_SERIES = {"up"}

REQUIRED_ALERTS = {
    "BelfryNoLeader",
    "BelfryMultipleLeaders",
    "BelfryFrequentLeaderChanges",
    "BelfryOutboxStale",
    "BelfryOutboxGrowing",
    "BelfryDispatchLate",
    "BelfryRedisErrors",
    "BelfryFollowerLagging",
    "BelfryNodeDown",
    "BelfryClockOffset",
    "BelfryClockStep",
}

# Secrets the manifests use but do not create: made with kubectl (deploy/README.md).
EXTERNAL_SECRETS = {"belfry-tokens", "belfry-cluster-secret"}

# Custom resources have no schema in kubernetes-validate: their fields are checked here
# against the CRDs' documented fields (cert-manager v1, Prometheus Operator v1).
CUSTOM_FIELDS = {
    ("cert-manager.io/v1", "Issuer"): {
        "spec": {"selfSigned", "ca", "acme", "vault", "venafi"},
    },
    ("cert-manager.io/v1", "Certificate"): {
        "spec": {
            "secretName", "issuerRef", "dnsNames", "ipAddresses", "uris", "emailAddresses",
            "commonName", "duration", "renewBefore", "renewBeforePercentage", "usages",
            "privateKey", "isCA", "subject", "secretTemplate", "keystores", "literalSubject",
            "revisionHistoryLimit", "additionalOutputFormats", "encodeUsagesInRequest",
            "nameConstraints", "otherNames",
        },
        "spec.privateKey": {"algorithm", "size", "encoding", "rotationPolicy"},
        "spec.issuerRef": {"name", "kind", "group"},
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "spec": {
            "jobLabel", "targetLabels", "podTargetLabels", "endpoints", "selector",
            "namespaceSelector", "sampleLimit", "targetLimit", "labelLimit",
            "labelNameLengthLimit", "labelValueLengthLimit", "attachMetadata",
            "scrapeProtocols", "keepDroppedTargets", "scrapeClass", "bodySizeLimit",
        },
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {"spec": {"groups"}},
}
CERT_USAGES = {
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime",
    "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
}
MONITOR_ENDPOINT_FIELDS = {
    "port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout", "tlsConfig",
    "bearerTokenFile", "bearerTokenSecret", "authorization", "honorLabels", "honorTimestamps",
    "basicAuth", "oauth2", "metricRelabelings", "relabelings", "proxyUrl", "followRedirects",
    "enableHttp2", "filterRunning", "trackTimestampsStaleness",
}
RULE_GROUP_FIELDS = {"name", "interval", "rules", "limit", "partial_response_strategy",
                     "query_offset", "labels"}
RULE_FIELDS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}

YAMLLINT_CONFIG = """
extends: default
rules:
  document-start: disable
  line-length:
    max: 120
"""


class Checker:
    def __init__(self, args):
        self.args = args
        self.failures = []
        self.checks = 0
        self.tmp = Path(tempfile.mkdtemp(prefix="belfry-deploy-check."))
        self.env_names = None

    def check(self, ok, message):
        self.checks += 1
        if not ok:
            self.failures.append(message)
        return ok

    def fail(self, message):
        self.check(False, message)

    def run(self, argv, **kwargs):
        return subprocess.run(argv, capture_output=True, text=True, **kwargs)

    # --- belfry itself ------------------------------------------------------------------

    def belfry_env_names(self):
        """The BELFRY_* variables `belfry server` and the CLI read, from their --help."""
        if self.env_names is None:
            names = set()
            for sub in (["server"], ["cluster"]):
                out = self.run([self.args.belfry, *sub, "--help"])
                if out.returncode != 0:
                    self.fail(f"belfry {' '.join(sub)} --help failed: {out.stderr.strip()}")
                names |= set(re.findall(r"\[env: (BELFRY_[A-Z0-9_]+)", out.stdout))
            self.check(len(names) > 20, f"too few BELFRY_* variables in belfry --help: {names}")
            self.env_names = names
        return self.env_names

    def check_schedules(self, where, text):
        """Parses a schedules file with belfry's own parser: `schedule apply` reads and
        validates the file before it connects, so against a closed port a valid file fails
        with UNAVAILABLE (5) and an invalid one with the usage code (2) and the reason."""
        path = self.tmp / "schedules.toml"
        path.write_text(text)
        out = self.run(
            [self.args.belfry, "schedule", "apply", "-f", str(path),
             "--endpoint", "http://127.0.0.1:1", "--timeout", "5"],
            env={k: v for k, v in os.environ.items() if not k.startswith("BELFRY_")},
        )
        message = out.stderr.strip().replace(str(path), "schedules.toml")
        self.check(out.returncode == 5 and "UNAVAILABLE" in out.stderr,
                   f"{where}: belfry refuses the schedules (exit {out.returncode}): {message}")
        entries = tomllib.loads(text).get("schedule", [])
        self.check(len(entries) > 0, f"{where}: no [[schedule]] entries")
        return entries

    # --- YAML ---------------------------------------------------------------------------

    def yamllint(self):
        print("==> yamllint deploy/")
        files = sorted(str(p) for p in DEPLOY.rglob("*.y*ml"))
        out = self.run([str(Path(self.args.venv_bin) / "yamllint"), "--strict", "-f", "parsable",
                        "-d", YAMLLINT_CONFIG, *files])
        self.check(out.returncode == 0, "yamllint:\n" + (out.stdout + out.stderr).strip())

    # --- Kubernetes ---------------------------------------------------------------------

    def kustomize(self, directory):
        out = self.run([*self.args.kustomize, str(directory)])
        if not self.check(out.returncode == 0, f"kustomize {directory}: {out.stderr.strip()}"):
            return []
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    def kubernetes(self):
        renders = {
            "deploy/kubernetes/base": (K8S / "base", False),
            "deploy/kubernetes/overlays/tls": (K8S / "overlays" / "tls", True),
        }
        # The monitoring component on the base, as an overlay would add it.
        combined = self.tmp / "with-monitoring"
        combined.mkdir()
        (combined / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": "monitoring-check",
            "resources": [os.path.relpath(K8S / "base", combined)],
            "components": [os.path.relpath(K8S / "components" / "monitoring", combined)],
        }))
        for name, (directory, tls) in renders.items():
            print(f"==> kustomize {name}")
            self.check_render(name, self.kustomize(directory), tls=tls, monitoring=False)
        print("==> kustomize deploy/kubernetes/base + components/monitoring")
        objects = self.kustomize(combined)
        self.check_render("base + components/monitoring", objects, tls=False, monitoring=True)
        rules = [o for o in objects if o.get("kind") == "PrometheusRule"]
        self.check(len(rules) == 1, "components/monitoring must carry the PrometheusRule")

    def validate_schema(self, where, obj):
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in CUSTOM_FIELDS:
            self.check_custom(where, obj, CUSTOM_FIELDS[key])
            return
        for version in K8S_VERSIONS:
            try:
                kv.validate(obj, version, strict=True)
                self.checks += 1
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                self.fail(f"{where}: Kubernetes {version} schema: {path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                self.fail(f"{where}: {e.message}")

    def check_custom(self, where, obj, fields):
        extra = set(obj) - {"apiVersion", "kind", "metadata", "spec"}
        self.check(not extra, f"{where}: unexpected top-level fields {sorted(extra)}")
        self.check(isinstance(obj.get("metadata", {}).get("name"), str), f"{where}: no name")
        for path, allowed in fields.items():
            value = obj
            for part in path.split("."):
                value = value.get(part, {}) if isinstance(value, dict) else {}
            unknown = set(value) - allowed
            self.check(not unknown, f"{where}: unknown fields in {path}: {sorted(unknown)}")

    def check_render(self, name, objects, tls, monitoring):
        if not objects:
            return
        by_kind = {}
        for obj in objects:
            where = f"{name}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
            self.validate_schema(where, obj)
            by_kind.setdefault(obj["kind"], []).append(obj)
        namespaces = {o["metadata"].get("namespace") for o in objects}
        self.check(len(namespaces) == 1, f"{name}: objects in several namespaces: {namespaces}")
        namespace = namespaces.pop()

        def one(kind, obj_name):
            found = [o for o in by_kind.get(kind, []) if o["metadata"]["name"] == obj_name]
            self.check(len(found) == 1,
                       f"{name}: expected one {kind}/{obj_name}, found {len(found)}")
            return found[0] if found else None

        sts = one("StatefulSet", "belfry")
        if sts is None:
            return
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        pod_labels = spec["template"]["metadata"].get("labels", {})
        self.check(spec.get("replicas") == 3, f"{name}: the StatefulSet must run 3 replicas")
        self.check(spec.get("podManagementPolicy") == "Parallel",
                   f"{name}: podManagementPolicy must be Parallel (nodes bootstrap together)")
        self.check(spec.get("persistentVolumeClaimRetentionPolicy", {}).get("whenScaled")
                   in (None, "Retain"),
                   f"{name}: claims must survive scaling down (or scaling to zero wipes them)")
        self.check(spec["selector"]["matchLabels"].items() <= pod_labels.items(),
                   f"{name}: the StatefulSet's selector does not match its pods")

        def selects(selector):
            return bool(selector) and selector.items() <= pod_labels.items()

        # Services: the headless peer Service publishes unready pods; every port is served.
        container = next((c for c in pod["containers"] if c["name"] == "belfry"), None)
        if not self.check(container is not None, f"{name}: no container named belfry"):
            return
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        self.check(ports.get("grpc") == 7400 and ports.get("metrics") == 9400,
                   f"{name}: container ports must be grpc 7400 and metrics 9400: {ports}")
        services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
        peers = services.get(spec["serviceName"])
        if self.check(peers is not None,
                      f"{name}: serviceName {spec['serviceName']} has no Service"):
            self.check(peers["spec"].get("clusterIP") == "None",
                       f"{name}: Service {spec['serviceName']} must be headless")
            self.check(peers["spec"].get("publishNotReadyAddresses") is True,
                       f"{name}: Service {spec['serviceName']} must publish unready pods (Raft "
                       "peers reach nodes before they are ready)")
        self.check("belfry" in services, f"{name}: no client Service belfry")
        for svc in services.values():
            svc_name = svc["metadata"]["name"]
            self.check(selects(svc["spec"].get("selector")),
                       f"{name}: Service {svc_name} does not select the belfry pods")
            for port in svc["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                self.check(target in ports or target in ports.values(),
                           f"{name}: Service {svc_name} port {port.get('name')} targets "
                           f"{target}, which the container does not expose")
        pdbs = by_kind.get("PodDisruptionBudget", [])
        self.check(len(pdbs) == 1 and pdbs[0]["spec"].get("maxUnavailable") == 1
                   and selects(pdbs[0]["spec"]["selector"].get("matchLabels")),
                   f"{name}: need one PodDisruptionBudget with maxUnavailable 1 over the pods")

        # Probes and hooks.
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            spec_probe = container.get(probe)
            if not self.check(spec_probe is not None, f"{name}: no {probe}"):
                continue
            handler = spec_probe.get("httpGet") or spec_probe.get("grpc") or {}
            port = handler.get("port")
            self.check(port in ports or port in ports.values(),
                       f"{name}: {probe} uses port {port}, which the container does not expose")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            handlers = [h for h in ("httpGet", "grpc", "exec", "tcpSocket")
                        if h in container.get(probe, {})]
            self.check(len(handlers) == 1, f"{name}: {probe} has handlers {handlers}")
        tls = "BELFRY_TLS_CERT" in {v["name"] for v in container.get("env", [])}
        readiness, liveness = container["readinessProbe"], container["livenessProbe"]
        if tls:
            # The kubelet's gRPC probe cannot speak TLS.
            self.check(readiness.get("httpGet", {}).get("path") == "/readyz",
                       f"{name}: with TLS, readiness must be /readyz")
            self.check(liveness.get("httpGet", {}).get("path") == "/healthz",
                       f"{name}: with TLS, liveness must be /healthz")
        else:
            self.check(readiness.get("grpc", {}).get("service") == "belfry.v1.Schedules",
                       f"{name}: readiness must be the gRPC health of belfry.v1.Schedules")
            self.check("grpc" in liveness and not liveness["grpc"].get("service"),
                       f"{name}: liveness must be the gRPC health of the server")

        # Security.
        psc = pod.get("securityContext", {})
        csc = container.get("securityContext", {})
        self.check(psc.get("runAsNonRoot") is True and psc.get("fsGroup") == 10001
                   and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                   f"{name}: pod securityContext needs runAsNonRoot, fsGroup 10001, seccomp "
                   "RuntimeDefault")
        self.check(csc.get("readOnlyRootFilesystem") is True
                   and csc.get("allowPrivilegeEscalation") is False
                   and csc.get("capabilities", {}).get("drop") == ["ALL"],
                   f"{name}: container securityContext needs a read-only root, no privilege "
                   "escalation and all capabilities dropped")
        self.check(pod.get("automountServiceAccountToken") is False,
                   f"{name}: the pod must not mount a service account token")
        for sa in by_kind.get("ServiceAccount", []):
            self.check(sa.get("automountServiceAccountToken") is False,
                       f"{name}: ServiceAccount {sa['metadata']['name']} mounts its token")
        self.check(pod.get("serviceAccountName") in
                   {sa["metadata"]["name"] for sa in by_kind.get("ServiceAccount", [])},
                   f"{name}: the pod's ServiceAccount is not part of the render")

        # Environment: names belfry reads, $(VAR) defined before use, a consistent peer list.
        env = {}
        known = self.belfry_env_names()
        for var in container.get("env", []):
            var_name = var["name"]
            self.check(var_name not in env, f"{name}: env {var_name} set twice")
            if var_name.startswith("BELFRY_"):
                self.check(var_name in known, f"{name}: belfry reads no variable {var_name}")
            value = var.get("value", "")
            for ref in re.findall(r"\$\((\w+)\)", value):
                self.check(ref in env, f"{name}: env {var_name} uses $({ref}) before it is set")
            env[var_name] = var
        values = {k: v.get("value") for k, v in env.items()}

        def expand(value, pod_name):
            return (value.replace("$(POD_NAME)", pod_name)
                    .replace("$(NAMESPACE)", namespace or "default"))

        for ref, field in (("POD_NAME", "metadata.name"), ("NAMESPACE", "metadata.namespace")):
            self.check(env.get(ref, {}).get("valueFrom", {}).get("fieldRef", {})
                       .get("fieldPath") == field, f"{name}: {ref} must come from {field}")
        self.check(values.get("BELFRY_NODE_ID_FROM_HOSTNAME") == "true",
                   f"{name}: node ids must come from the StatefulSet ordinals")
        self.check(values.get("BELFRY_LISTEN", "").endswith(":7400"),
                   f"{name}: BELFRY_LISTEN must use the grpc port")
        self.check(values.get("BELFRY_METRICS_LISTEN", "").endswith(":9400"),
                   f"{name}: the probes need BELFRY_METRICS_LISTEN on the metrics port")
        advertise = values.get("BELFRY_ADVERTISE") or ""
        peer_list = values.get("BELFRY_PEERS") or ""
        members = dict(item.split("=", 1) for item in peer_list.split(",") if "=" in item)
        expected = {str(i + 1): expand(advertise, f"belfry-{i}") for i in range(spec["replicas"])}
        self.check({k: expand(v, "") for k, v in members.items()} == expected,
                   f"{name}: BELFRY_PEERS must list node i+1 at belfry-i's advertised address: "
                   f"{peer_list!r} vs {expected}")
        self.check(f".{spec['serviceName']}." in advertise and advertise.endswith(":7400"),
                   f"{name}: BELFRY_ADVERTISE must be the pod's name in the peer Service")
        join = values.get("BELFRY_JOIN") or ""
        self.check(join.split(".")[0] == "belfry" and join.endswith(":7400"),
                   f"{name}: BELFRY_JOIN must be the client Service's API address: {join!r}")

        # Files named in the environment lie in mounted volumes that exist.
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        for mount_name in mounts.values():
            self.check(mount_name in volumes or mount_name in claims,
                       f"{name}: volume mount {mount_name} has no volume")
        self.check(mounts.get(values.get("BELFRY_DATA_DIR")) in claims,
                   f"{name}: BELFRY_DATA_DIR must be the persistent volume")
        configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
        secrets = ({s["metadata"]["name"] for s in by_kind.get("Secret", [])} | EXTERNAL_SECRETS
                   | {c["spec"]["secretName"] for c in by_kind.get("Certificate", [])})
        for var_name, value in values.items():
            if not (value and value.startswith("/") and (
                    var_name.endswith("_FILE") or var_name.startswith("BELFRY_TLS_")
                    or var_name == "BELFRY_SCHEDULES")):
                continue
            directory, _, key = value.rpartition("/")
            volume = volumes.get(mounts.get(directory))
            if not self.check(volume is not None,
                              f"{name}: {var_name}={value} is not in a mounted volume"):
                continue
            if "configMap" in volume:
                cm = configmaps.get(volume["configMap"]["name"])
                if self.check(cm is not None and key in cm.get("data", {}),
                              f"{name}: {var_name}: ConfigMap {volume['configMap']['name']} "
                              f"with key {key} is not part of the render"):
                    if var_name == "BELFRY_SCHEDULES":
                        self.check_schedules(f"{name}: ConfigMap {cm['metadata']['name']}",
                                             cm["data"][key])
            elif "secret" in volume:
                self.check(volume["secret"]["secretName"] in secrets,
                           f"{name}: {var_name}: unknown Secret {volume['secret']['secretName']}")
        for var in env.values():
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                self.check(ref["name"] in secrets, f"{name}: unknown Secret {ref['name']}")

        # TLS on or explicitly off, with matching certificate names.
        insecure = values.get("BELFRY_INSECURE_NO_TLS") == "true"
        tls_vars = ("BELFRY_TLS_CERT", "BELFRY_TLS_KEY", "BELFRY_TLS_CLIENT_CA", "BELFRY_TLS_CA")
        endpoint = values.get("BELFRY_ENDPOINT") or ""
        if tls:
            self.check(not insecure and all(values.get(v) for v in tls_vars)
                       and endpoint.startswith("https://"),
                       f"{name}: TLS needs {', '.join(tls_vars)} and an https BELFRY_ENDPOINT, "
                       "without BELFRY_INSECURE_NO_TLS")
            certs = {c["spec"]["secretName"]: c for c in by_kind.get("Certificate", [])}
            cert_dir = values.get("BELFRY_TLS_CERT", "").rpartition("/")[0]
            tls_secret = volumes.get(mounts.get(cert_dir), {})
            cert = certs.get(tls_secret.get("secret", {}).get("secretName"))
            if self.check(cert is not None, f"{name}: the TLS Secret comes from no Certificate"):
                names = cert["spec"].get("dnsNames", [])
                wanted = {
                    f"*.{spec['serviceName']}.{namespace}.svc.cluster.local",
                    endpoint.split("://")[1].rsplit(":", 1)[0],
                    expand(join, "").rsplit(":", 1)[0],
                }
                self.check(wanted <= set(names),
                           f"{name}: certificate {cert['metadata']['name']} lacks DNS names "
                           f"{sorted(wanted - set(names))}")
                self.check({"server auth", "client auth"} <= set(cert["spec"].get("usages", [])),
                           f"{name}: the node certificate must allow server and client auth")
                for c in by_kind.get("Certificate", []):
                    self.check(set(c["spec"].get("usages", [])) <= CERT_USAGES,
                               f"{name}: unknown usages in {c['metadata']['name']}")
                    ref = c["spec"]["issuerRef"]
                    self.check(ref.get("kind") == "ClusterIssuer" or ref["name"] in
                               {i["metadata"]["name"] for i in by_kind.get("Issuer", [])},
                               f"{name}: {c['metadata']['name']} names a missing Issuer")
        else:
            self.check(insecure and not any(values.get(v) for v in tls_vars),
                       f"{name}: without TLS, BELFRY_INSECURE_NO_TLS=true and no TLS files")

        # Peer calls authenticated: by mutual TLS, or by a cluster secret from a mounted Secret
        # (checked above like every *_FILE), never explicitly off.
        self.check(values.get("BELFRY_INSECURE_NO_PEER_AUTH") != "true"
                   and "BELFRY_CLUSTER_SECRET" not in values
                   and (tls or bool(values.get("BELFRY_CLUSTER_SECRET_FILE"))),
                   f"{name}: peers need BELFRY_CLUSTER_SECRET_FILE from a Secret (or TLS), "
                   "not BELFRY_INSECURE_NO_PEER_AUTH or a secret in the manifest")

        # The preStop hook's command line is one belfry accepts.
        command = (container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
                   .get("command", []))
        if self.check(command[:3] == ["belfry", "cluster", "transfer-leader"]
                      and "--if-local-leader" in command,
                      f"{name}: preStop must run belfry cluster transfer-leader --if-local-leader"):
            out = self.run([self.args.belfry, *command[1:], "--help"])
            self.check(out.returncode == 0,
                       f"{name}: preStop command refused by belfry: {out.stderr.strip()}")

        # The ServiceMonitor scrapes through the Service that lists unready pods.
        monitors = by_kind.get("ServiceMonitor", [])
        self.check(bool(monitors) == monitoring,
                   f"{name}: ServiceMonitor {'missing' if monitoring else 'unexpected'}")
        for monitor in monitors:
            mspec = monitor["spec"]
            match = mspec["selector"]["matchLabels"]
            chosen = [s for s in services.values()
                      if match.items() <= s["metadata"].get("labels", {}).items()]
            if self.check(len(chosen) == 1 and chosen[0] is peers,
                          f"{name}: the ServiceMonitor must select exactly the peer Service"):
                svc_ports = {p["name"] for p in chosen[0]["spec"]["ports"]}
                for endpoint_spec in mspec["endpoints"]:
                    self.check(set(endpoint_spec) <= MONITOR_ENDPOINT_FIELDS,
                               f"{name}: unknown ServiceMonitor endpoint fields")
                    self.check(endpoint_spec.get("port") in svc_ports,
                               f"{name}: ServiceMonitor port {endpoint_spec.get('port')} "
                               "is not a port of the peer Service")
                job = chosen[0]["metadata"].get("labels", {}).get(mspec.get("jobLabel"))
                self.check(job == "belfry",
                           f"{name}: the alerts expect job=\"belfry\", the ServiceMonitor "
                           f"gives {job!r}")

    # --- PromQL -------------------------------------------------------------------------

    @staticmethod
    def metric_names(expr):
        """Metric names in a PromQL expression: identifiers that are neither functions,
        aggregations, keywords, label names nor parts of strings, durations or numbers."""
        text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
        text = re.sub(r"\{[^}]*\}", " ", text)
        text = re.sub(r"\[[^\]]*\]", " ", text)
        text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
        keywords = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                    "offset", "and", "or", "unless", "atan2", "inf", "nan"}
        names = set()
        for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
            before = text[match.start() - 1] if match.start() else " "
            if before.isalnum() or before in "_:.$":
                continue
            if text[match.end():].lstrip().startswith("("):
                continue
            if match.group().lower() not in keywords:
                names.add(match.group())
        return names

    def promtool_check(self, what, groups):
        path = self.tmp / f"{what}.rules.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        out = self.run([self.args.promtool, "check", "rules", str(path)])
        self.check(out.returncode == 0, f"promtool check rules ({what}):\n"
                   + (out.stdout + out.stderr).strip())
        return path

    # --- Alerts -------------------------------------------------------------------------

    def alerts(self):
        print("==> deploy/prometheus/alerts.yaml")
        path = DEPLOY / "prometheus" / "alerts.yaml"
        rule = yaml.safe_load(path.read_text())
        where = "deploy/prometheus/alerts.yaml"
        if not self.check((rule.get("apiVersion"), rule.get("kind"))
                          == ("monitoring.coreos.com/v1", "PrometheusRule"),
                          f"{where}: not a monitoring.coreos.com/v1 PrometheusRule"):
            return
        self.check_custom(where, rule, CUSTOM_FIELDS[rule["apiVersion"], rule["kind"]])
        groups = rule["spec"].get("groups", [])
        alerts = set()
        for group in groups:
            self.check(set(group) <= RULE_GROUP_FIELDS,
                       f"{where}: unknown fields in group {group.get('name')}")
            for r in group.get("rules", []):
                name = r.get("alert", "?")
                self.check(set(r) <= RULE_FIELDS, f"{where}: {name}: unknown fields")
                self.check(name not in alerts, f"{where}: {name} defined twice")
                alerts.add(name)
                self.check(r.get("labels", {}).get("severity") in {"critical", "warning"},
                           f"{where}: {name}: severity must be critical or warning")
                self.check({"summary", "description"} <= set(r.get("annotations", {})),
                           f"{where}: {name}: needs a summary and a description")
                unknown = self.metric_names(r.get("expr", "")) - SERIES - SCRAPE_SERIES
                self.check(not unknown, f"{where}: {name} uses unknown metrics {sorted(unknown)}")
        missing = REQUIRED_ALERTS - alerts
        self.check(not missing, f"{where}: missing alerts {sorted(missing)}")
        # The unit tests load the extracted rules as belfry.rules.yaml, next to them.
        self.promtool_check("belfry", groups)
        tests = self.tmp / "alerts_test.yaml"
        shutil.copy(DEPLOY / "prometheus" / "alerts_test.yaml", tests)
        out = self.run([self.args.promtool, "test", "rules", str(tests)])
        self.check(out.returncode == 0, "promtool test rules deploy/prometheus/alerts_test.yaml:\n"
                   + (out.stdout + out.stderr).strip())

    # --- Grafana ------------------------------------------------------------------------

    def dashboard(self):
        print("==> deploy/grafana/belfry-dashboard.json")
        where = "deploy/grafana/belfry-dashboard.json"
        try:
            board = json.loads((DEPLOY / "grafana" / "belfry-dashboard.json").read_text())
        except ValueError as e:
            self.fail(f"{where}: not JSON: {e}")
            return
        self.check(bool(board.get("uid")) and bool(board.get("title")), f"{where}: no uid or title")
        variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
        self.check(variables.get("DS_PROMETHEUS", {}).get("type") == "datasource",
                   f"{where}: needs the datasource variable DS_PROMETHEUS")
        datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        ids, used, groups = set(), set(), []
        panels = list(board.get("panels", []))
        for panel in panels:
            panels.extend(panel.get("panels", []))
            title = panel.get("title", "?")
            self.check(panel.get("id") not in ids, f"{where}: panel id {panel.get('id')} reused")
            ids.add(panel.get("id"))
            grid = panel.get("gridPos", {})
            self.check(grid.get("x", 0) + grid.get("w", 0) <= 24 and grid.get("h", 0) > 0,
                       f"{where}: panel {title!r} has a bad gridPos {grid}")
            if panel.get("type") == "row":
                continue
            self.check(panel.get("datasource") == datasource,
                       f"{where}: panel {title!r} must use ${{DS_PROMETHEUS}}")
            targets = panel.get("targets", [])
            self.check(bool(targets), f"{where}: panel {title!r} has no queries")
            rules = []
            for target in targets:
                expr = target.get("expr", "")
                self.check(target.get("datasource", datasource) == datasource,
                           f"{where}: panel {title!r} query {target.get('refId')} must use "
                           "${DS_PROMETHEUS}")
                names = self.metric_names(expr)
                used |= names
                self.check(bool(names) and names <= SERIES,
                           f"{where}: panel {title!r} uses unknown metrics "
                           f"{sorted(names - SERIES) or '(none)'}: {expr}")
                # Grafana's variables replaced by values of the same kind, for promtool.
                concrete = (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
                            .replace("$__range", "1h"))
                concrete = re.sub(r"\$\{?\w+\}?", ".*", concrete)
                rules.append({"record": f"dashboard:panel_{panel.get('id')}_{target.get('refId')}",
                              "expr": concrete})
            groups.append({"name": f"panel {panel.get('id')} {title}", "rules": rules})
        if groups:
            self.promtool_check("dashboard", groups)
        shown = set()
        for series in used:
            histogram = re.sub(r"_(bucket|sum|count)$", "", series)
            shown.add(histogram if histogram in HISTOGRAMS else series)
        missing = (METRICS | HISTOGRAMS) - shown
        self.check(not missing, f"{where}: no panel shows {sorted(missing)}")

    # --- Compose ------------------------------------------------------------------------

    def compose(self):
        print("==> deploy/compose")
        compose_dir = DEPLOY / "compose"
        path = compose_dir / "docker-compose.yml"
        where = "deploy/compose/docker-compose.yml"
        out = self.run([str(Path(self.args.venv_bin) / "check-jsonschema"),
                        "--builtin-schema", "vendor.compose-spec", str(path)])
        self.check(out.returncode == 0, f"{where}: compose-spec schema:\n"
                   + (out.stdout + out.stderr).strip())
        doc = yaml.safe_load(path.read_text())
        services = doc.get("services", {})
        nodes = {k: v for k, v in services.items() if k.startswith("belfry-")}
        self.check(len(nodes) == 3, f"{where}: expected three belfry nodes, found {sorted(nodes)}")
        known = self.belfry_env_names()
        peer_lists, ids, mounted = set(), {}, set()
        for svc_name, svc in nodes.items():
            env = svc.get("environment", {})
            self.check(isinstance(env, dict), f"{where}: {svc_name}: environment must be a map")
            for var in env:
                if var.startswith("BELFRY_"):
                    self.check(var in known, f"{where}: {svc_name}: belfry reads no {var}")
            ids[str(env.get("BELFRY_NODE_ID"))] = env.get("BELFRY_ADVERTISE")
            peer_lists.add(env.get("BELFRY_PEERS"))
            self.check(str(env.get("BELFRY_ADVERTISE", "")).startswith(f"{svc_name}:"),
                       f"{where}: {svc_name} must advertise its own service name")
            build = svc.get("build", {})
            self.check((ROOT / "deploy" / "compose" / build.get("context", "?")
                        / build.get("dockerfile", "?")).is_file(),
                       f"{where}: {svc_name}: build context/dockerfile not found")
            mounts = [v.split(":") for v in svc.get("volumes", []) if isinstance(v, str)]
            schedules = [m[0] for m in mounts if m[1] == env.get("BELFRY_SCHEDULES")]
            if self.check(len(schedules) == 1,
                          f"{where}: {svc_name}: BELFRY_SCHEDULES is not a mounted file"):
                mounted.add((compose_dir / schedules[0]).resolve())
        self.check(len(peer_lists) == 1, f"{where}: the nodes' BELFRY_PEERS differ")
        members = dict(item.split("=", 1) for item in (peer_lists.pop() or "").split(",")
                       if "=" in item)
        self.check(members == ids, f"{where}: BELFRY_PEERS {members} do not match the nodes {ids}")

        # The mounted schedules parse, and call only tasks the demo worker defines.
        schedules_file = compose_dir / "schedules.toml"
        self.check(mounted == {schedules_file},
                   f"{where}: every node must mount deploy/compose/schedules.toml")
        entries = self.check_schedules("deploy/compose/schedules.toml", schedules_file.read_text())
        tree = ast.parse((compose_dir / "worker" / "demo.py").read_text())
        tasks = {kw.value.value for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                 for dec in node.decorator_list if isinstance(dec, ast.Call)
                 for kw in dec.keywords if kw.arg == "name" and isinstance(kw.value, ast.Constant)}
        for entry in entries:
            self.check(entry.get("task") in tasks,
                       f"deploy/compose/schedules.toml: {entry.get('name')} calls "
                       f"{entry.get('task')}, which worker/demo.py does not define")
        worker = services.get("worker", {})
        command = " ".join(worker.get("command", []))
        found = re.search(r"(?:--queues|-Q)[= ](\S+)", command)
        queues = set(found.group(1).split(",")) if found else {"celery"}
        for entry in entries:
            queue = entry.get("options", {}).get("queue", "celery")
            self.check(queue in queues, f"deploy/compose/schedules.toml: {entry.get('name')} "
                       f"goes to queue {queue}, which the worker does not consume")

    # --- Dockerfiles --------------------------------------------------------------------

    def dockerfiles(self):
        print("==> Dockerfiles")
        files = [DEPLOY / "docker" / "Dockerfile", DEPLOY / "compose" / "worker" / "Dockerfile"]
        if self.args.hadolint:
            for path in files:
                out = self.run([self.args.hadolint, "--failure-threshold", "info", str(path)])
                self.check(out.returncode == 0, f"hadolint {path.relative_to(ROOT)}:\n"
                           + (out.stdout + out.stderr).strip())
        else:
            print("    hadolint has no build for this platform: Dockerfile lint skipped")
        where = "deploy/docker/Dockerfile"
        text = (DEPLOY / "docker" / "Dockerfile").read_text()
        stages = re.split(r"(?m)^FROM ", text)
        final = stages[-1]
        self.check(re.search(r"(?m)^USER 10001(:10001)?$", final) is not None,
                   f"{where}: the final stage must run as uid 10001")
        self.check('ENTRYPOINT ["belfry"]' in final and 'CMD ["server"]' in final,
                   f"{where}: ENTRYPOINT [\"belfry\"] and CMD [\"server\"] expected")
        self.check(re.search(r"(?m)^EXPOSE 7400 9400$", final) is not None,
                   f"{where}: EXPOSE 7400 9400 expected")
        self.check("--locked" in text and "--bin belfry" in text,
                   f"{where}: the build must be --locked and build the belfry binary")
        ignored = set()
        dockerignore = ROOT / ".dockerignore"
        if dockerignore.exists():
            ignored = {line.strip().lstrip("/") for line in dockerignore.read_text().splitlines()
                       if line.strip() and not line.startswith("#")}
        for match in re.finditer(r"(?m)^COPY (?!--from)(.+)$", text):
            sources = match.group(1).split()[:-1]
            for source in sources:
                self.check((ROOT / source).exists(), f"{where}: COPY {source}: no such path")
                self.check(source.rstrip("/") not in ignored,
                           f"{where}: COPY {source}, which .dockerignore excludes")
        # cargo needs every target Cargo.toml names and every workspace member: they must all
        # be copied.
        manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
        copied = {s.rstrip("/") for m in re.finditer(r"(?m)^COPY (?!--from)(.+)$", text)
                  for s in m.group(1).split()[:-1]}
        for member in manifest.get("workspace", {}).get("members", []):
            if member.strip("./"):
                self.check(member.split("/")[0] in copied,
                           f"{where}: workspace member {member} is not copied into the build "
                           "stage")
        for section in ("bin", "bench", "example", "test"):
            for target in manifest.get(section, []):
                path = target.get("path") or {"bench": f"benches/{target['name']}.rs"}.get(section)
                if path:
                    self.check(path.split("/")[0] in copied,
                               f"{where}: Cargo.toml's {section} {target['name']} ({path}) is "
                               "not copied into the build stage")

    def finish(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.failures:
            print(f"\ncheck-deploy: {len(self.failures)} of {self.checks} checks failed:",
                  file=sys.stderr)
            for failure in self.failures:
                print(f"FAIL: {failure}", file=sys.stderr)
            return 1
        print(f"check-deploy: all {self.checks} checks passed")
        return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--promtool", required=True)
    parser.add_argument("--belfry", required=True)
    parser.add_argument("--venv-bin", required=True)
    parser.add_argument("--hadolint")
    parser.add_argument("kustomize", nargs="+", help="the kustomize command (kubectl kustomize)")
    args = parser.parse_args()
    # kubernetes-validate reads the (large) schema files on every call.
    kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)
    checker = Checker(args)
    try:
        checker.yamllint()
        checker.kubernetes()
        checker.alerts()
        checker.dashboard()
        checker.compose()
        checker.dockerfiles()
    finally:
        code = checker.finish()
    return code


if __name__ == "__main__":
    sys.exit(main())
