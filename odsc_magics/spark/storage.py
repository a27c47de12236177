"""Files that Python workers write and read directly: local paths, or any fsspec URL (oci://, s3a://, ...)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from odsc_magics.errors import ConfigurationError, ValidationError

# The fsspec package that serves each object-store scheme Spark users write (oci:// is the HDFS connector's
# form, oci://bucket@namespace/path, which ocifs reads the same way).
_PACKAGES = {"oci": "ocifs", "s3a": "s3fs", "s3": "s3fs", "gs": "gcsfs", "abfs": "adlfs", "abfss": "adlfs"}


def is_local(path: str) -> bool:
    """A path on this machine's file system (no scheme, or file:)."""
    scheme = urlparse(path).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(path: str) -> str:
    """``file:/x`` and ``file:///x`` → ``/x``; plain paths expanded (``~``)."""
    if path.startswith("file:"):
        return urlparse(path).path
    return os.path.expanduser(path)


class Storage:
    """Write-once files under one directory: create, list by prefix, read; never rename or overwrite."""

    def __init__(self, root: str, *, options: dict[str, Any] | None = None) -> None:
        self.root = root.rstrip("/")
        self.local = is_local(root)
        self._fs: Any = None
        self._options = options or {}
        self._bucket_seen = False
        if self.local:
            self.root = local_path(self.root)

    @property
    def fs(self) -> Any:
        if self._fs is None:
            scheme = urlparse(self.root).scheme
            try:
                import fsspec

                self._fs = fsspec.filesystem(scheme, **self._options)
            except ImportError as exc:
                package = _PACKAGES.get(scheme, f"the fsspec implementation of {scheme}://")
                raise ValidationError(
                    f"the checkpoint {self.root} needs {package} on the executors ({exc})",
                    hint=f"Add {package} to the job's Python dependencies (odsc-magics dataflow-archive adds "
                    "ocifs for oci:// paths), or pass a checkpoint path of a file system they have.",
                ) from None
        return self._fs

    def join(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def write_once(self, path: str, data: bytes) -> None:
        """Create ``path`` holding ``data``; an existing file is an error, never overwritten."""
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return
        # An object store's PUT is atomic: a reader sees the whole object or none.
        with self.fs.open(path, "wb") as fh:
            fh.write(data)

    def list(self, directory: str) -> list[str]:
        """The files directly under ``directory`` (absolute paths, sorted); none when it does not exist."""
        if self.local:
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                return []
            return sorted(os.path.join(directory, name) for name in names if not name.startswith((".", "_")))
        fs = self.fs
        try:
            found = fs.ls(directory, detail=False)
        except FileNotFoundError:
            self._check_bucket()
            return []
        except Exception as exc:
            raise self._unreachable(exc) from exc
        return sorted(self._url(item) for item in found if not os.path.basename(str(item)).startswith((".", "_")))

    def list_all(self, under: str | None = None) -> list[str]:
        """Every file under ``under`` (default: the root), at any depth."""
        top = under or self.root
        if self.local:
            files: list[str] = []
            for directory, _, names in os.walk(top):
                files.extend(os.path.join(directory, n) for n in names if not n.startswith((".", "_")))
            return sorted(files)
        fs = self.fs
        try:
            found = fs.find(top)
        except FileNotFoundError:
            self._check_bucket()
            return []
        except Exception as exc:
            raise self._unreachable(exc) from exc
        return sorted(self._url(p) for p in found if not os.path.basename(str(p)).startswith((".", "_")))

    def _check_bucket(self) -> None:
        """A directory not written yet lists as empty; a bucket that is not there is a wrong checkpoint."""
        if self._bucket_seen:
            return
        parsed = urlparse(self.root)
        try:
            found = self.fs.exists(f"{parsed.scheme}://{parsed.netloc}")
        except Exception as exc:
            raise self._unreachable(exc) from exc
        if not found:
            raise ValidationError(
                f"checkpoint {self.root}: the bucket {parsed.netloc!r} does not exist (or these credentials may not "
                "see it)",
                hint="Fix the bucket's name in checkpoint=, or create the bucket; the driver and the executors need "
                "credentials that can list, read and create objects in it.",
            )
        self._bucket_seen = True

    def _unreachable(self, exc: BaseException) -> ConfigurationError:
        reason = (str(exc).splitlines() or [""])[0][:300]
        return ConfigurationError(
            f"checkpoint {self.root} could not be listed: {type(exc).__name__}: {reason}",
            hint="Check the object store's endpoint and the credentials in the environment of the driver and the "
            "executors (s3a://: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; oci://: the resource "
            "principal or the OCI config), or pass a local checkpoint path.",
        )

    def _url(self, path: Any) -> str:
        """fsspec lists paths without their scheme; Spark and the next fsspec call want the full URL."""
        return self.fs.unstrip_protocol(str(path))

    def read(self, path: str) -> bytes:
        if self.local:
            with open(path, "rb") as fh:
                return fh.read()
        with self.fs.open(path, "rb") as fh:
            return fh.read()
