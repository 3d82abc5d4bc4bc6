"""Push notifications through the `twilio` library: every operation of Credentials, a service's Bindings and its
Configuration/Notifications, and a new message reaching a device registered over the realtime API through a local
double of FCM (and of Google's token endpoint)."""
import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import ChatGrant
from websockets.sync.client import connect

from conftest import REPO, PalaverServer

FCM_KEY = (REPO / "crates/palaver-server/tests/it/push_fixtures/fcm-service-account.key").read_text()
SERVICE_ACCOUNT = json.dumps({
    "type": "service_account",
    "project_id": "conformance",
    "client_email": "push@conformance.iam.gserviceaccount.com",
    "private_key": FCM_KEY,
    "token_uri": "https://oauth2.googleapis.com/token",
})


class FcmDouble:
    """FCM's send endpoint and Google's token endpoint on loopback, recording the messages sent."""

    def __init__(self):
        self.messages = queue.Queue()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/token":
                    assert dict(parse_qsl(body.decode()))["grant_type"].endswith("jwt-bearer")
                    answer = {"access_token": "ya29.conformance", "expires_in": 3600}
                else:
                    assert self.headers["Authorization"] == "Bearer ya29.conformance"
                    double.messages.put((self.path, json.loads(body)))
                    answer = {"name": "projects/conformance/messages/1"}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def fcm():
    double = FcmDouble()
    yield double
    double.http.shutdown()


@pytest.fixture(scope="module")
def push_server(fcm):
    server = PalaverServer(
        extra_env={"PALAVER_PUSH_FCM_URL": fcm.url, "PALAVER_PUSH_FCM_TOKEN_URL": fcm.url + "/token"}
    ).start()
    yield server
    server.stop()


def test_credentials_every_operation(push_server):
    v1 = push_server.client().conversations.v1
    created = v1.credentials.create(type="fcm", friendly_name="android", secret=SERVICE_ACCOUNT)
    assert created.sid.startswith("CR") and created.type == "fcm" and created.friendly_name == "android"
    assert created.account_sid == push_server.account_sid
    fetched = v1.credentials(created.sid).fetch()
    assert (fetched.sid, fetched.friendly_name, fetched.sandbox) == (created.sid, "android", "False")
    assert created.sid in [c.sid for c in v1.credentials.list()]
    updated = v1.credentials(created.sid).update(friendly_name="android-2")
    assert updated.friendly_name == "android-2"
    web = v1.credentials.create(type="webpush", certificate=json.dumps({"subject": "mailto:ops@example.com"}))
    assert web.type == "webpush"
    with pytest.raises(TwilioRestException) as refused:
        v1.credentials.create(type="fcm", secret="{}")
    assert refused.value.status == 400 and "Secret" in refused.value.msg
    with pytest.raises(TwilioRestException) as refused:
        v1.credentials.create(type="apn", private_key="-----BEGIN CERTIFICATE-----")
    assert refused.value.status == 400
    assert v1.credentials(web.sid).delete() is True
    with pytest.raises(TwilioRestException) as missing:
        v1.credentials(web.sid).fetch()
    assert missing.value.status == 404


def test_notification_settings_every_operation(push_server):
    v1 = push_server.client().conversations.v1
    service = v1.services.create(friendly_name="push settings").sid
    notifications = v1.services(service).configuration.notifications()
    initial = notifications.fetch()
    assert initial.new_message["enabled"] is False and initial.log_enabled is False
    updated = notifications.update(
        log_enabled=True,
        new_message_enabled=True,
        new_message_template="${PARTICIPANT}: ${MESSAGE}",
        new_message_sound="ding",
        new_message_badge_count_enabled=True,
        new_message_with_media_enabled=True,
        new_message_with_media_template="${MEDIA_COUNT} files",
        added_to_conversation_enabled=True,
        added_to_conversation_sound="pop",
        removed_from_conversation_enabled=True,
        removed_from_conversation_template="Bye from ${CONVERSATION}",
    )
    assert updated.log_enabled is True
    assert updated.new_message == {
        "enabled": True,
        "template": "${PARTICIPANT}: ${MESSAGE}",
        "sound": "ding",
        "badge_count_enabled": True,
        "with_media": {"enabled": True, "template": "${MEDIA_COUNT} files"},
    }
    assert updated.added_to_conversation == {"enabled": True, "template": None, "sound": "pop"}
    assert updated.removed_from_conversation["template"] == "Bye from ${CONVERSATION}"
    assert updated.chat_service_sid == service
    fetched = notifications.fetch()
    assert (fetched.new_message, fetched.removed_from_conversation) == (
        updated.new_message,
        updated.removed_from_conversation,
    )


def register(server, service, identity, credential, token):
    created = server.palaver("keys", "create", "--name", "push")
    key_sid = created.split("sid:")[1].split()[0]
    secret = created.split("secret:")[1].split()[0]
    access = AccessToken(server.account_sid, key_sid, secret, identity=identity, ttl=600)
    access.add_grant(ChatGrant(service_sid=service, push_credential_sid=credential))
    with connect(server.url.replace("http://", "ws://") + "/v1/realtime") as ws:
        ws.send(json.dumps({"id": 1, "method": "connect", "params": {"token": access.to_jwt()}}))
        assert "result" in json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"id": 2, "method": "set_push_registration", "params": {"kind": "fcm", "token": token}}))
        reply = json.loads(ws.recv(timeout=10))
        while reply.get("reply_to") != 2:
            reply = json.loads(ws.recv(timeout=10))
        return reply["result"]["binding_sid"]


def test_a_message_reaches_a_registered_device_and_bindings_every_operation(push_server, fcm):
    v1 = push_server.client().conversations.v1
    service = v1.configuration().fetch().default_chat_service_sid
    credential = v1.credentials.create(type="fcm", friendly_name="devices", secret=SERVICE_ACCOUNT).sid
    v1.services(service).configuration.notifications().update(
        new_message_enabled=True, new_message_template="${PARTICIPANT}: ${MESSAGE}"
    )
    conversation = v1.conversations.create(friendly_name="Push room")
    conversation.participants.create(identity="alice")
    conversation.participants.create(identity="bob")
    binding_sid = register(push_server, service, "bob", credential, "bob-device-token")

    conversation.messages.create(author="alice", body="hello bob")
    path, message = fcm.messages.get(timeout=15)
    assert path == "/v1/projects/conformance/messages:send"
    assert message["message"]["token"] == "bob-device-token"
    data = message["message"]["data"]
    assert data["twi_body"] == "alice: hello bob"
    assert (data["conversation_sid"], data["conversation_title"]) == (conversation.sid, "Push room")
    assert data["twi_message_type"] == "twilio.conversations.new_message"

    bindings = v1.services(service).bindings
    listed = bindings.list(binding_type=["fcm"], identity=["bob"])
    assert [b.sid for b in listed] == [binding_sid]
    binding = bindings(binding_sid).fetch()
    assert (binding.identity, binding.binding_type, binding.endpoint) == ("bob", "fcm", "bob-device-token")
    assert binding.credential_sid == credential and binding.chat_service_sid == service
    assert set(binding.message_types) == {"new_message", "added_to_conversation", "removed_from_conversation"}
    assert bindings.list(identity=["nobody"]) == []
    assert bindings(binding_sid).delete() is True
    with pytest.raises(TwilioRestException) as missing:
        bindings(binding_sid).fetch()
    assert missing.value.status == 404
    conversation.messages.create(author="alice", body="anyone?")
    time.sleep(1)
    assert fcm.messages.empty(), "a deleted binding gets nothing"
