"""What Lambda does around the handler, for the sandbox, tests and benchmarks:
build the SQS event from received messages, pass a context, create the tables."""

from __future__ import annotations

from typing import Any

from enforcer import journal, mapping


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """SQS ReceiveMessage results in the shape Lambda's SQS event source hands over."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": (m.get("Attributes") or {}).get("ApproximateReceiveCount", "1")
                },
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class LambdaContext:
    """The attributes Powertools reads from Lambda's context object."""

    def __init__(self, function_name: str = "enforcer", region: str = "us-east-1", account: str = "123456789012"):
        self.function_name = function_name
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.aws_request_id = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def create_tables(ddb, mapping_table: str = "mapping", log_table: str = "log") -> None:
    """The mapping and log tables with the schemas the engine reads and writes."""
    for name, (hash_key, range_key) in ((mapping_table, mapping.TABLE_KEY), (log_table, journal.TABLE_KEY)):
        ddb.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": hash_key, "KeyType": "HASH"},
                {"AttributeName": range_key, "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": hash_key, "AttributeType": "S"},
                {"AttributeName": range_key, "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
