#!/usr/bin/env python3
"""serve.py ROOT REPORT - the page server for tests/browser/run.sh.

Serves the files in ROOT on 127.0.0.1 at a port the kernel picks (printed
on the first line of stdout) and stores the body of POST /report in the file
REPORT (written whole, then renamed into place). Request lines go to stderr.
Runs until killed.
"""
import functools
import http.server
import os
import sys

MAX_REPORT = 1 << 20


class Handler(http.server.SimpleHTTPRequestHandler):
    report = None

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if self.path != "/report" or n > MAX_REPORT:
            self.send_error(404 if self.path != "/report" else 413)
            return
        body = self.rfile.read(n)
        tmp = self.report + ".tmp"
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, self.report)
        self.send_response(204)
        self.end_headers()

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def main():
    root, Handler.report = sys.argv[1], sys.argv[2]
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=root))
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
