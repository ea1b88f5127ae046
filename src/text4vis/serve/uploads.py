"""A request's input: the multipart upload streamed into the private folder, its form fields checked,
and the HTTP errors they raise."""
from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field

from ..errors import ClassifierError, LabelsError, Text4VisError, UsageError, VideoError, WeightsError, first_line

FIELD_LIMIT = 64 * 1024          # bytes of one non-file form field (labels, topk, ...)
MAX_LABELS = 2000                # custom labels per request
MAX_VIEWS = 30                   # clips x crops per request
PARAMETERS = {"video", "labels", "topk", "views"}
TIMELINE_PARAMETERS = {"video", "labels", "topk", "window", "stride", "min_score", "smooth"}
SEARCH_PARAMETERS = {"video", "k"}


class HTTPError(Text4VisError):
    """An answer other than 200: status, one-line message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def status_of(exc: BaseException) -> int:
    """HTTP status of a library error: 422 for videos, 400 for what the client asked, else 500."""
    if isinstance(exc, HTTPError):
        return exc.status
    if isinstance(exc, VideoError):
        return 422
    if isinstance(exc, (UsageError, LabelsError, ClassifierError, WeightsError, ValueError)):
        return 400
    return 500


@dataclass
class Upload:
    path: str | None = None            # the file in the private folder
    name: str = ""                     # what the client called it (a label only)
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


def _display_name(filename: str) -> str:
    """The client's file name as a label: its last component, printable, at most 200 characters."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = "".join(c for c in base if c.isprintable()).strip()
    return base[:200] or "upload"


async def read_upload(request, folder: str, max_bytes: int, allowed: set[str]) -> Upload:
    """Stream a multipart/form-data body: the one file field `video` goes into `folder` under a
    random name, counted against `max_bytes` as it arrives (413 the moment it is exceeded); other
    fields are small text values. The caller deletes upload.path."""
    from python_multipart.multipart import MultipartParser, parse_options_header
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise HTTPError(400, "send the video as multipart/form-data (a file field named video)")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + FIELD_LIMIT * 4:
        raise HTTPError(413, f"upload of {int(length)} bytes is over the limit of {max_bytes} bytes")
    up = Upload()
    part = {"headers": {}, "field": b"", "value": b"", "name": None, "file": None, "data": None}

    def on_header_field(data, start, end):
        part["field"] += data[start:end]

    def on_header_value(data, start, end):
        part["value"] += data[start:end]

    def on_header_end():
        part["headers"][part["field"].decode("latin-1").lower()] = part["value"]
        part["field"] = part["value"] = b""

    def on_headers_finished():
        _, disp = parse_options_header(part["headers"].get("content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        if name not in allowed:
            raise HTTPError(400, f"unknown form field {name!r}: send {', '.join(sorted(allowed))}")
        if name in up.fields or (name == "video" and up.path):
            raise HTTPError(400, f"form field {name!r} is sent twice")
        part["name"] = name
        if name == "video":
            if b"filename" not in disp:
                raise HTTPError(400, "form field 'video' must be a file")
            up.name = _display_name(disp[b"filename"].decode("utf-8", "replace"))
            # a random name with no extension of the client's: FFmpeg picks the demuxer by content alone
            up.path = os.path.join(folder, uuid.uuid4().hex + ".upload")
            part["file"] = open(up.path, "xb")
        else:
            part["data"] = bytearray()

    def on_part_data(data, start, end):
        if part["file"] is not None:
            up.size += end - start
            if up.size > max_bytes:
                raise HTTPError(413, f"upload is over the limit of {max_bytes} bytes")
            part["file"].write(data[start:end])
        else:
            part["data"] += data[start:end]
            if len(part["data"]) > FIELD_LIMIT:
                raise HTTPError(400, f"form field {part['name']!r} is over {FIELD_LIMIT} bytes")

    def on_part_end():
        if part["file"] is not None:
            part["file"].close()
        else:
            try:
                up.fields[part["name"]] = bytes(part["data"]).decode("utf-8")
            except UnicodeDecodeError:
                raise HTTPError(400, f"form field {part['name']!r} is not UTF-8 text") from None
        part.update(headers={}, name=None, file=None, data=None)

    parser = MultipartParser(boundary, dict(
        on_header_field=on_header_field, on_header_value=on_header_value, on_header_end=on_header_end,
        on_headers_finished=on_headers_finished, on_part_data=on_part_data, on_part_end=on_part_end))
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BaseException as exc:  # the partial file goes at once (413, a bad field, a client that went away)
        if part["file"] is not None:
            part["file"].close()
        if up.path:
            remove_file(up.path)
        if isinstance(exc, Exception) and not isinstance(exc, HTTPError):  # python-multipart's parse errors
            raise HTTPError(400, f"malformed multipart body ({first_line(exc)})") from None
        raise
    if not up.path:
        raise HTTPError(400, "no video: send the file in a form field named video")
    if up.size == 0:
        remove_file(up.path)
        raise HTTPError(422, f"{up.name}: empty file (0 bytes)")
    return up


def int_field(fields: dict, name: str, default: int, least: int, most: int) -> int:
    text = fields.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPError(400, f"{name} must be a whole number (got {text[:40]!r})") from None
    if not least <= value <= most:
        raise HTTPError(400, f"{name} must be between {least} and {most} (got {value})")
    return value


def parse_options(fields: dict) -> dict:
    """topk, views and labels of a request, checked (HTTPError 400)."""
    from ..labels import parse_labels
    from ..sampling import parse_views
    topk = int_field(fields, "topk", 5, 1, 1000)
    views = fields.get("views", "").strip() or "1x1"
    try:
        clips, crops = parse_views(views)
    except ValueError as exc:
        raise HTTPError(400, str(exc)) from None
    if clips * crops > MAX_VIEWS:
        raise HTTPError(400, f"views {views}: at most {MAX_VIEWS} views (clips x crops) per request")
    labels = None
    if fields.get("labels", "").strip():
        try:
            labels = tuple(parse_labels(fields["labels"], "labels"))
        except LabelsError as exc:
            raise HTTPError(400, str(exc)) from None
        if len(labels) > MAX_LABELS:
            raise HTTPError(400, f"labels: at most {MAX_LABELS} custom labels (got {len(labels)})")
    return {"topk": topk, "clips": clips, "crops": crops, "labels": labels}


def _float_field(fields: dict, name: str, default: float, least: float, most: float, strict: bool = False) -> float:
    text = fields.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise HTTPError(400, f"{name} must be a number (got {text[:40]!r})") from None
    if not (least < value <= most if strict else least <= value <= most):
        raise HTTPError(400, f"{name} must be {'over' if strict else 'at least'} {least:g} and at most {most:g} "
                             f"(got {text[:40]})")
    return value


def parse_timeline(fields: dict) -> dict:
    """window, stride, min_score, smooth (and topk, labels) of a timeline request, checked (HTTPError 400)."""
    opts = parse_options({k: v for k, v in fields.items() if k in ("topk", "labels")})
    opts.update(window=_float_field(fields, "window", 4.0, 0, 3600, strict=True),
                stride=_float_field(fields, "stride", 2.0, 0, 3600, strict=True),
                min_score=_float_field(fields, "min_score", 0.0, 0, 1), smooth=int_field(fields, "smooth", 1, 0, 100))
    return opts


def remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
