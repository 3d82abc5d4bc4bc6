"""Email and SMS participants with real parts: an SMTP server on loopback (aiosmtpd) receives the emails, a local
double of the SMS gateway (Twilio's Messaging API shape) receives the texts and calls back signed, and replies
from the mailbox and the phone land in the same conversation. Driven with the `twilio` library."""
import base64
import json
import queue
import secrets
import socket
import threading
import time
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from aiosmtpd.controller import Controller
from twilio.request_validator import RequestValidator

from conftest import PalaverServer

GATEWAY_ACCOUNT = "AC" + "4" * 32
GATEWAY_TOKEN = "gateway-token-for-tests"
CUSTOMER_PHONE = "+15551110001"
OUR_PHONE = "+15559990001"
SUPPORT_MAILBOX = "support@palaver.test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """A real SMTP server on loopback collecting what it receives."""

    def __init__(self, port):
        self.received = queue.Queue()
        mailbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                mailbox.received.put((envelope.rcpt_tos, message_from_bytes(envelope.content)))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def next(self, timeout=20):
        return self.received.get(timeout=timeout)


class Gateway:
    """Stands in for the SMS provider: records each send, answers like Twilio's Messaging API."""

    def __init__(self):
        self.sent = queue.Queue()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True)
                expected = "Basic " + base64.b64encode(f"{GATEWAY_ACCOUNT}:{GATEWAY_TOKEN}".encode()).decode()
                authorised = self.headers.get("Authorization") == expected
                sid = "SM" + secrets.token_hex(16)
                gateway.sent.put({"path": urlsplit(self.path).path, "form": dict(form), "sid": sid,
                                  "authorised": authorised})
                body = json.dumps({"sid": sid, "status": "queued"}).encode()
                self.send_response(201 if authorised else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout=20):
        return self.sent.get(timeout=timeout)

    def close(self):
        self.server.shutdown()


def post_signed(url, form):
    """Posts as the gateway does: form-encoded and signed with the gateway's auth token."""
    signature = RequestValidator(GATEWAY_TOKEN).compute_signature(url, form)
    return requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)


@pytest.fixture
def channels():
    smtp_port = free_port()
    mailbox = Mailbox(smtp_port).start()
    gateway = Gateway()
    server = PalaverServer({
        "PALAVER_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "PALAVER_EMAIL_FROM": "noreply@palaver.test",
        "PALAVER_MESSAGING_GATEWAY_URL": gateway.url,
        "PALAVER_MESSAGING_GATEWAY_ACCOUNT_SID": GATEWAY_ACCOUNT,
        "PALAVER_MESSAGING_GATEWAY_AUTH_TOKEN": GATEWAY_TOKEN,
    }).start()
    yield server, mailbox, gateway, smtp_port
    server.stop()
    gateway.close()
    try:
        mailbox.stop()
    except Exception:
        pass


def wait_until(check, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_a_chat_message_reaches_sms_and_email_and_replies_come_back(channels):
    server, mailbox, gateway, _ = channels
    v1 = server.client().conversations.v1
    conv = v1.conversations.create(friendly_name="Order 1234")
    participants = v1.conversations(conv.sid).participants
    ann = participants.create(messaging_binding_address="ann@example.com",
                              messaging_binding_projected_address=SUPPORT_MAILBOX)
    phone = participants.create(messaging_binding_address=CUSTOMER_PHONE, messaging_binding_proxy_address=OUR_PHONE)
    participants.create(identity="alice")

    message = v1.conversations(conv.sid).messages.create(author="alice", body="Your order has shipped.",
                                                         subject="Shipping update")
    assert message.delivery["total"] == 2

    recipients, email = mailbox.next()
    assert recipients == ["ann@example.com"]
    assert email["Subject"] == "Shipping update"
    assert SUPPORT_MAILBOX in email["From"]
    assert "Your order has shipped." in email.get_payload(decode=True).decode()

    sms = gateway.next()
    assert sms["authorised"], "the gateway got its own credentials"
    assert sms["path"] == f"/2010-04-01/Accounts/{GATEWAY_ACCOUNT}/Messages.json"
    assert (sms["form"]["To"], sms["form"]["From"], sms["form"]["Body"]) == (CUSTOMER_PHONE, OUR_PHONE,
                                                                             "Your order has shipped.")
    callback = sms["form"]["StatusCallback"]
    assert callback == f"{server.url}/v1/Channels/Messaging/Status"

    def receipts():
        found = v1.conversations(conv.sid).messages(message.sid).delivery_receipts.list()
        return found if len(found) == 2 and all(r.status == "sent" for r in found) else None

    found = wait_until(receipts, "both receipts to be sent")
    assert all(r.sid.startswith("DY") for r in found)
    assert {r.participant_sid for r in found} == {ann.sid, phone.sid}
    sms_receipt = next(r for r in found if r.participant_sid == phone.sid)
    assert sms_receipt.channel_message_sid == sms["sid"]
    assert v1.conversations(conv.sid).messages(message.sid).delivery_receipts(sms_receipt.sid).fetch().status == "sent"

    # The gateway reports the text delivered.
    assert post_signed(callback, {"MessageSid": sms["sid"], "MessageStatus": "delivered"}).status_code == 204
    wait_until(lambda: v1.conversations(conv.sid).messages(message.sid).fetch().delivery["delivered"] == "some",
               "the aggregate to show the delivery")

    # Replies: from the mailbox (inbound email endpoint, account credentials) and from the phone (signed).
    reply = requests.post(f"{server.url}/v1/Channels/Email/Inbound",
                          data={"from": "Ann Lee <Ann@Example.com>", "to": SUPPORT_MAILBOX, "subject": "Re: Shipping",
                                "text": "Great, thanks!"},
                          auth=(server.account_sid, server.auth_token), timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json()["conversation_sid"] == conv.sid
    texted = post_signed(f"{server.url}/v1/Channels/Messaging/Inbound",
                         {"From": CUSTOMER_PHONE, "To": OUR_PHONE, "Body": "Got it", "MessageSid": "SM" + "1" * 32,
                          "NumMedia": "0"})
    assert texted.status_code == 200 and "<Response>" in texted.text
    messages = v1.conversations(conv.sid).messages.list()
    assert [(m.author, m.body) for m in messages[1:]] == [("ann@example.com", "Great, thanks!"),
                                                          (CUSTOMER_PHONE, "Got it")]
    assert messages[1].participant_sid == ann.sid and messages[2].participant_sid == phone.sid
    # Ann's reply goes on to the phone (not back to Ann), and the phone's to Ann.
    assert gateway.next()["form"]["Body"] == "Great, thanks!"
    recipients, email = mailbox.next()
    assert recipients == ["ann@example.com"] and "Got it" in email.get_payload(decode=True).decode()

    # Forged callbacks are refused.
    forged = requests.post(f"{server.url}/v1/Channels/Messaging/Inbound",
                           data={"From": CUSTOMER_PHONE, "To": OUR_PHONE, "Body": "forged"}, timeout=10)
    assert forged.status_code == 401


def test_emails_wait_for_the_mail_server_across_a_restart(channels):
    server, mailbox, _, smtp_port = channels
    v1 = server.client().conversations.v1
    conv = v1.conversations.create(friendly_name="Outage")
    v1.conversations(conv.sid).participants.create(messaging_binding_address="bob@example.com")
    mailbox.stop()
    message = v1.conversations(conv.sid).messages.create(body="Sent while the relay is down")
    time.sleep(0.5)
    receipt = v1.conversations(conv.sid).messages(message.sid).delivery_receipts.list()[0]
    assert receipt.status == "queued"
    mailbox = Mailbox(smtp_port).start()
    server.restart()
    v1 = server.client().conversations.v1
    try:
        recipients, email = mailbox.next(timeout=30)
        assert recipients == ["bob@example.com"]
        assert email["Subject"] == "Outage"
        assert "noreply@palaver.test" in email["From"]
        wait_until(lambda: v1.conversations(conv.sid).messages(message.sid).delivery_receipts.list()[0].status
                   == "sent", "the receipt to be sent")
        with pytest.raises(queue.Empty):
            mailbox.received.get(timeout=1.5)
    finally:
        mailbox.stop()


def test_address_configuration_creates_conversations(channels):
    server, mailbox, _, _ = channels
    v1 = server.client().conversations.v1
    config = v1.address_configurations.create(type="email", address="hello@palaver.test",
                                              friendly_name="Hello desk", auto_creation_enabled=True,
                                              auto_creation_type="default")
    assert config.sid.startswith("IG") and config.auto_creation["enabled"] is True
    assert v1.address_configurations(config.sid).fetch().address == "hello@palaver.test"
    assert [c.sid for c in v1.address_configurations.list()] == [config.sid]

    posted = requests.post(f"{server.url}/v1/Channels/Email/Inbound",
                           data={"From": "Carol <carol@example.com>", "To": "hello@palaver.test",
                                 "Subject": "Question", "Text": "Do you ship to Mars?"},
                           auth=(server.account_sid, server.auth_token), timeout=10)
    assert posted.status_code == 200, posted.text
    conv_sid = posted.json()["conversation_sid"]
    conv = v1.conversations(conv_sid).fetch()
    assert conv.friendly_name == "Hello desk"
    [carol] = v1.conversations(conv_sid).participants.list()
    assert carol.messaging_binding["address"] == "carol@example.com"
    [question] = v1.conversations(conv_sid).messages.list()
    assert (question.body, question.author) == ("Do you ship to Mars?", "carol@example.com")

    # An agent answers: the email goes back to Carol from the configured address.
    v1.conversations(conv_sid).messages.create(author="agent", body="Not yet!")
    recipients, email = mailbox.next()
    assert recipients == ["carol@example.com"]
    assert "hello@palaver.test" in email["From"]

    updated = v1.address_configurations(config.sid).update(auto_creation_enabled=False)
    assert updated.auto_creation["enabled"] is False
    assert v1.address_configurations(config.sid).delete() is True


def test_media_with_the_twilio_library_and_email_attachments(channels):
    server, mailbox, _, _ = channels
    v1 = server.client().conversations.v1
    uploaded = requests.post(f"{server.url}/v1/Media", params={"Filename": "invoice.pdf"}, data=b"%PDF-1.7 fake",
                             headers={"Content-Type": "application/pdf"},
                             auth=(server.account_sid, server.auth_token), timeout=10)
    assert uploaded.status_code == 201, uploaded.text
    media = uploaded.json()
    assert media["sid"].startswith("ME") and media["size"] == len(b"%PDF-1.7 fake")

    conv = v1.conversations.create(friendly_name="Invoices")
    v1.conversations(conv.sid).participants.create(messaging_binding_address="dora@example.com")
    message = v1.conversations(conv.sid).messages.create(body="Your invoice", media_sid=media["sid"])
    assert message.media == [{"sid": media["sid"], "content_type": "application/pdf", "filename": "invoice.pdf",
                              "size": len(b"%PDF-1.7 fake"), "category": "media"}]

    recipients, email = mailbox.next()
    assert recipients == ["dora@example.com"]
    parts = {part.get_content_type(): part for part in email.walk()}
    assert "Your invoice" in parts["text/plain"].get_payload(decode=True).decode()
    attachment = parts["application/pdf"]
    assert attachment.get_filename() == "invoice.pdf"
    assert attachment.get_payload(decode=True) == b"%PDF-1.7 fake"

    # The signed URL works without credentials.
    temporary = requests.get(media["links"]["content_direct_temporary"], timeout=10)
    assert temporary.status_code == 200 and temporary.content == b"%PDF-1.7 fake"


def test_email_levels_and_names(channels):
    server, mailbox, _, _ = channels
    v1 = server.client().conversations.v1
    conv = v1.conversations.create(friendly_name="Levels")
    v1.conversations(conv.sid).participants.create(messaging_binding_address="to@example.com")
    # Palaver's extension fields for email participants: a display name and the Cc level.
    added = requests.post(f"{server.url}/v1/Conversations/{conv.sid}/Participants",
                          data={"MessagingBinding.Address": "cc@example.com", "MessagingBinding.Level": "cc",
                                "MessagingBinding.Name": "Carbon Copy"},
                          auth=(server.account_sid, server.auth_token), timeout=10)
    assert added.status_code == 201, added.text
    bad = requests.post(f"{server.url}/v1/Conversations/{conv.sid}/Participants",
                        data={"MessagingBinding.Address": "x@example.com", "MessagingBinding.Level": "bcc"},
                        auth=(server.account_sid, server.auth_token), timeout=10)
    assert bad.status_code == 400 and bad.json()["code"] == 20001
    v1.conversations(conv.sid).messages.create(author="agent", body="to and cc")
    recipients, email = mailbox.next()
    assert sorted(recipients) == ["cc@example.com", "to@example.com"]
    assert "to@example.com" in email["To"] and "cc@example.com" not in email["To"]
    assert "Carbon Copy" in email["Cc"] and "cc@example.com" in email["Cc"]
