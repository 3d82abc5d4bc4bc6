"""Schemathesis against the server with Twilio's own OpenAPI description of Conversations v1.

Every operation Palaver serves is called with generated requests, valid and invalid (examples, coverage,
fuzzing and stateful phases), with a fixed seed and a bounded number of examples per operation. The run fails
on any 5xx, any response whose status, content type or body does not match the spec, any invalid request that
is accepted, and any endpoint that answers without credentials.

The spec is read from `../shared/reference/twilio_conversations_v1.json` beside the repository (or from
PALAVER_TWILIO_SPEC); it is not part of the repository. It is adjusted in memory, each change for a reason
written in docs/compatibility.md ("Schema testing"):
- Twilio's spec documents only successful responses; every operation gets a `4XX` response with Twilio's error
  body, so error answers are checked too (shape, content type) instead of being undocumented.
- `PageSize` above an operation's maximum is served as that maximum rather than refused, as Twilio does (the
  official libraries send `PageSize=limit` for `list(limit=...)`), so the spec's `maximum` is dropped.
- An empty `PreWebhookUrl`, `PostWebhookUrl`, `LastReadTimestamp`, `DefaultMessagingServiceSid` or
  `MessagingServiceSid` clears the setting (or leaves it unset), as in Twilio.
- A delivery receipt not yet handed to its channel has the status `queued`, which the spec's enum lacks (the
  JS SDK's `DetailedDeliveryReceipt` lists it).
- A conversation in the state `initializing` (which the spec lets a conversation be given) shows that state in
  its user- and participant-conversation views too, whose enums lack it.
Operations Palaver does not serve yet (push credentials, bindings, push notification settings) are left out.

PALAVER_SCHEMA_EXAMPLES sets the number of examples per operation (default 20, under a minute); running
this file by hand with a large number is the deep run. PALAVER_SCHEMA_SEED changes the seed, and
PALAVER_SCHEMA_REPORT names a folder for an NDJSON record of every request and response.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = Path(os.environ.get("PALAVER_TWILIO_SPEC",
                           REPO.parent / "shared" / "reference" / "twilio_conversations_v1.json"))
EXAMPLES = int(os.environ.get("PALAVER_SCHEMA_EXAMPLES", "20"))
SEED = int(os.environ.get("PALAVER_SCHEMA_SEED", "20260101"))

# Not served yet (push credentials, bindings and notification settings): left out of the run, by operation ID.
NOT_SERVED = [
    "CreateCredential", "ListCredential", "UpdateCredential", "DeleteCredential", "FetchCredential",
    "DeleteServiceBinding", "FetchServiceBinding", "ListServiceBinding",
    "UpdateServiceNotification", "FetchServiceNotification",
]

TWILIO_ERROR = {
    "description": "A Twilio error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["code", "message", "more_info", "status"],
                "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string", "minLength": 1},
                    "more_info": {"type": "string", "format": "uri"},
                    "status": {"type": "integer", "minimum": 400, "maximum": 499},
                },
            }
        }
    },
}


# Form fields where an empty value clears what was set (Twilio's convention), though the spec gives them a format.
CLEARED_BY_EMPTY = {"PreWebhookUrl", "PostWebhookUrl", "LastReadTimestamp", "DefaultMessagingServiceSid",
                    "MessagingServiceSid"}


def adjusted_spec(spec):
    """Twilio's spec with the documented adjustments (see the module docstring)."""
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method not in ("get", "post", "delete"):
                continue
            operation["responses"]["4XX"] = TWILIO_ERROR
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "PageSize":
                    parameter["schema"] = {"type": "integer", "minimum": 1}
            form = operation.get("requestBody", {}).get("content", {}).get("application/x-www-form-urlencoded", {})
            for name, schema in form.get("schema", {}).get("properties", {}).items():
                if name in CLEARED_BY_EMPTY:
                    form["schema"]["properties"][name] = {"anyOf": [schema, {"type": "string", "maxLength": 0}]}
    for name, schema in spec["components"]["schemas"].items():
        if name.endswith("message_receipt_enum_delivery_status"):
            schema["enum"].append("queued")
        if name.endswith(("user_conversation_enum_state", "participant_conversation_enum_state")):
            schema["enum"].append("initializing")
    return spec


def toml_value(value):
    """A TOML literal for a string, number, bool, list or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(key)} = {toml_value(item)}" for key, item in value.items()) + " }"


def seed_world(server):
    """Resources for generated requests to find, so that they reach more than the 404 of a random SID.

    Returns `{(scope, set, kind): [sid]}`: scope `default` for the unscoped paths (the default service) and
    `other` for `/Services/{ChatServiceSid}/...` (a second service); set `kept` for the operations that read
    and change resources, `doomed` for the DELETE operations, so that deletes do not take the others' resources
    away, `parent` for a conversation of its own that a DELETE of a whole conversation removes, and `leaving`
    for a user who leaves the doomed conversation.
    """
    client = server.client().conversations.v1
    world = {}

    def add(scope, bucket, kind, sid):
        world.setdefault((scope, bucket, kind), []).append(sid)

    services = {"default": client.configuration().fetch().default_chat_service_sid,
                "other": client.services.create(friendly_name="schema test").sid}
    add("default", "kept", "service", services["default"])
    add("other", "kept", "service", services["other"])
    add("other", "doomed", "service", client.services.create(friendly_name="to delete").sid)
    for scope, service in services.items():
        api = client.services(service)
        for bucket in ("kept", "doomed"):
            identity = f"{scope}-{bucket}"
            add(scope, bucket, "identity", identity)
            add(scope, bucket, "user", api.users.create(identity=identity, attributes='{"team":"a"}').sid)
            conversation = api.conversations.create(friendly_name="schema", attributes='{"topic":"x"}')
            add(scope, bucket, "conversation", conversation.sid)
            thread = api.conversations(conversation.sid)
            add(scope, bucket, "participant", thread.participants.create(identity=identity).sid)
            # An SMS participant, so that messages have delivery receipts.
            phone = f"+1555010{len(world):04d}"
            thread.participants.create(messaging_binding_address=phone, messaging_binding_proxy_address="+15550999")
            message = thread.messages.create(author=identity, body="hello")
            add(scope, bucket, "message", message.sid)
            for receipt in thread.messages(message.sid).delivery_receipts.list():
                add(scope, bucket, "receipt", receipt.sid)
            webhook = thread.webhooks.create(target="webhook", configuration_url="http://127.0.0.1:9/hook",
                                             configuration_method="POST")
            add(scope, bucket, "webhook", webhook.sid)
            role = api.roles.create(friendly_name=f"{scope}-{bucket}", type="conversation", permission=["sendMessage"])
            add(scope, bucket, "role", role.sid)
        # A member of the doomed conversation for the DELETE of a user's conversation (leaving it).
        leaver = api.users.create(identity=f"{scope}-leaver").sid
        api.conversations(world[(scope, "doomed", "conversation")][0]).participants.create(identity=f"{scope}-leaver")
        add(scope, "leaving", "user", leaver)
        add(scope, "parent", "conversation", api.conversations.create(friendly_name="to delete").sid)
    for bucket, number in (("kept", "+15550123456"), ("doomed", "+15550123457")):
        add("default", bucket, "address", client.address_configurations.create(type="sms", address=number).sid)
    return world


# Which resource an operation's `Sid` names, by the operation ID without its verb and `Service` prefix.
SID_KINDS = {
    "Conversation": "conversation", "ConversationParticipant": "participant", "ConversationMessage": "message",
    "ConversationMessageReceipt": "receipt", "ConversationScopedWebhook": "webhook", "User": "user",
    "Role": "role", "ConfigurationAddress": "address",
}
PARAMETER_KINDS = {"ChatServiceSid": "service", "ConversationSid": "conversation", "MessageSid": "message",
                   "UserSid": "user", "Identity": "identity"}


def operation_bindings(operation_id, parameters):
    """`{parameter: (scope, set, kind)}` for the parameters of one operation that the seeded world can fill."""
    verb = next(v for v in ("Create", "Update", "Delete", "Fetch", "List") if operation_id.startswith(v))
    rest = operation_id[len(verb):]
    scoped = "ChatServiceSid" in parameters
    if scoped and rest.startswith("Service"):
        rest = rest[len("Service"):]
    scope = "other" if scoped else "default"
    bucket = "doomed" if verb == "Delete" else "kept"
    bindings = {}
    for name in parameters:
        if name == "Sid":
            kind = "service" if rest == "Service" else SID_KINDS.get(rest)
            if kind == "service":
                # `/v1/Services/{Sid}`: the second service, or the one to delete.
                bindings[name] = ("other", bucket, "service")
            elif kind:
                whole = verb == "Delete" and kind == "conversation"
                bindings[name] = (scope, "parent" if whole else bucket, kind)
        elif name in PARAMETER_KINDS:
            kind = PARAMETER_KINDS[name]
            if kind == "service":
                bindings[name] = (scope, "kept", kind)
            elif kind == "user" and rest == "UserConversation" and verb == "Delete":
                bindings[name] = (scope, "leaving", kind)
            else:
                bindings[name] = (scope, bucket, kind)
    return bindings


def schemathesis_config(spec, world):
    dictionaries = {"-".join(key): sids for key, sids in world.items()}
    lines = [f"seed = {SEED}", "workers = 1", "request-timeout = 30.0", "", "[generation]",
             f"max-examples = {EXAMPLES}", "database = \"none\"",
             # Twilio ignores parameters it does not know, and so does Palaver.
             "allow-extra-parameters = false", "", "[phases.stateful]", "max-steps = 12", "",
             "[dictionaries]"]
    lines += [f"{json.dumps(name)} = {toml_value({'values': values})}" for name, values in dictionaries.items()]
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method not in ("get", "post", "delete"):
                continue
            names = [p["name"] for p in item.get("parameters", []) + operation.get("parameters", [])
                     if p["in"] in ("path", "query")]
            bindings = {name: "-".join(key) for name, key in operation_bindings(operation["operationId"], names).items()
                        if "-".join(key) in dictionaries}
            settings = {}
            if bindings:
                # Mostly the seeded resources; sometimes a generated value, for the paths of a missing one.
                settings["parameters"] = {name: {"dictionary": dictionary, "probability": 0.85}
                                          for name, dictionary in bindings.items()}
            if operation["operationId"] == "UpdateConfiguration":
                # Another default service would take every unscoped path's resources away at once.
                settings["parameters"] = {"body.DefaultChatServiceSid": {"dictionary": "default-kept-service"}}
            if method == "delete" or operation["operationId"] == "UpdateConfiguration":
                # SIDs seen in earlier responses would make a DELETE remove the resources the other operations
                # are given (it deletes the doomed ones instead), and would change the default service.
                own_data = {"extra-data-sources": {"responses": False}}
                settings["phases"] = {"coverage": own_data, "fuzzing": own_data}
            if settings:
                lines += ["", "[[operations]]", f"include-operation-id = {json.dumps(operation['operationId'])}"]
                lines += [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def test_twilio_openapi_spec(server, tmp_path):
    if not SPEC.exists():
        message = f"Twilio's OpenAPI spec is missing at {SPEC} (set PALAVER_TWILIO_SPEC)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    spec = adjusted_spec(json.loads(SPEC.read_text()))
    spec_path = tmp_path / "twilio_conversations_v1.json"
    spec_path.write_text(json.dumps(spec))
    config_path = tmp_path / "schemathesis.toml"
    config_path.write_text(schemathesis_config(spec, seed_world(server)))
    st = Path(sys.executable).with_name("st")
    command = [
        str(st), "--config-file", str(config_path), "run", str(spec_path),
        "--url", server.url,
        "--auth", f"{server.account_sid}:{server.auth_token}",
        "--exclude-operation-id-regex", "^(" + "|".join(NOT_SERVED) + ")$",
        "--checks", "all",
        # Twilio's spec does not describe the rules behind its inputs (JSON attributes, ISO-8601 durations,
        # page tokens, one of Identity or an address...), so generated "valid" requests are often rightly
        # refused with a 400; see docs/compatibility.md.
        "--exclude-checks", "positive_data_acceptance",
        "--no-color",
    ]
    if os.environ.get("PALAVER_SCHEMA_REPORT"):
        # Every request and response of the run, for reading coverage after a deep run.
        command += ["--report", "ndjson", "--report-dir", os.environ["PALAVER_SCHEMA_REPORT"]]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600 + 10 * EXAMPLES, cwd=tmp_path)
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.log").write_text(output)
    assert run.returncode == 0, output[-20000:]
