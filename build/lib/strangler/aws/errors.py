"""AWS failures, translated at the edge into one operator-readable ``AwsError``.

Invariants:
- Nothing outside ``strangler.aws`` sees a botocore exception: every AWS call runs inside
  ``aws_call``, which turns ``ClientError`` and ``BotoCoreError`` into ``AwsError``.
- ``AwsError.reason`` starts with what was being looked at (``Amazon MQ broker b-... in
  eu-west-1``, ``secret prod/strangler``) and says what to do: an access denial names the
  exact IAM action the proxy's identity lacks.
- No reason contains a secret value: AWS error messages name principals, actions and
  resources, never secret contents, and callers never pass secret material in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)


class AwsError(Exception):
    """An AWS call strangler depends on failed; ``reason`` says why and what to do."""

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


# IAM said no. Amazon MQ answers 403 ForbiddenException or AccessDeniedException, Secrets
# Manager AccessDeniedException; older query APIs say AccessDenied.
_DENIED: Final = frozenset(
    {"AccessDenied", "AccessDeniedException", "ForbiddenException", "UnauthorizedOperation"}
)
# The credentials themselves were refused (wrong key, expired session), not the action.
_BAD_CREDENTIALS: Final = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnauthorizedException",
    }
)
_NOT_FOUND: Final = frozenset({"NotFoundException", "ResourceNotFoundException"})
_THROTTLED: Final = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "Throttling", "RequestLimitExceeded"}
)
# Secrets Manager could read the secret but KMS would not decrypt it for this identity.
_KMS: Final = frozenset({"DecryptionFailure", "KMSAccessDeniedException"})


@contextmanager
def aws_call(action: str | None, subject: str, *, not_found: str | None = None) -> Iterator[None]:
    """Run one AWS interaction, raising ``AwsError`` instead of any botocore exception.

    ``action`` is the IAM action the call needs (``mq:DescribeBroker``), named when access is
    denied; None for local steps such as creating a client. ``not_found`` replaces the
    reason when AWS says the resource does not exist.
    """
    try:
        yield
    except ClientError as e:
        raise AwsError(client_error_reason(e, action, subject, not_found)) from e
    except BotoCoreError as e:
        raise AwsError(botocore_error_reason(e, action, subject)) from e


def client_error_reason(
    error: ClientError, action: str | None, subject: str, not_found: str | None = None
) -> str:
    """The ``AwsError`` reason for an error AWS answered with."""
    details = error.response.get("Error", {})
    code = details.get("Code", "Unknown")
    message = details.get("Message", "")
    said = f" (AWS said: {message})" if message else ""
    if code in _DENIED:
        need = f"IAM permission {action}" if action else "an IAM permission it lacks"
        return f"{subject}: access denied; the proxy's AWS identity needs {need}{said}"
    if code in _KMS:
        return (
            f"{subject}: cannot decrypt it; the proxy's AWS identity needs kms:Decrypt on "
            f"the secret's KMS key{said}"
        )
    if code in _BAD_CREDENTIALS:
        return (
            f"{subject}: AWS rejected the proxy's credentials ({code}); check the access "
            f"key, AWS_PROFILE or whether the session token expired{said}"
        )
    if code in _NOT_FOUND:
        return not_found or f"{subject}: not found{said}"
    if code in _THROTTLED:
        return f"{subject}: throttled by AWS ({code}) even after retries; try again later"
    what = f"{action} failed" if action else "failed"
    return f"{subject}: {what}: {code}{said}"


def botocore_error_reason(error: BotoCoreError, action: str | None, subject: str) -> str:
    """The ``AwsError`` reason for a failure before or instead of an AWS answer."""
    if isinstance(error, NoCredentialsError):
        return (
            f"{subject}: no AWS credentials found; give the proxy an instance or task role, "
            "or set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(error, PartialCredentialsError):
        return f"{subject}: incomplete AWS credentials: {error}"
    if isinstance(error, NoRegionError):
        return (
            f"{subject}: no AWS region; set 'region:' in routes.yaml, "
            "or AWS_REGION / AWS_DEFAULT_REGION for the proxy"
        )
    if isinstance(error, ConnectTimeoutError | ReadTimeoutError):
        url = str(error.kwargs.get("endpoint_url", "AWS"))
        return f"{subject}: timed out talking to {url}; check network access to AWS"
    if isinstance(error, EndpointConnectionError | BotoConnectionError):
        url = str(error.kwargs.get("endpoint_url", "AWS"))
        return (
            f"{subject}: cannot reach {url}; check the proxy's network path to AWS "
            "(VPC endpoint, NAT gateway, HTTPS proxy)"
        )
    what = f"{action} failed" if action else "AWS SDK error"
    return f"{subject}: {what}: {error}"
