"""Real servers on 127.0.0.1 for the object-storage and URL tests: moto's S3 server (ThreadedMotoServer)
and an HTTP file server that answers Range requests (206) and counts the bytes it sends per file."""
from __future__ import annotations

import contextlib
import functools
import http.server
import logging
import os
import re
import shutil
import threading

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
          "AWS_CONFIG_FILE": os.devnull}


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range support (what fsspec's HTTP files need to read ranges)."""
    sent: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        m = re.match(r"bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
        start, end = 0, size - 1
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start, end = int(m.group(1)), min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            else:
                start = max(0, size - int(m.group(2)))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", self.date_time_string(int(os.path.getmtime(path))))
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(end - start + 1)
        self.wfile.write(data)
        RangeHandler.sent[os.path.basename(path)] = RangeHandler.sent.get(os.path.basename(path), 0) + len(data)


@contextlib.contextmanager
def http_server(folder):
    """http://127.0.0.1:PORT serving `folder` (Range requests answered)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def s3_server(files: dict[str, str]):
    """moto's S3 server on 127.0.0.1 holding `files` (key "bucket/name" -> local file); this process's
    environment points boto at it (AWS_ENDPOINT_URL_S3, test credentials) until the block ends."""
    import s3fs
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)      # no request log on stderr
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = dict(S3_ENV, AWS_ENDPOINT_URL_S3=f"http://{host}:{port}")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        for key, local in files.items():
            bucket = key.split("/", 1)[0]
            if not fs.exists(bucket):
                fs.mkdir(bucket)
            fs.put_file(local, key)
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def copy_videos(src_folder: str, names, dest) -> list[str]:
    os.makedirs(dest, exist_ok=True)
    return [shutil.copy(os.path.join(src_folder, n), os.path.join(dest, n)) for n in names]
