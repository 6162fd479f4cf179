"""Rule message templates: jinja2's sandbox, run in a child process within a budget.

A template is code an operator wrote: ``{% for i in range(100000) %}{% for j in range(100000)
%}{% endfor %}{% endfor %}``, ``{{ 9**99999999 }}`` or ``{{ '{:0999999999}'.format(1) }}`` must
cost at most :data:`BUDGET_S` seconds, :data:`MAX_CHARS` characters and :data:`MEMORY_BYTES`, and
never stall the caller. CPython cannot stop a thread, so templates render in a small long-lived
child process (``python -m wis_monitor.template``) with a memory and CPU limit; one that overruns
its time is killed and replaced at the next render. The sandbox also refuses at once the single
operations that would build a huge result (``**``, ``*``, ``%`` formats), so most bad templates
fail fast with a clear reason, and output stops at :data:`MAX_CHARS`.

The child gets the template and the alert's fields, no environment variables: it holds no secret.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import math
import os
import re
import resource
import select
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from jinja2 import Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from wis_monitor.clock import SYSTEM

#: Wall-clock time one template (a title or a body) may take to render.
BUDGET_S = 1.0
#: Characters one rendered template may have.
MAX_CHARS = 10_000
#: The largest string, list or number (in digits) one operation of a template may build.
MAX_SIZE = 100_000
#: Address space of the rendering process.
MEMORY_BYTES = 256 << 20
#: CPU seconds a rendering process may use in all before it is replaced.
CPU_S = 60
#: How long a new rendering process may take to start (a loaded machine is slow to import).
START_S = 30.0

_MAX_BITS = math.ceil(MAX_SIZE / math.log10(2))
_FORMAT_SPEC = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\d*)(?:\.(\d*))?")
_ENV_KEPT = ("PYTHONPATH", "PYTHONHOME", "PATH", "LANG", "LC_ALL", "LC_CTYPE")


class TemplateRenderError(Exception):
    """A template failed or broke its budget; the message says why."""


class Sandbox(SandboxedEnvironment):
    """jinja2's sandbox that refuses an operation whose result would be huge before doing it."""

    intercepted_binops = frozenset({"**", "*", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        elif operator == "*":
            _check_product(left, right)
        elif isinstance(left, str):
            _check_format(left)
        return super().call_binop(context, operator, left, right)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_power(base: Any, exp: Any) -> None:
    if _is_int(base) and _is_int(exp) and exp > 0 and abs(base) > 1 \
            and exp * abs(base).bit_length() > _MAX_BITS:
        raise SecurityError(f"a power of more than {MAX_SIZE} digits")


def _check_product(left: Any, right: Any) -> None:
    if _is_int(left) and _is_int(right):
        if abs(left).bit_length() + abs(right).bit_length() > _MAX_BITS:
            raise SecurityError(f"a product of more than {MAX_SIZE} digits")
        return
    seq, n = (left, right) if _is_int(right) else (right, left)
    if _is_int(n) and isinstance(seq, str | list | tuple) and len(seq) * n > MAX_SIZE:
        raise SecurityError(f"a repetition longer than {MAX_SIZE}")


def _check_format(fmt: str) -> None:
    for m in _FORMAT_SPEC.finditer(fmt):
        if any(g and (len(g) > len(str(MAX_SIZE)) or int(g) > MAX_SIZE) for g in m.groups()):
            raise SecurityError(f"a %-format width or precision over {MAX_SIZE}")


_SANDBOX = Sandbox(autoescape=False)


def syntax_problem(source: str) -> str | None:
    """What is wrong with a template's syntax, or None."""
    try:
        _SANDBOX.parse(source)
    except TemplateSyntaxError as exc:
        return f"{exc.message} (template line {exc.lineno})"
    return None


def render(source: str, context: Mapping[str, Any]) -> str:
    """``source`` rendered with ``context`` within the budget; raises TemplateRenderError."""
    return RENDERER.render(source, context)


class _WorkerGone(Exception):
    pass


class Renderer:
    """The client of the rendering process: one render at a time, each within ``budget_s``.

    A template that overran its time is remembered and not run again (it would cost the budget
    and a new process each time): later renders of it fail at once with the same reason.
    """

    def __init__(self, budget_s: float = BUDGET_S) -> None:
        self.budget_s = budget_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending = b""
        self._overran: dict[str, str] = {}

    @property
    def pid(self) -> int | None:
        """The rendering process's id, while one runs."""
        return self._proc.pid if self._proc is not None else None

    def render(self, source: str, context: Mapping[str, Any]) -> str:
        request = (json.dumps({"source": source, "context": context}, default=str)
                   + "\n").encode()
        with self._lock:
            if source in self._overran:
                raise TemplateRenderError(self._overran[source])
            try:
                try:
                    reply = self._exchange(request)
                except _WorkerGone:  # e.g. its CPU allowance ran out: once more, on a new one
                    reply = self._exchange(request)
            except TimeoutError:
                self._stop(at_once=True)
                if len(self._overran) >= 1000:
                    self._overran.clear()
                self._overran[source] = f"did not finish within {self.budget_s:g}s"
                raise TemplateRenderError(self._overran[source]) from None
            except _WorkerGone as exc:
                raise TemplateRenderError(f"the template process stopped ({exc})") from None
        if "error" in reply:
            raise TemplateRenderError(str(reply["error"]))
        return str(reply["text"])

    def close(self) -> None:
        """Stop the rendering process (it also stops by itself when its input closes)."""
        locked = self._lock.acquire(timeout=self.budget_s + 1.0)
        try:
            self._stop()
        finally:
            if locked:
                self._lock.release()

    def _exchange(self, request: bytes) -> dict[str, Any]:
        proc = self._worker()
        try:
            _write_all(proc, request)
            line = self._read_line(proc, SYSTEM.monotonic() + self.budget_s)
        except _WorkerGone:
            self._stop()
            raise _WorkerGone(f"exit status {proc.returncode}") from None
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _worker(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop()
        env = {k: v for k, v in os.environ.items() if k in _ENV_KEPT}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "wis_monitor.template"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, bufsize=0,
                start_new_session=True)
            ready = self._read_line(self._proc, SYSTEM.monotonic() + START_S)
        except (OSError, TimeoutError, _WorkerGone) as exc:
            self._stop()
            raise _WorkerGone(f"it did not start: {type(exc).__name__}") from None
        if ready != b"ready":
            self._stop()
            raise _WorkerGone("it did not start")
        return self._proc

    def _read_line(self, proc: subprocess.Popen[bytes], deadline: float) -> bytes:
        if proc.stdout is None:
            raise _WorkerGone
        fd = proc.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - SYSTEM.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise _WorkerGone
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def _stop(self, at_once: bool = False) -> None:
        """Stop the process: closing its input ends it when idle; a busy one is killed."""
        proc, self._proc, self._pending = self._proc, None, b""
        if proc is None:
            return
        if at_once:
            proc.kill()
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(0.5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _write_all(proc: subprocess.Popen[bytes], data: bytes) -> None:
    if proc.stdin is None:
        raise _WorkerGone
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(proc.stdin.fileno(), view):]
    except (BrokenPipeError, ValueError):
        raise _WorkerGone from None


RENDERER = Renderer()
atexit.register(RENDERER.close)


# -- the rendering process -------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    return _SANDBOX.from_string(source)


def _render_here(source: str, context: dict[str, Any]) -> str:
    parts: list[str] = []
    size = 0
    for chunk in _compiled(source).generate(context):
        size += len(chunk)
        if size > MAX_CHARS:
            raise TemplateRenderError(f"more than {MAX_CHARS} characters of output")
        parts.append(chunk)
    return "".join(parts)


def _limit(which: int, value: int) -> None:
    hard = resource.getrlimit(which)[1]
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    with contextlib.suppress(OSError, ValueError):  # refused: the time budget still holds
        resource.setrlimit(which, (value, value))


def _end_with(parent: int) -> None:
    """Exit as soon as the parent is gone (killed mid-render, it cannot kill us)."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def serve() -> None:
    """The rendering process: a JSON request per line in, a JSON reply per line out."""
    _limit(resource.RLIMIT_AS, MEMORY_BYTES)
    _limit(resource.RLIMIT_CPU, CPU_S)
    _limit(resource.RLIMIT_CORE, 0)
    threading.Thread(target=_end_with, args=(os.getppid(),), daemon=True).start()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            reply = {"text": _render_here(request["source"], request["context"])}
        except TemplateRenderError as exc:
            reply = {"error": str(exc)}
        except Exception as exc:  # TemplateError, a filter's Python error, MemoryError
            reply = {"error": ": ".join(filter(None, (type(exc).__name__, str(exc)[:300])))}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    serve()
