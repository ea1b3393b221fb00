"""A throwaway CA, server and client certificates for a TLS-only DinD daemon."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    """PEM files as the docker CLI names them (ca.pem, server-cert.pem, cert.pem, ...)."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server-cert.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "key.pem"

    def server_files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (self.ca, self.server_cert, self.server_key)}


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _subject_alt_names(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
    names: list[str] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if names:
        builder = builder.add_extension(_subject_alt_names(names), critical=False)
    return _with_key_identifiers(builder, key, ca_key).sign(ca_key, hashes.SHA256())


def _with_key_identifiers(
    builder: x509.CertificateBuilder,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.CertificateBuilder:
    """Subject and authority key identifiers: Python 3.13's strict X.509 checks need them."""
    return builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
        critical=False,
    )


def make_tls_files(directory: Path, server_names: list[str]) -> TlsFiles:
    """Write a CA, a server certificate valid for ``server_names`` and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory)
    ca_key = _key()
    now = dt.datetime.now(dt.UTC)
    ca_builder = (
        x509.CertificateBuilder()
        .subject_name(_name("fleet canary CA"))
        .issuer_name(_name("fleet canary CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    ca_cert = _with_key_identifiers(ca_builder, ca_key, ca_key).sign(ca_key, hashes.SHA256())
    server_key, client_key = _key(), _key()
    server_cert = _issue(
        "dind", server_key, ca_cert, ca_key, ExtendedKeyUsageOID.SERVER_AUTH, server_names
    )
    client_cert = _issue("canary", client_key, ca_cert, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.server_cert.write_bytes(server_cert.public_bytes(pem))
    files.server_key.write_bytes(_pem_key(server_key))
    files.client_cert.write_bytes(client_cert.public_bytes(pem))
    files.client_key.write_bytes(_pem_key(client_key))
    for key_file in (files.server_key, files.client_key):
        key_file.chmod(0o600)
    return files
