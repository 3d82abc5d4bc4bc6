"""State timers, restart survival, and access tokens minted by the `twilio` library."""
import json
import time

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import ChatGrant
from websockets.sync.client import connect


def wait_for_state(v1, sid, state, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if v1.conversations(sid).fetch().state == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"{sid} never became {state}")


def test_states_and_timers(v1):
    assert v1.conversations.create(state="inactive").state == "inactive"
    conv = v1.conversations.create()
    assert v1.conversations(conv.sid).update(state="inactive").state == "inactive"
    assert v1.conversations(conv.sid).update(state="active").state == "active"

    timed = v1.conversations.create(timers_inactive="PT1S", timers_closed="PT3S")
    assert timed.timers["date_inactive"] and timed.timers["date_closed"]
    wait_for_state(v1, timed.sid, "inactive")
    wait_for_state(v1, timed.sid, "closed")
    for call in (
        lambda: v1.conversations(timed.sid).messages.create(body="late"),
        lambda: v1.conversations(timed.sid).participants.create(identity="late"),
        lambda: v1.conversations(timed.sid).update(state="active"),
        lambda: v1.conversations(timed.sid).update(friendly_name="late"),
    ):
        with pytest.raises(TwilioRestException) as err:
            call()
        assert (err.value.status, err.value.code) == (400, 50377)


def test_everything_survives_a_restart(own_server):
    v1 = own_server.client().conversations.v1
    conv = v1.conversations.create(friendly_name="durable", unique_name="durable-1", attributes='{"k":"v"}')
    v1.conversations(conv.sid).participants.create(identity="erin")
    for i in range(3):
        v1.conversations(conv.sid).messages.create(author="erin", body=f"m{i}")
    v1.users("erin").user_conversations(conv.sid).update(last_read_message_index=0)
    role = v1.roles.create(friendly_name="kept", type="service", permission=["createConversation"])
    user = v1.users.create(identity="frank", friendly_name="Frank")
    timed = v1.conversations.create(timers_inactive="PT2S")
    before = v1.conversations(conv.sid).fetch()

    own_server.stop()
    time.sleep(2.5)
    own_server.start()

    v1 = own_server.client().conversations.v1
    after = v1.conversations("durable-1").fetch()
    assert (after.sid, after.friendly_name, after.attributes, after.date_created) == (
        before.sid, before.friendly_name, before.attributes, before.date_created)
    assert [m.body for m in v1.conversations(conv.sid).messages.list()] == ["m0", "m1", "m2"]
    assert v1.users("erin").user_conversations(conv.sid).fetch().unread_messages_count == 2
    assert v1.roles(role.sid).fetch().permissions == ["createConversation"]
    assert v1.users(user.sid).fetch().friendly_name == "Frank"
    assert v1.conversations(conv.sid).messages.create(body="next").index == 3
    # The inactive timer came due while the server was down and fires after start.
    wait_for_state(v1, timed.sid, "inactive")


def test_access_token_minted_by_twilio_library_is_accepted(server):
    created = server.palaver("keys", "create", "--name", "tokens")
    key_sid = created.split("sid:")[1].split()[0]
    secret = created.split("secret:")[1].split()[0]
    service = server.client().conversations.v1.configuration().fetch().default_chat_service_sid
    token = AccessToken(server.account_sid, key_sid, secret, identity="token-user", ttl=600)
    token.add_grant(ChatGrant(service_sid=service))
    with connect(server.url.replace("http://", "ws://") + "/v1/realtime") as ws:
        ws.send(json.dumps({"id": 1, "method": "connect", "params": {"token": token.to_jwt()}}))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["reply_to"] == 1 and reply["result"]["identity"] == "token-user", reply
    forged = AccessToken(server.account_sid, key_sid, "not-the-secret-" + "0" * 32, identity="token-user")
    forged.add_grant(ChatGrant(service_sid=service))
    with connect(server.url.replace("http://", "ws://") + "/v1/realtime") as ws:
        ws.send(json.dumps({"id": 1, "method": "connect", "params": {"token": forged.to_jwt()}}))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["error"]["code"] == 20101 and reply["error"]["status"] == 401
