#!/usr/bin/env python3
# A tiny SMTP server for the two things Postfix's smtp-sink cannot do:
# STARTTLS (RFC 3207) and a SIZE limit (RFC 1870). Test use only, loopback.
# usage: tiny_smtpd.py PORT CERT KEY SIZE OUTDIR MODE   (MODE: tls | badtls)
# Each message is written to OUTDIR/N.eml with a first line "tls=0|1 mail=<args>".
import itertools, os, socketserver, ssl, sys

port, cert, key, size, outdir, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
counter = itertools.count()

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        sock, rf, tls, mail = self.request, self.rfile, False, None
        def send(s):
            sock.sendall((s + "\r\n").encode())
        send("220 tiny ESMTP")
        while True:
            line = rf.readline()
            if not line:
                return
            cmd = line.decode("latin-1").rstrip("\r\n")
            verb = cmd[:4].upper()
            if verb == "EHLO":
                ext = ["250-tiny", "250-SIZE %d" % size, "250-PIPELINING"]
                if not tls:
                    ext.append("250-STARTTLS")
                send("\r\n".join(ext + ["250 8BITMIME"]))
            elif verb == "STAR":
                send("220 2.0.0 go ahead")
                if mode == "badtls":
                    sock.sendall(b"this is not a TLS record\r\n")
                    return
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(cert, key)
                sock = ctx.wrap_socket(sock, server_side=True)
                rf, tls = sock.makefile("rb"), True
            elif verb == "MAIL":
                mail = cmd[10:]
                send("250 2.1.0 ok")
            elif verb == "RCPT":
                send("250 2.1.5 ok")
            elif verb == "DATA":
                send("354 go")
                data = b""
                while True:
                    l = rf.readline()
                    if not l or l == b".\r\n":
                        break
                    data += l
                with open(os.path.join(outdir, "%d.eml" % next(counter)), "wb") as f:
                    f.write(("tls=%d mail=%s\n" % (tls, mail)).encode() + data)
                send("250 2.0.0 queued")
            elif verb == "QUIT":
                send("221 bye")
                return
            else:
                send("250 ok")

class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

Server(("127.0.0.1", int(port)), Handler).serve_forever()
