"""Flask's JSON responses serialised by orjson: several times faster than the standard library.

Installed as `app.json` (Flask's JSON provider API), so `jsonify` and every error answer use it.
The JSON is the same value Flask's default provider writes, compact, with its trailing newline;
dates, dataclasses and the like still go through Flask's `default`. Two differences in bytes, not
in meaning: non-ASCII text is sent as UTF-8 instead of `\\u` escapes (JSON's own encoding), and a
float NaN or infinity would be `null` rather than invalid JSON (no answer of ours holds a float).
Whatever orjson refuses (integers beyond 64 bits, keys that are not strings, lone surrogates) is
serialised by the default provider, as before. Parsing stays with the standard library: orjson
reads integers beyond 64 bits as floats, and was no faster on large records (object allocation
dominates).
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider
from werkzeug.sansio.response import Response as BaseResponse

BASE_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class OrjsonProvider(DefaultJSONProvider):
    def response(self, *args: Any, **kwargs: Any) -> BaseResponse:
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)  # indented for people: rare, leave it to the default
        obj = self._prepare_response_obj(args, kwargs)
        return Response(self.encode(obj), mimetype=self.mimetype)

    def encode(self, obj: Any) -> bytes:
        """The compact JSON answer's bytes, trailing newline included (the hook path answers with these too)."""
        options = BASE_OPTIONS | (orjson.OPT_SORT_KEYS if self.sort_keys else 0)
        try:
            return orjson.dumps(obj, default=self.default, option=options)
        except orjson.JSONEncodeError:
            return (self.dumps(obj, separators=(",", ":")) + "\n").encode()
