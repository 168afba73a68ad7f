"""Where the Lambda handler gets the MongoDB URI: Secrets Manager, SSM Parameter Store, or the
environment.

A URI in a plain environment variable is visible to anyone who can read the function's
configuration (``lambda:GetFunctionConfiguration``), so the deployment template
(deploy/template.yaml) passes only the secret's ARN: ``MONGODB_URI_SECRET_ARN`` (Secrets Manager
``GetSecretValue``; the secret is the URI itself, or a JSON object whose ``uri`` key holds it, the
shape the console's "other type of secret" key/value editor writes) or ``MONGODB_URI_PARAMETER``
(an SSM SecureString read with ``WithDecryption``). ``MONGODB_URI`` stays for local runs. The value
is read once per container (handler.py caches what it builds); it never appears in an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from replicator.errors import ConfigurationError

SECRET_ARN = "MONGODB_URI_SECRET_ARN"
PARAMETER = "MONGODB_URI_PARAMETER"
PLAIN = "MONGODB_URI"
#: every variable that can name the URI, in the order they are tried
VARIABLES = (SECRET_ARN, PARAMETER, PLAIN)

ClientFactory = Callable[[str], Any]


def _boto3_client(service: str) -> Any:
    import boto3

    return boto3.client(service)


def configured(environ: Mapping[str, str]) -> bool:
    return any(environ.get(name) for name in VARIABLES)


def mongodb_uri(environ: Mapping[str, str], client: ClientFactory | None = None) -> str:
    """The URI from the first variable set of ``VARIABLES``; ``client(service)`` makes the AWS
    clients (default: boto3's default session, i.e. the function's execution role)."""
    client = client or _boto3_client
    if environ.get(SECRET_ARN):
        arn = environ[SECRET_ARN]
        try:
            answer = client("secretsmanager").get_secret_value(SecretId=arn)
        except Exception as error:  # the error names the ARN and the AWS code, not a value
            raise ConfigurationError(
                f"cannot read the secret {SECRET_ARN}={arn}: {type(error).__name__}: {error}"
            ) from None
        return _from_secret(answer.get("SecretString"), arn)
    if environ.get(PARAMETER):
        name = environ[PARAMETER]
        try:
            answer = client("ssm").get_parameter(Name=name, WithDecryption=True)
        except Exception as error:
            raise ConfigurationError(
                f"cannot read the parameter {PARAMETER}={name}: {type(error).__name__}: {error}"
            ) from None
        value = answer.get("Parameter", {}).get("Value")
        return _checked(value, f"parameter {name}")
    if environ.get(PLAIN):
        return environ[PLAIN]
    raise ConfigurationError(f"set one of {', '.join(VARIABLES)}")


def _from_secret(text: Any, arn: str) -> str:
    if not isinstance(text, str):
        raise ConfigurationError(f"secret {arn} has no SecretString (a binary secret?)")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except json.JSONDecodeError:
            raise ConfigurationError(f"secret {arn} looks like JSON but does not parse") from None
        if not isinstance(document, dict) or "uri" not in document:
            raise ConfigurationError(f'secret {arn} is a JSON object without a "uri" key')
        return _checked(document["uri"], f"secret {arn}")
    return _checked(stripped, f"secret {arn}")


def _checked(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith(("mongodb://", "mongodb+srv://")):
        # Say what is wrong without echoing the value (it may be a password pasted alone).
        raise ConfigurationError(f"{where} does not hold a mongodb:// or mongodb+srv:// URI")
    return value
