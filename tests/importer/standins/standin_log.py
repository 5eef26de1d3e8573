"""The "syslog" of the stand-ins: a file in the traditional rsyslog format ($STANDIN_SYSLOG), or a JSON-lines
journal ($STANDIN_JOURNAL) that the stand-in journalctl reads."""
import json
import os
import time


def log(pid, msg, tag="esmith::event"):
    now = time.time()
    path = os.environ.get("STANDIN_SYSLOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{time.strftime('%b %e %H:%M:%S', time.localtime(now))} testhost {tag}[{pid}]: {msg}\n")
    jpath = os.environ.get("STANDIN_JOURNAL")
    if jpath:
        with open(jpath, "a") as f:
            f.write(json.dumps({"__REALTIME_TIMESTAMP": str(int(now * 1e6)), "SYSLOG_IDENTIFIER": tag,
                                "SYSLOG_PID": str(pid), "_PID": str(pid), "MESSAGE": msg,
                                "_HOSTNAME": "testhost"}) + "\n")
