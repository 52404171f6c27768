#!/usr/bin/env python3
"""A stand-in for a GPU transcription server when measuring how many calls
one media host carries with `speech.backend = "openai"`: it answers
`POST /v1/audio/transcriptions` after a fixed delay (a GPU's decode time)
with a fixed German sentence. It measures the host, not recognition.

    python3 scripts/bench/stt_stub.py --port 8123 --delay-ms 60 &
    AIAGC_STT=openai AIAGC_STT_URL=http://127.0.0.1:8123/v1 \\
        target/release/aiagc loadtest --calls 48 --concurrency 16 --json
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=8123)
parser.add_argument("--delay-ms", type=float, default=60.0)
parser.add_argument("--text", default="Ich möchte einen Termin vereinbaren.")
args = parser.parse_args()
lock = threading.Lock()
served = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global served
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        if not self.path.endswith("/audio/transcriptions") or b"RIFF" not in body:
            self.send_response(400)
            self.end_headers()
            return
        time.sleep(args.delay_ms / 1000.0)
        answer = json.dumps({"text": args.text}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        with lock:
            served += 1

    def log_message(self, *_):
        pass


ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
