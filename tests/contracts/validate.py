"""Checks the integration suite's exchanges with the intake against the
contract, schemas/openapi.yaml, with openapi-core (PyPI).

tests/support records every request a test makes and its answer, one JSON
line each, in run-test/<mode>/http.jsonl. Every answer must be one its
operation describes (status, content type, body schema). A request must be
one the operation describes when the intake took it (a 2xx): a bad request
is the suite's attack on the intake, and its 4xx answer is checked instead.
A path the contract does not have must have been answered 404 or 405 with
the error shape.

  python validate.py schemas/openapi.yaml run-test/kraft/http.jsonl ...
"""
import collections
import json
import sys
from urllib.parse import parse_qs, urlsplit

from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import PathNotFound, OperationNotFound
from openapi_core.testing import MockRequest, MockResponse

HOST = "http://127.0.0.1:8080"


def error_shaped(text):
    try:
        err = json.loads(text)["error"]
        return isinstance(err.get("code"), str) and isinstance(err.get("message"), str)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def request_of(x):
    parts = urlsplit(x["path"])
    args = {k: v[0] for k, v in parse_qs(parts.query).items()}
    body = x.get("body")
    headers = {"Authorization": "Bearer recorded"}  # the suite's credentials are not recorded
    return MockRequest(HOST, x["method"].lower(), parts.path, args=args, headers=headers,
                       data=body.encode() if body is not None else None,
                       content_type=x.get("content_type") or "application/json")


def response_of(x):
    ctype = (x.get("response_content_type") or "application/json").split(";")[0].strip()
    return MockResponse((x.get("response") or "").encode(), status_code=x["status"],
                        content_type=ctype)


def check(api, x):
    """The problems of one exchange: an empty list when it keeps the contract."""
    req = request_of(x)
    try:
        api.validate_response(req, response_of(x))
    except (PathNotFound, OperationNotFound):
        if x["status"] in (404, 405) and error_shaped(x.get("response")):
            return []
        return ["%s %s is not in the contract (answered %d)" % (x["method"], x["path"],
                                                                 x["status"])]
    except Exception as e:  # openapi-core reports schema errors as its own exceptions
        return ["answer %d: %s" % (x["status"], describe(e))]
    if 200 <= x["status"] < 300:
        try:
            api.validate_request(req)
        except Exception as e:
            return ["request (answered %d): %s" % (x["status"], describe(e))]
    return []


def describe(e):
    causes = [str(e)]
    for attr in ("__cause__", "schema_errors"):
        inner = getattr(e, attr, None)
        if inner:
            causes.append(str(inner if not isinstance(inner, (list, tuple)) else inner[0]))
    return " / ".join(c.splitlines()[0] for c in causes if c)[:400]


def main(spec, files):
    api = OpenAPI.from_file_path(spec)
    seen, bad = 0, collections.OrderedDict()
    for name in files:
        with open(name) as f:
            for line in f:
                x = json.loads(line)
                seen += 1
                for problem in check(api, x):
                    key = "%s %s: %s" % (x["method"], urlsplit(x["path"]).path, problem)
                    bad.setdefault(key, x)
    for key, x in bad.items():
        print("contract: %s\n  request: %s\n  answer: %s" % (
            key, (x.get("body") or "")[:300], (x.get("response") or "")[:300]))
    print("contract: %d exchanges checked, %d problems" % (seen, len(bad)))
    if seen == 0:
        print("contract: nothing was recorded")
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
