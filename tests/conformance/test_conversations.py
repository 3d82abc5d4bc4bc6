"""Conversations, ConversationWithParticipants, services and configuration through the `twilio` library."""
import json

import pytest
from twilio.base.exceptions import TwilioRestException

from conftest import unique


def test_create_fetch_update_delete(v1, server):
    name = unique("support")
    conv = v1.conversations.create(friendly_name="Support", unique_name=name, attributes='{"topic":"billing"}')
    assert conv.sid.startswith("CH") and len(conv.sid) == 34
    assert conv.state == "active"
    assert json.loads(conv.attributes) == {"topic": "billing"}
    assert conv.url == f"{server.url}/v1/Conversations/{conv.sid}"
    assert conv.links["messages"].endswith(f"/Conversations/{conv.sid}/Messages")
    assert conv.date_created is not None and conv.date_created.tzinfo is not None

    assert v1.conversations(name).fetch().sid == conv.sid
    renamed = unique("renamed")
    updated = v1.conversations(conv.sid).update(friendly_name="Renamed", unique_name=renamed, attributes="{}")
    assert (updated.friendly_name, updated.unique_name, updated.attributes) == ("Renamed", renamed, "{}")
    with pytest.raises(TwilioRestException) as err:
        v1.conversations(name).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)

    assert v1.conversations(renamed).delete() is True
    with pytest.raises(TwilioRestException) as err:
        v1.conversations(conv.sid).fetch()
    assert err.value.code == 20404


def test_list_filters_and_pages(v1):
    created = [v1.conversations.create(friendly_name=f"page-{i}", state="inactive").sid for i in range(12)]
    listed = [c.sid for c in v1.conversations.list(state="inactive", page_size=5)]
    assert [sid for sid in listed if sid in created] == created
    first = v1.conversations.page(page_size=5, state="inactive")
    second = first.next_page()
    assert not {c.sid for c in first} & {c.sid for c in second}
    old = v1.conversations.create(date_created="2019-06-01T00:00:00Z")
    assert old.sid in [c.sid for c in v1.conversations.list(end_date="2019-12-31")]
    assert old.sid not in [c.sid for c in v1.conversations.list(start_date="2020-01-01")]


def test_conversation_with_participants(v1):
    conv = v1.conversation_with_participants.create(
        friendly_name="group",
        participant=['{"identity":"cwp-a"}', '{"messaging_binding":{"address":"+15551230001","proxy_address":"+15559990000"}}'],
    )
    participants = v1.conversations(conv.sid).participants.list()
    assert sorted(p.identity or p.messaging_binding["address"] for p in participants) == ["+15551230001", "cwp-a"]


def test_services_are_separate_namespaces(v1):
    default = v1.configuration().fetch().default_chat_service_sid
    conv = v1.conversations.create(friendly_name="in default")
    assert v1.services(default).conversations(conv.sid).fetch().sid == conv.sid

    other = v1.services.create(friendly_name=unique("tenant"))
    assert other.sid.startswith("IS")
    assert other.sid in [s.sid for s in v1.services.list()]
    scoped = v1.services(other.sid).conversations.create(friendly_name="scoped")
    with pytest.raises(TwilioRestException) as err:
        v1.conversations(scoped.sid).fetch()
    assert err.value.code == 20404
    config = v1.services(other.sid).configuration().fetch()
    assert config.default_conversation_role_sid.startswith("RL")
    assert v1.services(other.sid).configuration().update(reachability_enabled=True).reachability_enabled is True
    assert v1.services(other.sid).delete() is True
    with pytest.raises(TwilioRestException):
        v1.services(other.sid).fetch()


def test_account_configuration_sets_default_timers(v1):
    config = v1.configuration().update(default_inactive_timer="PT30M", default_closed_timer="P2D")
    assert (config.default_inactive_timer, config.default_closed_timer) == ("PT30M", "P2D")
    try:
        conv = v1.conversations.create()
        assert conv.timers["date_inactive"] and conv.timers["date_closed"]
    finally:
        v1.configuration().update(default_inactive_timer="", default_closed_timer="")
    assert v1.conversations.create().timers == {}
