"""TLS and mutual TLS with the official clients: llama-stack-client and the openai SDK over
HTTPS against the real binary, with a CA, a server and a client certificate made in the test
(`cryptography`, already in the venv).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import openai
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from llama_stack_client import LlamaStackClient

from e2e_support import SERVED_MODEL, Server


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool = False,
          ip: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip)),
                                         x509.DNSName("localhost")]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, "test-ca", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("llama-stack", server_key, "test-ca", ca_key, ip="127.0.0.1")
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("client", client_key, "test-ca", ca_key)
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(_pem_key(server_key))
    (d / "client.pem").write_bytes(client.public_bytes(serialization.Encoding.PEM))
    (d / "client.key").write_bytes(_pem_key(client_key))
    return d


def tls_server(server_factory, tiny_model_dir, pki: Path, tmp_path_factory, *, mutual: bool,
               name: str) -> Server:
    """The local distribution's run.yaml with the test's certificates added."""
    from e2e_support import LOCAL_RUN_YAML

    config = yaml.safe_load(Path(LOCAL_RUN_YAML).read_text())
    config["server"] = {**(config.get("server") or {}),
                        "tls_certfile": str(pki / "server.pem"),
                        "tls_keyfile": str(pki / "server.key")}
    if mutual:
        config["server"]["tls_cafile"] = str(pki / "ca.pem")
    path = tmp_path_factory.mktemp(name) / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    server = server_factory(name, run_config=str(path))
    # The harness's health check speaks plain HTTP; wait on HTTPS instead.
    server.wait_healthy = lambda timeout=120: _wait_https(server, pki, mutual, timeout)
    return server.start()


def _https_get(url: str, pki: Path, mutual: bool) -> requests.Response:
    # Per request: a Session's `verify` loses to REQUESTS_CA_BUNDLE in the environment.
    cert = (str(pki / "client.pem"), str(pki / "client.key")) if mutual else None
    return requests.get(url, verify=str(pki / "ca.pem"), cert=cert, timeout=2)


def _wait_https(server: Server, pki: Path, mutual: bool, timeout: float) -> None:
    import time

    last = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log_tail()
        try:
            if _https_get(f"https://127.0.0.1:{server.port}/v1/health", pki, mutual).ok:
                return
        except requests.RequestException as exc:
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"no HTTPS answer ({last!r})\n{server.log_tail(5)}")


def _ssl_context(pki: Path, mutual: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if mutual:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return context


def test_the_official_clients_work_over_https(server_factory, tiny_model_dir, pki,
                                               tmp_path_factory):
    server = tls_server(server_factory, tiny_model_dir, pki, tmp_path_factory, mutual=False,
                        name="tls")
    base = f"https://127.0.0.1:{server.port}"
    client = LlamaStackClient(base_url=base,
                              http_client=httpx.Client(verify=_ssl_context(pki, False)))
    assert [m.identifier for m in client.models.list()] == [f"candle/{SERVED_MODEL}"]
    oa = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0,
                       http_client=httpx.Client(verify=_ssl_context(pki, False)))
    chat = oa.chat.completions.create(model=SERVED_MODEL, max_tokens=2,
                                      messages=[{"role": "user", "content": "Hi"}])
    assert chat.usage.completion_tokens == 2
    # A client that does not trust the CA refuses the server, and plain HTTP gets no answer.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{base}/v1/health", timeout=5)
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{server.port}/v1/health", timeout=5)
    server.stop()


def test_mutual_tls_needs_a_client_certificate_from_the_ca(server_factory, tiny_model_dir, pki,
                                                           tmp_path_factory):
    server = tls_server(server_factory, tiny_model_dir, pki, tmp_path_factory, mutual=True,
                        name="mtls")
    base = f"https://127.0.0.1:{server.port}"
    oa = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0,
                       http_client=httpx.Client(verify=_ssl_context(pki, True)))
    assert [m.id for m in oa.models.list().data] == [f"candle/{SERVED_MODEL}"]
    without_cert = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0,
                                 http_client=httpx.Client(verify=_ssl_context(pki, False)))
    with pytest.raises(openai.APIConnectionError):
        without_cert.models.list()
    server.stop()
