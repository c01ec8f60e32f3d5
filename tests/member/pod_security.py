"""A check of a pod spec against Kubernetes' Pod Security Standards, "restricted" profile (which includes "baseline").

Written from the standard's table (kubernetes.io/docs/concepts/security/pod-security-standards),
control by control, so a test can say which control a pod breaks. It judges a Pod's ``spec``
as the admission controller does for ``pod-security.kubernetes.io/enforce: restricted``.
"""

from __future__ import annotations

from typing import Any, Iterator

BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                         "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _seccomp_ok(profile: dict[str, Any] | None) -> bool:
    return bool(profile) and profile.get("type") in ("RuntimeDefault", "Localhost")  # type: ignore[union-attr]


def violations(spec: dict[str, Any]) -> list[str]:
    """The controls of the restricted profile that ``spec`` (a Pod's spec) breaks; empty when it passes."""
    out: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            out.append(f"host namespaces: {field}")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if "hostPath" in kinds:
            out.append(f"hostPath volume {volume['name']}")
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"volume type {sorted(kinds - RESTRICTED_VOLUMES)} of {volume['name']}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"unsafe sysctl {sysctl.get('name')}")
    if (pod_sc.get("seLinuxOptions") or {}).get("type", "") not in SELINUX_TYPES:
        out.append("seLinuxOptions type")
    if pod_sc.get("runAsUser") == 0:
        out.append("runAsUser 0 (pod)")
    if (pod_sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        out.append("seccompProfile Unconfined (pod)")
    for c in _containers(spec):
        out.extend(f"{c.get('name')}: {v}" for v in _container_violations(c, pod_sc))
    return out


def _container_violations(c: dict[str, Any], pod_sc: dict[str, Any]) -> Iterator[str]:
    sc = c.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    if sc.get("privileged"):
        yield "privileged"
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        yield "hostProcess"
    if set(caps.get("add") or []) - BASELINE_CAPABILITIES:
        yield f"capabilities added beyond baseline {caps.get('add')}"
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        yield "capabilities added beyond NET_BIND_SERVICE"
    if "ALL" not in (caps.get("drop") or []):
        yield "capabilities do not drop ALL"
    if any(p.get("hostPort") for p in c.get("ports") or []):
        yield "hostPort"
    if sc.get("procMount", "Default") != "Default":
        yield "procMount"
    if (sc.get("seLinuxOptions") or {}).get("type", "") not in SELINUX_TYPES:
        yield "seLinuxOptions type"
    if sc.get("allowPrivilegeEscalation") is not False:
        yield "allowPrivilegeEscalation is not false"
    if sc.get("runAsNonRoot") is False or not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
        yield "runAsNonRoot is not true"
    if sc.get("runAsUser") == 0:
        yield "runAsUser 0"
    profile = sc.get("seccompProfile")
    if (profile or {}).get("type") == "Unconfined" or not (_seccomp_ok(profile) or _seccomp_ok(pod_sc.get("seccompProfile"))):
        yield "seccompProfile is not RuntimeDefault or Localhost"
