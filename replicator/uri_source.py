"""Where the Lambda handler gets the MongoDB URI: Secrets Manager, SSM Parameter Store, or the
environment.

A URI in a plain environment variable is visible to anyone who can read the function's
configuration (``lambda:GetFunctionConfiguration``), so the deployment template
(deploy/template.yaml) passes only the secret's ARN: ``MONGODB_URI_SECRET_ARN`` (Secrets Manager
``GetSecretValue``; the secret is the URI itself, or a JSON object whose ``uri`` key holds it, the
shape the console's "other type of secret" key/value editor writes) or ``MONGODB_URI_PARAMETER``
(an SSM SecureString read with ``WithDecryption``). ``MONGODB_URI`` stays for local runs. The value
is read once per container (handler.py caches what it builds); it never appears in an error.

Every URI, whatever its source, goes through :func:`checked_uri` at cold start: surrounding
whitespace is removed (a value pasted into SSM or a JSON secret keeps its trailing newline, and
``...?w=majority\n`` then fails every write with an unknown write concern; a URI cannot contain
raw whitespace, RFC 3986, so removing it changes nothing else), whitespace or a control character
inside it is refused, and so is what pymongo's URI parser refuses (MongoClient only warns about
an unknown option or a bad option value, and ignores it). The error names the source -- the
variable, the secret's ARN, the parameter's name -- never the value.
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
        return checked_uri(value, f"{PARAMETER}={name}")
    if environ.get(PLAIN):
        return checked_uri(environ[PLAIN], PLAIN)
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
        return checked_uri(document["uri"], f"secret {arn} (its \"uri\" key)")
    return checked_uri(stripped, f"secret {arn}")


def checked_uri(value: Any, source: str) -> str:
    """``value`` without surrounding whitespace, once it is a URI pymongo's parser accepts;
    :class:`ConfigurationError` naming ``source`` (a variable, a secret's ARN, a parameter's name,
    an option) otherwise. Neither the value nor a part of it is ever in the message."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{source} does not hold a text value (a MongoDB URI)")
    uri = value.strip()
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        # Say what is wrong without echoing the value (it may be a password pasted alone).
        raise ConfigurationError(f"{source} does not hold a mongodb:// or mongodb+srv:// URI")
    if any(character.isspace() or not character.isprintable() for character in uri):
        raise ConfigurationError(
            f"{source}: the MongoDB URI has whitespace or a control character inside it (a URI "
            "carries them percent-encoded, e.g. a space as %20)")
    problem = _parser_refusal(uri)
    if problem is not None:
        raise ConfigurationError(f"{source}: the MongoDB URI is not usable (pymongo's URI "
                                 f"parser: {problem})")
    return uri


def _parser_refusal(uri: str) -> str | None:
    """What pymongo's URI parser says against ``uri`` (redacted), or None."""
    from pymongo.errors import ConfigurationError as MongoConfigurationError
    from pymongo.errors import InvalidURI

    from replicator.redact import redact, secrets_of

    try:
        if uri.startswith("mongodb+srv://"):
            # parse_uri looks an SRV URI's hosts up in DNS; validation stays offline with the
            # step parse_uri runs before that lookup (pymongo >= 4.11 keeps it in
            # uri_parser_shared; older ones: not checked here, MongoClient still checks).
            try:
                from pymongo.uri_parser_shared import _validate_uri
            except ImportError:
                return None
            _validate_uri(uri)
        else:
            from pymongo.uri_parser import parse_uri

            parse_uri(uri)
    except (InvalidURI, MongoConfigurationError, ValueError) as error:
        # pymongo's messages name the option, not its value; masked anyway, whole URI included.
        return redact(str(error), [uri, *secrets_of(uri, {})]) or type(error).__name__
    return None
