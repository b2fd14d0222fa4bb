"""The provider's Airflow plugin: the first task of a DAG run starts its AI tasks' warm runtime server.

A local AI task's job is forked by the warm runtime server (:mod:`.execution.warm_runtime`), which
takes a few seconds to preload the heavy libraries when it starts. When any task of a DAG with local
AI tasks starts running on a worker, the plugin's listener starts that server in the background, so
the DAG's first AI task finds it preloaded (or waits for it to listen) instead of starting it then.
It does nothing for a DAG without AI tasks, with the warm runtime off, or in kubernetes mode, and it
never fails a task: what goes wrong is one debug line, and the job starts the server itself.

The plugin is registered with the ``airflow.plugins`` entry point; importing it imports nothing of
the provider's operators.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.sdk.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

#: The module of the AI job operators; a DAG file that did not import it has no AI task.
_OPERATORS_MODULE = "airflow_ai_provider.operators.base"


def local_interpreters(tasks: list[Any]) -> set[str]:
    """The interpreters of the local-mode AI job tasks among ``tasks`` (mapped ones too): the warm
    runtime servers their jobs use. A task whose mode or interpreter is still a template is skipped."""
    base = sys.modules.get(_OPERATORS_MODULE)
    if base is None:
        return set()
    from airflow_ai_provider.config import ExecutionMode, resolve_execution_mode
    from airflow_ai_provider.operators.arguments import is_templated

    found = set()
    for task in tasks:
        operator_class = getattr(task, "operator_class", None)
        cls = operator_class if isinstance(operator_class, type) else type(task)
        if not issubclass(cls, base.AiJobOperator):
            continue
        arguments = getattr(task, "partial_kwargs", None)  # a mapped task: its partial() arguments
        mode = arguments.get("execution_mode") if arguments is not None else task.execution_mode
        python = arguments.get("python") if arguments is not None else task.python
        if is_templated(mode) or is_templated(python):
            continue
        if resolve_execution_mode(mode) is ExecutionMode.LOCAL:
            found.add(python or sys.executable)
    return found


class WarmStartListener:
    """Starts the warm runtime servers of a DAG's local AI tasks when one of its tasks starts running."""

    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        try:
            dag = task_instance.task.dag
            interpreters = local_interpreters(list(dag.tasks))
            if not interpreters:
                return
            from airflow_ai_provider.execution.local import prestart_warm_runtime

            for python in sorted(interpreters):
                if prestart_warm_runtime(python):
                    log.debug("Started the warm runtime server for %s in the background", python)
        except Exception as err:  # a task never fails because a server could not be started early
            log.debug("Warm runtime server not started early: %s", err)


class AiProviderPlugin(AirflowPlugin):
    """Registers :class:`WarmStartListener`."""

    name = "airflow_ai_provider"
    listeners = [WarmStartListener()]
