"""SMTP on port 2525 and HTTP on 8080: every mail and POST received, as one JSON line on stdout."""
import http.server
import json
import threading

from aiosmtpd.controller import Controller


class Mail:
    async def handle_DATA(self, server, session, envelope):
        print(json.dumps({"kind": "mail", "from": envelope.mail_from, "to": envelope.rcpt_tos,
                          "data": envelope.content.decode("utf-8", "replace")}), flush=True)
        return "250 OK"


class Webhook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        print(json.dumps({"kind": "webhook", "path": self.path, "body": json.loads(body)}), flush=True)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


controller = Controller(Mail(), hostname="0.0.0.0", port=2525)
controller.start()
threading.Thread(target=http.server.HTTPServer(("0.0.0.0", 8080), Webhook).serve_forever).start()
