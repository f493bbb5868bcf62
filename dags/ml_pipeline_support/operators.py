"""The two ways a step runs: a Kubernetes pod, or a local subprocess (one-machine mode).

Both run the same command, ``python -m pipeline step <name> --run-id {{ run_id }} [--set k=v ...]``,
return the step's JSON summary as the task's single XCom value, and turn the step's exit code into
Airflow's retry semantics:

* ``65`` (bad input, failed validation) and ``2`` (usage error): :class:`StepBadInput`, an
  ``AirflowFailException`` — the task fails at once, whatever retries are left;
* anything else non-zero (``75`` and crashes, OOM kills): :class:`StepFailed`, an
  ``AirflowException`` — retried with exponential backoff.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.container import get_container_termination_message
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from ml_pipeline_support.alerts import one_line, promotion_alert
from ml_pipeline_support.monitor import trigger_env
from ml_pipeline_support.trigger import override_arguments
from pipeline.errors import EXIT_BAD_INPUT, EXIT_USAGE  # the exit-code contract, declared once

TRIGGER_PREFIX = "PIPELINE_TRIGGER__"  # the variables trigger_env sets, replaced at each render
NOT_RETRYABLE = frozenset({EXIT_USAGE, EXIT_BAD_INPUT})

_ERROR_WORDS = re.compile(r"error|exception|failed|invalid|refused|violat|broken|not allowed", re.IGNORECASE)


class StepFailed(AirflowException):
    """A step exited non-zero with a retryable code (or was killed)."""

    retryable = True

    def __init__(self, step: str, exit_code: int | None, error_line: str):
        self.step = step
        self.exit_code = exit_code
        self.error_line = error_line
        super().__init__(f"step {step!r} failed (exit code {exit_code}): {error_line}")


class StepBadInput(AirflowFailException):
    """A step refused its input or configuration (exit code 65, or 2): never retried."""

    retryable = False

    def __init__(self, step: str, exit_code: int | None, error_line: str):
        self.step = step
        self.exit_code = exit_code
        self.error_line = error_line
        super().__init__(
            f"step {step!r} refused its input (exit code {exit_code}, not retried): {error_line}"
        )


def step_failure(step: str, exit_code: int | None, error_line: str) -> AirflowException:
    error_line = one_line(error_line) or "no error message"
    if exit_code in NOT_RETRYABLE:
        return StepBadInput(step, exit_code, error_line)
    return StepFailed(step, exit_code, error_line)


ERROR_PREFIX = "pipeline: error: "  # the pipeline CLI's last stderr line on failure (pipeline/cli.py)


def last_error_line(lines: Sequence[str]) -> str:
    """The line of a step's log that best says what went wrong.

    The pipeline ends a failed step with one line ``pipeline: error: <step>: <message>`` naming
    the broken rule; without it (a crash, a kill), the last line that names an error.
    """
    candidates = [line.strip().rsplit("\r", 1)[-1].strip() for line in lines if line.strip()]
    candidates = [line for line in candidates if line]
    for line in reversed(candidates):
        if line.startswith(ERROR_PREFIX):
            return line[len(ERROR_PREFIX) :]
    for line in reversed(candidates):
        if line.startswith(("File ", "Traceback", "^", "~")):
            continue
        if _ERROR_WORDS.search(line):
            return line
    return candidates[-1] if candidates else ""


def step_arguments(step: str) -> list[str]:
    """The templated arguments of ``python -m pipeline`` for one step (the overrides come later)."""
    return ["step", step, "--run-id", "{{ run_id }}"]


class _StepMixin:
    """What both runners share: the step name, the overrides, the promotion alert."""

    step: str
    arguments: list[str]
    # Setting keys the run's params may set (DagSettings.trigger_allowed_keys); none by default.
    allowed_keys: tuple[str, ...] = ()

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]
        # The run's params become `--set` options. Added after rendering so a value is passed
        # verbatim (never evaluated as a template) and as separate argv items (never a shell),
        # and only for keys the allow-list admits (ml_pipeline_support/trigger.py).
        extra = override_arguments(context.get("params"), self.allowed_keys)
        if extra and self.arguments[-len(extra) :] != extra:
            self.arguments = [*self.arguments, *extra]
        # What caused this run (the retrain asset event's cause, schedule or manual), for the
        # register step to record as trigger.* tags (ml_pipeline_support/monitor.py).
        self._set_env(trigger_env(context))

    def _set_env(self, env: Mapping[str, str]) -> None:
        raise NotImplementedError

    def _after_success(self, context: Any, result: Any) -> Any:
        if isinstance(result, dict):
            promotion_alert(context, self.step, result)
        return result


class KubernetesStepOperator(_StepMixin, KubernetesPodOperator):
    """One step in a pod of the pipeline image. The step writes ``/airflow/xcom/return.json``."""

    def __init__(self, *, step: str, allowed_keys: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.allowed_keys = tuple(allowed_keys)

    def execute(self, context: Any) -> Any:
        return self._after_success(context, super().execute(context))

    def _set_env(self, env: Mapping[str, str]) -> None:
        from kubernetes.client import models as k8s

        kept = [e for e in self.env_vars or [] if not str(getattr(e, "name", "")).startswith(TRIGGER_PREFIX)]
        self.env_vars = [*kept, *(k8s.V1EnvVar(name=k, value=v) for k, v in env.items())]

    def cleanup(self, pod: Any, remote_pod: Any, xcom_result: Any = None, context: Any = None) -> None:
        try:
            super().cleanup(pod=pod, remote_pod=remote_pod, xcom_result=xcom_result, context=context)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            exit_code = base_container_exit_code(remote_pod, self.base_container_name)
            # With terminationMessagePolicy FallbackToLogsOnError the termination message is the
            # tail of the step's log (at most 80 lines / 2 KiB), where the step names the error.
            tail = get_container_termination_message(remote_pod, self.base_container_name)
            lines = tail.splitlines() if isinstance(tail, str) else []
            error = last_error_line(lines) or str(exc).splitlines()[0]
            self.log.error("Step %s: exit code %s: %s", self.step, exit_code, error)
            raise step_failure(self.step, exit_code, error) from exc


def base_container_exit_code(remote_pod: Any, container_name: str) -> int | None:
    statuses = getattr(getattr(remote_pod, "status", None), "container_statuses", None) or []
    for status in statuses:
        if status.name == container_name and status.state and status.state.terminated:
            return status.state.terminated.exit_code
    return None


class LocalStepOperator(_StepMixin, BaseOperator):
    """One step as a local subprocess: same command and environment as the pod, no cluster.

    The subprocess runs with the interpreter running Airflow (``sys.executable``), so the
    ``pipeline`` package must be installed next to Airflow. Its stderr (the step's log) streams
    into the task log; the last line of its stdout is the JSON summary, returned as one XCom value.
    """

    template_fields: Sequence[str] = ("arguments",)
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        step: str,
        arguments: list[str],
        env: Mapping[str, str] | None = None,
        allowed_keys: Sequence[str] = (),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.step = step
        self.allowed_keys = tuple(allowed_keys)
        self.arguments = list(arguments)
        self.env = dict(env or {})
        self._proc: subprocess.Popen[str] | None = None

    def _set_env(self, env: Mapping[str, str]) -> None:
        self.env = {**{k: v for k, v in self.env.items() if not k.startswith(TRIGGER_PREFIX)}, **env}

    def execute(self, context: Any) -> Any:
        command = [sys.executable, "-m", "pipeline", *self.arguments]
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.log.info("Running: %s", " ".join(command))
        stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        stdout_lines: list[str] = []
        self._proc = proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,  # so a timeout can stop the step and anything it started
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        reader = threading.Thread(target=lambda: stdout_lines.extend(proc.stdout), daemon=True)
        reader.start()
        try:
            for line in proc.stderr:
                line = line.rstrip("\n")
                stderr_tail.append(line)
                self.log.info("%s", line)
            returncode = proc.wait()
        finally:
            # Reached with the step still running only on a timeout or a kill: stop it.
            self._stop()
        reader.join(timeout=10)
        for line in stdout_lines:
            self.log.info("stdout: %s", line.rstrip("\n"))
        if returncode != 0:
            error = last_error_line(list(stderr_tail)) or f"the step exited with code {returncode}"
            raise step_failure(self.step, returncode, error)
        summary = parse_summary(stdout_lines)
        return self._after_success(context, summary)

    def _stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self.log.warning("Stopping step %s (pid %s)", self.step, proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def on_kill(self) -> None:
        self._stop()


def parse_summary(stdout_lines: Sequence[str]) -> dict[str, Any]:
    """The step's JSON summary: the last non-empty line of its stdout."""
    for line in reversed(stdout_lines):
        if line.strip():
            try:
                summary = json.loads(line)
            except json.JSONDecodeError:
                break
            if isinstance(summary, dict):
                return summary
            break
    raise AirflowException("the step succeeded but its last stdout line is not a JSON object summary")
