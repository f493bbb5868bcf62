"""Build one Airflow task per pipeline step from :class:`~ml_pipeline_support.settings.DagSettings`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kubernetes.client import models as k8s

from ml_pipeline_support.operators import KubernetesStepOperator, LocalStepOperator, step_arguments
from ml_pipeline_support.settings import DagSettings
from ml_pipeline_support.trigger import TriggerParamsCheck

PREFLIGHT_TASK_ID = "preflight"
PREFLIGHT_TIMEOUT_S = 300
CONFIG_DIR = "/etc/ml-pipeline"
# The pipeline image's HOME and default PIPELINE_HOME, and /tmp: the only places a step writes
# (images/pipeline/Dockerfile). Both are emptyDirs, so the root file system stays read-only.
SCRATCH_DIR = "/var/lib/ml-pipeline"
TMP_DIR = "/tmp"  # noqa: S108 - a per-pod emptyDir, not a shared host folder
SHM_DIR = "/dev/shm"  # noqa: S108 - NCCL's intra-node transport; the runtime's default is 64 MiB
SHM_SIZE = "1Gi"
# The pipeline image's entrypoint (images/pipeline/Dockerfile: tini -g -- python -m pipeline) with
# torchrun in front: the multi-GPU train pod's command; the arguments stay the step's own.
ENTRYPOINT = ["/usr/bin/tini", "-g", "--", "python", "-m"]


def torchrun_command(gpus: int) -> list[str]:
    """One DistributedDataParallel rank per GPU of the pod (pipeline.torchrun: torchrun, keeping the
    step's exit code), then ``-m pipeline`` and the step's arguments."""
    return [*ENTRYPOINT, "pipeline.torchrun", "--standalone", "--nproc-per-node", str(gpus), "-m", "pipeline"]


def default_task_args(settings: DagSettings) -> dict[str, Any]:
    """Every task's defaults: retries with exponential backoff (the operators fail bad input at
    once, without retry) and the failure alert."""
    from ml_pipeline_support.alerts import failure_callback

    return {
        "owner": "ml-platform",
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_s),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=settings.max_retry_delay_s),
        "on_failure_callback": failure_callback,
    }


def _from_k8s_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    """A kubernetes client model from its manifest form (camelCase keys, as in a values file)."""
    by_json_key = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    unknown = set(data) - set(by_json_key) - set(cls.attribute_map)
    if unknown:
        raise ValueError(f"{what}: unknown field(s) {sorted(unknown)}")
    return cls(**{by_json_key.get(key, key): value for key, value in data.items()})


def _image_digest(image: str) -> str | None:
    return image.split("@", 1)[1] if "@sha256:" in image else None


def _restricted_container_context() -> k8s.V1SecurityContext:
    """The `restricted` Pod Security Standard and a read-only root, for the step and the sidecar."""
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        run_as_non_root=True,
        read_only_root_filesystem=True,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def pod_step_task(step: Any, settings: DagSettings) -> KubernetesStepOperator:
    """A KubernetesPodOperator running ``python -m pipeline step <name>`` in the pipeline image.

    Only the arguments are given: the image's entrypoint is ``tini -- python -m pipeline``, so
    the step runs under an init that forwards SIGTERM (a ``command`` would replace it).
    """
    return KubernetesStepOperator(**pod_step_kwargs(step, settings))


def pod_step_kwargs(
    step: Any,
    settings: DagSettings,
    *,
    task_id: str | None = None,
    arguments: list[str] | None = None,
    timeout_s: int | None = None,
) -> dict[str, Any]:
    """The keyword arguments of :func:`pod_step_task`'s operator.

    Another DAG running other pipeline commands in the same kind of pod (the sweep DAG, which
    maps them over trial slots with ``.partial(**kwargs).expand(arguments=...)``) takes them from
    here: ``step`` gives the resources, GPU and image settings; ``task_id``, ``arguments`` and
    ``timeout_s`` replace the step's own task id, ``step <name>`` arguments and step timeout.
    """
    name = task_id or step.name
    gpu = settings.gpu_enabled and step.uses_gpu
    resources = settings.resources_for(step.name)
    limits = dict(resources.get("limits", {}))
    requests = dict(resources.get("requests", {}))
    if gpu:
        limits[settings.gpu_resource] = str(settings.gpu_count)
    env: dict[str, str] = {}
    # Several GPUs: the train step's own command runs under torchrun, one rank per GPU
    # (pipeline.distributed); another command in this pod (a sweep trial) stays one process.
    torchrun = gpu and settings.gpu_count > 1 and step.name == "train" and arguments is None
    if gpu:
        env["PIPELINE_REQUIRE_GPU"] = "true"
        if settings.gpu_count > 1:
            env["PIPELINE_TRAIN__GPUS"] = str(settings.gpu_count)
    # A CUDA build for the GPU step only (MLP_DAG_GPU_IMAGE): every CPU step keeps the CPU image.
    image = settings.gpu_image if gpu and settings.gpu_image else settings.image
    digest = _image_digest(image)
    if digest:
        env["PIPELINE_IMAGE_DIGEST"] = digest
    volumes = [
        k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource()),
        k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource()),
    ]
    mounts = [
        k8s.V1VolumeMount(name="scratch", mount_path=SCRATCH_DIR),
        k8s.V1VolumeMount(name="tmp", mount_path=TMP_DIR),
    ]
    if torchrun:  # NCCL moves tensors between the pod's GPUs through /dev/shm
        volumes.append(
            k8s.V1Volume(
                name="shm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=SHM_SIZE)
            )
        )
        mounts.append(k8s.V1VolumeMount(name="shm", mount_path=SHM_DIR))
    if settings.config_configmap:
        env["PIPELINE_CONFIG"] = f"{CONFIG_DIR}/config.yaml"
        volumes.append(
            k8s.V1Volume(
                name="config", config_map=k8s.V1ConfigMapVolumeSource(name=settings.config_configmap)
            )
        )
        mounts.append(k8s.V1VolumeMount(name="config", mount_path=CONFIG_DIR, read_only=True))
    env_from = [
        *(
            k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=n))
            for n in settings.env_configmaps
        ),
        *(k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=n)) for n in settings.env_secrets),
    ]
    schedule_timeout = settings.gpu_schedule_timeout_s if gpu else settings.schedule_timeout_s
    startup_timeout = settings.gpu_startup_timeout_s if gpu else settings.startup_timeout_s
    step_timeout = timeout_s if timeout_s is not None else settings.step_timeouts_s[step.name]
    return dict(  # noqa: C408 - the operator's keyword arguments, as they were
        task_id=name,
        step=name,
        allowed_keys=settings.trigger_allowed_keys,
        doc_md=step.summary,
        name=f"mlp-{name.replace('_', '-')}",
        namespace=settings.namespace,
        image=image,
        image_pull_policy=settings.image_pull_policy,
        image_pull_secrets=[k8s.V1LocalObjectReference(name=n) for n in settings.image_pull_secrets],
        service_account_name=settings.service_account,
        automount_service_account_token=False,  # a step never talks to the Kubernetes API
        cmds=torchrun_command(settings.gpu_count) if torchrun else None,
        arguments=list(arguments) if arguments is not None else step_arguments(step.name),
        env_vars=[k8s.V1EnvVar(name=k, value=v) for k, v in env.items()],
        env_from=env_from,
        volumes=volumes,
        volume_mounts=mounts,
        container_resources=k8s.V1ResourceRequirements(requests=requests or None, limits=limits or None),
        node_selector=dict(settings.gpu_node_selector) if gpu else {},
        runtime_class_name=settings.gpu_runtime_class if gpu else None,
        tolerations=[
            _from_k8s_dict(k8s.V1Toleration, t, "MLP_DAG_GPU_TOLERATIONS") for t in settings.gpu_tolerations
        ]
        if gpu
        else [],
        labels={
            "app.kubernetes.io/name": "ml-pipeline",
            "app.kubernetes.io/component": "pipeline-step",
            "ml-pipeline/step": name,
        },
        annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
        security_context=k8s.V1PodSecurityContext(
            run_as_user=settings.run_as_user,
            run_as_group=settings.run_as_user,
            fs_group=settings.run_as_user,
            run_as_non_root=True,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=_restricted_container_context(),
        xcom_sidecar_container_security_context=_restricted_container_context(),
        do_xcom_push=True,
        # The worker watches the pod (not the triggerer), whatever [operators] default_deferrable
        # says: the exit-code mapping and the promotion alert run in execute and cleanup.
        deferrable=False,
        get_logs=True,
        log_events_on_failure=True,
        termination_message_policy="FallbackToLogsOnError",
        on_finish_action=settings.on_finish_action,
        schedule_timeout_seconds=schedule_timeout,
        startup_timeout_seconds=startup_timeout,
        # Kubernetes stops the pod even if the Airflow worker that watches it is gone.
        active_deadline_seconds=startup_timeout + step_timeout,
        # Waiting for a node (GPU scale-up) and pulling the image are bounded separately above.
        execution_timeout=timedelta(seconds=schedule_timeout + startup_timeout + step_timeout),
    )


def local_step_task(step: Any, settings: DagSettings) -> LocalStepOperator:
    """The same step as a local subprocess (``MLP_DAG_TASK_RUNNER=local``)."""
    return LocalStepOperator(
        task_id=step.name,
        step=step.name,
        allowed_keys=settings.trigger_allowed_keys,
        doc_md=step.summary,
        arguments=step_arguments(step.name),
        execution_timeout=timedelta(seconds=settings.step_timeouts_s[step.name]),
    )


def check_params_task(settings: DagSettings) -> TriggerParamsCheck:
    """The run's first task: its params may set only the allow-listed keys
    (``MLP_DAG_TRIGGER_ALLOWED_KEYS``); anything else fails the run here, not retried, before any
    step (or its pod) starts."""
    return TriggerParamsCheck(allowed_keys=settings.trigger_allowed_keys)


def step_task(step: Any, settings: DagSettings) -> Any:
    if settings.task_runner == "local":
        return local_step_task(step, settings)
    return pod_step_task(step, settings)


def preflight_task(first_step: Any, settings: DagSettings) -> Any:
    """``python -m pipeline doctor --json`` before the first step, in the same kind of pod (or
    subprocess) with the same configuration: a wrong S3 endpoint, credentials, bucket, database or
    MLflow artifact store stops the run here, with one line per problem, before any data moves.
    Exit code 65 (a setting must change) is not retried; 75 (a backend did not answer) is."""
    arguments = ["doctor", "--json"]
    if settings.task_runner == "local":
        return LocalStepOperator(
            task_id=PREFLIGHT_TASK_ID,
            step=PREFLIGHT_TASK_ID,
            allowed_keys=settings.trigger_allowed_keys,
            doc_md="Check every configured backend before the run (pipeline doctor).",
            arguments=arguments,
            execution_timeout=timedelta(seconds=PREFLIGHT_TIMEOUT_S),
        )
    kwargs = pod_step_kwargs(
        first_step, settings, task_id=PREFLIGHT_TASK_ID, arguments=arguments, timeout_s=PREFLIGHT_TIMEOUT_S
    )
    kwargs["doc_md"] = "Check every configured backend before the run (pipeline doctor)."
    return KubernetesStepOperator(**kwargs)
