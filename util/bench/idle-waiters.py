#!/usr/bin/env python3
"""Cost of idle subscribers of one stream to the deliveries of another.

One nginx worker holds IDLE subscribers of stream "idle" (which never gets
a chunk) and 10 subscribers of stream "hot"; CHUNKS chunks are published to
"hot", one POST each.  Prints the worker's CPU time (utime + stime from
/proc) per chunk.  Run it once with IDLE=0 and once with IDLE=2000: the
difference is what the idle subscribers cost each chunk of another stream.

usage: util/bench/idle-waiters.py [--module build/debian/ngx_http_streaming_module.so]
                                  [--nginx /usr/sbin/nginx] [--idle 2000] [--chunks 5000]
"""

import argparse
import http.client
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time

CONF = """
load_module {module};
worker_processes 1;
worker_rlimit_nofile 10000;
error_log {prefix}/error.log info;
pid {prefix}/nginx.pid;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix};
    streaming_zone z 64m;
    server {{
        listen 127.0.0.1:{port};
        location /pub {{ streaming_publish z; streaming_id $arg_id; }}
        location /sub {{ streaming_subscribe z; streaming_id $arg_id; }}
    }}
}}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def worker_cpu(master):
    out = subprocess.run(["ps", "-o", "pid=,cmd=", "--ppid", str(master)],
                         capture_output=True, text=True).stdout
    total = 0.0
    for line in out.splitlines():
        pid, cmd = line.split(None, 1)
        if "worker" not in cmd:
            continue
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def request(port, method, path, body=b""):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def subscribe(port, stream):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET /sub?id={stream}&from=live HTTP/1.1\r\nHost: b\r\n\r\n"
              .encode())
    return s


def main():
    top = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", default=os.path.join(
        top, "build/debian/ngx_http_streaming_module.so"))
    ap.add_argument("--nginx", default="/usr/sbin/nginx")
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--chunks", type=int, default=5000)
    o = ap.parse_args()

    resource.setrlimit(resource.RLIMIT_NOFILE, (o.idle + 1000, o.idle + 1000))

    prefix = tempfile.mkdtemp(prefix="idle-waiters-")
    os.chmod(prefix, 0o755)
    port = free_port()
    with open(f"{prefix}/nginx.conf", "w") as f:
        f.write(CONF.format(module=os.path.abspath(o.module), prefix=prefix,
                            port=port))
    subprocess.run([o.nginx, "-p", prefix, "-c", f"{prefix}/nginx.conf"],
                   check=True)
    try:
        for _ in range(100):
            if os.path.exists(f"{prefix}/nginx.pid"):
                break
            time.sleep(0.05)
        master = int(open(f"{prefix}/nginx.pid").read())

        request(port, "PUT", "/pub?id=idle")
        request(port, "PUT", "/pub?id=hot")
        idle = [subscribe(port, "idle") for _ in range(o.idle)]
        hot = [subscribe(port, "hot") for _ in range(10)]
        for s in hot:
            s.setblocking(False)
        time.sleep(2)

        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        t0 = worker_cpu(master)
        for i in range(o.chunks):
            c.request("POST", "/pub?id=hot", b"chunk %d" % i)
            c.getresponse().read()
            for s in hot:
                try:
                    s.recv(65536)
                except BlockingIOError:
                    pass
        time.sleep(0.5)
        cpu = worker_cpu(master) - t0

        print(f"idle subscribers {o.idle}, chunks {o.chunks} to 10 "
              f"subscribers of another stream: worker CPU {cpu:.2f} s = "
              f"{cpu / o.chunks * 1e6:.0f} us per chunk")
        for s in idle + hot:
            s.close()
    finally:
        subprocess.run([o.nginx, "-p", prefix, "-c", f"{prefix}/nginx.conf",
                        "-s", "stop"], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    main()
