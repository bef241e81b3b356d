"""How the ingress's helpers (`page_reader`, `stored_images`) do their work: through the ingress's own means.

A deployment call goes through the ingress's ``_call``, which sends it again where its replica was lost (`retries`);
CPU work goes through its ``_in_thread``, on its bounded pool of threads, traced under the request's span.
"""

from collections.abc import Awaitable, Callable
from typing import Any

#: ``call(deployment, lambda: handle.method.remote(...))``: the answer, the call sent again if its replica is lost.
Call = Callable[[str, Callable[[], Any]], Awaitable[Any]]
#: ``in_thread(span, fn, *args)``: ``fn(*args)`` off the event loop, traced as ``span``.
InThread = Callable[..., Awaitable[Any]]
