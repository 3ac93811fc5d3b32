"""The report-mailing recipe done properly in Python, for devstack load.

What a platform team would write without reportmailer: boto3, botocore's
CloudFront signer with the RSA key loaded once, jinja2 templates compiled
once, 8 threads in one process. Each thread receives ten messages, signs
each event's links once, renders an HTML and a text body per recipient,
sends each recipient one SendEmail, and deletes the batch. No ledger, no
HeadObject, no pacing: the floor of the job in Python.

Settings come from the environment (RECIPE_*), and what it did is one
JSON line on stdout.
"""

import datetime
import json
import os
import sys
import threading
import time

import boto3
import jinja2
from botocore.config import Config
from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

THREADS = 8

HTML = jinja2.Template(
    """<!doctype html>
<html><body>
<p>Hello {{ name }},</p>
<p>{{ reports|length }} report{{ "s" if reports|length != 1 }} ready for you:</p>
<table>{% for r in reports %}
<tr><td><a href="{{ r.url }}">{{ r.title }}</a></td><td>{{ r.size }} bytes</td></tr>{% endfor %}
</table>
<p>The links work until {{ expires }}.</p>
</body></html>""",
    autoescape=True,
)
TEXT = jinja2.Template(
    """Hello {{ name }},

{{ reports|length }} report{{ "s" if reports|length != 1 }} ready for you:
{% for r in reports %}
- {{ r.title }} ({{ r.size }} bytes): {{ r.url }}{% endfor %}

The links work until {{ expires }}.
"""
)


def main():
    env = os.environ
    queue = env["RECIPE_QUEUE_URL"]
    total = int(env["RECIPE_EVENTS"])
    edge = env["RECIPE_EDGE_URL"].rstrip("/")
    creds = dict(
        region_name=env["RECIPE_REGION"],
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
        config=Config(max_pool_connections=THREADS * 2),
    )
    sqs = boto3.client("sqs", endpoint_url=env["RECIPE_SQS_URL"], **creds)
    ses = boto3.client("sesv2", endpoint_url=env["RECIPE_SES_URL"], **creds)

    with open(env["RECIPE_KEY_FILE"], "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    signer = CloudFrontSigner(
        env["RECIPE_KEY_ID"],
        lambda message: key.sign(message, padding.PKCS1v15(), hashes.SHA1()),
    )

    done = 0
    lock = threading.Lock()
    errors = []

    def loop():
        nonlocal done
        try:
            while True:
                with lock:
                    if done >= total or errors:
                        return
                out = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                entries = []
                for i, m in enumerate(out.get("Messages", [])):
                    ev = json.loads(m["Body"])
                    expires = int(time.time()) + 7 * 24 * 3600
                    reports = [
                        {
                            "title": r["title"],
                            "size": r["size"],
                            "url": signer.generate_presigned_url(
                                edge + "/" + r["key"],
                                date_less_than=datetime.datetime.fromtimestamp(expires, datetime.timezone.utc),
                            ),
                        }
                        for r in ev["reports"]
                    ]
                    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires))
                    for to in [ev["user"]["email"]] + (ev.get("recipients") or []):
                        page = dict(name=ev["user"]["name"], reports=reports, expires=until)
                        ses.send_email(
                            FromEmailAddress="reports@acme.example",
                            Destination={"ToAddresses": [to]},
                            Content={
                                "Simple": {
                                    "Subject": {"Data": "Your reports are ready"},
                                    "Body": {
                                        "Html": {"Data": HTML.render(page)},
                                        "Text": {"Data": TEXT.render(page)},
                                    },
                                }
                            },
                        )
                    entries.append({"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]})
                if entries:
                    sqs.delete_message_batch(QueueUrl=queue, Entries=entries)
                with lock:
                    done += len(entries)
        except Exception as e:  # reported on stdout, and the run fails
            with lock:
                errors.append(repr(e))

    threads = [threading.Thread(target=loop) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    json.dump({"done": done, "errors": errors}, sys.stdout)
    sys.stdout.write("\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
