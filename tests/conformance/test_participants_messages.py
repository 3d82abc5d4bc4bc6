"""Participants, messages, users and read horizons through the `twilio` library."""
import json

import pytest
from twilio.base.exceptions import TwilioRestException

from conftest import unique


@pytest.fixture
def conv(v1):
    return v1.conversations.create(friendly_name="room")


def test_chat_sms_whatsapp_and_email_participants(v1, conv):
    parts = v1.conversations(conv.sid).participants
    identity = unique("alice")
    alice = parts.create(identity=identity, attributes='{"role":"customer"}')
    assert alice.sid.startswith("MB") and alice.messaging_binding is None
    sms = parts.create(messaging_binding_address="+15551112222", messaging_binding_proxy_address="+15553334444")
    assert sms.identity is None
    assert sms.messaging_binding == {"type": "sms", "address": "+15551112222", "proxy_address": "+15553334444"}
    whatsapp = parts.create(messaging_binding_address="whatsapp:+15550001", messaging_binding_proxy_address="whatsapp:+15550002")
    assert whatsapp.messaging_binding["type"] == "whatsapp"
    email = parts.create(messaging_binding_address="carol@example.com", messaging_binding_projected_address="support@example.com")
    assert email.messaging_binding["type"] == "email"

    assert parts(identity).fetch().sid == alice.sid
    assert parts(alice.sid).update(attributes='{"role":"vip"}').attributes == '{"role":"vip"}'
    updated = parts(identity).update(last_read_message_index=0)
    assert updated.last_read_message_index == 0 and updated.last_read_timestamp
    assert len(parts.list(page_size=2)) == 4
    assert v1.users(identity).fetch().sid.startswith("US")

    by_address = v1.participant_conversations.list(address="+15551112222")
    assert conv.sid in [c.conversation_sid for c in by_address]
    by_identity = v1.participant_conversations.list(identity=identity)
    assert by_identity[0].participant_sid == alice.sid and by_identity[0].conversation_friendly_name == "room"

    assert parts(identity).delete() is True
    assert parts(sms.sid).delete() is True
    with pytest.raises(TwilioRestException) as err:
        parts(identity).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)


def test_messages_indices_order_and_paging(v1, conv):
    messages = v1.conversations(conv.sid).messages
    created = [messages.create(author="alice", body=f"m{i}", attributes='{"n":%d}' % i) for i in range(25)]
    assert [m.index for m in created] == list(range(25))
    assert created[0].sid.startswith("IM") and created[0].author == "alice"
    assert [m.index for m in messages.list(page_size=10)] == list(range(25))
    assert [m.index for m in messages.list(order="desc", page_size=7)] == list(range(24, -1, -1))
    page = messages.page(page_size=10)
    assert [m.index for m in page.next_page()] == list(range(10, 20))

    assert messages.create(body="from system").author == "system"
    messages(created[24].sid).delete()
    assert messages.create(body="after delete").index == 26, "indices are never reused"

    imported = messages.create(author="bob", body="old", date_created="2018-01-02T03:04:05Z", subject="Re: hi")
    assert imported.date_created.year == 2018
    edited = messages(imported.sid).update(body="edited", attributes='{"e":true}', author="bobby")
    assert (edited.body, edited.author, json.loads(edited.attributes)) == ("edited", "bobby", {"e": True})
    assert edited.date_updated is not None
    assert messages(imported.sid).fetch().body == "edited"
    with pytest.raises(TwilioRestException) as err:
        messages("IM" + "0" * 32).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)


def test_unread_counts_are_exact(v1, conv):
    identity = unique("reader")
    v1.conversations(conv.sid).participants.create(identity=identity)
    sent = [v1.conversations(conv.sid).messages.create(body=f"m{i}") for i in range(5)]
    mine = v1.users(identity).user_conversations(conv.sid)
    assert mine.fetch().unread_messages_count is None
    assert mine.update(last_read_message_index=1).unread_messages_count == 3
    v1.conversations(conv.sid).messages(sent[3].sid).delete()
    assert mine.fetch().unread_messages_count == 2
    fetched = mine.fetch()
    assert fetched.last_read_message_index == 1 and fetched.notification_level == "default"
    assert mine.update(notification_level="muted").notification_level == "muted"
    assert conv.sid in [c.conversation_sid for c in v1.users(identity).user_conversations.list()]
    assert mine.delete() is True
    with pytest.raises(TwilioRestException):
        v1.conversations(conv.sid).participants(identity).fetch()


def test_users(v1):
    identity = unique("user")
    user = v1.users.create(identity=identity, friendly_name="U", attributes='{"a":1}')
    assert user.sid.startswith("US") and user.identity == identity
    assert v1.users(user.sid).fetch().identity == identity
    assert v1.users(identity).update(friendly_name="V").friendly_name == "V"
    assert identity in [u.identity for u in v1.users.list(page_size=3)]
    with pytest.raises(TwilioRestException) as err:
        v1.users.create(identity=identity)
    assert err.value.status == 409
    assert v1.users(identity).delete() is True
    with pytest.raises(TwilioRestException) as err:
        v1.users(identity).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)


def test_roles(v1):
    roles = v1.roles.list()
    assert {r.type for r in roles} == {"service", "conversation"}
    assert {"channel user", "service admin"} <= {r.friendly_name for r in roles}
    role = v1.roles.create(friendly_name="moderator", type="conversation", permission=["sendMessage", "removeParticipant"])
    assert role.sid.startswith("RL") and role.permissions == ["sendMessage", "removeParticipant"]
    assert v1.roles(role.sid).fetch().friendly_name == "moderator"
    assert v1.roles(role.sid).update(permission=["deleteAnyMessage"]).permissions == ["deleteAnyMessage"]
    conv = v1.conversations.create()
    assert v1.conversations(conv.sid).participants.create(identity=unique("m"), role_sid=role.sid).role_sid == role.sid
    assert v1.roles(role.sid).delete() is True
    with pytest.raises(TwilioRestException):
        v1.roles.create(friendly_name="bad", type="conversation", permission=["flyAway"])
