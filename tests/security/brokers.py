"""Certificates and private TLS/auth brokers for the security tests.

Everything is made here, per test session, on free loopback ports: a CA (trustme)
with a server certificate for ``localhost``/``127.0.0.1`` and a client certificate
(CN ``meshgate-client``), a second CA nobody trusts, and brokers configured with them.
The system brokers on the default ports are never touched.

* :class:`SecureNats`: ``nats-server -c`` with a ``tls`` block (optionally ``verify``,
  i.e. mutual TLS) and an ``authorization`` block (users with subject permissions and
  an nkey user, or a token);
* :class:`OperatorNats`: nats-server in operator mode (decentralized JWT auth): an
  operator JWT, one account JWT preloaded in a memory resolver, and users that log in
  with a ``.creds`` file (user JWT signed by the account + the user's nkey seed), over
  TLS (:func:`make_operator` makes them; the JWTs are encoded here, see :func:`_jwt`);
* :class:`SecureMosquitto`: one Mosquitto with three listeners: TLS with
  ``password_file``, TLS with ``require_certificate`` (mTLS, the certificate CN is the
  user name), and a plaintext one; one ``acl_file`` for all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import nkeys
import trustme

from gateway.localbrokers import LOOPBACK, free_port, nats_server_binary, port_open
from tests.faults.brokers import BrokerProcess, PrivateRabbit

__all__ = [
    "JetStreamUsersNats",
    "Operator",
    "OperatorNats",
    "Pki",
    "PlainNats",
    "SecureMosquitto",
    "SecureNats",
    "SecureRabbit",
    "make_nkey_user",
    "make_operator",
    "make_pki",
]

USER, PASSWORD = "gw", "pw-Zq81-secret"
CLIENT_CN = "meshgate-client"
TOKEN = "tok-Hx92-secret"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path
    key_password_file: Path
    other_ca: Path  # a CA that signed nothing the brokers use


def make_pki(directory: Path) -> Pki:
    from cryptography.hazmat.primitives import serialization

    directory.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert(CLIENT_CN, common_name=CLIENT_CN)
    paths = {
        name: directory / f"{name}.pem"
        for name in ("ca", "server_cert", "server_key", "client_cert", "client_key", "other")
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    other.cert_pem.write_to_path(str(paths["other"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server_cert"]))
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
    password = "key-pass-Lm55"
    encrypted = directory / "client_key_encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
    )
    password_file = directory / "key-password"
    password_file.write_text(password + "\n")
    return Pki(
        ca=paths["ca"],
        server_cert=paths["server_cert"],
        server_key=paths["server_key"],
        client_cert=paths["client_cert"],
        client_key=paths["client_key"],
        client_key_encrypted=encrypted,
        key_password_file=password_file,
        other_ca=paths["other"],
    )


def make_nkey_user(directory: Path) -> tuple[str, Path]:
    """(public key, seed file) of a fresh NATS user nkey."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    path = directory / "user.nk"
    path.write_bytes(seed + b"\n")
    return public, path


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(issuer: nkeys.KeyPair, subject: str, name: str, claims: dict[str, object]) -> str:
    """A NATS JWT (v2): base64url JSON header and claims, signed by the issuer's nkey
    (ed25519) over ``header.claims``. ``jti`` is a hash of the claims, as nsc makes it."""
    body: dict[str, object] = {
        "jti": "",
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "name": name,
        "sub": subject,
        "nats": {**claims, "version": 2},
    }
    digest = hashlib.sha512(json.dumps(body).encode()).digest()[:32]
    body["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = {"typ": "JWT", "alg": "ed25519-nkey"}
    signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(body).encode())}"
    return f"{signing}.{_b64url(issuer.sign(signing.encode()))}"


def _keypair(prefix: int) -> tuple[bytes, nkeys.KeyPair]:
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    return seed, nkeys.from_seed(bytearray(seed))


_UNLIMITED = {"subs": -1, "data": -1, "payload": -1}


def _creds(path: Path, account: nkeys.KeyPair, name: str, allowed: str) -> Path:
    """A .creds file of a new user of ``account`` limited to ``allowed`` (and inboxes)."""
    seed, user = _keypair(nkeys.PREFIX_BYTE_USER)
    subjects = {"allow": [allowed, "_INBOX.>"]}
    token = _jwt(
        account,
        user.public_key.decode(),
        name,
        {"pub": subjects, "sub": subjects, **_UNLIMITED, "type": "user"},
    )
    path.write_text(
        f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n------END USER NKEY SEED------\n"
    )
    return path


@dataclass(frozen=True)
class Operator:
    """An operator, its one account, and credentials made for the tests."""

    operator_jwt: Path
    account_public: str
    account_jwt: str
    creds: Path  # a user of the account, limited to ok.>
    user_seed: str  # that user's seed (secret: must never be printed)
    stranger_creds: Path  # a user signed by an account the operator never issued


def make_operator(directory: Path) -> Operator:
    directory.mkdir(parents=True, exist_ok=True)
    _, operator = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    operator_jwt = directory / "operator.jwt"
    operator_jwt.write_text(
        _jwt(operator, operator.public_key.decode(), "meshgate-test", {"type": "operator"})
    )
    _, account = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    limits = {**_UNLIMITED, "imports": -1, "exports": -1, "wildcards": True, "conn": -1}
    account_jwt = _jwt(
        operator,
        account.public_key.decode(),
        "gateways",
        {"limits": {**limits, "leaf": -1}, "type": "account"},
    )
    creds = _creds(directory / "gw.creds", account, "gw", "ok.>")
    seed = creds.read_text().split("-----BEGIN USER NKEY SEED-----\n")[1].split("\n")[0]
    _, rogue = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    return Operator(
        operator_jwt=operator_jwt,
        account_public=account.public_key.decode(),
        account_jwt=account_jwt,
        creds=creds,
        user_seed=seed,
        stranger_creds=_creds(directory / "stranger.creds", rogue, "stranger", "ok.>"),
    )


def _permissions(allowed: str) -> str:
    return (
        f'{{publish: {{allow: ["{allowed}", "_INBOX.>"]}}, '
        f'subscribe: {{allow: ["{allowed}", "_INBOX.>"]}}}}'
    )


class SecureNats(BrokerProcess):
    """nats-server with TLS and either users (with permissions, an nkey) or a token."""

    name = "nats-tls"

    def __init__(self, pki: Pki, *, verify: bool, nkey: str | None = None) -> None:
        super().__init__()
        self.pki, self.verify, self.nkey = pki, verify, nkey

    @property
    def url(self) -> str:
        return f"tls://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        pki = self.pki
        if self.nkey is None:
            auth = f'authorization {{ token: "{TOKEN}" }}'
        else:
            users = [
                f'{{user: "{USER}", password: "{PASSWORD}", permissions: {_permissions("ok.>")}}}',
                f'{{nkey: "{self.nkey}", permissions: {_permissions("ok.>")}}}',
            ]
            auth = "authorization { users: [\n  " + ",\n  ".join(users) + "\n] }"
        conf = self.workdir / "nats.conf"
        conf.write_text(
            f"listen: {LOOPBACK}:{self.port}\n"
            "tls {\n"
            f'  cert_file: "{pki.server_cert}"\n'
            f'  key_file: "{pki.server_key}"\n'
            f'  ca_file: "{pki.ca}"\n'
            f"  verify: {'true' if self.verify else 'false'}\n"
            "  timeout: 2\n"
            "}\n" + auth + "\n"
        )
        return [str(nats_server_binary()), "-c", str(conf)]


class OperatorNats(BrokerProcess):
    """nats-server in operator mode (JWT auth from .creds files) with TLS."""

    name = "nats-operator"

    def __init__(self, pki: Pki, operator: Operator) -> None:
        super().__init__()
        self.pki, self.operator = pki, operator

    @property
    def url(self) -> str:
        return f"tls://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        pki, op = self.pki, self.operator
        conf = self.workdir / "nats.conf"
        conf.write_text(
            f"listen: {LOOPBACK}:{self.port}\n"
            "tls {\n"
            f'  cert_file: "{pki.server_cert}"\n'
            f'  key_file: "{pki.server_key}"\n'
            "  timeout: 2\n"
            "}\n"
            f'operator: "{op.operator_jwt}"\n'
            "resolver: MEMORY\n"
            f'resolver_preload: {{ {op.account_public}: "{op.account_jwt}" }}\n'
        )
        return [str(nats_server_binary()), "-c", str(conf)]


class JetStreamUsersNats(BrokerProcess):
    """nats-server with JetStream and two users: ``admin`` (everything) and ``gw``, who
    may read stream and consumer info but not create consumers or pull, until
    :meth:`grant_consumers` rewrites the config and reloads it (SIGHUP)."""

    name = "nats-js-users"
    ADMIN = ("admin", "admin-Pw31")
    _LOOKUP = ("$JS.API.INFO", "$JS.API.STREAM.INFO.>", "$JS.API.CONSUMER.INFO.>")
    _CONSUME = ("$JS.API.CONSUMER.>", "$JS.ACK.>")

    def __init__(self) -> None:
        super().__init__()
        self.granted = False

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    def _config(self) -> Path:
        allowed = ["_INBOX.>", *self._LOOKUP, *(self._CONSUME if self.granted else ())]
        publish = ", ".join(f'"{subject}"' for subject in allowed)
        conf = self.workdir / "nats.conf"
        conf.write_text(
            f"listen: {LOOPBACK}:{self.port}\n"
            f'jetstream {{ store_dir: "{self.workdir / "js"}" }}\n'
            "authorization { users: [\n"
            f'  {{user: "{self.ADMIN[0]}", password: "{self.ADMIN[1]}"}},\n'
            f'  {{user: "{USER}", password: "{PASSWORD}", permissions: '
            f'{{publish: {{allow: [{publish}]}}, subscribe: {{allow: ["_INBOX.>"]}}}}}}\n'
            "] }\n"
        )
        return conf

    def command(self) -> list[str]:
        return [str(nats_server_binary()), "-c", str(self._config())]

    def grant_consumers(self) -> None:
        """Let ``gw`` create consumers, pull and ack: a config reload, no restart."""
        self.granted = True
        self._config()
        os.kill(self.pid, signal.SIGHUP)


class PlainNats(BrokerProcess):
    """A plaintext nats-server (the downgrade tests point tls:// URLs at it)."""

    name = "nats-plain"

    def command(self) -> list[str]:
        return [str(nats_server_binary()), "-a", LOOPBACK, "-p", str(self.port)]


class SecureMosquitto(BrokerProcess):
    """Mosquitto: TLS + password (``port``), mTLS (``mtls_port``), plaintext (``plain_port``)."""

    name = "mosquitto-tls"

    def __init__(self, pki: Pki) -> None:
        super().__init__()
        self.pki = pki
        self.mtls_port = free_port()
        self.plain_port = free_port()

    def ready(self) -> bool:
        return all(port_open(p) for p in (self.port, self.mtls_port, self.plain_port))

    def command(self) -> list[str]:
        pki, work = self.pki, self.workdir
        passwords = work / "passwords"
        passwords.write_text("")
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwords), USER, PASSWORD],
            check=True,
            capture_output=True,
        )
        (work / "acl").write_text(
            f"user {USER}\ntopic readwrite ok/#\ntopic read ro/#\n\n"
            f"user {CLIENT_CN}\ntopic readwrite ok/#\n"
        )
        tls = [
            f"cafile {pki.ca}",
            f"certfile {pki.server_cert}",
            f"keyfile {pki.server_key}",
        ]
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwords}",
            f"acl_file {work / 'acl'}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            f"listener {self.port} {LOOPBACK}",
            *tls,
            f"listener {self.mtls_port} {LOOPBACK}",
            *tls,
            "require_certificate true",
            "use_identity_as_username true",
            f"listener {self.plain_port} {LOOPBACK}",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")  # else it drops to 'mosquitto', unable to read here
        conf = work / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        return [binary, "-c", str(conf)]


def _rabbit_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


class SecureRabbit(PrivateRabbit):
    """A private RabbitMQ node: TLS listener on ``port`` (client certificates verified
    when presented; EXTERNAL login by the certificate's CN), users ``gw`` (password) and
    ``meshgate-client`` (certificate), both limited to ``ok.*`` resources and the
    default exchange, and a plaintext listener on ``plain_port``."""

    name = "rabbitmq-tls"

    def __init__(self, pki: Pki) -> None:
        super().__init__()
        self.plain_port = free_port()
        permissions = {
            "vhost": "/",
            "configure": "^ok\\..*",
            "read": "^ok\\..*",
            "write": "^(ok\\..*|amq\\.default)$",
        }
        users = [(USER, _rabbit_hash(PASSWORD)), (CLIENT_CN, "")]
        definitions = {
            "vhosts": [{"name": "/"}],
            "users": [
                {
                    "name": name,
                    "password_hash": hashed,
                    "hashing_algorithm": "rabbit_password_hashing_sha256",
                    "tags": "",
                }
                for name, hashed in users
            ],
            "permissions": [{"user": name, **permissions} for name, _ in users],
        }
        (self.workdir / "definitions.json").write_text(json.dumps(definitions))
        (self.workdir / "plugins").write_text("[rabbitmq_auth_mechanism_ssl].\n")
        (self.workdir / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.local = {LOOPBACK}:{self.plain_port}",
                    f"listeners.ssl.local = {LOOPBACK}:{self.port}",
                    f"ssl_options.cacertfile = {pki.ca}",
                    f"ssl_options.certfile = {pki.server_cert}",
                    f"ssl_options.keyfile = {pki.server_key}",
                    "ssl_options.verify = verify_peer",
                    "ssl_options.fail_if_no_peer_cert = false",
                    "auth_mechanisms.1 = PLAIN",
                    "auth_mechanisms.2 = EXTERNAL",
                    "ssl_cert_login_from = common_name",
                    f"load_definitions = {self.workdir / 'definitions.json'}",
                    "loopback_users = none",
                ]
            )
            + "\n"
        )

    @property
    def url(self) -> str:
        return f"amqps://{USER}:{PASSWORD}@{LOOPBACK}:{self.port}/"

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["RABBITMQ_NODE_PORT"] = str(self.plain_port)
        return env
