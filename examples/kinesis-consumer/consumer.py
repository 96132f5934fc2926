#!/usr/bin/env python3
"""A QLDB journal stream consumer that works unchanged against Quill and QLDB.

It reads a Kinesis data stream fed by `StreamJournalToKinesis`, deaggregates the KPL records
with `aws-kinesis-agg` (as the AWS QLDB stream samples do), decodes each record's Ion, checks
every revision's hash, and keeps a read model of the current documents:

- a revision is keyed by `(documentId, version)`: delivery is at least once, so a key already
  applied is a duplicate and is skipped;
- a revision older than the document's current version is stale and is skipped (records are
  not guaranteed to arrive in order across shards);
- a revision without `data` or `dataHash` is a deletion: the document leaves the model but its
  version is remembered, so older revisions arriving later cannot resurrect it.

Run `python consumer.py --stream-name NAME [--endpoint-url URL] [--region R] [--once]`; with
`--once` it drains the stream and prints the read model as JSON. Credentials and the endpoint
follow the usual boto3 configuration (`AWS_ENDPOINT_URL_KINESIS`, `AWS_ACCESS_KEY_ID`, ...).
Needs `boto3`, `amazon.ion`, `aws-kinesis-agg` and `pyqldb` (for QLDB's hash helpers).
"""

import argparse
import base64
import json
import sys
import time
from collections.abc import Mapping, Sequence

import boto3
from amazon.ion import simpleion
from aws_kinesis_agg.deaggregator import deaggregate_records
from pyqldb.util.qldb_hash import QldbHash


def revision_hash(revision):
    """QLDB's revision hash: dot(H(metadata), H(data)); a redacted revision carries H(data) as
    `dataHash`; a deletion hashes its metadata alone."""
    metadata = QldbHash.to_qldb_hash(revision["metadata"])
    if "data" in revision:
        return metadata.dot(QldbHash.to_qldb_hash(revision["data"])).get_qldb_hash()
    if "dataHash" in revision:
        return metadata.dot(QldbHash(bytes(revision["dataHash"]))).get_qldb_hash()
    return metadata.get_qldb_hash()


class ReadModel:
    """Current documents by id: `{documentId: {"table", "version", "data"}}`."""

    def __init__(self):
        self.documents = {}
        self.versions = {}  # documentId -> latest version applied (deletions included)
        self.seen = set()  # (documentId, version) applied
        self.counts = {"applied": 0, "duplicate": 0, "stale": 0}

    def apply(self, payload):
        """Applies a REVISION_DETAILS payload; returns "applied", "duplicate" or "stale"."""
        revision = payload["revision"]
        if revision_hash(revision) != bytes(revision["hash"]):
            raise ValueError(f"revision {revision['metadata']['id']} fails its hash check")
        document_id = revision["metadata"]["id"]
        version = revision["metadata"]["version"]
        if (document_id, version) in self.seen:
            outcome = "duplicate"
        elif version < self.versions.get(document_id, -1):
            outcome = "stale"
        else:
            outcome = "applied"
            self.seen.add((document_id, version))
            self.versions[document_id] = version
            if "data" in revision:
                self.documents[document_id] = {
                    "table": payload["tableInfo"]["tableName"],
                    "version": version,
                    "data": to_json(revision["data"]),
                }
            else:
                # Deleted, or redacted (its data is gone): not a current document.
                self.documents.pop(document_id, None)
        self.counts[outcome] += 1
        return outcome


def to_json(value):
    """Ion values to plain JSON values (the read model's storage format)."""
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [to_json(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def user_records(kinesis_records):
    """Deaggregates Kinesis records (boto3 `get_records` shape) into decoded stream records."""
    events = [{
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": r["SequenceNumber"],
        "eventName": "aws:kinesis:record", "invokeIdentityArn": "", "awsRegion": "",
        "eventSourceARN": "", "kinesis": {
            "kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
            "sequenceNumber": r["SequenceNumber"], "approximateArrivalTimestamp": 0.0,
            "data": base64.b64encode(r["Data"]).decode()}} for r in kinesis_records]
    return [simpleion.loads(base64.b64decode(e["kinesis"]["data"])) for e in deaggregate_records(events)]


def consume(client, stream_name, model, once):
    shards = client.describe_stream(StreamName=stream_name)["StreamDescription"]["Shards"]
    iterators = {s["ShardId"]: client.get_shard_iterator(
        StreamName=stream_name, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for s in shards}
    while iterators:
        drained = True
        for shard, iterator in list(iterators.items()):
            page = client.get_records(ShardIterator=iterator, Limit=1000)
            for record in user_records(page["Records"]):
                if record["recordType"] == "REVISION_DETAILS":
                    model.apply(record["payload"])
            drained = drained and not page["Records"]
            if page.get("NextShardIterator"):
                iterators[shard] = page["NextShardIterator"]
            else:
                del iterators[shard]
        if drained:
            if once:
                return
            time.sleep(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream-name", required=True)
    parser.add_argument("--endpoint-url")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--once", action="store_true", help="drain the stream, print the model, exit")
    args = parser.parse_args()
    client = boto3.client("kinesis", endpoint_url=args.endpoint_url, region_name=args.region)
    model = ReadModel()
    consume(client, args.stream_name, model, args.once)
    json.dump({"documents": model.documents, "counts": model.counts}, sys.stdout, indent=2, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
