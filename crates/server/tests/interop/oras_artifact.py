"""Pushes an artifact with oras-py, then a second one whose subject is the first, and checks
that the registry hands both back (and, with --referrers, lists the second as a referrer of the
first). Used by the Rust interop tests; prints "ok" on success and raises otherwise."""

import argparse
import json
import os
import sys
import tempfile

import oras.client
import oras.oci
import requests

parser = argparse.ArgumentParser()
parser.add_argument("host")
parser.add_argument("repo")
parser.add_argument("--referrers", action="store_true")
args = parser.parse_args()

work = tempfile.mkdtemp()
os.chdir(work)
with open("agent.yaml", "w") as f:
    f.write("apiVersion: v1\nkind: Agent\nmetadata:\n  name: summarizer\n")
with open("card.json", "w") as f:
    json.dump({"name": "summarizer", "capabilities": ["summarize"]}, f)

client = oras.client.OrasClient(hostname=args.host, insecure=True)
base = f"{args.host}/{args.repo}"

r = client.push(target=f"{base}:agent", files=["agent.yaml:application/vnd.agent-registry.agent.v1+yaml"])
assert r.status_code == 201, r.text
subject_digest = r.headers["Docker-Content-Digest"]
manifest = requests.get(
    f"http://{args.host}/v2/{args.repo}/manifests/{subject_digest}",
    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
)
assert manifest.status_code == 200, manifest.text
subject = oras.oci.Subject(
    mediaType="application/vnd.oci.image.manifest.v1+json", digest=subject_digest, size=len(manifest.content)
)

r = client.push(
    target=f"{base}:card",
    files=["card.json:application/vnd.agent-registry.card.v1+json"],
    subject=subject,
    manifest_config="card.json:application/vnd.agent-registry.card.config.v1+json",
)
assert r.status_code == 201, r.text
card_digest = r.headers["Docker-Content-Digest"]

out = os.path.join(work, "pulled")
files = client.pull(target=f"{base}:agent", outdir=out)
pulled = open(files[0]).read()
assert "summarizer" in pulled, pulled

if args.referrers:
    assert r.headers.get("OCI-Subject") == subject_digest, dict(r.headers)
    ref = requests.get(f"http://{args.host}/v2/{args.repo}/referrers/{subject_digest}")
    assert ref.status_code == 200, ref.text
    index = ref.json()
    digests = [m["digest"] for m in index["manifests"]]
    assert digests == [card_digest], index
    assert index["manifests"][0]["artifactType"] == "application/vnd.agent-registry.card.config.v1+json", index
    filtered = requests.get(
        f"http://{args.host}/v2/{args.repo}/referrers/{subject_digest}",
        params={"artifactType": "application/x-none"},
    )
    assert filtered.json()["manifests"] == [], filtered.text
    assert filtered.headers.get("OCI-Filters-Applied") == "artifactType"
print("ok")
