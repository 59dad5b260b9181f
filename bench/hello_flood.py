#!/usr/bin/env python3
# The server's CPU per connection that never says HELLO, while many authenticated connections
# are open: each such connect past --hello-pending-max evicts the oldest pending one, which must
# cost the same however many connections are open (docs/architecture.md).
#
#   bench/hello_flood.py build/bin/stockd [AUTHED=8000] [CONNECTS=20000]
#
# Starts a throwaway stockd (--durability off, --hello-pending-max 256) on a free port, opens
# AUTHED connections that say HELLO, then CONNECTS that say nothing (closing its own side 1,000
# at a time), and prints the server's CPU time (utime + stime) per connect.
import socket, struct, subprocess, sys, time, os, tempfile, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],)*2)
binary = sys.argv[1]
authed_n = int(sys.argv[2]) if len(sys.argv) > 2 else 8000
flood_n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
d = tempfile.mkdtemp()
p = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}", "--data-dir", d + "/data", "--durability", "off",
                      "--hello-pending-max", "256", "--connections-max", "9000"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],)*2))
time.sleep(1.0)
def hello():
    body = struct.pack("<HB", 1, 1) + struct.pack("<H", 0) + struct.pack("<H", 1) + b"x"
    return struct.pack("<HBBIHHI", 0x4B53, 1, 0, len(body), 1, 0, 1) + body
authed = []
for i in range(authed_n):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(hello()); authed.append(s)
for s in authed:
    s.recv(64)
def cpu():
    f = open(f"/proc/{p.pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
c0 = cpu(); t0 = time.time()
flood = []
for i in range(flood_n):
    s = socket.socket(); s.setblocking(False)
    try: s.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    flood.append(s)
    if len(flood) > 2000:
        for x in flood[:1000]: x.close()
        flood = flood[1000:]
time.sleep(1.0)
c1 = cpu()
print(f"{binary}: {authed_n} authed, {flood_n} connects without HELLO: stockd CPU {c1-c0:.2f} s ({(c1-c0)/flood_n*1e6:.1f} us per connect)")
p.kill()
p.wait()
subprocess.run(["rm", "-rf", d])
