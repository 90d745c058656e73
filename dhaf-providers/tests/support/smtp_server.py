"""A real SMTP server (aiosmtpd) for the email notifier's tests.

Listens on 127.0.0.1 on three OS-chosen ports: `plain` (AUTH allowed without TLS), `starttls`
(STARTTLS required before AUTH and MAIL) and `ssl` (TLS from the first byte). AUTH is required on
all three; the only account is the one given on the command line. Every accepted message is
written to OUT_DIR as one JSON file; the ports are printed as one JSON line on stdout once all
three listen. Runs until its stdin closes, so it dies with the test that started it.

usage: smtp_server.py OUT_DIR CERT_PEM KEY_PEM USER PASSWORD
"""

import asyncio
import email
import email.policy
import json
import logging
import os
import ssl
import sys
import uuid

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

OUT_DIR, CERT, KEY, USER, PASSWORD = sys.argv[1:6]


class Recorder:
    def __init__(self, mode):
        self.mode = mode

    async def handle_DATA(self, server, session, envelope):
        record = {
            "mode": self.mode,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
            "login": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        # The parsed view undoes transfer encodings, so tests compare what a reader sees.
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record.update(
            subject=str(msg["subject"]),
            header_from=str(msg["from"]),
            header_to=str(msg["to"]),
            date=str(msg["date"]),
            content_type=msg.get_content_type(),
            body=msg.get_content().replace("\r\n", "\n"),
        )
        name = os.path.join(OUT_DIR, uuid.uuid4().hex)
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        # The rename makes a message appear whole, never half written.
        os.rename(name + ".tmp", name + ".json")
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER and auth_data.password.decode() == PASSWORD
    # handled=False: aiosmtpd itself answers a failed login with 535.
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def tls_context():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(CERT, KEY)
    return ctx


async def main():
    loop = asyncio.get_running_loop()
    common = dict(auth_required=True, authenticator=authenticator, hostname="smtp.test")

    def plain():
        return SMTP(Recorder("plain"), auth_require_tls=False, **common)

    def starttls():
        return SMTP(Recorder("starttls"), tls_context=tls_context(), require_starttls=True, auth_require_tls=True, **common)

    def wrapped():
        return SMTP(Recorder("ssl"), auth_require_tls=False, **common)

    servers = {
        "plain": await loop.create_server(plain, "127.0.0.1", 0),
        "starttls": await loop.create_server(starttls, "127.0.0.1", 0),
        "ssl": await loop.create_server(wrapped, "127.0.0.1", 0, ssl=tls_context()),
    }
    ports = {k: s.sockets[0].getsockname()[1] for k, s in servers.items()}
    print(json.dumps(ports), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    import warnings

    # aiosmtpd warns about the deliberately TLS-less AUTH of the `plain` port on every connection.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    asyncio.run(main())
