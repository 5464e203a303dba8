#!/usr/bin/env python3
"""Creates in a running AWS emulator every data resource of template.yaml (tables with their keys,
indexes and TTL, the queues with their redrive policy, the bucket, the secret of the signing keys,
the SNS topics with their queue subscriptions, the SES sender identity) and prints the environment the functions need, one KEY=value
a line, then DATAREQUEST_INGEST_QUEUE_URL and DATAREQUEST_SES_TOPIC_ARN for tests (no function
settings). Reading the template itself keeps the template, the emulator and the tests from drifting
apart."""

import argparse
import os
import secrets
import sys

import boto3
from cfnlint.decode import decode

HERE = os.path.dirname(os.path.abspath(__file__))
REGION = "us-east-1"


class Unresolvable(Exception):
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True, help="the emulator's URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--suffix", default="local", help="makes every resource name unique")
    parser.add_argument("--template", default=os.path.join(HERE, "..", "template.yaml"))
    parser.add_argument("--public-url", default="http://127.0.0.1:3000", help="stands in for the HTTP API's URL")
    args = parser.parse_args()

    template, errors = decode(args.template)
    if errors or template is None:
        sys.exit(f"cannot read {args.template}: {errors}")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    client = lambda service: boto3.client(service, endpoint_url=args.endpoint, region_name=REGION)  # noqa: E731
    dynamodb, sqs, s3, ses, sns = client("dynamodb"), client("sqs"), client("s3"), client("sesv2"), client("sns")
    secretsmanager = client("secretsmanager")

    parameters = {}
    for name, spec in template.get("Parameters", {}).items():
        if "Default" in spec:
            parameters[name] = str(spec["Default"])
        elif spec.get("NoEcho"):
            parameters[name] = secrets.token_hex(32)
    refs, arns = {}, {}
    resources = template["Resources"]

    def name_for(logical_id):
        return f"datarequest-{args.suffix}-{logical_id}".lower()[:63]

    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::DynamoDB::Table":
            name = name_for(logical_id)
            request = {
                "TableName": name,
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
                "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
            }
            if "GlobalSecondaryIndexes" in props:
                request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
            arns[logical_id] = dynamodb.create_table(**request)["TableDescription"]["TableArn"]
            if props.get("TimeToLiveSpecification"):
                dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
            refs[logical_id] = name
        elif resource["Type"] == "AWS::S3::Bucket":
            name = name_for(logical_id)
            s3.create_bucket(Bucket=name)
            if "PublicAccessBlockConfiguration" in props:
                s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
            refs[logical_id], arns[logical_id] = name, f"arn:aws:s3:::{name}"
        elif resource["Type"] == "AWS::SecretsManager::Secret":
            # Without a value, as the template makes it (a secret's Ref is its ARN).
            arn = secretsmanager.create_secret(Name=name_for(logical_id))["ARN"]
            refs[logical_id], arns[logical_id] = arn, arn

    # Queues: the ones a redrive policy points at first.
    queues = [lid for lid, r in resources.items() if r["Type"] == "AWS::SQS::Queue"]
    queues.sort(key=lambda lid: "RedrivePolicy" in resources[lid].get("Properties", {}))
    for logical_id in queues:
        props = resources[logical_id].get("Properties", {})
        attributes = {k: str(props[k]) for k in ("VisibilityTimeout", "MessageRetentionPeriod") if k in props}
        if "RedrivePolicy" in props:
            policy = props["RedrivePolicy"]
            target = resolve(policy["deadLetterTargetArn"], refs, arns, parameters)
            attributes["RedrivePolicy"] = '{"deadLetterTargetArn":"%s","maxReceiveCount":"%s"}' % (target, policy["maxReceiveCount"])
        url = sqs.create_queue(QueueName=name_for(logical_id), Attributes=attributes)["QueueUrl"]
        refs[logical_id] = url
        arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    # Topics (a topic's Ref is its ARN), then their subscriptions, so that a record published to a
    # topic lands in the subscribed queue as SNS would deliver it.
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::SNS::Topic":
            arn = sns.create_topic(Name=name_for(logical_id))["TopicArn"]
            refs[logical_id], arns[logical_id] = arn, arn
    for resource in resources.values():
        if resource["Type"] == "AWS::SNS::Subscription":
            condition = resource.get("Condition")
            if condition and not evaluate(template.get("Conditions", {})[condition], parameters):
                continue
            props = resource["Properties"]
            request = {
                "TopicArn": resolve(props["TopicArn"], refs, arns, parameters),
                "Protocol": props["Protocol"],
                "Endpoint": resolve(props["Endpoint"], refs, arns, parameters),
                "ReturnSubscriptionArn": True,
            }
            if "RawMessageDelivery" in props:
                request["Attributes"] = {"RawMessageDelivery": str(props["RawMessageDelivery"]).lower()}
            sns.subscribe(**request)

    identity = parameters.get("SenderIdentity")
    if identity:
        try:
            ses.create_email_identity(EmailIdentity=identity)
        except ses.exceptions.AlreadyExistsException:
            pass

    environment = {}
    functions = [r for r in resources.values() if r["Type"] == "AWS::Serverless::Function"]
    sources = [template.get("Globals", {}).get("Function", {})] + [f.get("Properties", {}) for f in functions]
    for source in sources:
        for key, value in source.get("Environment", {}).get("Variables", {}).items():
            try:
                resolved = resolve(value, refs, arns, parameters, template.get("Conditions", {}))
            except Unresolvable:
                continue
            if resolved is not None:
                environment[key] = resolved
    environment.setdefault("DATAREQUEST_PUBLIC_URL", args.public_url)

    print(f"AWS_ENDPOINT_URL={args.endpoint}")
    print("AWS_ACCESS_KEY_ID=testing")
    print("AWS_SECRET_ACCESS_KEY=testing")
    print(f"AWS_REGION={REGION}")
    print(f"AWS_DEFAULT_REGION={REGION}")
    print("AWS_EC2_METADATA_DISABLED=true")
    for key in sorted(environment):
        print(f"{key}={environment[key]}")
    # For tests: where SES events arrive (no function setting).
    print(f"DATAREQUEST_INGEST_QUEUE_URL={refs['IngestQueue']}")
    print(f"DATAREQUEST_SES_TOPIC_ARN={refs['SesEventsTopic']}")


def resolve(value, refs, arns, parameters, conditions=None):
    """Resolves the intrinsic functions the template uses in environment variables."""
    if isinstance(value, (str, int, float)):
        return str(value)
    if not isinstance(value, dict) or len(value) != 1:
        raise Unresolvable(value)
    (function, argument), = value.items()
    if function == "Ref":
        if argument == "AWS::NoValue":
            return None
        if argument in refs:
            return refs[argument]
        if argument in parameters:
            return parameters[argument]
        raise Unresolvable(argument)
    if function == "Fn::GetAtt" and argument[1] == "Arn" and argument[0] in arns:
        return arns[argument[0]]
    if function == "Fn::If":
        condition, yes, no = argument
        chosen = yes if evaluate((conditions or {})[condition], parameters) else no
        return resolve(chosen, refs, arns, parameters, conditions)
    raise Unresolvable(value)


def evaluate(condition, parameters):
    (function, argument), = condition.items()
    if function == "Fn::Not":
        return not evaluate(argument[0], parameters)
    if function == "Fn::Equals":
        # Parameter values are strings, as in CloudFormation.
        values = [parameters.get(a["Ref"]) if isinstance(a, dict) else str(a) for a in argument]
        return values[0] == values[1]
    raise Unresolvable(condition)


if __name__ == "__main__":
    main()
