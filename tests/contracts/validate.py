"""Checks the integration suite's exchanges with the intake against the
contract, schemas/openapi.yaml, with openapi-core (PyPI), and every message
the suite left in Kafka against its topic's JSON Schema (schemas/messages).

tests/support records every request a test makes and its answer, one JSON
line each, in run-test/<mode>/http.jsonl. Every answer must be one its
operation describes (status, content type, body schema). A request must be
one the operation describes when the intake took it (a 2xx): a bad request
is the suite's attack on the intake, and its 4xx answer is checked instead.
A path the contract does not have must have been answered 404 or 405 with
the error shape.

Messages: scripts/dev dumps every topic after a suite (paystream-admin
topics dump) with the dead letters into run-test/<mode>/messages. Each
message's headers must be an envelope and its value its topic's message,
unless the worker dead-lettered it: the suite sends some that break the
contract on purpose, and those must never have been applied.

  python validate.py schemas/openapi.yaml [--messages DIR]... http.jsonl...
"""
import collections
import json
import os
import sys
from urllib.parse import parse_qs, urlsplit

import jsonschema

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


TOPIC_SCHEMAS = {
    "paystream.stripe.events": "stripe-event",
    "paystream.stripe.connect-events": "stripe-event",
    "paystream.paypal.events": "paypal-event",
    "paystream.commands.payments": "command",
    "paystream.commands.usage": "usage",
    "paystream.domain.events": "domain-event",
}


def validator(schema_dir, name):
    with open(os.path.join(schema_dir, name + ".schema.json")) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def check_messages(schema_dir, run_dir):
    """(messages checked, dead-lettered ones that broke the contract, problems)."""
    dead = set()
    with open(os.path.join(run_dir, "dead_letters.tsv")) as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) > 3:
                dead.add((cols[1], int(cols[2]), int(cols[3])))
    headers = validator(schema_dir, "headers")
    checked, refused, problems = 0, 0, []
    for topic, name in TOPIC_SCHEMAS.items():
        schema = validator(schema_dir, name)
        with open(os.path.join(run_dir, topic + ".jsonl")) as f:
            for line in f:
                m = json.loads(line)
                checked += 1
                errors = [e.message for e in headers.iter_errors(m["headers"])]
                try:
                    value = json.loads(m["value"])
                    errors += [e.message for e in schema.iter_errors(value)]
                except (TypeError, ValueError) as e:
                    errors.append("the value is not JSON: %s" % e)
                if not errors:
                    continue
                if (topic, m["partition"], m["offset"]) in dead:
                    refused += 1
                else:
                    problems.append("%s[%d]@%d, not dead-lettered: %s\n  value: %s" % (
                        topic, m["partition"], m["offset"], errors[0], (m["value"] or "")[:300]))
    return checked, refused, problems


def main(spec, files, message_dirs):
    schema_dir = os.path.join(os.path.dirname(os.path.abspath(spec)), "messages")
    failed = 0
    for run_dir in message_dirs:
        checked, refused, problems = check_messages(schema_dir, run_dir)
        for p in problems:
            print("messages: %s" % p)
        print("messages: %d in %s checked against schemas/messages, %d broke it and were "
              "dead-lettered, %d problems" % (checked, run_dir, refused, len(problems)))
        failed |= bool(problems) or checked == 0
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
    return 1 if bad or failed else 0


if __name__ == "__main__":
    args, dirs, rest = sys.argv[2:], [], []
    while args:
        if args[0] == "--messages" and len(args) > 1:
            dirs.append(args[1])
            args = args[2:]
        else:
            rest.append(args.pop(0))
    sys.exit(main(sys.argv[1], rest, dirs))
