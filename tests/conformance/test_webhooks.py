"""Webhooks through the `twilio` library: settings at every level, and deliveries whose `X-Twilio-Signature`
the library's own `RequestValidator` accepts."""
import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import ChatGrant
from twilio.request_validator import RequestValidator
from websockets.sync.client import connect


class Receiver:
    """A webhook endpoint on a free loopback port that checks signatures with `RequestValidator`."""

    def __init__(self, auth_token):
        self.validator = RequestValidator(auth_token)
        self.hits = queue.Queue()
        self.answers = queue.Queue()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle_request(self, params):
                url = receiver.base + self.path
                valid = receiver.validator.validate(url, params, self.headers.get("X-Twilio-Signature", ""))
                parts = urlsplit(self.path)
                receiver.hits.put({"method": self.command, "path": parts.path, "params": params,
                                   "query": dict(parse_qsl(parts.query)), "valid": valid})
                status, body = (200, b"") if receiver.answers.empty() else receiver.answers.get()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode()
                self.handle_request(dict(parse_qsl(body, keep_blank_values=True)))

            def do_GET(self):
                self.handle_request({})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return self.base + path

    def next(self, timeout=15):
        hit = self.hits.get(timeout=timeout)
        assert hit["valid"], f"RequestValidator rejected the signature of {hit}"
        return hit

    def assert_silent(self, wait=0.5):
        with pytest.raises(queue.Empty):
            hit = self.hits.get(timeout=wait)
            pytest.fail(f"unexpected webhook {hit}")

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver(own_server):
    receiver = Receiver(own_server.auth_token)
    yield receiver
    receiver.close()


def test_account_settings_and_signed_post_event_hooks(own_server, receiver):
    v1 = own_server.client().conversations.v1
    settings = v1.configuration.webhooks().update(
        method="POST",
        filters=["onConversationAdded", "onMessageAdded", "onParticipantAdded"],
        post_webhook_url=receiver.url("/post"),
        target="webhook",
    )
    assert settings.filters == ["onConversationAdded", "onMessageAdded", "onParticipantAdded"]
    assert settings.post_webhook_url == receiver.url("/post")
    assert v1.configuration.webhooks().fetch().method == "POST"

    # REST changes fire only with X-Twilio-Webhook-Enabled: true.
    v1.conversations.create(friendly_name="quiet")
    conv = v1.conversations.create(friendly_name="loud", x_twilio_webhook_enabled="true")
    hit = receiver.next()
    assert hit["params"]["EventType"] == "onConversationAdded"
    assert hit["params"]["ConversationSid"] == conv.sid
    assert hit["params"]["Source"] == "API"

    message = v1.conversations(conv.sid).messages.create(body="hi there", author="erin",
                                                          x_twilio_webhook_enabled="true")
    hit = receiver.next()
    assert hit["params"]["EventType"] == "onMessageAdded"
    assert (hit["params"]["MessageSid"], hit["params"]["Body"], hit["params"]["Author"]) == (message.sid, "hi there",
                                                                                             "erin")
    assert hit["params"]["Index"] == "0"
    assert hit["params"]["RetryCount"] == "0"

    v1.conversations(conv.sid).participants.create(identity="frank", x_twilio_webhook_enabled="true")
    hit = receiver.next()
    assert (hit["params"]["EventType"], hit["params"]["Identity"]) == ("onParticipantAdded", "frank")
    receiver.assert_silent()


def test_get_method_signs_the_query(own_server, receiver):
    v1 = own_server.client().conversations.v1
    v1.configuration.webhooks().update(method="GET", filters=["onConversationAdded"],
                                       post_webhook_url=receiver.url("/get"))
    conv = v1.conversations.create(x_twilio_webhook_enabled="true")
    hit = receiver.next()
    assert (hit["method"], hit["path"]) == ("GET", "/get")
    assert hit["query"]["ConversationSid"] == conv.sid
    assert hit["query"]["EventType"] == "onConversationAdded"


def test_service_settings(own_server, receiver):
    v1 = own_server.client().conversations.v1
    service = v1.services.list()[0]
    settings = v1.services(service.sid).configuration.webhooks().update(
        filters=["onMessageAdded"], post_webhook_url=receiver.url("/service"), method="POST")
    assert settings.chat_service_sid == service.sid
    assert v1.services(service.sid).configuration.webhooks().fetch().filters == ["onMessageAdded"]
    with pytest.raises(TwilioRestException) as err:
        v1.services(service.sid).configuration.webhooks().update(filters=["onUserAdded"])
    assert err.value.status == 400

    conv = v1.services(service.sid).conversations.create()
    v1.services(service.sid).conversations(conv.sid).messages.create(body="to the service hook",
                                                                      x_twilio_webhook_enabled="true")
    hit = receiver.next()
    assert hit["path"] == "/service"
    assert hit["params"]["ChatServiceSid"] == service.sid
    assert hit["params"]["Body"] == "to the service hook"


def test_conversation_scoped_webhooks(own_server, receiver):
    v1 = own_server.client().conversations.v1
    conv = v1.conversations.create()
    hooks = v1.conversations(conv.sid).webhooks
    webhook = hooks.create(target="webhook", configuration_url=receiver.url("/scoped"),
                           configuration_method="POST", configuration_filters=["onMessageAdded"])
    assert webhook.sid.startswith("WH") and webhook.target == "webhook"
    assert webhook.configuration["filters"] == ["onMessageAdded"]
    trigger = hooks.create(target="trigger", configuration_url=receiver.url("/trigger"),
                           configuration_triggers=["urgent"])
    assert trigger.configuration["triggers"] == ["urgent"]
    assert sorted(h.sid for h in hooks.list()) == sorted([webhook.sid, trigger.sid])
    assert hooks(webhook.sid).fetch().configuration["url"] == receiver.url("/scoped")

    v1.conversations(conv.sid).messages.create(body="this is urgent", x_twilio_webhook_enabled="true")
    paths = sorted([receiver.next()["path"], receiver.next()["path"]])
    assert paths == ["/scoped", "/trigger"]

    updated = hooks(trigger.sid).update(configuration_triggers=["help"])
    assert updated.configuration["triggers"] == ["help"]
    assert hooks(webhook.sid).delete() is True
    with pytest.raises(TwilioRestException) as err:
        hooks(webhook.sid).fetch()
    assert err.value.status == 404
    v1.conversations(conv.sid).messages.create(body="urgent again", x_twilio_webhook_enabled="true")
    v1.conversations(conv.sid).messages.create(body="help me", x_twilio_webhook_enabled="true")
    hit = receiver.next()
    assert (hit["path"], hit["params"]["Body"]) == ("/trigger", "help me")
    receiver.assert_silent()

    with pytest.raises(TwilioRestException) as err:
        hooks.create(target="webhook")
    assert err.value.status == 400


def test_delivery_survives_a_restart(own_server, receiver):
    v1 = own_server.client().conversations.v1
    v1.configuration.webhooks().update(filters=["onMessageAdded"], post_webhook_url=receiver.url("/post"))
    conv = v1.conversations.create()
    receiver.answers.put((500, b""))
    v1.conversations(conv.sid).messages.create(body="keep me", x_twilio_webhook_enabled="true")
    first = receiver.next()
    assert first["params"]["RetryCount"] == "0"
    own_server.restart()
    again = receiver.next()
    assert again["params"]["MessageSid"] == first["params"]["MessageSid"]
    assert again["params"]["RetryCount"] == "1"
    own_server.restart()
    receiver.assert_silent(1.5)


def test_pre_event_hook_answers_change_sdk_messages(own_server, receiver):
    """Pre-event hooks are asked for SDK actions; here through the realtime API with a token from the library."""
    v1 = own_server.client().conversations.v1
    v1.configuration.webhooks().update(filters=["onMessageAdd"], pre_webhook_url=receiver.url("/pre"))
    conv = v1.conversations.create()
    v1.conversations(conv.sid).participants.create(identity="gina")
    created = own_server.palaver("keys", "create", "--name", "hooks")
    key_sid = created.split("sid:")[1].split()[0]
    secret = created.split("secret:")[1].split()[0]
    token = AccessToken(own_server.account_sid, key_sid, secret, identity="gina")
    token.add_grant(ChatGrant(service_sid=v1.configuration().fetch().default_chat_service_sid))

    def send(body):
        with connect(own_server.url.replace("http://", "ws://") + "/v1/realtime") as ws:
            def call(request_id, method, params):
                ws.send(json.dumps({"id": request_id, "method": method, "params": params}))
                while True:
                    frame = json.loads(ws.recv(timeout=15))
                    if frame.get("type") == "reply" and frame.get("reply_to") == request_id:
                        return frame

            assert call(1, "connect", {"token": token.to_jwt()}).get("error") is None
            return call(2, "send_message", {"conversation": conv.sid, "body": body})

    receiver.answers.put((200, json.dumps({"body": "edited by the hook"}).encode()))
    reply = send("original")
    assert reply.get("error") is None, reply
    hit = receiver.next()
    assert (hit["params"]["EventType"], hit["params"]["Body"]) == ("onMessageAdd", "original")
    assert hit["params"]["ClientIdentity"] == "gina"
    assert [m.body for m in v1.conversations(conv.sid).messages.list()] == ["edited by the hook"]

    receiver.answers.put((403, b""))
    reply = send("blocked")
    assert reply["error"]["status"] == 403, reply
    receiver.next()
    assert len(v1.conversations(conv.sid).messages.list()) == 1
