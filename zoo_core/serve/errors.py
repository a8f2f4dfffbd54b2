"""What a request did wrong (or what failed serving it), as an HTTP status, a short code and a message.

Every failure of ``POST /predict`` leaves the server as a JSON body ``{"error": code, "detail":
message, "status": status}``: a 4xx when the request is at fault (not an image, too large, an
unknown model or option), a 5xx when the server is (the model raised, NaN outputs, out of memory).
No traceback is ever sent; the server logs it.
"""

from __future__ import annotations

from ..errors import DataError, InputError, NonFiniteOutputError, OptionError, ZooError

#: longest message sent for an unexpected exception (its type and first line; the log has the rest)
MAX_DETAIL = 500


class RequestError(ZooError):
    """A request refused, or a failure serving it: ``status`` (HTTP), ``code`` (stable, for clients)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = int(status), code, detail

    def body(self) -> dict[str, object]:
        return {"error": self.code, "detail": self.detail, "status": self.status}


def from_exception(exc: BaseException, *, model: str) -> RequestError:
    """The :class:`RequestError` for an exception raised by ``model.predict`` on a request's images.

    Input and option errors the zoo names (:class:`InputError`, :class:`DataError`,
    :class:`OptionError`) are the request's fault (400); NaN/Inf outputs (the model's weights or
    numerics) and anything else are the server's (500); running out of memory is 503 (try later or
    send fewer images).
    """
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, OptionError):
        return RequestError(400, "bad_option", f"model {model!r}: {exc}")
    if isinstance(exc, (InputError, DataError)):
        return RequestError(400, "bad_image", f"model {model!r}: {exc}")
    if isinstance(exc, NonFiniteOutputError):
        return RequestError(500, "non_finite_output", f"model {model!r}: {exc}")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return RequestError(503, "out_of_memory", f"model {model!r} ran out of memory on this batch; send fewer "
                                                  "or smaller images, or retry")
    first = (str(exc).strip().splitlines() or [""])[0][:MAX_DETAIL]
    return RequestError(500, "prediction_failed", f"model {model!r} failed on this batch: "
                                                  f"{type(exc).__name__}: {first} (the server log has the traceback)")
